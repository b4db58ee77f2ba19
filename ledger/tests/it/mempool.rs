//! The mempool against a real store.

use tally_ledger::{
    AddError, Mempool, MempoolConfig, MempoolError, StateReader, Transaction, TxError, build_block,
};

use crate::common::{CHAIN_ID, MIN_FEE, START_BALANCE, key, params, proposal, store, transfer};

fn pool(config: MempoolConfig) -> Mempool {
    Mempool::new(config, CHAIN_ID, MIN_FEE)
}

fn rejected(result: Result<tally_ledger::Hash, AddError>) -> MempoolError {
    match result {
        Err(AddError::Rejected(e)) => e,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[test]
fn admission_checks_everything_and_says_why() {
    let (_dir, store) = store(2);
    let mut pool = pool(MempoolConfig::default());
    let (alice, bob) = (key(0), key(1).address());
    let tx = transfer(&alice, 0, bob, 10);
    pool.add(tx.clone(), &store, 0).expect("admitted");
    assert!(matches!(
        rejected(pool.add(tx, &store, 0)),
        MempoolError::AlreadyKnown(_)
    ));
    assert!(matches!(
        rejected(pool.add(transfer(&alice, 0, bob, 11), &store, 0)),
        MempoolError::NonceTaken { nonce: 0, .. }
    ));
    let other_chain = Transaction {
        chain_id: 8,
        nonce: 1,
        to: bob,
        amount: 1,
        fee: MIN_FEE,
        memo: vec![],
    }
    .sign(&alice)
    .verify()
    .expect("sig");
    assert!(matches!(
        rejected(pool.add(other_chain, &store, 0)),
        MempoolError::Invalid(TxError::WrongChainId {
            expected: CHAIN_ID,
            got: 8
        })
    ));
    let cheap = Transaction {
        chain_id: CHAIN_ID,
        nonce: 1,
        to: bob,
        amount: 1,
        fee: MIN_FEE - 1,
        memo: vec![],
    }
    .sign(&alice)
    .verify()
    .expect("sig");
    assert!(matches!(
        rejected(pool.add(cheap, &store, 0)),
        MempoolError::Invalid(TxError::FeeTooLow { .. })
    ));
    // Pending txs count against the balance: 10 + fee is already promised.
    let err = rejected(pool.add(transfer(&alice, 1, bob, START_BALANCE - 10), &store, 0));
    assert!(
        matches!(
            err,
            MempoolError::Invalid(TxError::InsufficientBalance { .. })
        ),
        "{err}"
    );
    assert!(matches!(
        rejected(pool.add(transfer(&alice, 65, bob, 1), &store, 0)),
        MempoolError::NonceTooFarAhead { .. }
    ));
    assert_eq!(pool.len(), 1);
}

#[test]
fn reap_returns_executable_runs_in_nonce_order() {
    let (_dir, store) = store(3);
    let mut pool = pool(MempoolConfig::default());
    let (a, b, to) = (key(0), key(1), key(2).address());
    // a's nonce 2 arrives before 0 and 1; b has a gap after nonce 0.
    for tx in [
        transfer(&a, 2, to, 1),
        transfer(&b, 0, to, 1),
        transfer(&a, 0, to, 1),
        transfer(&b, 2, to, 1),
        transfer(&a, 1, to, 1),
    ] {
        pool.add(tx, &store, 0).expect("admitted");
    }
    let reaped = pool.reap(100, usize::MAX);
    let order: Vec<_> = reaped.iter().map(|t| (t.sender(), t.tx().nonce)).collect();
    assert_eq!(order.len(), 4, "b's nonce 2 waits for nonce 1: {order:?}");
    let a_nonces: Vec<_> = order
        .iter()
        .filter(|(s, _)| *s == a.address())
        .map(|(_, n)| *n)
        .collect();
    assert_eq!(a_nonces, [0, 1, 2]);
    assert!(order.contains(&(b.address(), 0)));
    assert_eq!(pool.reap(2, usize::MAX).len(), 2);
    let one_tx_bytes = reaped[0].encoded_len();
    assert_eq!(pool.reap(100, one_tx_bytes).len(), 1);
}

#[test]
fn update_drops_committed_and_now_invalid_for_touched_senders() {
    let (_dir, store) = store(3);
    let mut pool = pool(MempoolConfig::default());
    let (a, to) = (key(0), key(2).address());
    for nonce in 0..3 {
        pool.add(transfer(&a, nonce, to, 1), &store, 0)
            .expect("admitted");
    }
    // A competing nonce-1 tx that spends almost everything is committed
    // (as if it came from another node), making a's pooled nonce 1 stale and
    // nonce 2 unpayable.
    let block_txs = [
        transfer(&a, 0, to, 1),
        transfer(&a, 1, to, START_BALANCE - 100),
    ];
    let (executed, skipped) =
        build_block(&store, &params(), proposal(to), &block_txs).expect("build");
    assert!(skipped.is_empty());
    let (hashes, senders) = (executed.tx_hashes.clone(), executed.senders.clone());
    store.commit(executed).expect("commit");
    pool.add(transfer(&key(1), 0, to, 1), &store, 0)
        .expect("untouched sender");
    let dropped = pool.update(&hashes, &senders, &store).expect("update");
    assert_eq!(store.account(&a.address()).expect("a").nonce, 2);
    assert_eq!(
        dropped, 1,
        "pooled nonce 1 was replaced; nonce 2 still payable (1 + fee <= 100 - fees)"
    );
    let left: Vec<_> = pool
        .reap(10, usize::MAX)
        .iter()
        .map(|t| (t.sender(), t.tx().nonce))
        .collect();
    assert!(left.contains(&(a.address(), 2)));
    assert!(left.contains(&(key(1).address(), 0)));
    assert_eq!(pool.len(), 2);
}

#[test]
fn bounds_on_count_and_bytes_give_clear_reasons() {
    let (_dir, store) = store(4);
    let to = key(3).address();
    let one = transfer(&key(0), 0, to, 1);
    let mut by_count = pool(MempoolConfig {
        max_txs: 2,
        ..MempoolConfig::default()
    });
    by_count.add(one.clone(), &store, 0).expect("1");
    by_count
        .add(transfer(&key(1), 0, to, 1), &store, 0)
        .expect("2");
    let err = rejected(by_count.add(transfer(&key(2), 0, to, 1), &store, 0));
    assert!(
        err.to_string().contains("maximum of 2 transactions"),
        "{err}"
    );

    let mut by_bytes = pool(MempoolConfig {
        max_bytes: one.encoded_len() * 3 / 2,
        ..MempoolConfig::default()
    });
    by_bytes.add(one, &store, 0).expect("fits");
    let err = rejected(by_bytes.add(transfer(&key(1), 0, to, 1), &store, 0));
    assert!(err.to_string().contains("bytes"), "{err}");
    assert_eq!(by_bytes.len(), 1);
}

#[test]
fn expired_transactions_are_evicted() {
    let (_dir, store) = store(2);
    let mut pool = pool(MempoolConfig {
        ttl_ms: 1_000,
        ..MempoolConfig::default()
    });
    pool.add(transfer(&key(0), 0, key(1).address(), 1), &store, 0)
        .expect("old");
    pool.add(transfer(&key(1), 0, key(0).address(), 1), &store, 900)
        .expect("new");
    assert_eq!(pool.evict_expired(1_500), 1);
    assert_eq!(pool.len(), 1);
    assert_eq!(pool.bytes(), pool.reap(10, usize::MAX)[0].encoded_len());
}
