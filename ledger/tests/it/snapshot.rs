//! Snapshots: chunks served from one store, checked, and installed in a
//! fresh one, which then goes on with the chain.

use tally_ledger::snapshot::{
    ProofNode, SnapshotInfo, SnapshotOffer, StateChunk, chunk_count, verify_chunk,
};
use tally_ledger::{Address, Block, Commit, StateReader, Store, build_block};

use crate::common::{genesis, key, params, proposal, store, transfer};

const SENDERS: usize = 3;

/// Commits `blocks` blocks in which each sender pays `per_block` new
/// addresses; returns the blocks and every address.
fn grow(store: &Store, blocks: u64, per_block: u64) -> (Vec<Block>, Vec<Address>) {
    let mut addresses: Vec<Address> = (0..SENDERS).map(|i| key(i).address()).collect();
    let mut committed = Vec::new();
    let mut nonce = 0;
    for height in 1..=blocks {
        let mut txs = Vec::new();
        for n in 0..per_block {
            for i in 0..SENDERS {
                let to = Address(
                    tally_ledger::keccak256(format!("{height}/{n}/{i}").as_bytes()).0[..20]
                        .try_into()
                        .expect("20 bytes"),
                );
                addresses.push(to);
                txs.push(transfer(&key(i), nonce + n, to, 1 + n as u128));
            }
        }
        nonce += per_block;
        let (executed, skipped) =
            build_block(store, &params(), proposal(key(0).address()), &txs).expect("build");
        assert!(skipped.is_empty(), "{skipped:?}");
        committed.push(executed.block.clone());
        store.commit(executed).expect("commit");
    }
    (committed, addresses)
}

fn offer(store: &Store, block: &Block, chunks: u32) -> SnapshotOffer {
    let mut info = store
        .snapshot_info(block.height())
        .expect("read")
        .expect("the source holds the state");
    assert_eq!(info.state_root, block.header.state_root);
    info.chunks = chunks;
    SnapshotOffer {
        info,
        header: block.header.clone(),
        commit: Commit {
            height: block.height(),
            round: 0,
            block_hash: block.hash(),
            signatures: Vec::new(),
        },
    }
}

fn chunks_of(store: &Store, info: &SnapshotInfo) -> Vec<StateChunk> {
    (0..info.chunks)
        .map(|i| {
            store
                .state_chunk(info.height, info.chunks, i)
                .expect("served")
        })
        .collect()
}

#[test]
fn every_chunk_verifies_and_together_they_hold_every_account() {
    let (_dir, source) = store(SENDERS);
    let (blocks, addresses) = grow(&source, 3, 100);
    // The state at an older height, as of that height: block 2's
    // addresses and not block 3's.
    let at = &blocks[1];
    for chunks in [1u32, 2, 16, 256, 2048] {
        let offer = offer(&source, at, chunks);
        let mut seen = 0;
        for (i, chunk) in chunks_of(&source, &offer.info).iter().enumerate() {
            let verified = verify_chunk(&offer.info, i as u32, chunk)
                .unwrap_or_else(|e| panic!("chunk {i} of {chunks}: {e}"));
            seen += verified.accounts.len();
        }
        // The senders and block 1's and 2's payees.
        assert_eq!(seen, SENDERS + 2 * 100 * SENDERS, "{chunks} chunks");
        assert_eq!(offer.info.accounts as usize, seen);
    }
    assert_eq!(addresses.len(), SENDERS + 3 * 100 * SENDERS);
}

#[test]
fn a_chunk_altered_in_any_way_is_refused() {
    let (_dir, source) = store(SENDERS);
    let (blocks, _) = grow(&source, 2, 60);
    let offer = offer(&source, &blocks[1], 16);
    let info = offer.info;
    let chunks = chunks_of(&source, &info);
    let (i, good) = chunks
        .iter()
        .enumerate()
        .find(|(_, c)| c.accounts.len() >= 3)
        .expect("a chunk with a few accounts");
    let i = i as u32;
    verify_chunk(&info, i, good).expect("the honest chunk verifies");
    let mut bad = Vec::new();
    let mut altered = good.clone();
    altered.accounts[0].1.balance += 1;
    bad.push(("a balance", altered));
    let mut altered = good.clone();
    altered.accounts[1].1.nonce += 1;
    bad.push(("a nonce", altered));
    let mut altered = good.clone();
    altered.accounts.pop();
    bad.push(("an account left out", altered));
    let mut altered = good.clone();
    altered.accounts.swap(0, 1);
    bad.push(("accounts out of order", altered));
    let mut altered = good.clone();
    altered.accounts.push(altered.accounts[0]);
    bad.push(("an account twice", altered));
    let other = chunks[(i as usize + 1) % chunks.len()].accounts[0];
    let mut altered = good.clone();
    altered.accounts.push(other);
    bad.push(("an account of another chunk", altered));
    let mut altered = good.clone();
    altered.accounts = Vec::new();
    bad.push(("no accounts", altered));
    let mut altered = good.clone();
    altered.siblings.pop();
    bad.push(("a sibling short", altered));
    for j in 0..good.siblings.len() {
        let mut altered = good.clone();
        altered.siblings[j] = match altered.siblings[j] {
            ProofNode::Empty => ProofNode::Leaf {
                key: tally_ledger::Hash([0; 32]),
                value_hash: tally_ledger::Hash([1; 32]),
            },
            ProofNode::Internal { left, right } => ProofNode::Internal {
                left: right,
                right: left,
            },
            ProofNode::Leaf { key, value_hash } => ProofNode::Internal {
                left: key,
                right: value_hash,
            },
        };
        bad.push(("a sibling changed", altered));
    }
    for (what, chunk) in &bad {
        assert!(
            verify_chunk(&info, i, chunk).is_err(),
            "{what} was accepted"
        );
    }
    // The right chunk under another index, root or cut.
    assert!(verify_chunk(&info, (i + 1) % 16, good).is_err());
    let mut other_root = info;
    other_root.state_root = blocks[0].header.state_root;
    assert!(verify_chunk(&other_root, i, good).is_err());
    let mut other_cut = info;
    other_cut.chunks = 32;
    assert!(verify_chunk(&other_cut, i, good).is_err());
}

