//! Validator-set governance: the rules alone, then through blocks and the
//! store.

use tally_ledger::governance::{
    GovernanceError, GovernanceState, KEPT_FINISHED, MAX_PENDING_PER_PROPOSER, ProposalStatus,
    validators_hash,
};
use tally_ledger::{
    Address, BlockError, GenesisState, GovernanceAction, GovernanceParams, GovernanceTx, Member,
    SecretKey, SetChange, SignedTransaction, StateReader, Store, TxError, VerifiedTransaction,
    build_block, keccak256, verify_block,
};

use crate::common::{
    CHAIN_ID, MIN_FEE, POWER, START_BALANCE, VALIDATORS, params, proposal, validator_key,
    validators,
};

fn gov_params() -> GovernanceParams {
    GovernanceParams::for_genesis(VALIDATORS, None)
}

fn addr(i: usize) -> Address {
    validator_key(i).address()
}

fn newcomer(i: usize, power: u64) -> Member {
    Member::of_key(
        &format!("new{i}"),
        &SecretKey::from_seed(&format!("newcomer-{i}")).public_key(),
        power,
    )
}

fn propose(change: SetChange, expires_at: u64) -> GovernanceAction {
    GovernanceAction::Propose { change, expires_at }
}

/// A state with 4 validators of power 10, and `change` proposed by v0 at
/// height 1 (id 1).
fn with_proposal(change: SetChange) -> GovernanceState {
    let mut state = GovernanceState::genesis(validators());
    state
        .apply(&gov_params(), 1, addr(0), &propose(change, 50))
        .expect("propose");
    state
}

#[test]
fn only_validators_propose_and_approve() {
    let mut state = GovernanceState::genesis(validators());
    let stranger = newcomer(9, 1).address;
    let change = SetChange::Add {
        member: newcomer(1, 5),
    };
    assert_eq!(
        state.apply(&gov_params(), 1, stranger, &propose(change.clone(), 10)),
        Err(GovernanceError::NotAValidator(stranger))
    );
    state
        .apply(&gov_params(), 1, addr(0), &propose(change, 10))
        .expect("a validator proposes");
    assert_eq!(
        state.apply(
            &gov_params(),
            1,
            stranger,
            &GovernanceAction::Approve { id: 1 }
        ),
        Err(GovernanceError::NotAValidator(stranger))
    );
    // The same from the mempool's check.
    assert_eq!(
        state.check(
            &gov_params(),
            None,
            stranger,
            &GovernanceAction::Approve { id: 1 }
        ),
        Err(GovernanceError::NotAValidator(stranger))
    );
}

#[test]
fn duplicate_and_unknown_approvals_are_refused() {
    let mut state = with_proposal(SetChange::Add {
        member: newcomer(1, 5),
    });
    let approve = GovernanceAction::Approve { id: 1 };
    // The proposer's proposal counts as its approval.
    assert_eq!(
        state.apply(&gov_params(), 2, addr(0), &approve),
        Err(GovernanceError::DuplicateApproval(addr(0), 1))
    );
    state
        .apply(&gov_params(), 2, addr(1), &approve)
        .expect("approve");
    assert_eq!(
        state.apply(&gov_params(), 2, addr(1), &approve),
        Err(GovernanceError::DuplicateApproval(addr(1), 1))
    );
    assert_eq!(
        state.check(&gov_params(), None, addr(1), &approve),
        Err(GovernanceError::DuplicateApproval(addr(1), 1))
    );
    assert_eq!(
        state.apply(
            &gov_params(),
            2,
            addr(2),
            &GovernanceAction::Approve { id: 7 }
        ),
        Err(GovernanceError::UnknownProposal(7))
    );
}

