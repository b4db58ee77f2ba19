//! Hot paths of the ledger: `cargo bench -p tally-ledger --bench ledger`.
//! Results and the machine they ran on go to docs/BENCHMARKS.md.

use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use tally_ledger::{
    Address, EthTransaction, EthTransfer, EthTxKind, ExecParams, GenesisState, GovernanceParams,
    Hash, Member, Mempool, MempoolConfig, Proposal, SecretKey, SignedTransaction, Store,
    TRANSFER_GAS, Transaction, VerifiedTransaction, build_block, keccak256, merkle_root,
    verify_block,
};

const CHAIN_ID: u64 = 1;

fn params() -> ExecParams {
    ExecParams {
        chain_id: CHAIN_ID,
        min_fee: 1,
        max_block_txs: 100_000,
        max_block_bytes: 64 << 20,
        governance: GovernanceParams::for_genesis(1, None),
    }
}

fn keys(n: usize) -> Vec<SecretKey> {
    (0..n)
        .map(|i| SecretKey::from_seed(&format!("bench-{i}")))
        .collect()
}

/// `per_sender` transfers from each key, nonces 0.., to a fixed recipient.
fn signed_transfers(keys: &[SecretKey], per_sender: u64) -> Vec<VerifiedTransaction> {
    let to = Address([7; 20]);
    let mut out = Vec::new();
    for nonce in 0..per_sender {
        for key in keys {
            let tx = Transaction {
                chain_id: CHAIN_ID,
                nonce,
                to,
                amount: 1,
                fee: 1,
                memo: vec![],
            };
            out.push(tx.sign(key).verify().expect("valid"));
        }
    }
    out
}

fn genesis(keys: &[SecretKey]) -> GenesisState {
    GenesisState {
        hash: keccak256(b"bench"),
        accounts: keys.iter().map(|k| (k.address(), 1u128 << 100)).collect(),
        validators: vec![Member::of_key(
            "bench",
            &SecretKey::from_seed("bench-validator").public_key(),
            10,
        )],
    }
}

fn proposal() -> Proposal {
    Proposal {
        time: 0,
        proposer: Address([9; 20]),
        last_commit: None,
    }
}

fn crypto(c: &mut Criterion) {
    let txs = signed_transfers(&keys(64), 1);
    let encoded: Vec<Vec<u8>> = txs.iter().map(|t| t.signed().encode()).collect();
    let mut group = c.benchmark_group("crypto");
    group.throughput(Throughput::Elements(1));
    let mut i = 0;
    group.bench_function("recover_sender", |b| {
        b.iter(|| {
            i = (i + 1) % txs.len();
            let native = txs[i].signed().as_native().expect("native");
            native
                .signature
                .recover_address(&native.tx.sign_hash())
                .expect("recovers")
        })
    });
    group.bench_function("decode_and_recover", |b| {
        b.iter(|| {
            i = (i + 1) % encoded.len();
            VerifiedTransaction::from_bytes(&encoded[i]).expect("valid")
        })
    });
    // The same transfers as wallets sign them (EIP-1559 envelopes), decoded
    // as `eth_sendRawTransaction` does.
    let envelopes: Vec<Vec<u8>> = keys(64)
        .iter()
        .map(|key| {
            EthTransfer {
                kind: EthTxKind::DynamicFee,
                chain_id: 1,
                nonce: 0,
                max_priority_fee_per_gas: 0,
                max_fee_per_gas: 1,
                gas_limit: TRANSFER_GAS,
                to: Address([7; 20]),
                value: 1,
            }
            .sign(key)
            .raw()
            .to_vec()
        })
        .collect();
    group.bench_function("eth_decode_and_recover", |b| {
        b.iter(|| {
            i = (i + 1) % envelopes.len();
            SignedTransaction::from(EthTransaction::decode(&envelopes[i]).expect("valid"))
                .verify()
                .expect("valid")
        })
    });
    group.finish();
}

fn mempool(c: &mut Criterion) {
    let keys = keys(100);
    let txs = signed_transfers(&keys, 10);
    let dir = tempfile::tempdir().expect("tmp");
    let store = Store::open(dir.path(), &genesis(&keys)).expect("open");
    let mut group = c.benchmark_group("mempool");
    group.throughput(Throughput::Elements(txs.len() as u64));
    group.bench_function("admit_1000_verified", |b| {
        b.iter_batched(
            || {
                (
                    Mempool::new(MempoolConfig::default(), CHAIN_ID, 1),
                    txs.clone(),
                )
            },
            |(mut pool, txs)| {
                for tx in txs {
                    pool.add(tx, &store, 0).expect("admitted");
                }
                pool
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

fn blocks(c: &mut Criterion) {
    let mut group = c.benchmark_group("block");
    group.sample_size(10);
    for n in [1_000usize, 10_000] {
        let keys = keys(n);
        let txs = signed_transfers(&keys, 1);
        group.throughput(Throughput::Elements(n as u64));
        // Each iteration builds on a fresh store so that every block is height 1
        // against `n` funded accounts.
        group.bench_function(format!("build_and_commit_{n}"), |b| {
            b.iter_batched(
                || {
                    let dir = tempfile::tempdir().expect("tmp");
                    let store = Store::open(dir.path(), &genesis(&keys)).expect("open");
                    (dir, store)
                },
                |(dir, store)| {
                    let (executed, skipped) =
                        build_block(&store, &params(), proposal(), &txs).expect("build");
                    assert!(skipped.is_empty());
                    store.commit(executed).expect("commit");
                    (dir, store)
                },
                BatchSize::PerIteration,
            )
        });
        let block = {
            let dir = tempfile::tempdir().expect("tmp");
            let store = Store::open(dir.path(), &genesis(&keys)).expect("open");
            build_block(&store, &params(), proposal(), &txs)
                .expect("build")
                .0
                .block
        };
        // As the mempool holds them: shared, not copied per block.
        let pooled: Vec<Arc<VerifiedTransaction>> = txs.iter().cloned().map(Arc::new).collect();
        group.bench_function(format!("verify_and_commit_{n}"), |b| {
            b.iter_batched(
                || {
                    let dir = tempfile::tempdir().expect("tmp");
                    let store = Store::open(dir.path(), &genesis(&keys)).expect("open");
                    (dir, store, block.clone())
                },
                |(dir, store, block)| {
                    // Senders reused as if recovered at mempool admission.
                    let mut cached = pooled.iter();
                    let executed = verify_block(&store, &params(), block, |_| {
                        Ok(Arc::clone(cached.next().expect("one per tx")))
                    })
                    .expect("valid");
                    store.commit(executed).expect("commit");
                    (dir, store)
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

fn merkle(c: &mut Criterion) {
    let leaves: Vec<Hash> = (0u32..10_000)
        .map(|i| keccak256(&i.to_be_bytes()))
        .collect();
    let mut group = c.benchmark_group("merkle");
    group.throughput(Throughput::Elements(leaves.len() as u64));
    group.bench_function("tx_root_10000", |b| b.iter(|| merkle_root(&leaves)));
    group.finish();
}

criterion_group!(benches, crypto, mempool, blocks, merkle);
criterion_main!(benches);
