//! The consensus machine running on the ledger's real secp256k1 keys: four
//! validators decide a height, and the certificate survives the round trip
//! through the ledger's `Commit` and still verifies.

use std::collections::VecDeque;

use tally_consensus::{
    Action, Event, SigningScheme, VoteType, verify_certificate, vote_sign_bytes,
};
use tally_genesis::{ConsensusParams, Genesis, GenesisValidator};
use tally_ledger::{Hash, SecretKey, keccak256};
use tally_node::chain::{
    Certificate, Consensus, Secp256k1, ValidatorSigner, certificate_to_commit,
    commit_to_certificate, consensus_config, validator_set,
};

fn genesis(keys: &[SecretKey]) -> Genesis {
    Genesis {
        chain_id: 5,
        chain_name: "chain-test".into(),
        genesis_time: "2026-11-28T00:00:00Z".into(),
        consensus: ConsensusParams::default(),
        validators: keys
            .iter()
            .enumerate()
            .map(|(i, k)| GenesisValidator {
                name: format!("v{i}"),
                address: k.address(),
                public_key: k.public_key(),
                power: 10,
            })
            .collect(),
        accounts: vec![],
        governance_admin: None,
    }
}

#[test]
fn secp256k1_scheme_accepts_only_the_signers_signature() {
    let key = SecretKey::from_seed("scheme-test");
    let bytes = vote_sign_bytes(5, 1, 0, VoteType::Prevote, Some(&[7u8; 32]));
    let signature = key.sign_prehash(&keccak256(&bytes));
    assert!(Secp256k1.verify(&key.address(), &bytes, &signature));
    let other = SecretKey::from_seed("someone-else").address();
    assert!(!Secp256k1.verify(&other, &bytes, &signature));
    let mut tampered = bytes.clone();
    tampered[20] ^= 1;
    assert!(!Secp256k1.verify(&key.address(), &tampered, &signature));
    let mut garbage = signature;
    garbage.0[64] = 9;
    assert!(!Secp256k1.verify(&key.address(), &bytes, &garbage));
}

#[test]
fn four_validators_decide_with_real_signatures() {
    let keys: Vec<SecretKey> = (0..4)
        .map(|i| SecretKey::from_seed(&format!("chain-v{i}")))
        .collect();
    let genesis = genesis(&keys);
    genesis.validate().expect("valid genesis");
    let set = validator_set(&genesis).expect("validator set");
    let mut nodes: Vec<Consensus> = keys
        .iter()
        .map(|k| {
            Consensus::new(
                consensus_config(&genesis),
                Secp256k1,
                Some(Box::new(ValidatorSigner::new(k.clone()))),
            )
        })
        .collect();

    // Deliver every event to its node and every broadcast to all nodes, in
    // order, until each node decided (timeouts never fire: delivery is instant).
    let block = keccak256(b"block at height 1");
    let mut queue: VecDeque<(usize, Event<_, Hash, _>)> = (0..4)
        .map(|i| {
            (
                i,
                Event::StartHeight {
                    height: 1,
                    validators: set.clone(),
                },
            )
        })
        .collect();
    let mut decided: Vec<Option<Certificate>> = vec![None; 4];
    let mut steps = 0;
    while let Some((to, event)) = queue.pop_front() {
        steps += 1;
        assert!(steps < 10_000, "no decision");
        for action in nodes[to].handle(event) {
            match action {
                Action::BroadcastProposal(p) => {
                    queue.extend((0..4).map(|i| (i, Event::Proposal(p.clone()))));
                }
                Action::BroadcastVote(v) => {
                    queue.extend((0..4).map(|i| (i, Event::Vote(v.clone()))))
                }
                Action::BuildBlock { height, round } => {
                    queue.push_back((
                        to,
                        Event::BlockBuilt {
                            height,
                            round,
                            value: block,
                        },
                    ));
                }
                Action::VerifyBlock { height, value, .. } => {
                    queue.push_back((
                        to,
                        Event::BlockVerified {
                            height,
                            value,
                            valid: value == block,
                        },
                    ));
                }
                Action::Decide(certificate) => decided[to] = Some(certificate),
                Action::ReportEvidence(e) => panic!("no one equivocates here: {e:?}"),
                Action::PersistSigningState(_) | Action::ScheduleTimeout { .. } => {}
            }
        }
    }
    for certificate in &decided {
        let certificate = certificate.as_ref().expect("every validator decided");
        assert_eq!(certificate.value, block);
        assert_eq!(certificate.height, 1);

        // Through the ledger's Commit (what block h+1 carries) and back.
        let commit = certificate_to_commit(certificate);
        let back = commit_to_certificate(&commit);
        assert_eq!(&back, certificate);
        let power = verify_certificate(&Secp256k1, genesis.chain_id, &set, 1, &block, &back)
            .expect("the certificate verifies with secp256k1");
        assert!(set.is_quorum(power));

        // Another chain id changes the sign bytes: the certificate fails.
        assert!(
            verify_certificate(&Secp256k1, genesis.chain_id + 1, &set, 1, &block, &back).is_err()
        );
    }
}