#[test]
fn a_quorum_of_power_enacts_at_the_end_of_the_block_for_two_heights_later() {
    let member = newcomer(1, 5);
    let mut state = with_proposal(SetChange::Add {
        member: member.clone(),
    });
    let approve = GovernanceAction::Approve { id: 1 };
    state
        .apply(&gov_params(), 2, addr(1), &approve)
        .expect("approve");
    // 20 of 40 is not more than 2/3.
    assert!(!state.end_block(&gov_params(), 2));
    assert_eq!(state.pending.len(), 1);
    state
        .apply(&gov_params(), 3, addr(2), &approve)
        .expect("approve");
    assert!(state.end_block(&gov_params(), 3));
    assert!(state.pending.is_empty());
    assert_eq!(
        state.finished[0].status,
        ProposalStatus::Enacted {
            height: 3,
            effective: 5
        }
    );
    // Height 4 still signs with the old set; 5 with the new one.
    assert_eq!(state.members_at(4), &validators_sorted()[..]);
    assert!(state.members_at(5).contains(&member));
    assert_eq!(state.members_at(5).len(), VALIDATORS + 1);
    // Once height 4 is over the old set is dropped.
    state.end_block(&gov_params(), 4);
    assert_eq!(state.epochs.len(), 1);
    assert_eq!(state.epochs[0].start, 5);
    // The newcomer votes from then on.
    state
        .apply(
            &gov_params(),
            5,
            member.address,
            &propose(
                SetChange::SetPower {
                    address: addr(0),
                    power: 12,
                },
                20,
            ),
        )
        .expect("the new validator proposes");
}

fn validators_sorted() -> Vec<Member> {
    let mut members = validators();
    members.sort_by_key(|a| a.address);
    members
}

