#!/bin/bash
# Disk use of an archive validator and a pruned full node on one chain:
# prints both store sizes every 10,000 blocks up to MAX_HEIGHT.
#
#   scripts/disk-use.sh [path/to/tally] [max height] [retain_blocks]
#
# Blocks come as fast as they commit, under 200 transfers/s. Uses ports
# 19545, 19546, 19656 and 19657 on 127.0.0.1 and a directory under /tmp.
set -u
B=${1:-tally}
MAX_HEIGHT=${2:-60000}
RETAIN=${3:-1000}
D=$(mktemp -d /tmp/tally-disk-use.XXXXXX)
L= F= V=
trap 'kill $L $F $V 2>/dev/null; wait 2>/dev/null; rm -rf "$D"' EXIT
"$B" init --home "$D/val" --chain-id 999 >/dev/null
python3 - "$D/val/config/genesis.json" <<'PY'
import json, sys
p = sys.argv[1]
g = json.load(open(p))
g["consensus"]["block_interval_ms"] = 0
g["consensus"]["empty_block_interval_ms"] = 0
json.dump(g, open(p, "w"), indent=2)
PY
sed -i 's|^listen = \["/ip4/0.0.0.0/tcp/26656"\]|listen = ["/ip4/127.0.0.1/tcp/19656"]|; s|^listen = "127.0.0.1:8545"|listen = "127.0.0.1:19545"|' "$D/val/config/config.toml"
"$B" init --home "$D/full" --full-node --genesis "$D/val/config/genesis.json" >/dev/null
PEER=$("$B" keys peer-id --home "$D/val")
sed -i "s|^listen = \[\"/ip4/0.0.0.0/tcp/26656\"\]|listen = [\"/ip4/127.0.0.1/tcp/19657\"]|; s|^listen = \"127.0.0.1:8545\"|listen = \"127.0.0.1:19546\"|; s|^bootstrap = \[\]|bootstrap = [\"/ip4/127.0.0.1/tcp/19656/p2p/$PEER\"]|; s|^retain_blocks = 0|retain_blocks = $RETAIN|" "$D/full/config/config.toml"
"$B" start --home "$D/val" > "$D/val.log" 2>&1 & V=$!
"$B" start --home "$D/full" > "$D/full.log" 2>&1 & F=$!
sleep 3
"$B" bench --rpc http://127.0.0.1:19545 --duration 3600s --rate 200 --senders 500 > "$D/bench.log" 2>&1 & L=$!
height() {
  curl -s -X POST -H 'content-type: application/json' \
    --data '{"jsonrpc":"2.0","id":1,"method":"tally_status","params":[]}' "http://127.0.0.1:$1" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["result"]["latest_height"])' 2>/dev/null
}
next=10000
start=$(date +%s)
echo "seconds height archive_bytes pruned_bytes"
while [ "$next" -le "$MAX_HEIGHT" ]; do
  h=$(height 19545)
  if [ -n "$h" ] && [ "$h" -ge "$next" ]; then
    sync
    echo "$(( $(date +%s) - start )) $h $(du -sb "$D/val/data/store" | cut -f1) $(du -sb "$D/full/data/store" | cut -f1)"
    next=$((next + 10000))
  fi
  sleep 2
done
