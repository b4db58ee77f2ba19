#!/usr/bin/env bash
# Runs the whole test suite: ./scripts/test.sh [extra cargo test args]
# Then replays the fuzz regressions and fuzzes each decoder briefly
# (TALLY_FUZZ_SECONDS per target, default 5; 0 skips it).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/ensure-deps.sh
. scripts/env.sh
cargo test --workspace --locked "$@"
fuzz_seconds="${TALLY_FUZZ_SECONDS:-5}"
if [ "$fuzz_seconds" != 0 ]; then
  ./scripts/fuzz.sh "$fuzz_seconds"
fi
