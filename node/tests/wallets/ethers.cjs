// A dev chain driven by ethers v6 exactly as a script or dapp drives a node:
// the library's own provider (batching on, as by default), its own signing,
// fee and nonce logic and its own wait. Run by node/tests/it/wallets.rs:
//   node ethers.cjs <rpc url> <funded private key>
// Prints one JSON line with the hashes it committed, for the Rust side to
// look up through the tally_ API and `tally query`.
"use strict";
const assert = require("node:assert/strict");
const { ethers } = require("ethers");

const [url, devKey] = process.argv.slice(2);

// The message of an ethers error with the node's own words in it.
function text(e) {
  return [e.shortMessage, e.message, e.info && JSON.stringify(e.info)].join(" ");
}

async function expectFailure(what, promise, check) {
  try {
    await promise;
  } catch (e) {
    assert.ok(check(e), `${what}: unexpected error ${e.code}: ${text(e)}`);
    console.error(`ok: ${what} failed with ${e.code}`);
    return;
  }
  assert.fail(`${what}: succeeded`);
}

async function main() {
  // ethers answers an identical request from a 250 ms cache; a dev chain
  // commits faster than that, so a second send would reuse a stale nonce.
  const provider = new ethers.JsonRpcProvider(url, undefined, { cacheTimeout: -1 });
  provider.pollingInterval = 250;
  const network = await provider.getNetwork();
  const wallet = new ethers.Wallet(devKey, provider);
  const to = ethers.Wallet.createRandom().address;

  const startBalance = await provider.getBalance(wallet.address);
  assert.ok(startBalance > ethers.parseEther("10"), `dev balance ${startBalance}`);
  const fees = await provider.getFeeData();
  assert.ok(fees.maxFeePerGas > 0n, "an EIP-1559 chain (non-zero base fee)");
  const latest = await provider.getBlock("latest");
  assert.ok(latest.baseFeePerGas > 0n);

  // EIP-1559 (ethers' choice on a London chain).
  const value = ethers.parseEther("1.5");
  const tx = await wallet.sendTransaction({ to, value });
  assert.equal(tx.type, 2);
  const receipt = await tx.wait();
  assert.equal(receipt.status, 1);
  assert.equal(receipt.hash, tx.hash);
  assert.equal(receipt.to, to);
  assert.equal(receipt.from, wallet.address);
  assert.equal(receipt.gasUsed, 21000n);
  assert.equal(receipt.cumulativeGasUsed, 21000n * BigInt(receipt.index + 1));
  assert.equal(receipt.contractAddress, null);
  assert.deepEqual(receipt.logs, []);
  assert.ok(receipt.gasPrice > 0n);
  assert.equal(await provider.getBalance(to), value);
  assert.equal(
    await provider.getBalance(wallet.address),
    startBalance - value - receipt.fee,
    "the sender paid value + gasUsed x effectiveGasPrice"
  );
  assert.equal(await provider.getTransactionCount(wallet.address), tx.nonce + 1);
  const seen = await provider.getTransaction(tx.hash);
  assert.equal(seen.blockNumber, receipt.blockNumber);
  assert.equal(seen.from, wallet.address);
  const block = await provider.getBlock(receipt.blockNumber, true);
  assert.ok(block.transactions.includes(tx.hash));
  assert.equal(block.prefetchedTransactions.find((t) => t.hash === tx.hash).value, value);

  // Legacy, EIP-155 signed (ethers sets the chain id).
  const legacy = await wallet.sendTransaction({ to, value: 1n, type: 0 });
  const legacyReceipt = await legacy.wait();
  assert.equal(legacyReceipt.status, 1);
  assert.equal(legacyReceipt.type, 0);
  assert.equal(await provider.getBalance(to), value + 1n);

  // Failures, each with the error the library gives for it.
  const nonce = await wallet.getNonce("pending");
  const request = {
    to,
    value: 1n,
    nonce,
    gasLimit: 21000n,
    maxFeePerGas: fees.maxFeePerGas,
    maxPriorityFeePerGas: fees.maxPriorityFeePerGas,
    type: 2,
  };
  const otherChain = await wallet.signTransaction({
    ...request,
    chainId: network.chainId + 1n,
  });
  await expectFailure("a wrong chain id", provider.broadcastTransaction(otherChain), (e) =>
    /wrong chain id/.test(text(e))
  );
  await expectFailure(
    "a reused nonce",
    wallet.sendTransaction({ to, value: 1n, nonce: tx.nonce }),
    (e) => e.code === "NONCE_EXPIRED"
  );
  const empty = ethers.Wallet.createRandom().connect(provider);
  await expectFailure(
    "insufficient funds",
    empty.sendTransaction({ to, value: ethers.parseEther("1") }),
    (e) => e.code === "INSUFFICIENT_FUNDS"
  );
  await expectFailure(
    "a transaction with data",
    wallet.sendTransaction({ to, value: 1n, data: "0x1234" }),
    (e) => /data are not supported/.test(text(e))
  );
  const withData = await wallet.signTransaction({
    ...request,
    data: "0x1234",
    chainId: network.chainId,
  });
  await expectFailure("a signed transaction with data", provider.broadcastTransaction(withData), (e) =>
    /data are not supported/.test(text(e))
  );
  // Nothing of those moved funds.
  assert.equal(await provider.getBalance(to), value + 1n);
  assert.equal(await wallet.getNonce("latest"), nonce);

  console.log(JSON.stringify({ hashes: [tx.hash, legacy.hash], to }));
  provider.destroy();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
