//! Building and verifying blocks against a real store.

use std::sync::Arc;

use tally_ledger::{
    BlockError, Hash, SignedTransaction, StateReader, TxError, build_block, merkle_root,
    verify_block,
};

use crate::common::{MIN_FEE, START_BALANCE, key, native, params, proposal, store, transfer};

#[test]
fn transfer_moves_balance_fee_and_nonce() {
    let (_dir, store) = store(3);
    let (alice, bob, proposer) = (key(0), key(1).address(), key(2).address());
    let txs = [transfer(&alice, 0, bob, 100), transfer(&alice, 1, bob, 50)];
    let (executed, skipped) =
        build_block(&store, &params(), proposal(proposer), &txs).expect("build");
    assert!(skipped.is_empty());
    assert_eq!(executed.block.txs.len(), 2);
    store.commit(executed).expect("commit");

    let a = store.account(&alice.address()).expect("read");
    assert_eq!(a.nonce, 2);
    assert_eq!(a.balance, START_BALANCE - 150 - 2 * MIN_FEE);
    assert_eq!(
        store.account(&bob).expect("read").balance,
        START_BALANCE + 150
    );
    assert_eq!(
        store.account(&proposer).expect("read").balance,
        START_BALANCE + 2 * MIN_FEE
    );
}

#[test]
fn build_skips_invalid_and_reports_why() {
    let (_dir, store) = store(2);
    let (alice, bob) = (key(0), key(1).address());
    let mut wrong_chain = tally_ledger::Transaction {
        chain_id: 99,
        nonce: 0,
        to: bob,
        amount: 1,
        fee: MIN_FEE,
        memo: vec![],
    };
    let other_chain = wrong_chain.clone().sign(&alice).verify().expect("sig");
    wrong_chain.chain_id = crate::common::CHAIN_ID;
    wrong_chain.fee = MIN_FEE - 1;
    let cheap = wrong_chain.sign(&alice).verify().expect("sig");
    let txs = [
        other_chain,
        cheap,
        transfer(&alice, 5, bob, 1),             // nonce gap
        transfer(&alice, 0, bob, START_BALANCE), // cannot pay amount + fee
        transfer(&alice, 0, bob, 10),            // valid
        transfer(&alice, 0, bob, 11),            // replay of nonce 0
    ];
    let (executed, skipped) = build_block(&store, &params(), proposal(bob), &txs).expect("build");
    assert_eq!(executed.block.txs.len(), 1);
    assert_eq!(executed.block.txs[0], *txs[4].signed());
    let reasons: Vec<_> = skipped.iter().map(|(_, e)| e.clone()).collect();
    assert!(matches!(
        reasons[0],
        TxError::WrongChainId {
            expected: 7,
            got: 99
        }
    ));
    assert!(matches!(reasons[1], TxError::FeeTooLow { .. }));
    assert!(matches!(
        reasons[2],
        TxError::NonceGap {
            expected: 0,
            got: 5,
            ..
        }
    ));
    assert!(matches!(reasons[3], TxError::InsufficientBalance { .. }));
    assert!(matches!(
        reasons[4],
        TxError::NonceTooLow {
            expected: 1,
            got: 0,
            ..
        }
    ));
}

#[test]
fn verify_accepts_what_build_built_and_reaches_the_same_root() {
    let (_dir, builder) = store(4);
    let (_dir2, verifier) = store(4);
    let txs: Vec<_> = (0..4)
        .map(|i| transfer(&key(i), 0, key((i + 1) % 4).address(), 10 + i as u128))
        .collect();
    let (built, _) =
        build_block(&builder, &params(), proposal(key(0).address()), &txs).expect("build");
    let block = built.block.clone();
    let verified = verify_block(&verifier, &params(), block.clone(), |tx| {
        tx.clone().verify().map(Arc::new)
    })
    .expect("valid");
    assert_eq!(verified.senders, built.senders);
    let tip_a = builder.commit(built).expect("commit");
    let tip_b = verifier.commit(verified).expect("commit");
    assert_eq!(tip_a, tip_b);
    assert_eq!(tip_a.state_root, block.header.state_root);
    assert_eq!(
        block.header.tx_root,
        merkle_root(&txs.iter().map(|t| t.hash()).collect::<Vec<_>>())
    );
}