#[test]
fn an_offer_whose_parts_disagree_is_refused() {
    let (_dir, source) = store(SENDERS);
    let (blocks, _) = grow(&source, 2, 5);
    let good = offer(&source, &blocks[1], 1);
    good.check_shape(crate::common::CHAIN_ID)
        .expect("an honest offer");
    assert!(good.check_shape(crate::common::CHAIN_ID + 1).is_err());
    let mut bad = good.clone();
    bad.header = blocks[0].header.clone();
    assert!(bad.check_shape(crate::common::CHAIN_ID).is_err());
    let mut bad = good.clone();
    bad.info.state_root = blocks[0].header.state_root;
    assert!(bad.check_shape(crate::common::CHAIN_ID).is_err());
    let mut bad = good.clone();
    bad.info.chunks = 2;
    assert!(bad.check_shape(crate::common::CHAIN_ID).is_err());
    let mut bad = good;
    bad.commit.block_hash = blocks[0].hash();
    assert!(bad.check_shape(crate::common::CHAIN_ID).is_err());
}

#[test]
fn a_snapshot_installs_resumes_after_a_restart_and_the_chain_goes_on() {
    let (_dir, source) = store(SENDERS);
    let (blocks, addresses) = grow(&source, 2, 200);
    let snapshot = &blocks[1];
    let chunks = chunk_count(
        source
            .snapshot_info(2)
            .expect("read")
            .expect("held")
            .accounts,
    );
    assert_eq!(chunks, 1, "a small state is one chunk");
    // Cut finer than the rule would, to install many chunks, some empty.
    let offer = offer(&source, snapshot, 1024);
    let served = chunks_of(&source, &offer.info);
    assert!(served.iter().any(|c| c.accounts.is_empty()));

    let dir = tempfile::tempdir().expect("tempdir");
    {
        let target = Store::open(dir.path(), &genesis(SENDERS)).expect("open");
        target.begin_state_sync(&offer).expect("begin");
        for (i, chunk) in served.iter().enumerate().take(500) {
            target.stage_chunk(i as u32, chunk).expect("stage");
        }
        let error = target.finish_state_sync().expect_err("chunks are missing");
        assert!(
            error.to_string().contains("chunk 500 was not fetched"),
            "{error}"
        );
    }
    // After a restart the target and the chunks fetched so far are there.
    let target = Store::open(dir.path(), &genesis(SENDERS)).expect("reopen");
    assert_eq!(
        target.state_sync_target().expect("read"),
        Some(offer.clone())
    );
    assert_eq!(
        target.staged_chunks().expect("read"),
        (0..500).collect::<Vec<_>>()
    );
    assert_eq!(target.tip().expect("tip").height, 0);
    for (i, chunk) in served.iter().enumerate().skip(500) {
        target.stage_chunk(i as u32, chunk).expect("stage");
    }
    let tip = target
        .finish_state_sync()
        .expect("install")
        .expect("every staged chunk checks");
    assert_eq!(tip.height, 2);
    assert_eq!(tip.hash, snapshot.hash());
    assert_eq!(tip.state_root, snapshot.header.state_root);
    assert_eq!(target.state_sync_target().expect("read"), None);
    assert!(target.staged_chunks().expect("read").is_empty());
    assert_eq!(
        target.base_header().expect("read"),
        Some(snapshot.header.clone())
    );
    assert!(target.block_by_height(2).expect("read").is_none());
    // The validator sets come with the state (the governance state is a
    // leaf of the tree).
    assert_eq!(
        target.governance().expect("read"),
        source.governance().expect("read")
    );
    assert_eq!(target.validator_sets(), source.validator_sets());
    for address in &addresses {
        assert_eq!(
            target.account(address).expect("read"),
            source.account(address).expect("read"),
        );
        let (account, proof) = target.account_with_proof(address, 2).expect("proof");
        tally_ledger::verify_account_proof(&proof, &tip.state_root, address, account.as_ref())
            .expect("a proof from the installed tree verifies");
    }
    // The installed store serves the same snapshot.
    assert_eq!(chunks_of(&target, &offer.info), served);

    // Both execute the next block alike.
    let next: Vec<_> = (0..SENDERS)
        .map(|i| transfer(&key(i), 400, addresses[SENDERS + i], 7))
        .collect();
    let (a, _) = build_block(&source, &params(), proposal(key(0).address()), &next).expect("build");
    let (b, _) = build_block(&target, &params(), proposal(key(0).address()), &next).expect("build");
    assert_eq!(a.block.header.state_root, b.block.header.state_root);
    source.commit(a).expect("commit");
    target.commit(b).expect("commit");
    assert_eq!(
        source.tip().expect("tip"),
        target.tip().expect("tip"),
        "the installed store follows the chain"
    );
}

