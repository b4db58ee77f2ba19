#!/usr/bin/env bash
# Builds (release) and runs the tally binary: ./scripts/tally.sh <command> [args]
# The first build compiles RocksDB (15-30 min on 2 cores); later ones take seconds.
# Paths in the arguments are relative to where you run it from.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/ensure-deps.sh"
. "$root/scripts/env.sh"
cargo build --release --locked --manifest-path "$root/Cargo.toml" -p tally-node --bin tally
exec "$CARGO_TARGET_DIR/release/tally" "$@"
