//! Tendermint BFT consensus ("The latest gossip on BFT consensus", Buchman,
//! Kwon, Milosevic, arXiv:1807.04938, Algorithm 1) as a pure state machine:
//! events in, actions out, no clock, no randomness, no threads, no IO. It
//! depends on no other workspace crate and is generic over the value agreed
//! on (a block id in the node) and over the signature scheme.
//!
//! # The protocol
//!
//! `n` validators with voting power agree, height after height, on one value
//! each. A height runs in rounds `0, 1, 2, …`; each round has a proposer chosen
//! by weighted rotation ([`ValidatorSet::proposer`]) and three steps:
//!
//! 1. **Propose.** The proposer broadcasts `⟨PROPOSAL, h, r, v, validRound⟩`:
//!    its `validValue` if it has one (a value it saw 2f+1 prevotes for, with
//!    that round as the POL round), else a fresh block (L11-21).
//! 2. **Prevote.** A validator prevotes `v` if `v` is valid and it is not
//!    locked on another value, or if the proposal carries a POL round `vr` for
//!    which it holds 2f+1 prevotes for `v` and its lock is not newer than `vr`;
//!    otherwise nil. With no proposal by `timeoutPropose(r)` it prevotes nil
//!    (L22-33, L57).
//! 3. **Precommit.** On 2f+1 prevotes for the proposal's value it locks on it
//!    (`lockedValue`, `lockedRound`) and precommits it; on 2f+1 prevotes for
//!    nil, or at `timeoutPrevote(r)` after 2f+1 prevotes of any kind, it
//!    precommits nil (L34-46, L61). 2f+1 prevotes for a value also make it the
//!    `validValue` (L42).
//!
//! A value with the proposal and 2f+1 precommits of any round is **decided**
//! (L49) with those precommits as its [`CommitCertificate`]. Otherwise, after
//! 2f+1 precommits of any kind and `timeoutPrecommit(r)`, the next round
//! starts (L47, L65); on messages of f+1 validators from a higher round a
//! validator jumps there at once (L55). "2f+1" is more than 2/3 of the total
//! power, "f+1" more than 1/3; safety holds while faulty validators hold less
//! than 1/3, liveness once the network delivers within a bound (after GST),
//! as the timeouts grow with the round.
//!
//! Locking is what makes it safe: a decided value was precommitted by 2f+1,
//! so f+1 correct validators are locked on it and prevote nothing else unless
//! shown 2f+1 prevotes for another value from a later round, which cannot
//! exist. A validator that signs two different votes (or proposals) for one
//! height/round/step is reported with both signed messages as
//! [`Evidence`]. As in the paper, where messages are counted per value, its
//! second vote still counts for its value (never twice towards "2f+1 of any
//! kind"), if the proposer of a round up to the current one proposed that
//! value: correct validators that counted it in a polka need the others to be
//! able to count it too. At most one such second vote is kept per validator,
//! round and step, so equivocators cannot grow memory without bound.
//!
//! # Driving the machine
//!
//! The node owns one [`Consensus`] and feeds it [`Event`]s, executing the
//! returned [`Action`]s **in order**:
//!
//! - [`Event::StartHeight`] with the height's [`ValidatorSet`] starts a height;
//!   after [`Action::Decide`] the node commits the block and sends
//!   `StartHeight(h + 1)` when it sees fit (the minimum block interval is
//!   its business). Block sync can also skip heights this way, after checking
//!   a certificate with [`verify_certificate`].
//! - [`Event::Proposal`] / [`Event::Vote`] carry peers' signed messages.
//!   Signatures are checked before anything counts; unknown signers, bad
//!   signatures, malformed POL rounds, proposals from non-proposers and
//!   duplicates are dropped, never a panic. Our own messages are counted
//!   internally; feeding them back is harmless (they are duplicates).
//!   Messages for `height + 1` are buffered once their signature checks out
//!   (one per signer, round and step, at most
//!   [`Config::max_next_height_messages`] per validator of the current set,
//!   its lowest rounds first; before the first height, a bounded number of
//!   any height) and replayed at its start; all other heights are dropped.
//!   Rounds above the current one are bounded per validator
//!   ([`Config::max_future_rounds`]).
//! - [`Action::ScheduleTimeout`] asks for an [`Event::TimeoutElapsed`] later;
//!   `timeout(r) = base + r * delta` ([`TimeoutConfig`]).
//! - [`Action::BuildBlock`] / [`Event::BlockBuilt`] is `getValue()`;
//!   [`Action::VerifyBlock`] / [`Event::BlockVerified`] is `valid(v)`. A
//!   proposal does not count as valid until the answer is "valid".
//! - [`Action::PersistSigningState`] must be durably written (fsync) before
//!   the broadcasts after it in the same list (there is at most one per
//!   list): it carries the [`SigningState`] (height, round, last signed
//!   proposal/prevote/precommit, lock, valid value and the polka behind it).
//!   After a crash, [`Consensus::restore`] from it (which refuses a corrupt
//!   round above [`MAX_ROUND`]) and `StartHeight` of the
//!   next uncommitted height: at the same height it resumes the round, lock
//!   and valid value and sends its last signed messages again; for a
//!   height/round/step it already signed it only ever re-signs the identical
//!   content, below that nothing. It never signs anything conflicting.
//! - [`Consensus::catch_up_messages`] is what to re-gossip when a height makes
//!   no progress: the algorithm assumes every message a correct validator got
//!   eventually reaches the others, which a lossy network does not give.
//!
//! A node without a key (or whose key is not in the height's set) passes no
//! [`Signer`]: it follows the same steps, counts votes and decides, but never
//! signs.
//!
//! Deviations from the paper's pseudo-code, none affecting safety: the
//! proposer also schedules `timeoutPropose` (so a block builder that never
//! answers costs one round, not liveness); L55 jumps to the highest round
//! with f+1 senders; L52-54 (moving to the next height) is left to the node;
//! messages for rounds above [`MAX_ROUND`] are dropped and timeouts never
//! move past it. For crash recovery (which the paper does not model) the
//! persisted state carries the polka of `validRound`, so that after every
//! validator restarted, a proposal re-proposing that value can still be
//! accepted (L28).
//!
//! Sign bytes are specified in [`sign_bytes`].
//!
//! # Tests
//!
//! `tests/it` holds table-driven transition tests naming the paper rule each
//! checks, and a seeded deterministic network simulator (`tests/it/sim`):
//! virtual time, message delay, loss, duplication and reordering, partitions
//! that heal, crash-stop and crash-restart from the persisted signing state,
//! and Byzantine validators that equivocate as proposer, double-vote or stay
//! silent. Every run checks agreement, validity, certificates, no double
//! signing (also across restarts), liveness after GST, and the simulator's
//! determinism. Environment variables:
//!
//! - `TALLY_SIM_SEEDS=<n>`: run `n` seeds per scenario test instead of the CI
//!   default (100 at n = 4, 60 at n = 7, 40 at n = 10; 1,600 runs in all);
//! - `TALLY_SIM_SEED=<s>`: run only seed `s` (replay a failure; a failing run
//!   prints its seed and the command line, e.g.
//!   `TALLY_SIM_SEED=17 cargo test -p tally-consensus --test it -- --exact
//!   scenarios::chaos_n7`);
//! - `TALLY_SIM_VERBOSE=1`: print every event fed to a machine and the
//!   actions it returned (use with one seed and `--nocapture`);
//! - `TALLY_SIM_STATS=1`: print per scenario test the events simulated and
//!   the slowest catch-up after the network became stable (`--nocapture`).
//!
//! `cargo bench -p tally-consensus --bench sim` measures decided heights per
//! CPU-second in the simulator.

mod certificate;
mod evidence;
mod machine;
mod pending;
mod scheme;
pub mod sign_bytes;
mod signing_state;
mod types;
mod validators;
mod votes;

pub use certificate::{CertificateError, CommitCertificate, verify_certificate};
pub use evidence::Evidence;
pub use machine::{
    Action, ActionOf, Config, Consensus, Event, EventOf, MAX_ROUND, MessageOf, Mutation,
    RestoreError, SigningStateOf, Timeout, TimeoutConfig, TimeoutKind,
};
pub use scheme::{Signer, SigningScheme};
pub use sign_bytes::{proposal_sign_bytes, vote_sign_bytes};
pub use signing_state::{RoundValue, SignedProposalRecord, SignedVoteRecord, SigningState};
pub use types::{
    Height, Message, Proposal, Round, Signed, SignedProposal, SignedVote, Step, ValueId, Vote,
    VoteType,
};
pub use validators::{MAX_TOTAL_VOTING_POWER, Validator, ValidatorSet, ValidatorSetError};
pub use votes::MAX_PROPOSALS_PER_ROUND;
