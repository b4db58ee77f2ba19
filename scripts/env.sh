# Sourced by the other scripts: where cargo builds. RocksDB's C++ takes 15-30
# minutes to build cold on 2 cores, so builds go to a cache directory outside
# the checkout that every clone (and CI) reuses. Set CARGO_TARGET_DIR to override.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tally/target}"
mkdir -p "$CARGO_TARGET_DIR"
