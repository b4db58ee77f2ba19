//! The RocksDB store on a real database in a temporary directory.

use tally_ledger::{
    Hash, StateReader, Store, StoreError, TxStatus, build_block, verify_account_proof,
};

use crate::common::{MIN_FEE, genesis, key, params, proposal, transfer};

/// Commits `blocks` blocks of one transfer from each of `n` accounts.
fn fill(store: &Store, n: usize, blocks: u64) -> Vec<Hash> {
    let mut tx_hashes = Vec::new();
    for height in 0..blocks {
        let txs: Vec<_> = (0..n)
            .map(|i| transfer(&key(i), height, key((i + 1) % n).address(), 1 + i as u128))
            .collect();
        tx_hashes.extend(txs.iter().map(|t| t.hash()));
        let (executed, skipped) =
            build_block(store, &params(), proposal(key(0).address()), &txs).expect("build");
        assert!(skipped.is_empty(), "{skipped:?}");
        store.commit(executed).expect("commit");
    }
    tx_hashes
}

#[test]
fn committed_blocks_survive_reopen() {
    let dir = tempfile::tempdir().expect("tmp");
    let n = 5;
    let (tip, tx_hashes, accounts) = {
        let store = Store::open(dir.path(), &genesis(n)).expect("open");
        let tx_hashes = fill(&store, n, 20);
        let accounts: Vec<_> = (0..n)
            .map(|i| store.account(&key(i).address()).expect("acct"))
            .collect();
        (store.tip().expect("tip"), tx_hashes, accounts)
    };
    assert_eq!(tip.height, 20);

    let store = Store::open(dir.path(), &genesis(n)).expect("reopen");
    assert_eq!(store.tip().expect("tip"), tip);
    for (i, account) in accounts.iter().enumerate() {
        assert_eq!(store.account(&key(i).address()).expect("acct"), *account);
        assert_eq!(account.nonce, 20);
    }
    let mut prev = genesis(n).hash;
    for height in 1..=20 {
        let block = store
            .block_by_height(height)
            .expect("read")
            .expect("present");
        assert_eq!(block.header.prev_hash, prev);
        assert_eq!(
            store.block_by_hash(&block.hash()).expect("read"),
            Some(block.clone())
        );
        prev = block.hash();
    }
    assert_eq!(prev, tip.hash);
    for (i, hash) in tx_hashes.iter().enumerate() {
        let record = store.transaction(hash).expect("read").expect("indexed");
        assert_eq!(record.location.height, (i / n) as u64 + 1);
        assert_eq!(record.location.index as usize, i % n);
        assert_eq!(record.receipt.status, TxStatus::Success);
        assert_eq!(record.receipt.fee_paid, MIN_FEE);
        assert_eq!(record.tx.hash(), *hash);
        assert_eq!(record.sender, key(i % n).address());
        let (header, txs) = store
            .header_by_height(record.location.height)
            .expect("read")
            .expect("present");
        assert_eq!((header.height, txs as usize), (record.location.height, n));
    }
    assert_eq!(store.transaction(&Hash([5; 32])).expect("read"), None);
    let senders = store
        .senders(&[tx_hashes[7], Hash([5; 32]), tx_hashes[0]])
        .expect("read");
    assert_eq!(
        senders,
        vec![Some(key(7 % n).address()), None, Some(key(0).address())]
    );
    assert_eq!(store.header_by_height(21).expect("read"), None);
    assert_eq!(store.block_by_height(21).expect("read"), None);
}

#[test]
fn another_genesis_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tmp");
    drop(Store::open(dir.path(), &genesis(2)).expect("open"));
    let err = Store::open(dir.path(), &genesis(3)).expect_err("must be refused");
    assert!(matches!(err, StoreError::GenesisMismatch { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("belongs to a chain with genesis"), "{msg}");
}

#[test]
fn a_block_that_is_not_next_is_refused() {
    let (_d1, a) = crate::common::store(2);
    let (_d2, b) = crate::common::store(2);
    fill(&a, 2, 1);
    // Built on b's genesis tip, committed to a whose tip moved on.
    let (executed, _) = build_block(&b, &params(), proposal(key(0).address()), []).expect("build");
    assert!(matches!(
        a.commit(executed),
        Err(StoreError::NotNext { latest: 1, got: 1 })
    ));
    assert_eq!(a.tip().expect("tip").height, 1);
}

#[test]
fn account_balances_are_provable_against_headers() {
    let (_dir, store) = crate::common::store(3);
    fill(&store, 3, 4);
    for height in [2u64, 4] {
        let root = store
            .block_by_height(height)
            .expect("read")
            .expect("block")
            .header
            .state_root;
        for i in 0..3 {
            let address = key(i).address();
            let (account, proof) = store.account_with_proof(&address, height).expect("proof");
            let account = account.expect("funded account exists");
            assert_eq!(account.nonce, height);
            verify_account_proof(&proof, &root, &address, Some(&account)).expect("proof verifies");
            let mut forged = account;
            forged.balance += 1;
            assert!(verify_account_proof(&proof, &root, &address, Some(&forged)).is_err());
        }
        // Absence of an unknown account is provable too.
        let stranger = key(99).address();
        let (none, proof) = store.account_with_proof(&stranger, height).expect("proof");
        assert!(none.is_none());
        verify_account_proof(&proof, &root, &stranger, None).expect("absence verifies");
    }
}
