//! Genesis validation, hashing and generation.

use tally_genesis::{
    ConsensusParams, DEV_ACCOUNTS, DEV_BALANCE, Genesis, GenesisAccount, GenesisError,
    MAX_BLOCK_BYTES, MAX_TIMEOUT_MS, dev_genesis, dev_keys, generate_testnet, layout,
};
use tally_ledger::{SecretKey, StateReader, Store};

fn sample() -> Genesis {
    dev_genesis(1337, &SecretKey::from_seed("genesis-test-validator"))
}

#[test]
fn dev_genesis_is_valid_and_funds_the_dev_accounts() {
    let g = sample();
    g.validate().expect("valid");
    assert_eq!(g.accounts.len(), DEV_ACCOUNTS);
    assert_eq!(g.total_supply(), DEV_BALANCE * DEV_ACCOUNTS as u128);
    assert_eq!(dev_keys()[0].address(), g.accounts[0].address);
}

#[test]
fn every_mistake_gets_a_clear_error() {
    let mut g = sample();
    g.validators.clear();
    assert!(matches!(g.validate(), Err(GenesisError::NoValidators)));

    let mut g = sample();
    g.validators.push(g.validators[0].clone());
    let err = g.validate().expect_err("must be refused");
    assert!(matches!(err, GenesisError::DuplicateValidator { .. }));
    assert!(err.to_string().contains("listed twice"), "{err}");

    let mut g = sample();
    g.validators[0].power = 0;
    assert!(matches!(g.validate(), Err(GenesisError::ZeroPower { .. })));

    let mut g = sample();
    g.validators[0].address = dev_keys()[0].address();
    let err = g.validate().expect_err("must be refused");
    assert!(matches!(err, GenesisError::AddressMismatch { .. }));
    assert!(
        err.to_string().contains("does not match its public key"),
        "{err}"
    );

    let mut g = sample();
    g.accounts.push(GenesisAccount {
        address: dev_keys()[5].address(),
        balance: u128::MAX,
    });
    assert!(matches!(
        g.validate(),
        Err(GenesisError::DuplicateAccount(_))
    ));

    let mut g = sample();
    g.accounts.push(GenesisAccount {
        address: SecretKey::from_seed("rich").address(),
        balance: u128::MAX,
    });
    assert!(matches!(g.validate(), Err(GenesisError::SupplyOverflow)));

    let mut g = sample();
    g.validators[0].power = u64::MAX;
    g.validators.push({
        let k = SecretKey::from_seed("second");
        tally_genesis::GenesisValidator {
            name: "b".into(),
            address: k.address(),
            public_key: k.public_key(),
            power: 1,
        }
    });
    assert!(matches!(g.validate(), Err(GenesisError::PowerOverflow)));

    let mut g = sample();
    g.chain_id = 0;
    assert!(matches!(g.validate(), Err(GenesisError::ZeroChainId)));

    // Ids a wallet cannot hold, or that public EVM chains use: their
    // signed transfers would replay here and ours there.
    let mut g = sample();
    g.chain_id = tally_genesis::MAX_CHAIN_ID + 1;
    assert!(matches!(
        g.validate(),
        Err(GenesisError::ChainIdTooLarge(_))
    ));
    g.chain_id = tally_genesis::MAX_CHAIN_ID;
    g.validate().expect("the largest id is fine");
    for id in [1, 137, 11155111] {
        g.chain_id = id;
        let err = g.validate().expect_err("a public chain's id");
        assert!(err.to_string().contains("no public chain uses"), "{err}");
    }

    let mut g = sample();
    g.genesis_time = "yesterday".into();
    assert!(matches!(g.validate(), Err(GenesisError::BadTime(_))));

    let mut g = sample();
    g.consensus.max_block_bytes = 10;
    assert!(matches!(
        g.validate(),
        Err(GenesisError::BadParam {
            name: "max_block_bytes",
            ..
        })
    ));
}

#[test]
fn parameters_are_bounded_against_the_network_limits() {
    let refused = |change: fn(&mut ConsensusParams), param: &str| {
        let mut g = sample();
        change(&mut g.consensus);
        match g.validate() {
            Err(GenesisError::BadParam { name, .. }) => assert_eq!(name, param),
            other => panic!("{param}: expected BadParam, got {other:?}"),
        }
    };
    refused(|p| p.timeout_delta_ms = 0, "timeout_delta_ms");
    refused(|p| p.timeout_propose_ms = u64::MAX, "timeout_propose_ms");
    refused(|p| p.timeout_prevote_ms = 0, "timeout_prevote_ms");
    refused(
        |p| p.timeout_precommit_ms = MAX_TIMEOUT_MS + 1,
        "timeout_precommit_ms",
    );
    refused(|p| p.block_interval_ms = u64::MAX, "block_interval_ms");
    refused(
        |p| p.empty_block_interval_ms = u64::MAX,
        "empty_block_interval_ms",
    );
    refused(
        |p| p.max_block_bytes = MAX_BLOCK_BYTES + 1,
        "max_block_bytes",
    );
    refused(|p| p.max_block_bytes = u32::MAX, "max_block_bytes");
    refused(|p| p.min_fee = 0, "min_fee");

    let mut g = sample();
    g.consensus.max_block_bytes = MAX_BLOCK_BYTES;
    g.consensus.timeout_propose_ms = MAX_TIMEOUT_MS;
    g.consensus.timeout_delta_ms = 1;
    g.validate().expect("the bounds themselves are allowed");
}