/// Pruning below a height deletes the blocks and the stale tree nodes
/// under it, in batches that may be cut short by a crash, and leaves every
/// state from that height on whole: provable, servable as a snapshot, and
/// the base of the next block.
#[test]
fn pruning_keeps_every_state_from_its_height_and_survives_a_crash_midway() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (blocks, addresses) = {
        let pruned = Store::open(dir.path(), &genesis(SENDERS)).expect("open");
        pruned.enable_pruning();
        let (mut blocks, addresses) = grow(&pruned, 12, 20);
        // Empty blocks copy the previous root: those copies go stale too.
        for _ in 0..3 {
            let (executed, _) =
                build_block(&pruned, &params(), proposal(key(0).address()), &[]).expect("build");
            blocks.push(executed.block.clone());
            pruned.commit(executed).expect("commit");
        }
        (blocks, addresses)
    };
    let (_twin_dir, twin) = store(SENDERS);
    grow(&twin, 12, 20);
    for _ in 0..3 {
        let (executed, _) =
            build_block(&twin, &params(), proposal(key(0).address()), &[]).expect("build");
        twin.commit(executed).expect("commit");
    }
    // Pruned in small batches, with a restart (as after a crash) between
    // each.
    let mut deleted = (0, 0);
    loop {
        let store = Store::open(dir.path(), &genesis(SENDERS)).expect("reopen");
        store.enable_pruning();
        let done = store.prune(10, 25).expect("prune");
        deleted.0 += done.blocks;
        deleted.1 += done.tree_nodes;
        if done.done {
            break;
        }
    }
    assert_eq!(deleted.0, 9, "blocks 1 to 9");
    assert!(deleted.1 > 0, "no stale tree node was deleted");
    let pruned = Store::open(dir.path(), &genesis(SENDERS)).expect("reopen");
    pruned.enable_pruning();
    assert_eq!(pruned.history_start().expect("read"), 10);
    assert_eq!(pruned.state_start().expect("read"), 10);
    assert!(pruned.block_by_height(9).expect("read").is_none());
    assert!(pruned.block_by_height(10).expect("read").is_some());
    assert!(pruned.seen_commit(9).expect("read").is_none());
    assert!(pruned.state_root_at(5).is_err(), "an old state is gone");
    // Every state from height 10 on is whole.
    for block in &blocks[9..] {
        let height = block.height();
        assert_eq!(
            pruned.state_root_at(height).expect("root"),
            block.header.state_root
        );
        for address in &addresses {
            let (account, proof) = pruned.account_with_proof(address, height).expect("proof");
            tally_ledger::verify_account_proof(
                &proof,
                &block.header.state_root,
                address,
                account.as_ref(),
            )
            .expect("proof after pruning");
            let (theirs, _) = twin.account_with_proof(address, height).expect("proof");
            assert_eq!(account, theirs);
        }
    }
    let offer = offer(&pruned, &blocks[9], 64);
    for (i, chunk) in chunks_of(&pruned, &offer.info).iter().enumerate() {
        verify_chunk(&offer.info, i as u32, chunk).expect("a snapshot at the pruning height");
    }
    // Nothing more to do at the same height; the chain goes on alike.
    let again = pruned.prune(10, 1_000).expect("prune");
    assert_eq!((again.blocks, again.tree_nodes, again.done), (0, 0, true));
    let next: Vec<_> = (0..SENDERS)
        .map(|i| transfer(&key(i), 12 * 20, addresses[SENDERS + i], 3))
        .collect();
    let (a, _) = build_block(&pruned, &params(), proposal(key(0).address()), &next).expect("build");
    let (b, _) = build_block(&twin, &params(), proposal(key(0).address()), &next).expect("build");
    assert_eq!(a.block.header.state_root, b.block.header.state_root);
    pruned.commit(a).expect("commit");
}
