//! Property tests: supply conservation, nonce discipline, decoder robustness,
//! and a state root independent of write order.

use proptest::prelude::*;
use tally_ledger::{
    Address, Block, GenesisState, Hash, SignedTransaction, StateReader, Store, build_block,
    keccak256, verify_account_proof,
};

use crate::common::{START_BALANCE, genesis, key, params, proposal, transfer, validators};

const ACCOUNTS: usize = 5;

/// (sender, recipient, amount, nonce offset from the sender's expected nonce).
fn transfers() -> impl Strategy<Value = Vec<(usize, usize, u128, i8)>> {
    prop::collection::vec(
        (
            0..ACCOUNTS,
            0..ACCOUNTS + 1,
            0..=START_BALANCE / 2,
            prop_oneof![8 => Just(0i8), 1 => -1i8..=2],
        ),
        0..24,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn blocks_conserve_supply_and_bump_nonces_by_one(blocks in prop::collection::vec(transfers(), 1..4), proposer in 0..ACCOUNTS + 1) {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Store::open(dir.path(), &genesis(ACCOUNTS)).expect("open");
        // Index ACCOUNTS is an address outside genesis.
        let all: Vec<Address> = (0..=ACCOUNTS).map(|i| key(i).address()).collect();
        let supply = |s: &Store| all.iter().map(|a| s.account(a).expect("read").balance).sum::<u128>();
        let initial = supply(&store);
        let mut expected_nonce = [0u64; ACCOUNTS];
        for block in blocks {
            let txs: Vec<_> = block.iter().map(|&(from, to, amount, offset)| {
                let nonce = expected_nonce[from].saturating_add_signed(offset as i64);
                if offset == 0 { expected_nonce[from] += 1; }
                transfer(&key(from), nonce, all[to], amount)
            }).collect();
            let before: Vec<_> = all.iter().map(|a| store.account(a).expect("read")).collect();
            let (executed, _) = build_block(&store, &params(), proposal(all[proposer]), &txs).expect("build");
            let mut applied = [0u64; ACCOUNTS + 1];
            for sender in &executed.senders {
                applied[all.iter().position(|a| a == sender).expect("known sender")] += 1;
            }
            store.commit(executed).expect("commit");
            for (i, address) in all.iter().enumerate() {
                let after = store.account(address).expect("read");
                prop_assert_eq!(after.nonce, before[i].nonce + applied[i]);
            }
            prop_assert_eq!(supply(&store), initial);
            // Resynchronise the expected nonces with what was really applied.
            for (i, n) in expected_nonce.iter_mut().enumerate() {
                *n = store.account(&all[i]).expect("read").nonce;
            }
        }
    }

    #[test]
    fn decoders_never_panic_on_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = SignedTransaction::decode(&bytes);
        let _ = Block::decode(&bytes);
        let text = String::from_utf8_lossy(&bytes);
        let _ = text.parse::<Address>();
        let _ = text.parse::<Hash>();
        let _ = text.parse::<tally_ledger::PublicKey>();
        let _ = text.parse::<tally_ledger::Signature>();
    }

    #[test]
    fn mutated_transactions_never_panic(flip in 0usize..400, value in any::<u8>()) {
        let mut bytes = transfer(&key(0), 1, key(1).address(), 5).signed().encode();
        let i = flip % bytes.len();
        bytes[i] = value;
        if let Ok(signed) = SignedTransaction::decode(&bytes) {
            let _ = signed.verify();
        }
    }

    #[test]
    fn state_root_is_independent_of_write_order(seed in any::<u64>(), n in 1usize..40) {
        let accounts: Vec<(Address, u128)> = (0..n)
            .map(|i| (key(1000 + i).address(), u128::from(seed % 1000) + i as u128))
            .collect();
        let mut shuffled = accounts.clone();
        // A seeded Fisher-Yates shuffle.
        let mut state = seed | 1;
        for i in (1..shuffled.len()).rev() {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17;
            shuffled.swap(i, (state % (i as u64 + 1)) as usize);
        }
        let hash = keccak256(b"order");
        let (d1, d2) = (tempfile::tempdir().expect("tmp"), tempfile::tempdir().expect("tmp"));
        let a = Store::open(d1.path(), &GenesisState { hash, accounts, validators: validators() }).expect("open");
        let b = Store::open(d2.path(), &GenesisState { hash, accounts: shuffled, validators: validators() }).expect("open");
        prop_assert_eq!(a.tip().expect("tip").state_root, b.tip().expect("tip").state_root);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// An account proof verifies for the account it was made for, through
    /// its parts and their JSON form too, and fails for any other balance,
    /// nonce, address or root.
    #[test]
    fn an_account_proof_holds_for_its_account_only(
        balances in prop::collection::vec(1..=u128::MAX / 2, 1..40),
        pick in any::<prop::sample::Index>(),
        other in any::<[u8; 20]>(),
        delta in 1..=u64::MAX,
        root in any::<[u8; 32]>(),
    ) {
        let accounts: Vec<(Address, u128)> = balances
            .iter()
            .enumerate()
            .map(|(i, b)| (Address(keccak256(&i.to_be_bytes()).0[..20].try_into().expect("20 bytes")), *b))
            .collect();
        let state = GenesisState { hash: keccak256(b"proof-props"), accounts: accounts.clone(), validators: validators() };
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), &state).expect("open");
        let state_root = store.state_root_at(0).expect("root");
        let (address, balance) = accounts[pick.index(accounts.len())];
        let (account, proof) = store.account_with_proof(&address, 0).expect("proof");
        let account = account.expect("exists");
        prop_assert_eq!(account.balance, balance);
        let parts = tally_ledger::ProofParts::of(&proof);
        let json = serde_json::to_string(&parts).expect("json");
        let parts: tally_ledger::ProofParts = serde_json::from_str(&json).expect("parse");
        let proof = parts.to_proof();
        prop_assert!(verify_account_proof(&proof, &state_root, &address, Some(&account)).is_ok());
        let mut bad = account;
        bad.balance = bad.balance.wrapping_add(u128::from(delta));
        prop_assert!(verify_account_proof(&proof, &state_root, &address, Some(&bad)).is_err());
        let mut bad = account;
        bad.nonce = bad.nonce.wrapping_add(delta);
        prop_assert!(verify_account_proof(&proof, &state_root, &address, Some(&bad)).is_err());
        prop_assert!(verify_account_proof(&proof, &state_root, &address, None).is_err());
        let other = Address(other);
        prop_assume!(other != address);
        prop_assert!(verify_account_proof(&proof, &state_root, &other, Some(&account)).is_err());
        let root = Hash(root);
        prop_assume!(root != state_root);
        prop_assert!(verify_account_proof(&proof, &root, &address, Some(&account)).is_err());
    }
}
