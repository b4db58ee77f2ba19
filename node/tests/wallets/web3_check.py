"""A dev chain driven by web3.py as a Python user drives a node: eth-account
signs, web3 fills fees from the node and waits with its own
wait_for_transaction_receipt. Run by node/tests/it/wallets.rs:
    python3 web3_check.py <rpc url> <funded private key>
Prints one JSON line with the hashes it committed."""

import json
import sys

from eth_account import Account
from web3 import Web3
from web3.exceptions import Web3RPCError

url, dev_key = sys.argv[1], sys.argv[2]
w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 30}))
assert w3.is_connected(), "web3_clientVersion"
sender = Account.from_key(dev_key)
to = Account.create().address
chain_id = w3.eth.chain_id

start = w3.eth.get_balance(sender.address)
assert start > Web3.to_wei(10, "ether"), start
latest = w3.eth.get_block("latest")
base_fee = latest["baseFeePerGas"]
assert base_fee > 0
tip = w3.eth.max_priority_fee


def send(tx):
    signed = sender.sign_transaction(tx)
    tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
    assert tx_hash == signed.hash, (tx_hash.hex(), signed.hash.hex())
    return tx_hash


def expect_failure(what, f, words):
    try:
        f()
    except (Web3RPCError, ValueError) as e:
        assert words in str(e), f"{what}: {e}"
        print(f"ok: {what} failed: {e}", file=sys.stderr)
        return
    raise AssertionError(f"{what}: succeeded")


# EIP-1559, fees as web3.py computes them.
nonce = w3.eth.get_transaction_count(sender.address, "pending")
value = Web3.to_wei(2, "ether")
tx = {
    "type": 2,
    "chainId": chain_id,
    "nonce": nonce,
    "to": to,
    "value": value,
    "gas": w3.eth.estimate_gas({"from": sender.address, "to": to, "value": value}),
    "maxPriorityFeePerGas": tip,
    "maxFeePerGas": 2 * base_fee + tip,
}
assert tx["gas"] == 21000
h1 = send(tx)
r1 = w3.eth.wait_for_transaction_receipt(h1, timeout=60, poll_latency=0.1)
assert r1["status"] == 1, r1
assert r1["transactionHash"] == h1
assert r1["from"] == sender.address and r1["to"] == to
assert r1["gasUsed"] == 21000 and r1["type"] == 2
assert r1["contractAddress"] is None and r1["logs"] == []
assert w3.eth.get_balance(to) == value
paid = r1["gasUsed"] * r1["effectiveGasPrice"]
assert w3.eth.get_balance(sender.address) == start - value - paid
assert w3.eth.get_transaction_count(sender.address) == nonce + 1
seen = w3.eth.get_transaction(h1)
assert seen["blockNumber"] == r1["blockNumber"] and seen["from"] == sender.address
block = w3.eth.get_block(r1["blockNumber"], full_transactions=True)
assert any(t["hash"] == h1 for t in block["transactions"])
assert w3.eth.get_balance(to, block_identifier=r1["blockNumber"]) == value
assert w3.eth.get_code(to) == b""

# Legacy with EIP-155 (chainId given).
h2 = send(
    {
        "chainId": chain_id,
        "nonce": nonce + 1,
        "to": to,
        "value": 1,
        "gas": 21000,
        "gasPrice": w3.eth.gas_price,
    }
)
r2 = w3.eth.wait_for_transaction_receipt(h2, timeout=60, poll_latency=0.1)
assert r2["status"] == 1 and r2["type"] == 0
assert w3.eth.get_balance(to) == value + 1

# Failures.
legacy = {"to": to, "value": 1, "gas": 21000, "gasPrice": w3.eth.gas_price}
expect_failure(
    "a wrong chain id",
    lambda: send(dict(legacy, chainId=chain_id + 1, nonce=nonce + 2)),
    "wrong chain id",
)
expect_failure(
    "a reused nonce",
    lambda: send(dict(legacy, chainId=chain_id, nonce=nonce)),
    "nonce too low",
)
expect_failure(
    "a pre-EIP-155 transaction",
    lambda: send(dict(legacy, nonce=nonce + 2)),
    "only replay-protected (EIP-155) transactions allowed",
)
poor = Account.create()
expect_failure(
    "insufficient funds",
    lambda: w3.eth.send_raw_transaction(
        poor.sign_transaction(dict(legacy, chainId=chain_id, nonce=0)).raw_transaction
    ),
    "insufficient funds for gas * price + value",
)
expect_failure(
    "a transaction with data",
    lambda: send(dict(legacy, chainId=chain_id, nonce=nonce + 2, data="0x1234")),
    "data are not supported",
)
expect_failure(
    "estimating a call with data",
    lambda: w3.eth.estimate_gas({"from": sender.address, "to": to, "data": "0x1234"}),
    "data are not supported",
)
assert w3.eth.get_transaction_count(sender.address, "pending") == nonce + 2
assert w3.eth.get_balance(to) == value + 1

print(json.dumps({"hashes": ["0x" + h1.hex().removeprefix("0x"), "0x" + h2.hex().removeprefix("0x")], "to": to}))