#[test]
fn hash_ignores_formatting_and_listing_order_but_not_content() {
    let g = sample();
    let mut reordered = g.clone();
    reordered.accounts.reverse();
    assert_eq!(g.hash(), reordered.hash());
    let compact: Genesis =
        serde_json::from_str(&serde_json::to_string(&g).expect("json")).expect("parse");
    assert_eq!(compact.hash(), g.hash());

    let mut changed = g.clone();
    changed.accounts[3].balance += 1;
    assert_ne!(changed.hash(), g.hash());
    let mut changed = g.clone();
    changed.consensus.min_fee += 1;
    assert_ne!(changed.hash(), g.hash());
    let mut changed = g.clone();
    changed.chain_id += 1;
    assert_ne!(changed.hash(), g.hash());
    // The governance admin is part of what every node must agree on.
    let mut changed = g.clone();
    changed.governance_admin = None;
    assert_ne!(changed.hash(), g.hash());
}

#[test]
fn validator_sets_are_bounded_as_governance_bounds_them() {
    use tally_ledger::governance::{MAX_TOTAL_POWER, MAX_VALIDATORS};
    let entry = |i: usize, power: u64| {
        let k = SecretKey::from_seed(&format!("many-{i}"));
        tally_genesis::GenesisValidator {
            name: format!("v{i}"),
            address: k.address(),
            public_key: k.public_key(),
            power,
        }
    };
    let mut g = sample();
    g.validators = (0..=MAX_VALIDATORS).map(|i| entry(i, 1)).collect();
    assert!(matches!(
        g.validate(),
        Err(GenesisError::TooManyValidators(n)) if n == MAX_VALIDATORS + 1
    ));
    g.validators.pop();
    g.validate().expect("the most a set may have");

    let mut g = sample();
    g.validators[0].name = "x".repeat(65);
    assert!(matches!(g.validate(), Err(GenesisError::NameTooLong(_))));

    let mut g = sample();
    g.validators = vec![entry(0, MAX_TOTAL_POWER), entry(1, 1)];
    assert!(matches!(g.validate(), Err(GenesisError::PowerOverflow)));

    // A dev chain's one validator is its governance admin; a generated
    // testnet has none, and its members are what genesis lists.
    assert_eq!(
        sample().governance_admin,
        Some(sample().validators[0].address)
    );
    let members = sample().members();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].address, sample().validators[0].address);
    assert_eq!(sample().exec_params().governance.min_validators, 1);
}

#[test]
fn file_round_trip_and_parse_errors() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("genesis.json");
    let g = sample();
    g.save(&path).expect("save");
    assert_eq!(Genesis::load(&path).expect("load"), g);

    std::fs::write(&path, "{ \"chain_id\": 1 }").expect("write");
    let err = Genesis::load(&path).expect_err("must be refused");
    assert!(matches!(err, GenesisError::Parse { .. }), "{err}");
    let mut value: serde_json::Value = serde_json::to_value(&g).expect("json");
    value["surprise"] = serde_json::json!(1);
    std::fs::write(&path, value.to_string()).expect("write");
    assert!(
        Genesis::load(&path)
            .expect_err("must be refused")
            .to_string()
            .contains("surprise")
    );
}

#[test]
fn testnet_generates_homes_sharing_one_genesis() {
    let dir = tempfile::tempdir().expect("tmp");
    let testnet =
        generate_testnet(4, 42, ConsensusParams::default(), dir.path()).expect("generate");
    assert_eq!(testnet.homes.len(), 4);
    assert_eq!(testnet.genesis.validators.len(), 4);
    for (home, key) in testnet.homes.iter().zip(&testnet.validator_keys) {
        let genesis = Genesis::load(&home.join(layout::GENESIS_FILE)).expect("genesis");
        assert_eq!(genesis.hash(), testnet.genesis.hash());
        let loaded = SecretKey::load(&home.join(layout::VALIDATOR_KEY_FILE)).expect("key");
        assert_eq!(loaded.address(), key.address());
        assert!(
            genesis
                .validators
                .iter()
                .any(|v| v.address == key.address())
        );
    }
    // Never overwrites existing keys.
    assert!(generate_testnet(4, 42, ConsensusParams::default(), dir.path()).is_err());
}

#[test]
fn store_initialises_from_genesis_and_refuses_another() {
    let dir = tempfile::tempdir().expect("tmp");
    let g = sample();
    {
        let store = Store::open(dir.path(), &g.state()).expect("open");
        assert_eq!(store.tip().expect("tip").hash, g.hash());
        assert_eq!(
            store
                .account(&dev_keys()[0].address())
                .expect("acct")
                .balance,
            DEV_BALANCE
        );
    }
    let mut other = g.clone();
    other.chain_id += 1;
    assert!(Store::open(dir.path(), &other.state()).is_err());
}
