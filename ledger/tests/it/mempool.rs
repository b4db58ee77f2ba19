//! The mempool against a real store.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use proptest::prelude::*;
use tally_ledger::{
    Account, AddError, Address, DropReason, Mempool, MempoolConfig, MempoolError, PoolStats,
    SecretKey, StateReader, StoreError, Transaction, TxError, VerifiedTransaction, build_block,
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
        MempoolError::ReplacementUnderpriced { nonce: 0, .. }
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
    let order: Vec<_> = reaped.iter().map(|t| (t.sender(), t.nonce())).collect();
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
        .map(|t| (t.sender(), t.nonce()))
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

/// A transfer of 1 from `from` to a fixed recipient, paying `fee`.
fn paying(from: &SecretKey, nonce: u64, fee: u128) -> VerifiedTransaction {
    Transaction {
        chain_id: CHAIN_ID,
        nonce,
        to: Address([0xee; 20]),
        amount: 1,
        fee,
        memo: vec![],
    }
    .sign(from)
    .verify()
    .expect("sig")
}

#[test]
fn gapped_transactions_queue_apart_and_are_promoted_when_the_gap_closes() {
    let (_dir, store) = store(2);
    let mut pool = pool(MempoolConfig {
        max_queued_per_sender: 2,
        ..MempoolConfig::default()
    });
    let a = key(0);
    let h2 = pool.add(paying(&a, 2, MIN_FEE), &store, 0).expect("queued");
    let h3 = pool.add(paying(&a, 3, MIN_FEE), &store, 0).expect("queued");
    assert_eq!(pool.stats().queued, 2);
    assert!(!pool.is_executable(&h2));
    assert!(pool.reap(10, usize::MAX).is_empty());
    assert!(
        pool.take_events().executable.is_empty(),
        "queued transactions are not announced"
    );
    let err = rejected(pool.add(paying(&a, 5, MIN_FEE), &store, 0));
    assert!(
        matches!(
            err,
            MempoolError::QueueFull {
                max: 2,
                next: 0,
                ..
            }
        ),
        "{err}"
    );
    let h0 = pool.add(paying(&a, 0, MIN_FEE), &store, 0).expect("head");
    assert_eq!(pool.stats().queued, 2, "nonce 1 is still missing");
    let h1 = pool
        .add(paying(&a, 1, MIN_FEE), &store, 0)
        .expect("fills the gap");
    let announced: Vec<_> = pool
        .take_events()
        .executable
        .iter()
        .map(|t| t.hash())
        .collect();
    assert_eq!(announced, [h0, h1, h2, h3], "promoted in nonce order");
    assert_eq!(
        pool.stats(),
        PoolStats {
            executable: 4,
            queued: 0,
            bytes: pool.bytes()
        }
    );
    pool.audit().expect("consistent");
}

#[test]
fn a_pool_full_of_gapped_transactions_still_admits_an_executable_one() {
    // The lockout of the overload issue, scaled down: many senders fill the
    // queued part with gapped nonces; a normal transfer still gets in.
    let (_dir, store) = store(12);
    let config = MempoolConfig {
        max_txs: 40,
        max_queued: 10,
        max_queued_per_sender: 4,
        ..MempoolConfig::default()
    };
    let mut pool = pool(config);
    let mut refused = 0;
    for sender in 0..10 {
        for nonce in 1..=8 {
            match pool.add(paying(&key(sender), nonce, MIN_FEE), &store, 0) {
                Ok(_) => {}
                Err(AddError::Rejected(
                    MempoolError::QueueFull { .. } | MempoolError::Full { .. },
                )) => refused += 1,
                Err(e) => panic!("{e}"),
            }
        }
    }
    assert_eq!(pool.stats().queued, 10, "the queued part is capped");
    assert_eq!(refused, 70);
    let err = rejected(pool.add(paying(&key(10), 5, MIN_FEE), &store, 0));
    assert!(err.to_string().contains("behind nonce gaps"), "{err}");
    let fresh = pool
        .add(paying(&key(11), 0, MIN_FEE), &store, 0)
        .expect("admitted");
    assert_eq!(pool.reap(100, usize::MAX)[0].hash(), fresh);

    // Full in count: an executable newcomer evicts a queued one.
    let mut small = pool_with(MempoolConfig {
        max_txs: 3,
        ..config
    });
    small
        .add(paying(&key(0), 3, MIN_FEE), &store, 0)
        .expect("queued");
    small
        .add(paying(&key(1), 0, MIN_FEE), &store, 0)
        .expect("head");
    small
        .add(paying(&key(2), 0, MIN_FEE), &store, 0)
        .expect("head");
    let queued = small.add(paying(&key(3), 0, MIN_FEE), &store, 0);
    assert!(queued.is_ok(), "evicts the queued one: {queued:?}");
    let events = small.take_events();
    assert_eq!(events.dropped.len(), 1);
    assert_eq!(events.dropped[0].1, DropReason::Evicted);
    assert_eq!(small.stats().queued, 0);
    small.audit().expect("consistent");
}

fn pool_with(config: MempoolConfig) -> Mempool {
    pool(config)
}

#[test]
fn a_full_pool_evicts_the_lowest_fee_tail_and_never_a_next_nonce_for_a_later_one() {
    let (_dir, store) = store(7);
    let mut pool = pool(MempoolConfig {
        max_txs: 4,
        ..MempoolConfig::default()
    });
    // a: nonces 0 and 1 (1 is a tail at fee 3); b and c: one head each.
    pool.add(paying(&key(0), 0, 10), &store, 0).expect("a0");
    let a1 = pool.add(paying(&key(0), 1, 3), &store, 0).expect("a1");
    let b0 = pool.add(paying(&key(1), 0, 2), &store, 0).expect("b0");
    pool.add(paying(&key(2), 0, 5), &store, 0).expect("c0");
    pool.take_events();

    // Same fee as the cheapest: refused at once.
    let err = rejected(pool.add(paying(&key(3), 0, 2), &store, 0));
    assert!(
        err.to_string().contains("maximum of 4 transactions"),
        "{err}"
    );

    // d's nonce 0 pays 4: the cheapest candidate is b's only transaction
    // (fee 2, a next nonce), which another next nonce may displace.
    pool.add(paying(&key(3), 0, 4), &store, 0)
        .expect("displaces b0");
    assert_eq!(pool.take_events().dropped, [(b0, DropReason::Evicted)]);

    // c's nonce 1 (a later nonce) pays 6: it may displace a's tail (a's
    // run pays 3 at its lowest) but not d's or c's heads.
    let c1 = pool
        .add(paying(&key(2), 1, 6), &store, 0)
        .expect("displaces a1");
    assert_eq!(pool.take_events().dropped, [(a1, DropReason::Evicted)]);

    // e's nonce 1 is queued: it may only displace a cheaper queued one.
    let err = rejected(pool.add(paying(&key(4), 1, 100), &store, 0));
    assert!(matches!(err, MempoolError::Full { .. }), "{err}");
    // d's nonce 1 pays 100, a later nonce: c's run (lowest fee 5) is the
    // cheapest that may go, by its last transaction.
    pool.add(paying(&key(3), 1, 100), &store, 0)
        .expect("displaces c1");
    assert_eq!(pool.take_events().dropped, [(c1, DropReason::Evicted)]);

    // d's run now pays 4 then 100: a block builder gets 4 for it, so a
    // newcomer paying 5 displaces its 100, not c's or a's next nonce.
    let d1 = pool
        .reap(10, usize::MAX)
        .iter()
        .find(|t| t.signed().fee(MIN_FEE) == Ok(100))
        .expect("d1")
        .hash();
    pool.add(paying(&key(5), 0, 5), &store, 0)
        .expect("displaces d1");
    assert_eq!(pool.take_events().dropped, [(d1, DropReason::Evicted)]);
    pool.audit().expect("consistent");
}

#[test]
fn replace_by_fee_needs_the_configured_bump() {
    let (_dir, store) = store(2);
    let mut pool = pool(MempoolConfig::default());
    let a = key(0);
    let old = pool.add(paying(&a, 0, 100), &store, 0).expect("first");
    pool.add(paying(&a, 2, 100), &store, 0).expect("queued");
    pool.take_events();
    let err = rejected(pool.add(paying(&a, 0, 109), &store, 0));
    assert!(
        matches!(
            err,
            MempoolError::ReplacementUnderpriced {
                nonce: 0,
                min_fee: 110,
                ..
            }
        ),
        "{err}"
    );
    let new = pool
        .add(paying(&a, 0, 110), &store, 0)
        .expect("10% more replaces");
    let events = pool.take_events();
    assert_eq!(events.dropped, [(old, DropReason::Replaced)]);
    assert_eq!(events.executable.len(), 1, "the replacement is gossiped");
    assert_eq!(events.executable[0].hash(), new);
    assert!(!pool.contains(&old));
    // A queued transaction is replaced too, but not announced.
    pool.add(paying(&a, 2, 200), &store, 0)
        .expect("replaces the queued one");
    assert!(pool.take_events().executable.is_empty());
    // A replacement must keep everything payable.
    let err = rejected(
        pool.add(
            Transaction {
                chain_id: CHAIN_ID,
                nonce: 0,
                to: Address([1; 20]),
                amount: START_BALANCE,
                fee: 1_000,
                memo: vec![],
            }
            .sign(&a)
            .verify()
            .expect("sig"),
            &store,
            0,
        ),
    );
    assert!(
        matches!(
            err,
            MempoolError::Invalid(TxError::InsufficientBalance { .. })
        ),
        "{err}"
    );
    assert_eq!(pool.len(), 2);
    pool.audit().expect("consistent");
}

#[test]
fn blocks_take_the_highest_fees_first_keeping_each_senders_nonces_in_order() {
    let (_dir, store) = store(3);
    let mut pool = pool(MempoolConfig::default());
    let (a, b, c) = (key(0), key(1), key(2));
    pool.add(paying(&a, 0, 5), &store, 0).expect("a0");
    pool.add(paying(&a, 1, 50), &store, 0).expect("a1");
    pool.add(paying(&b, 0, 20), &store, 0).expect("b0");
    pool.add(paying(&c, 0, 5), &store, 0).expect("c0");
    let order: Vec<_> = pool
        .reap(10, usize::MAX)
        .iter()
        .map(|t| (t.sender(), t.nonce()))
        .collect();
    // b pays most up front; a's 50 waits for its nonce 0 (fee 5, which
    // arrived before c's).
    assert_eq!(
        order,
        [
            (b.address(), 0),
            (a.address(), 0),
            (a.address(), 1),
            (c.address(), 0)
        ]
    );
}

#[test]
fn senders_paying_the_same_fee_take_turns() {
    // A busy sender's backlog arrived first; a newcomer's one transfer
    // still goes second, not behind the whole backlog.
    let (_dir, store) = store(3);
    let mut pool = pool(MempoolConfig::default());
    let (busy, other, newcomer) = (key(0), key(1), key(2));
    for nonce in 0..5 {
        pool.add(paying(&busy, nonce, MIN_FEE), &store, 0)
            .expect("busy");
    }
    for nonce in 0..2 {
        pool.add(paying(&other, nonce, MIN_FEE), &store, 0)
            .expect("other");
    }
    pool.add(paying(&newcomer, 0, MIN_FEE), &store, 0)
        .expect("newcomer");
    let order: Vec<_> = pool
        .reap(4, usize::MAX)
        .iter()
        .map(|t| (t.sender(), t.nonce()))
        .collect();
    assert_eq!(
        order,
        [
            (busy.address(), 0),
            (other.address(), 0),
            (newcomer.address(), 0),
            (busy.address(), 1),
        ]
    );
}

#[test]
fn removing_a_transaction_demotes_its_senders_later_nonces() {
    let (_dir, store) = store(2);
    let mut pool = pool(MempoolConfig {
        max_queued_per_sender: 2,
        ..MempoolConfig::default()
    });
    let a = key(0);
    let hashes: Vec<_> = (0..5)
        .map(|n| pool.add(paying(&a, n, MIN_FEE), &store, 0).expect("run"))
        .collect();
    pool.take_events();
    // Block building finds nonce 1 invalid: 2, 3 and 4 now wait behind a
    // gap, and only two may.
    pool.remove(&hashes[1]).expect("held");
    let events = pool.take_events();
    assert_eq!(
        events.dropped,
        [
            (hashes[1], DropReason::Invalid),
            (hashes[4], DropReason::Orphaned)
        ]
    );
    assert_eq!(pool.stats().executable, 1);
    assert_eq!(pool.stats().queued, 2);
    pool.audit().expect("consistent");
}

/// An account state held in memory, for the property test (the pool reads
/// accounts through [`StateReader`] and does no IO of its own).
#[derive(Default)]
struct Accounts(HashMap<Address, Account>);

impl StateReader for Accounts {
    fn account(&self, address: &Address) -> Result<Account, StoreError> {
        Ok(self.0.get(address).copied().unwrap_or_default())
    }

    fn governance(&self) -> Result<Arc<tally_ledger::GovernanceState>, StoreError> {
        Ok(Arc::new(tally_ledger::GovernanceState::genesis(Vec::new())))
    }
}

#[derive(Clone, Debug)]
enum Op {
    Add {
        sender: usize,
        ahead: u64,
        fee: u128,
        big: bool,
    },
    /// Commits the first `count` executable transactions of `sender`.
    Commit {
        sender: usize,
        count: usize,
    },
    /// Another node's block used `count` of the sender's nonces; `told`:
    /// the pool hears of it at once (else only when the sender's next
    /// transaction arrives).
    Foreign {
        sender: usize,
        count: u64,
        told: bool,
    },
    Invalid {
        pick: usize,
    },
    Tick {
        ms: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..SENDERS, 0u64..7, 2u128..12, prop::bool::weighted(0.05))
            .prop_map(|(sender, ahead, fee, big)| Op::Add { sender, ahead, fee, big }),
        2 => (0..SENDERS, 1usize..4).prop_map(|(sender, count)| Op::Commit { sender, count }),
        1 => (0..SENDERS, 1u64..3, any::<bool>())
            .prop_map(|(sender, count, told)| Op::Foreign { sender, count, told }),
        1 => (0usize..64).prop_map(|pick| Op::Invalid { pick }),
        1 => (1u64..40).prop_map(|ms| Op::Tick { ms }),
    ]
}