#[test]
fn proposals_expire_and_finished_ones_say_so() {
    let mut state = GovernanceState::genesis(validators());
    let change = SetChange::SetPower {
        address: addr(1),
        power: 12,
    };
    for (height, expires_at) in [(5, 5), (5, 5 + 100_001)] {
        assert_eq!(
            state.apply(
                &gov_params(),
                height,
                addr(0),
                &propose(change.clone(), expires_at)
            ),
            Err(GovernanceError::BadExpiry { height, expires_at })
        );
    }
    state
        .apply(&gov_params(), 5, addr(0), &propose(change, 7))
        .expect("propose");
    state.end_block(&gov_params(), 6);
    assert_eq!(state.pending.len(), 1);
    state.end_block(&gov_params(), 7);
    assert!(state.pending.is_empty());
    assert_eq!(
        state.finished[0].status,
        ProposalStatus::Expired { height: 7 }
    );
    match state.apply(
        &gov_params(),
        8,
        addr(1),
        &GovernanceAction::Approve { id: 1 },
    ) {
        Err(GovernanceError::NotPending { id: 1, status }) => {
            assert!(status.contains("expired at 7"), "{status}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn changes_that_break_the_limits_are_refused() {
    let mut state = GovernanceState::genesis(validators());
    let p = gov_params();
    let mut bad_key = newcomer(1, 5);
    bad_key.address = Address([7; 20]);
    let mut long_name = newcomer(1, 5);
    long_name.name = "x".repeat(65);
    let cases: Vec<(SetChange, GovernanceError)> = vec![
        // 4 validators, and genesis had 4: none may leave.
        (
            SetChange::Remove { address: addr(1) },
            GovernanceError::TooFewValidators { after: 3, min: 4 },
        ),
        // 14 of 40 is more than a third.
        (
            SetChange::Add {
                member: newcomer(1, 14),
            },
            GovernanceError::MovesTooMuch {
                moved: 14,
                total: 40,
            },
        ),
        (
            SetChange::SetPower {
                address: addr(1),
                power: 24,
            },
            GovernanceError::MovesTooMuch {
                moved: 14,
                total: 40,
            },
        ),
        (
            SetChange::SetPower {
                address: addr(1),
                power: 0,
            },
            GovernanceError::ZeroPower,
        ),
        (
            SetChange::SetPower {
                address: addr(1),
                power: POWER,
            },
            GovernanceError::SamePower {
                address: addr(1),
                power: POWER,
            },
        ),
        (
            SetChange::Add {
                member: newcomer(1, 0),
            },
            GovernanceError::ZeroPower,
        ),
        (
            SetChange::Add {
                member: validators()[2].clone(),
            },
            GovernanceError::AlreadyAValidator(addr(2)),
        ),
        (
            SetChange::Add { member: bad_key },
            GovernanceError::KeyMismatch(Address([7; 20])),
        ),
        (
            SetChange::Add { member: long_name },
            GovernanceError::NameTooLong(65),
        ),
        (
            SetChange::Remove {
                address: Address([3; 20]),
            },
            GovernanceError::NotInSet(Address([3; 20])),
        ),
        (
            SetChange::ReplaceKey {
                address: addr(1),
                public_key: validators()[2].public_key,
            },
            GovernanceError::AlreadyAValidator(addr(2)),
        ),
        (
            SetChange::ReplaceKey {
                address: addr(1),
                public_key: [5; 33],
            },
            GovernanceError::BadPublicKey,
        ),
    ];
    for (change, expected) in cases {
        assert_eq!(
            state.apply(&p, 1, addr(0), &propose(change.clone(), 10)),
            Err(expected),
            "{change:?}"
        );
    }
    // Within the limits: a third exactly, and a key rotation (which moves
    // the validator's power), each from another proposer.
    let within = [
        SetChange::Add {
            member: newcomer(2, 13),
        },
        SetChange::SetPower {
            address: addr(1),
            power: 23,
        },
        SetChange::ReplaceKey {
            address: addr(3),
            public_key: newcomer(3, 1).public_key,
        },
    ];
    for (i, change) in within.into_iter().enumerate() {
        state
            .apply(&p, 1, addr(i + 1), &propose(change, 10))
            .expect("within the limits");
    }
    // One proposer may have only so many pending.
    let add = |i: usize| {
        propose(
            SetChange::Add {
                member: newcomer(i, 1),
            },
            10,
        )
    };
    for i in 1..MAX_PENDING_PER_PROPOSER {
        state
            .apply(&p, 1, addr(1), &add(10 + i))
            .expect("room for more");
    }
    assert_eq!(
        state.apply(&p, 1, addr(1), &add(99)),
        Err(GovernanceError::TooManyFromProposer(addr(1)))
    );
    assert!(state.finished.len() <= KEPT_FINISHED);
}

/// The genesis four and `newcomer(1)`, all of power [`POWER`] (genesis had
/// four, so four is the floor).
fn five_validators() -> GovernanceState {
    let mut members = validators();
    members.push(newcomer(1, POWER));
    GovernanceState::genesis(members)
}

#[test]
fn a_proposer_that_leaves_the_set_gives_its_slots_back() {
    let leaver = newcomer(1, POWER);
    let mut state = five_validators();
    let p = gov_params();
    let change = SetChange::SetPower {
        address: addr(0),
        power: 12,
    };
    state
        .apply(&p, 1, leaver.address, &propose(change, 50))
        .expect("propose");
    state
        .apply(
            &p,
            1,
            addr(0),
            &propose(
                SetChange::Remove {
                    address: leaver.address,
                },
                50,
            ),
        )
        .expect("propose");
    for i in 1..VALIDATORS {
        state
            .apply(&p, 1, addr(i), &GovernanceAction::Approve { id: 2 })
            .expect("approve");
    }
    state.end_block(&p, 1);
    assert_eq!(state.pending.len(), 1, "the leaver's own is still pending");
    // Height 3 signs without it: from the end of block 2 its proposal fails.
    state.end_block(&p, 2);
    assert!(state.pending.is_empty());
    assert_eq!(
        state.finished.last().map(|f| &f.status),
        Some(&ProposalStatus::Failed {
            height: 2,
            reason: GovernanceError::ProposerLeft(leaver.address),
        })
    );
}

#[test]
fn one_change_per_block_and_one_that_no_longer_fits_fails() {
    // Five validators (genesis had 4, so 4 is the floor): two removals each
    // fit alone, not both.
    let mut state = five_validators();
    let p = gov_params();
    for target in [1, 2] {
        state
            .apply(
                &p,
                1,
                addr(0),
                &propose(
                    SetChange::Remove {
                        address: addr(target),
                    },
                    20,
                ),
            )
            .expect("fits alone");
    }
    for id in [1, 2] {
        for i in [1, 3] {
            // v1 may approve its own removal.
            state
                .apply(&p, 1, addr(i), &GovernanceAction::Approve { id })
                .expect("approve");
        }
        state
            .apply(
                &p,
                1,
                newcomer(1, POWER).address,
                &GovernanceAction::Approve { id },
            )
            .expect("approve");
    }
    state.end_block(&p, 1);
    assert_eq!(state.pending.len(), 1, "one change per block");
    assert_eq!(state.members_at(3).len(), 4);
    state.end_block(&p, 2);
    assert!(state.pending.is_empty());
    match &state.finished[1].status {
        ProposalStatus::Failed { height: 2, reason } => assert_eq!(
            reason,
            &GovernanceError::TooFewValidators { after: 3, min: 4 }
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(state.members_at(4).len(), 4);
}

#[test]
fn a_dev_admin_changes_the_set_alone_and_beyond_a_third() {
    let admin = SecretKey::from_seed("admin").address();
    let p = GovernanceParams::for_genesis(1, Some(admin));
    let mut state = GovernanceState::genesis(vec![validators().remove(0)]);
    state
        .apply(
            &p,
            1,
            admin,
            &propose(
                SetChange::Add {
                    member: newcomer(1, 100),
                },
                5,
            ),
        )
        .expect("the admin proposes");
    assert!(state.pending[0].approvals.is_empty());
    state.end_block(&p, 1);
    assert_eq!(state.members_at(3).len(), 2);
    // Without the admin the same is refused.
    let q = GovernanceParams::for_genesis(1, None);
    assert!(matches!(
        state.apply(
            &q,
            2,
            addr(0),
            &propose(
                SetChange::Add {
                    member: newcomer(2, 1000),
                },
                5
            )
        ),
        Err(GovernanceError::MovesTooMuch { .. })
    ));
}

// Through blocks and the store.

fn funded_genesis() -> GenesisState {
    GenesisState {
        hash: keccak256(b"governance-genesis"),
        accounts: (0..VALIDATORS)
            .map(|i| (addr(i), START_BALANCE))
            .chain([(newcomer(1, 1).address, START_BALANCE)])
            .collect(),
        validators: validators(),
    }
}

/// Recovers a block's transaction afresh.
fn verify(tx: &SignedTransaction) -> Result<std::sync::Arc<VerifiedTransaction>, TxError> {
    tx.clone().verify().map(std::sync::Arc::new)
}

fn gov_tx(key: &SecretKey, nonce: u64, action: GovernanceAction) -> VerifiedTransaction {
    GovernanceTx {
        chain_id: CHAIN_ID,
        nonce,
        fee: MIN_FEE,
        action,
    }
    .sign(key)
    .verify()
    .expect("signed")
}

/// Builds a block of `txs`, checks a second store verifies it alike, and
/// commits it to both.
fn block(a: &Store, b: &Store, txs: &[VerifiedTransaction]) -> tally_ledger::Block {
    let (built, skipped) = build_block(a, &params(), proposal(addr(0)), txs).expect("build");
    assert!(skipped.is_empty(), "{skipped:?}");
    let block = built.block.clone();
    let verified = verify_block(b, &params(), block.clone(), verify).expect("verifies");
    a.commit(built).expect("commit");
    b.commit(verified).expect("commit");
    block
}

#[test]
fn a_change_goes_through_blocks_and_the_store_keeps_every_set() {
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("tmp"),
        tempfile::tempdir().expect("tmp"),
    );
    let a = Store::open(dir_a.path(), &funded_genesis()).expect("open");
    let b = Store::open(dir_b.path(), &funded_genesis()).expect("open");
    let genesis_hash = validators_hash(&validators_sorted());
    let member = newcomer(1, 5);

    // Block 1: v0 proposes; a stranger's approval is skipped with a clear
    // error and pays nothing.
    let stranger = SecretKey::from_seed("newcomer-1");
    let proposal_tx = gov_tx(
        &validator_key(0),
        0,
        propose(
            SetChange::Add {
                member: member.clone(),
            },
            100,
        ),
    );
    let early = gov_tx(&stranger, 0, GovernanceAction::Approve { id: 1 });
    let (built, skipped) =
        build_block(&a, &params(), proposal(addr(0)), [&proposal_tx, &early]).expect("build");
    assert_eq!(skipped.len(), 1);
    assert!(matches!(
        skipped[0].1,
        TxError::Governance(GovernanceError::NotAValidator(_))
    ));
    let header = built.block.header.clone();
    assert_eq!(header.validators_hash, genesis_hash);
    assert_eq!(header.next_validators_hash, genesis_hash);
    let verified = verify_block(&b, &params(), built.block.clone(), verify).expect("verifies");
    a.commit(built).expect("commit");
    b.commit(verified).expect("commit");
    let v0 = a.account(&addr(0)).expect("read");
    assert_eq!((v0.nonce, v0.balance), (1, START_BALANCE));
    assert_eq!(a.governance().expect("read").pending.len(), 1);
    assert_eq!(a.account(&stranger.address()).expect("read").nonce, 0);

    // Block 2: two approvals make 30 of 40, enacted at its end.
    let approvals =
        [1, 2].map(|i| gov_tx(&validator_key(i), 0, GovernanceAction::Approve { id: 1 }));
    let enacting = block(&a, &b, &approvals);
    assert_eq!(enacting.header.validators_hash, genesis_hash);
    assert_eq!(enacting.header.next_validators_hash, genesis_hash);
    let mut new_set = validators_sorted();
    new_set.push(member.clone());
    new_set.sort_by_key(|x| x.address);
    let new_hash = validators_hash(&new_set);
    // Block 3 still signed by the old set names the new one next.
    let third = block(&a, &b, &[]);
    assert_eq!(third.header.validators_hash, genesis_hash);
    assert_eq!(third.header.next_validators_hash, new_hash);
    let fourth = block(&a, &b, &[]);
    assert_eq!(fourth.header.validators_hash, new_hash);

    for store in [&a, &b] {
        assert_eq!(
            store
                .validator_set_at(3)
                .expect("read")
                .expect("known")
                .start,
            1
        );
        let at = store.validator_set_at(4).expect("read").expect("known");
        assert_eq!((at.start, at.members.as_slice()), (4, &new_set[..]));
        assert_eq!(store.validator_sets().len(), 2);
        // Two above the tip is known, three is not.
        assert!(store.validator_set_at(6).expect("read").is_some());
        assert!(store.validator_set_at(7).expect("read").is_none());
    }
    // A header naming the old set where the new one signs is refused.
    let (mut stale, _) = build_block(
        &a,
        &params(),
        proposal(addr(0)),
        &[] as &[VerifiedTransaction],
    )
    .expect("build");
    stale.block.header.validators_hash = genesis_hash;
    assert!(matches!(
        verify_block(&b, &params(), stale.block, verify),
        Err(BlockError::WrongValidatorsHash { .. })
    ));

    // The history comes back after a restart.
    drop(a);
    let a = Store::open(dir_a.path(), &funded_genesis()).expect("reopen");
    assert_eq!(a.validator_sets(), b.validator_sets());
    assert_eq!(
        a.validator_set_at(5)
            .expect("read")
            .expect("known")
            .members
            .as_slice(),
        &new_set[..]
    );
    assert_eq!(a.governance().expect("read"), b.governance().expect("read"));
}

#[test]
fn a_governance_transaction_round_trips_and_old_kinds_keep_their_tags() {
    let tx = gov_tx(&validator_key(0), 3, GovernanceAction::Approve { id: 9 });
    let encoded = tx.signed().encode();
    assert_eq!(encoded[0], 2, "governance transactions are tag 2");
    let decoded = SignedTransaction::decode(&encoded).expect("decodes");
    assert_eq!(&decoded, tx.signed());
    let again = decoded.verify().expect("verifies");
    assert_eq!(again.sender(), addr(0));
    assert_eq!(again.signed().to(), None);
    // A transfer signature does not make a governance one.
    let mut forged = match tx.signed().clone() {
        SignedTransaction::Governance(g) => g,
        _ => unreachable!(),
    };
    forged.tx.nonce += 1;
    let forged = SignedTransaction::Governance(forged)
        .verify()
        .expect("recovers some address");
    assert_ne!(forged.sender(), addr(0));
}
