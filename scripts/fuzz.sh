#!/usr/bin/env bash
# Fuzzes every decoder of bytes that arrive from outside, with libFuzzer on
# the stable toolchain (the coverage instrumentation cargo-fuzz uses, set by
# hand; no nightly, no AddressSanitizer: Rust's own checks, with debug
# assertions and overflow checks on, are what fail).
#
#   ./scripts/fuzz.sh [SECONDS] [TARGET...]   each target for SECONDS (default 60)
#   ./scripts/fuzz.sh --runs N [TARGET...]    each target for N executions
#
# Corpora grow in ~/.cache/tally/fuzz-corpus/<target> (outside the repo);
# fuzz/seeds/<target> are the starting inputs, fuzz/dicts/<target>.dict the
# tokens libFuzzer splices in, and fuzz/regressions/<target> the inputs that
# once failed, which every run replays first. A failure
# leaves its input in ~/.cache/tally/fuzz-artifacts/<target>: copy it into
# fuzz/regressions/<target> once fixed.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
. scripts/env.sh
cache="$(dirname "$CARGO_TARGET_DIR")"
export CARGO_TARGET_DIR="$cache/fuzz-target"
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module \
  -Cllvm-args=-sanitizer-coverage-level=4 \
  -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
  -Cllvm-args=-sanitizer-coverage-pc-table \
  -Cllvm-args=-sanitizer-coverage-trace-compares"

limit=(-max_total_time=60)
if [ "${1:-}" = "--runs" ]; then
  limit=(-runs="$2"); shift 2
elif [ -n "${1:-}" ] && [[ "$1" =~ ^[0-9]+$ ]]; then
  limit=(-max_total_time="$1"); shift
fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(tx eth_tx tx_batch block consensus_envelope sync_messages genesis config rpc_params rpc_body)
fi

# An explicit --target keeps the instrumentation off build scripts and
# proc macros (they are not linked with libFuzzer).
host="$(rustc -vV | sed -n 's/^host: //p')"
cargo build --release --locked --manifest-path fuzz/Cargo.toml --bins --target "$host"

status=0
for target in "${targets[@]}"; do
  bin="$CARGO_TARGET_DIR/$host/release/$target"
  corpus="$cache/fuzz-corpus/$target"
  artifacts="$cache/fuzz-artifacts/$target"
  log="$cache/fuzz-logs/$target.log"
  rm -rf "$artifacts"
  mkdir -p "$corpus" "$artifacts" "$(dirname "$log")"
  regressions="fuzz/regressions/$target"
  if [ -d "$regressions" ] && [ -n "$(ls -A "$regressions")" ]; then
    echo "== $target: replaying $(ls "$regressions" | wc -l) regression inputs"
    "$bin" "$regressions"/* >"$log" 2>&1 || { tail -n 30 "$log"; status=1; continue; }
  fi
  seeds=()
  [ -d "fuzz/seeds/$target" ] && seeds=("fuzz/seeds/$target")
  dict=()
  [ -f "fuzz/dicts/$target.dict" ] && dict=(-dict="fuzz/dicts/$target.dict")
  if "$bin" "${limit[@]}" -max_len=65536 -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="$artifacts/" "${dict[@]}" "$corpus" "${seeds[@]}" >"$log" 2>&1; then
    runs=$(grep -oE "stat::number_of_executed_units: *[0-9]+" "$log" | grep -oE "[0-9]+$" || echo "?")
    rss=$(grep -oE "stat::peak_rss_mb: *[0-9]+" "$log" | grep -oE "[0-9]+$" || echo "?")
    echo "== $target: ${runs} executions, corpus $(ls "$corpus" | wc -l) inputs, peak RSS ${rss} MB, no failure"
  else
    echo "== $target: FAILED (log $log, input in $artifacts):" >&2
    grep -E "panicked|SUMMARY|ERROR|Test unit written|assert" "$log" | head -n 20 >&2
    status=1
  fi
done
exit $status
