# Signed Ethereum transactions made with eth-account, for Tally's decoder tests.
import json, sys
from eth_account import Account
import eth_account, rlp
from eth_utils import keccak, to_checksum_address as cs

out = {"generator": f"eth-account {eth_account.__version__} (Python), Account.sign_transaction", "valid": [], "invalid": []}
keys = ["0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318",
        "0x" + "46" * 32,
        "0x8da4ef21b864d2cc526dbdb2a120bd2874c36c9d0a1fb7f8c63d7f7a8b41de8f"]
txs = []
for i, key in enumerate(keys):
    to = "0x" + ("35" * 20 if i == 1 else "%040x" % (0xF0109FC8DF283027B6285CC889F5AA624EAC1F55 + i))
    txs.append((key, "legacy", dict(nonce=i, gasPrice=20_000_000_000 + i, gas=21000, to=cs(to), value=10**18 + i, data=b"", chainId=1337)))
    txs.append((key, "eip2930", dict(type=1, nonce=7 + i, gasPrice=1_000_000_000, gas=31500, to=cs(to), value=123456789, data=b"", accessList=[], chainId=1337)))
    txs.append((key, "eip1559", dict(type=2, nonce=300 + i, maxPriorityFeePerGas=2_000_000_000, maxFeePerGas=30_000_000_000 + i, gas=21000, to=cs(to), value=0 if i == 2 else 5 * 10**17, data=b"", accessList=[], chainId=1337)))
# The EIP-155 example transaction (chain id 1), signed again here.
txs.append(("0x" + "46" * 32, "legacy-eip155-example", dict(nonce=9, gasPrice=20 * 10**9, gas=21000, to=cs("0x" + "35" * 20), value=10**18, data=b"", chainId=1)))
for key, kind, tx in txs:
    signed = Account.sign_transaction(tx, key)
    raw = bytes(signed.raw_transaction)
    out["valid"].append({
        "kind": kind,
        "raw": "0x" + raw.hex(),
        "hash": "0x" + bytes(signed.hash).hex(),
        "sender": Account.from_key(key).address,
        "chain_id": tx["chainId"], "nonce": tx["nonce"], "to": tx["to"].lower(), "value": str(tx["value"]), "gas": tx["gas"],
        "max_fee_per_gas": str(tx.get("maxFeePerGas", tx.get("gasPrice"))),
        "max_priority_fee_per_gas": str(tx.get("maxPriorityFeePerGas", tx.get("gasPrice"))),
    })

def bad(name, raw, why):
    out["invalid"].append({"name": name, "raw": "0x" + raw.hex(), "why": why})

k = keys[0]
base = dict(type=2, nonce=1, maxPriorityFeePerGas=1, maxFeePerGas=2, gas=21000, to=cs("0x" + "11" * 20), value=1, data=b"", accessList=[], chainId=1337)
good = bytes(Account.sign_transaction(base, k).raw_transaction)
bad("trailing byte", good + b"\x00", "bytes after the transaction")
bad("truncated", good[:-1], "bad RLP")
bad("unknown type 3", b"\x03" + good[1:], "transaction type")
bad("type 4", b"\x04" + good[1:], "transaction type")
bad("with data", bytes(Account.sign_transaction(dict(base, data=b"\x12\x34"), k).raw_transaction), "data")
bad("contract creation", bytes(Account.sign_transaction({kk: v for kk, v in base.items() if kk != "to"}, k).raw_transaction), "contract creation")
bad("access list", bytes(Account.sign_transaction(dict(base, accessList=[{"address": cs("0x" + "22" * 20), "storageKeys": []}]), k).raw_transaction), "access list")
legacy = dict(nonce=0, gasPrice=1, gas=21000, to=cs("0x" + "11" * 20), value=1, data=b"")
bad("pre-EIP-155 legacy", bytes(Account.sign_transaction(legacy, k).raw_transaction), "replay-protected")
# High s: n - s, with the parity flipped, re-encoded (the same signer, malleated).
n = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141
fields = rlp.decode(good[1:])
s = int.from_bytes(fields[-1], "big"); parity = int.from_bytes(fields[-3], "big")
fields[-1] = (n - s).to_bytes(32, "big").lstrip(b"\x00")
fields[-3] = b"" if parity == 1 else b"\x01"
bad("high s", b"\x02" + rlp.encode(fields), "high s")
# Non-canonical integer: nonce with a leading zero.
f2 = rlp.decode(good[1:]); f2[1] = b"\x00\x01"
bad("leading zero in nonce", b"\x02" + rlp.encode(f2), "leading zero")
f3 = rlp.decode(good[1:]); f3.append(b"\x01")
bad("extra field", b"\x02" + rlp.encode(f3), "more fields")
f4 = rlp.decode(good[1:]); f4 = f4[:-1]
bad("missing field", b"\x02" + rlp.encode(f4), "too few fields")
f5 = rlp.decode(good[1:]); f5[9] = b"\x02"
bad("yParity 2", b"\x02" + rlp.encode(f5), "yParity")
f6 = rlp.decode(good[1:]); f6[5] = b"\x11" * 19
bad("19-byte to", b"\x02" + rlp.encode(f6), "address is 20")
f7 = rlp.decode(good[1:]); f7[6] = (2**128).to_bytes(17, "big")
bad("value over 2^128", b"\x02" + rlp.encode(f7), "larger than Tally accepts")
bad("empty", b"", "empty")
bad("a string, not a list", b"\x02" + rlp.encode(b"\x01\x02"), "bad RLP")
json.dump(out, sys.stdout, indent=1)
print()
