#!/usr/bin/env bash
# Runs the whole test suite: ./scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/ensure-deps.sh
. scripts/env.sh
cargo test --workspace --locked "$@"