#[test]
fn verify_rejects_bad_blocks() {
    let (_dir, store) = store(2);
    let (alice, bob) = (key(0), key(1).address());
    let txs = [transfer(&alice, 0, bob, 10)];
    let (built, _) = build_block(&store, &params(), proposal(bob), &txs).expect("build");
    let good = built.block;
    let check = |block| {
        verify_block(&store, &params(), block, |tx| {
            tx.clone().verify().map(Arc::new)
        })
    };

    let mut b = good.clone();
    b.header.state_root = Hash([1; 32]);
    assert!(matches!(check(b), Err(BlockError::WrongStateRoot { .. })));

    let mut b = good.clone();
    b.header.tx_root = Hash([1; 32]);
    assert!(matches!(check(b), Err(BlockError::WrongTxRoot { .. })));

    let mut b = good.clone();
    b.header.height = 5;
    assert!(matches!(
        check(b),
        Err(BlockError::WrongHeight {
            expected: 1,
            got: 5
        })
    ));

    let mut b = good.clone();
    b.header.prev_hash = Hash([3; 32]);
    assert!(matches!(check(b), Err(BlockError::WrongPrevHash { .. })));

    // An invalid transaction (replayed nonce) makes the whole block invalid.
    let mut b = good.clone();
    b.txs.push(b.txs[0].clone());
    assert!(matches!(
        check(b),
        Err(BlockError::InvalidTx { index: 1, .. })
    ));

    // A tampered signature: either unrecoverable, or another sender with no funds.
    let mut b = good.clone();
    let mut tampered = native(b.txs[0].clone());
    tampered.tx.amount = 11;
    b.txs[0] = SignedTransaction::Native(tampered);
    assert!(matches!(
        check(b),
        Err(BlockError::InvalidTx { index: 0, .. })
    ));

    assert!(check(good).is_ok());
}

#[test]
fn transfers_to_self_and_to_proposer_conserve_supply() {
    let (_dir, store) = store(2);
    let (alice, bob) = (key(0), key(1));
    let txs = [
        transfer(&alice, 0, alice.address(), 100), // to self
        transfer(&alice, 1, bob.address(), 100),   // to the proposer
        transfer(&bob, 0, alice.address(), 7),     // proposer sends
    ];
    let (executed, skipped) =
        build_block(&store, &params(), proposal(bob.address()), &txs).expect("build");
    assert!(skipped.is_empty());
    store.commit(executed).expect("commit");
    let a = store.account(&alice.address()).expect("a");
    let b = store.account(&bob.address()).expect("b");
    assert_eq!(a.balance + b.balance, 2 * START_BALANCE);
    assert_eq!(a.balance, START_BALANCE - 100 - 2 * MIN_FEE + 7);
    assert_eq!((a.nonce, b.nonce), (2, 1));
}

#[test]
fn empty_blocks_keep_the_state_root_and_the_chain_going() {
    let (_dir, store) = store(2);
    let root0 = store.tip().expect("tip").state_root;
    for _ in 0..3 {
        let (executed, _) =
            build_block(&store, &params(), proposal(key(1).address()), []).expect("build");
        store.commit(executed).expect("commit");
    }
    assert_eq!(store.tip().expect("tip").state_root, root0);
    let txs = [transfer(&key(0), 0, key(1).address(), 1)];
    let (executed, _) =
        build_block(&store, &params(), proposal(key(1).address()), &txs).expect("build");
    store
        .commit(executed)
        .expect("a block after empty ones commits");
    assert_eq!(store.tip().expect("tip").height, 4);
}

#[test]
fn a_body_swapped_under_a_header_is_caught_without_signature_work() {
    let (_dir, store) = store(2);
    let (alice, bob) = (key(0), key(1).address());
    let txs = [transfer(&alice, 0, bob, 5), transfer(&alice, 1, bob, 6)];
    let (executed, _) = build_block(&store, &params(), proposal(bob), &txs).expect("build");
    let block = executed.block;
    let ids = block
        .check_body()
        .expect("the built body matches its header");
    assert_eq!(ids, vec![txs[0].hash(), txs[1].hash()]);

    // Same header (so the same block hash), other transactions.
    let mut emptied = block.clone();
    emptied.txs.clear();
    assert_eq!(emptied.hash(), block.hash());
    assert!(matches!(
        emptied.check_body(),
        Err(BlockError::WrongTxRoot { .. })
    ));
    let mut reordered = block.clone();
    reordered.txs.reverse();
    assert!(matches!(
        reordered.check_body(),
        Err(BlockError::WrongTxRoot { .. })
    ));
    // Same header, a certificate it does not commit to.
    let mut recertified = block.clone();
    recertified.last_commit = Some(tally_ledger::Commit {
        height: 0,
        round: 0,
        block_hash: Hash::ZERO,
        signatures: Vec::new(),
    });
    assert!(matches!(
        recertified.check_body(),
        Err(BlockError::WrongLastCommitHash { .. })
    ));
}
