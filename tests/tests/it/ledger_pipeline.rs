//! A dev genesis, two stores (a proposer and a verifier), mempools fed with
//! the same signed transfers: blocks built by one are verified and committed
//! by the other, and both end in the same state.

use std::sync::Arc;

use tally_genesis::{DEV_BALANCE, dev_genesis, dev_keys};
use tally_ledger::{
    Mempool, MempoolConfig, Proposal, SecretKey, StateReader, Store, Transaction, build_block,
    verify_block,
};

#[test]
fn proposer_and_verifier_agree_over_many_blocks() {
    let validator = SecretKey::from_seed("pipeline-validator");
    let genesis = dev_genesis(99, &validator);
    let params = genesis.exec_params();
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("tmp"),
        tempfile::tempdir().expect("tmp"),
    );
    let proposer = Store::open(dir_a.path(), &genesis.state()).expect("open a");
    let verifier = Store::open(dir_b.path(), &genesis.state()).expect("open b");
    let mut pool_a = Mempool::new(MempoolConfig::default(), genesis.chain_id, params.min_fee);
    let mut pool_b = Mempool::new(MempoolConfig::default(), genesis.chain_id, params.min_fee);

    let keys = dev_keys();
    let fee = params.min_fee;
    // 8 senders x 5 nonces; every tx reaches both pools, as gossip would do.
    for nonce in 0..5 {
        for (i, key) in keys.iter().take(8).enumerate() {
            let tx = Transaction {
                chain_id: genesis.chain_id,
                nonce,
                to: keys[(i + 1) % 8].address(),
                amount: 1_000,
                fee,
                memo: b"pipeline".to_vec(),
            }
            .sign(key);
            for (pool, store) in [(&mut pool_a, &proposer), (&mut pool_b, &verifier)] {
                pool.add(tx.clone().verify().expect("valid"), store, 0)
                    .expect("admitted");
            }
        }
    }

    let mut height = 0;
    while !pool_a.is_empty() {
        // Small blocks, so that several are needed.
        let candidates = pool_a.reap(7, usize::MAX);
        let proposal = Proposal {
            time: 1_000 * (height + 1),
            proposer: validator.address(),
            last_commit: None,
        };
        let (built, skipped) = build_block(
            &proposer,
            &params,
            proposal,
            candidates.iter().map(|t| t.as_ref()),
        )
        .expect("build");
        assert!(skipped.is_empty(), "{skipped:?}");
        let block = built.block.clone();
        // The verifier reuses the senders its own mempool recovered.
        let verified = verify_block(&verifier, &params, block, |tx| {
            match pool_b.get(&tx.hash()) {
                Some(known) => Ok(known),
                None => tx.clone().verify().map(Arc::new),
            }
        })
        .expect("the verifier accepts the proposer's block");
        let (ids, senders) = (built.tx_hashes.clone(), built.senders.clone());
        let tip_a = proposer.commit(built).expect("commit a");
        let tip_b = verifier.commit(verified).expect("commit b");
        assert_eq!(tip_a, tip_b);
        pool_a.update(&ids, &senders, &proposer).expect("update a");
        pool_b.update(&ids, &senders, &verifier).expect("update b");
        height += 1;
        assert!(height <= 10, "the pool should drain");
    }
    assert_eq!(height, 6, "40 txs in blocks of 7");
    assert!(pool_b.is_empty());

    for (i, key) in keys.iter().take(8).enumerate() {
        let a = proposer.account(&key.address()).expect("read");
        assert_eq!(a, verifier.account(&key.address()).expect("read"));
        assert_eq!(a.nonce, 5, "account {i}");
        assert_eq!(a.balance, DEV_BALANCE - 5 * fee);
    }
    let fees = proposer
        .account(&validator.address())
        .expect("read")
        .balance;
    assert_eq!(fees, 40 * fee);
}
