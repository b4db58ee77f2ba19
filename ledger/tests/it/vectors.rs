//! The shared test vectors, made with independent implementations (eth-keys,
//! libsecp256k1): Tally's crypto must reproduce every byte.

use serde_json::Value;
use tally_ledger::{Address, Hash, SecretKey, Signature, keccak256};

fn vectors() -> Value {
    // A copy kept in the repository (tests/vectors, with its README saying
    // where it came from), so a fresh clone needs nothing beside it.
    let text = include_str!("../vectors/secp256k1-keccak.json");
    serde_json::from_str(text).expect("vectors are JSON")
}

fn str_field<'a>(v: &'a Value, name: &str) -> &'a str {
    v[name]
        .as_str()
        .unwrap_or_else(|| panic!("vector field {name}"))
}

#[test]
fn keccak256_matches_vectors() {
    let all = vectors();
    let cases = all["keccak256"].as_array().expect("keccak256 cases");
    assert!(!cases.is_empty());
    for case in cases {
        let expected: Hash = str_field(case, "hash").parse().expect("hash hex");
        assert_eq!(
            keccak256(str_field(case, "input_utf8").as_bytes()),
            expected
        );
    }
}

#[test]
fn keys_addresses_and_signatures_match_vectors() {
    let all = vectors();
    let cases = all["vectors"].as_array().expect("key vectors");
    assert_eq!(cases.len(), 16);
    for case in cases {
        let secret: [u8; 32] = hex::decode(&str_field(case, "private_key")[2..])
            .expect("hex")
            .try_into()
            .expect("32 bytes");
        let key = SecretKey::from_bytes(&secret).expect("valid key");

        let public = key.public_key().to_uncompressed();
        assert_eq!(
            format!("0x{}", hex::encode(public)),
            str_field(case, "public_key_uncompressed")
        );

        // Exact EIP-55 string, and it parses back to the same address.
        let address_str = str_field(case, "address");
        assert_eq!(key.address().to_string(), address_str);
        assert_eq!(
            address_str.parse::<Address>().expect("checksummed"),
            key.address()
        );

        let digest = keccak256(str_field(case, "message").as_bytes());
        let expected_digest: Hash = str_field(case, "keccak256_of_message")
            .parse()
            .expect("hex");
        assert_eq!(digest, expected_digest);

        let expected_sig: Signature = str_field(case, "signature_rsv").parse().expect("sig hex");
        assert_eq!(
            key.sign_prehash(&digest),
            expected_sig,
            "RFC 6979 signature byte for byte"
        );
        assert_eq!(
            expected_sig.recover_address(&digest).expect("recovers"),
            key.address()
        );
    }
}

#[test]
fn mixed_case_address_with_bad_checksum_is_rejected() {
    let all = vectors();
    let good = str_field(&all["vectors"][0], "address").to_string();
    // Flip the case of one letter: still the same bytes, but the checksum breaks.
    let pos = good[2..]
        .find(|c: char| c.is_ascii_alphabetic())
        .expect("a letter")
        + 2;
    let mut bad: Vec<char> = good.chars().collect();
    bad[pos] = if bad[pos].is_ascii_uppercase() {
        bad[pos].to_ascii_lowercase()
    } else {
        bad[pos].to_ascii_uppercase()
    };
    let bad: String = bad.into_iter().collect();
    assert!(
        bad.parse::<Address>().is_err(),
        "{bad} must fail the checksum"
    );
    // All-lowercase and all-uppercase carry no checksum and are accepted.
    assert!(good.to_lowercase().parse::<Address>().is_ok());
    assert!(
        format!("0x{}", good[2..].to_uppercase())
            .parse::<Address>()
            .is_ok()
    );
}
