#!/usr/bin/env bash
# Installs the system packages Tally's build needs when they are missing:
# clang and libclang (bindgen generates RocksDB's bindings with them), and,
# as root, Chromium for the dashboard test (TALLY_BROWSER_TESTS=0: not) and
# iproute2, nftables and faketime for `tally netns` and its tests
# (TALLY_NETNS_TESTS=0: not), and Node.js, npm and Python's venv for the
# wallet tests (TALLY_WALLET_TESTS=0: not).
# Debian/Ubuntu only; runs apt-get as root (or through sudo).
set -euo pipefail

have_libclang() {
  [ -n "${LIBCLANG_PATH:-}" ] && return 0
  local pattern
  for pattern in /usr/lib/llvm-*/lib/libclang.so* /usr/lib/llvm-*/lib/libclang-[0-9]*.so* \
                 /usr/lib/*-linux-gnu/libclang.so* /usr/lib/*-linux-gnu/libclang-[0-9]*.so*; do
    compgen -G "$pattern" >/dev/null && return 0
  done
  return 1
}

missing=()
# Debian's Chromium for the dashboard's browser test, when we may install
# it without asking (as root, as CI runs); without it that test is skipped.
if [ "$(id -u)" -eq 0 ] && [ "${TALLY_BROWSER_TESTS:-1}" != 0 ] \
   && ! command -v chromium >/dev/null 2>&1; then
  missing+=(chromium)
fi
# The netns testnet's tools: namespaces and tc (iproute2), partitions, loss
# and NAT (nftables), a node's clock offset (faketime's libfaketime).
if [ "$(id -u)" -eq 0 ] && [ "${TALLY_NETNS_TESTS:-1}" != 0 ]; then
  PATH="$PATH:/usr/sbin:/sbin"
  command -v ip >/dev/null 2>&1 || missing+=(iproute2)
  command -v nft >/dev/null 2>&1 || missing+=(nftables)
  compgen -G "/usr/lib/*/faketime/libfaketime.so.1" >/dev/null || missing+=(faketime)
fi
# The wallet tests drive ethers (Node.js) and web3.py (a Python venv);
# scripts/wallets.sh installs the libraries themselves into a cache.
if [ "$(id -u)" -eq 0 ] && [ "${TALLY_WALLET_TESTS:-1}" != 0 ]; then
  command -v node >/dev/null 2>&1 || missing+=(nodejs)
  command -v npm >/dev/null 2>&1 || missing+=(npm)
  command -v python3 >/dev/null 2>&1 || missing+=(python3)
  python3 -c "import ensurepip, venv" >/dev/null 2>&1 || missing+=(python3-venv)
fi
command -v clang >/dev/null 2>&1 || missing+=(clang)
have_libclang || missing+=(libclang-dev)
command -v g++ >/dev/null 2>&1 || missing+=(g++)
command -v make >/dev/null 2>&1 || missing+=(make)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "tally: installing missing build packages: ${missing[*]}" >&2
if ! command -v apt-get >/dev/null 2>&1; then
  echo "tally: no apt-get here; install ${missing[*]} with your package manager" >&2
  exit 1
fi
as_root=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then as_root=(sudo); else
    echo "tally: need root to install ${missing[*]}; run as root or install them yourself" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
