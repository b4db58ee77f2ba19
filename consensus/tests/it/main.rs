//! Integration tests of `tally-consensus`, in one binary: table-driven
//! transition tests, certificate and restart tests, property tests, and the
//! deterministic network simulator with its scenarios and negative controls.
//!
//! `TALLY_SIM_SEEDS=<n>` runs `n` seeds per simulation scenario,
//! `TALLY_SIM_SEED=<s>` replays one seed.

mod bounds;
mod certificates;
mod determinism;
mod negative;
mod properties;
mod restart;
mod scenarios;
mod sim;
mod support;
mod transitions;
