#!/usr/bin/env bash
# Installs the Ethereum client libraries the wallet tests drive, at pinned
# versions, into a cache outside the checkout, and prints that directory:
#   <dir>/npm/node_modules/ethers   ethers (npm)
#   <dir>/venv                      a Python venv with web3 (PyPI)
# Reinstalls only when a pinned version changes. Exits 2 (the tests then
# skip, saying why) only when a registry cannot be reached; any other
# failure exits 1.
set -euo pipefail
ETHERS_VERSION=6.17.0
WEB3_VERSION=7.16.0
dir="${XDG_CACHE_HOME:-$HOME/.cache}/tally/wallets"

for tool in node npm python3; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "tally: $tool is missing (scripts/ensure-deps.sh installs it as root)" >&2
    exit 1
  fi
done

# A failed install: a registry we cannot reach means skip, anything else fails.
unreachable() {
  echo "tally: could not install $1 ($2 unreachable from here)" >&2
  exit 2
}

mkdir -p "$dir/npm"
installed_ethers=$(node -p "require('$dir/npm/node_modules/ethers/package.json').version" 2>/dev/null || true)
if [ "$installed_ethers" != "$ETHERS_VERSION" ]; then
  if ! (cd "$dir/npm" && npm install --no-audit --no-fund --silent "ethers@$ETHERS_VERSION" >&2); then
    npm view ethers version >/dev/null 2>&1 || unreachable "ethers@$ETHERS_VERSION" "the npm registry"
    echo "tally: npm install ethers@$ETHERS_VERSION failed" >&2
    exit 1
  fi
fi

if [ ! -x "$dir/venv/bin/python" ]; then
  python3 -m venv "$dir/venv" >&2
fi
if ! "$dir/venv/bin/python" -c "import sys, importlib.metadata as m; sys.exit(m.version('web3') != '$WEB3_VERSION')" 2>/dev/null; then
  if ! "$dir/venv/bin/pip" install --quiet --disable-pip-version-check "web3==$WEB3_VERSION" >&2; then
    "$dir/venv/bin/pip" download --quiet --no-deps --dest "$(mktemp -d)" "web3==$WEB3_VERSION" >/dev/null 2>&1 \
      || unreachable "web3==$WEB3_VERSION" "PyPI"
    echo "tally: pip install web3==$WEB3_VERSION failed" >&2
    exit 1
  fi
fi
echo "$dir"