/// A chain whose set changes at height 4 (a dev admin adds a validator of
/// power 100 beside the genesis one's 10): block sync's check takes each
/// block's certificate against the set of its height, so the old set alone
/// certifies block 2 and not block 4, and the new set certifies block 4.
#[test]
fn a_certificate_is_checked_against_the_set_of_its_height() {
    use tally_ledger::governance::{GovernanceAction, GovernanceTx, Member, SetChange};
    use tally_ledger::{Block, Commit, CommitSig, Proposal, Store, build_block};
    use tally_node::actors::ledger::{ChainParams, check_synced_block};

    let old = SecretKey::from_seed("set-old");
    let new = SecretKey::from_seed("set-new");
    let genesis = tally_genesis::dev_genesis(9, &old);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), &genesis.state()).expect("open");
    let params = ChainParams {
        exec: genesis.exec_params(),
        genesis_time_ms: genesis.genesis_time_ms(),
    };
    let add = GovernanceTx {
        chain_id: 9,
        nonce: 0,
        fee: genesis.consensus.min_fee,
        action: GovernanceAction::Propose {
            change: SetChange::Add {
                member: Member::of_key("new", &new.public_key(), 100),
            },
            expires_at: 10,
        },
    }
    .sign(&old)
    .verify()
    .expect("signed");
    // The admin (the dev validator) pays the fee from a funded account:
    // fund it first.
    let fund = tally_ledger::Transaction {
        chain_id: 9,
        nonce: 0,
        to: old.address(),
        amount: 1_000_000,
        fee: genesis.consensus.min_fee,
        memo: Vec::new(),
    }
    .sign(&tally_genesis::dev_keys()[0])
    .verify()
    .expect("signed");
    let mut blocks: Vec<Block> = Vec::new();
    for txs in [vec![fund], vec![add], vec![], vec![], vec![]] {
        let proposal = Proposal {
            time: 1_000 * (blocks.len() as u64 + 1),
            proposer: old.address(),
            last_commit: None,
        };
        let (built, skipped) =
            build_block(&store, &params.exec, proposal, txs.iter()).expect("build");
        assert!(skipped.is_empty(), "{skipped:?}");
        blocks.push(built.block.clone());
        store.commit(built).expect("commit");
    }
    // A certificate lists its signers in address order.
    let sign = |block: &Block, keys: &[&SecretKey]| Commit {
        height: block.height(),
        round: 0,
        block_hash: block.hash(),
        signatures: {
            let mut keys = keys.to_vec();
            keys.sort_by_key(|k| k.address());
            keys
        }
        .iter()
        .map(|k| CommitSig {
            validator: k.address(),
            signature: k.sign_prehash(&keccak256(&vote_sign_bytes(
                9,
                block.height(),
                0,
                VoteType::Precommit,
                Some(&block.hash().0),
            ))),
        })
        .collect(),
    };
    let (two, four) = (&blocks[1], &blocks[3]);
    check_synced_block(&params, &store, two, &sign(two, &[&old])).expect("the old set, before");
    let refused = check_synced_block(&params, &store, four, &sign(four, &[&old]))
        .expect_err("the old set after the change");
    assert!(refused.is_invalid_data(), "{refused}");
    check_synced_block(&params, &store, four, &sign(four, &[&old, &new]))
        .expect("the new set, after");
    // The new validator alone before its set signs is refused too.
    assert!(check_synced_block(&params, &store, two, &sign(two, &[&new])).is_err());
}