const SENDERS: usize = 5;

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Whatever happens, the kept counts and indexes match a recount, no
    /// limit is exceeded, every sender's executable run is unbroken, every
    /// executable transaction was announced, and every accepted transaction
    /// is held, committed or reported dropped: never lost silently.
    #[test]
    fn the_pool_keeps_its_rules_under_any_sequence(ops in prop::collection::vec(op(), 1..80)) {
        let config = MempoolConfig {
            max_txs: 12,
            max_bytes: 1 << 20,
            max_nonce_gap: 6,
            ttl_ms: 100,
            max_queued: 5,
            max_queued_per_sender: 2,
            price_bump_percent: 10,
        };
        let keys: Vec<SecretKey> = (0..SENDERS).map(key).collect();
        let mut state = Accounts::default();
        for k in &keys {
            state.0.insert(k.address(), Account { nonce: 0, balance: 1_000 });
        }
        let mut pool = pool(config);
        let (mut now, mut accepted, mut committed, mut dropped, mut announced) =
            (0u64, HashSet::new(), HashSet::new(), HashSet::new(), HashSet::new());
        let mut untold = HashSet::new();
        for op in ops {
            match op {
                Op::Add { sender, ahead, fee, big } => {
                    let nonce = state.account(&keys[sender].address()).expect("read").nonce + ahead;
                    let tx = Transaction {
                        chain_id: CHAIN_ID,
                        nonce,
                        to: Address([0xee; 20]),
                        amount: if big { 600 } else { 1 },
                        fee,
                        memo: vec![],
                    }
                    .sign(&keys[sender])
                    .verify()
                    .expect("sig");
                    // An admission settles the sender against the state
                    // first (a refusal may come before it: a duplicate).
                    if let Ok(hash) = pool.add(tx, &state, now) {
                        untold.remove(&keys[sender].address());
                        accepted.insert(hash);
                        dropped.remove(&hash);
                    }
                }
                Op::Commit { sender, count } => {
                    let address = keys[sender].address();
                    if untold.remove(&address) {
                        pool.update(&[], &[address], &state).expect("update");
                    }
                    let run: Vec<_> = pool
                        .reap(usize::MAX, usize::MAX)
                        .into_iter()
                        .filter(|t| t.sender() == address)
                        .take(count)
                        .collect();
                    let account = state.0.get_mut(&address).expect("funded");
                    let mut hashes = Vec::new();
                    for tx in &run {
                        prop_assert_eq!(tx.nonce(), account.nonce);
                        account.nonce += 1;
                        account.balance -= tx.signed().cost(MIN_FEE).expect("cost");
                        hashes.push(tx.hash());
                    }
                    pool.update(&hashes, &[address], &state).expect("update");
                    committed.extend(hashes);
                }
                Op::Foreign { sender, count, told } => {
                    let address = keys[sender].address();
                    let account = state.0.get_mut(&address).expect("funded");
                    account.nonce += count;
                    account.balance = account.balance.saturating_sub(100 * u128::from(count));
                    if told {
                        pool.update(&[], &[address], &state).expect("update");
                    } else {
                        untold.insert(address);
                    }
                }
                Op::Invalid { pick } => {
                    let all = pool.reap(usize::MAX, usize::MAX);
                    if !all.is_empty() {
                        pool.remove(&all[pick % all.len()].hash());
                    }
                }
                Op::Tick { ms } => {
                    now += ms;
                    pool.evict_expired(now);
                }
            }
            let events = pool.take_events();
            for tx in &events.executable {
                announced.insert(tx.hash());
            }
            for (hash, _) in &events.dropped {
                prop_assert!(!pool.contains(hash), "{} reported dropped but held", hash);
                dropped.insert(*hash);
            }
            if let Err(e) = pool.audit() {
                return Err(TestCaseError::fail(e));
            }
            let reaped = pool.reap(usize::MAX, usize::MAX);
            let mut next: HashMap<Address, u64> = HashMap::new();
            for tx in reaped.iter().filter(|t| !untold.contains(&t.sender())) {
                let expected = next
                    .entry(tx.sender())
                    .or_insert_with(|| state.account(&tx.sender()).expect("read").nonce);
                prop_assert_eq!(tx.nonce(), *expected, "a run is broken");
                *expected += 1;
            }
            prop_assert_eq!(reaped.len(), pool.stats().executable);
            for tx in &reaped {
                prop_assert!(announced.contains(&tx.hash()), "executable but never announced");
            }
            for hash in &accepted {
                let places = [pool.contains(hash), committed.contains(hash), dropped.contains(hash)];
                prop_assert_eq!(
                    places.iter().filter(|p| **p).count(),
                    1,
                    "{} is held/committed/dropped: {:?}",
                    hash,
                    places
                );
            }
        }
    }
}
