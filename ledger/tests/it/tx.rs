//! Transactions: signing, recovery, the bounded decoder, key files.

use tally_ledger::tx::{MAX_MEMO_BYTES, MAX_SIGNED_TX_BYTES, MAX_TX_BYTES};
use tally_ledger::{
    CryptoError, NativeTransaction, SecretKey, Signature, SignedTransaction, Transaction, TxError,
};

use crate::common::{CHAIN_ID, key, native};

fn sample(memo_len: usize) -> Transaction {
    Transaction {
        chain_id: CHAIN_ID,
        nonce: 3,
        to: key(1).address(),
        amount: 500,
        fee: 2,
        memo: vec![b'm'; memo_len],
    }
}

#[test]
fn sender_is_recovered_and_hash_is_of_signed_encoding() {
    let signed = sample(10).sign(&key(0));
    let bytes = signed.encode();
    let verified = tally_ledger::VerifiedTransaction::from_bytes(&bytes).expect("valid");
    assert_eq!(verified.sender(), key(0).address());
    assert_eq!(verified.hash(), tally_ledger::keccak256(&bytes));
    assert_eq!(verified.encoded_len(), bytes.len());
}

#[test]
fn tampered_transaction_recovers_another_sender() {
    let mut signed = native(sample(0).sign(&key(0)));
    signed.tx.amount += 1;
    let signed = SignedTransaction::Native(signed);
    // Recovery still yields *a* key, but never the signer's.
    match signed.verify() {
        Ok(v) => assert_ne!(v.sender(), key(0).address()),
        Err(e) => assert!(matches!(e, TxError::BadSignature(_))),
    }
}

#[test]
fn high_s_signature_is_rejected() {
    let signed = native(sample(0).sign(&key(0)));
    // s' = n - s is the malleable twin of a valid signature.
    let n = hex::decode("fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141")
        .expect("hex");
    let s = &signed.signature.0[32..64];
    let mut high = [0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let d = n[i] as i16 - s[i] as i16 - borrow;
        high[i] = d.rem_euclid(256) as u8;
        borrow = if d < 0 { 1 } else { 0 };
    }
    let mut sig = signed.signature.0;
    sig[32..64].copy_from_slice(&high);
    sig[64] ^= 1;
    let malleable = SignedTransaction::Native(NativeTransaction {
        tx: signed.tx.clone(),
        signature: Signature(sig),
    });
    assert_eq!(
        malleable.verify().expect_err("must be refused"),
        TxError::BadSignature(CryptoError::HighS)
    );
}

#[test]
fn bad_recovery_id_is_rejected() {
    let mut signed = native(sample(0).sign(&key(0)));
    signed.signature.0[64] = 27;
    assert_eq!(
        SignedTransaction::Native(signed)
            .verify()
            .expect_err("must be refused"),
        TxError::BadSignature(CryptoError::InvalidRecoveryId(27))
    );
}

#[test]
fn memo_and_size_are_bounded() {
    let max = sample(MAX_MEMO_BYTES).sign(&key(0)).encode();
    assert!(max.len() <= MAX_TX_BYTES);
    assert!(SignedTransaction::decode(&max).is_ok());

    let over = sample(MAX_MEMO_BYTES + 1).sign(&key(0)).encode();
    assert!(matches!(
        SignedTransaction::decode(&over),
        Err(TxError::TooLarge { .. } | TxError::MemoTooLong { .. })
    ));
    let huge = vec![0u8; MAX_SIGNED_TX_BYTES + 1];
    assert!(matches!(
        SignedTransaction::decode(&huge),
        Err(TxError::TooLarge { .. })
    ));
}

#[test]
fn trailing_bytes_and_truncation_are_errors() {
    let mut bytes = sample(4).sign(&key(0)).encode();
    bytes.push(0);
    assert!(matches!(
        SignedTransaction::decode(&bytes),
        Err(TxError::Decode(_))
    ));
    bytes.truncate(bytes.len() - 2);
    assert!(matches!(
        SignedTransaction::decode(&bytes),
        Err(TxError::Decode(_))
    ));
}

#[test]
fn signed_transaction_json_round_trip() {
    let signed = sample(3).sign(&key(0));
    let json = serde_json::to_string(&signed).expect("json");
    assert!(
        json.contains("\"amount\":\"500\""),
        "amounts are decimal strings: {json}"
    );
    let back: SignedTransaction = serde_json::from_str(&json).expect("parse");
    assert_eq!(back, signed);
}

#[test]
fn key_file_round_trip_with_owner_only_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("keys/validator.json");
    let key = SecretKey::generate().expect("random key");
    key.save(&path).expect("save");
    let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(
        SecretKey::load(&path).expect("load").address(),
        key.address()
    );
    // Never overwrites an existing key.
    assert!(key.save(&path).is_err());
    // Refuses a key file that others can read.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let err = SecretKey::load(&path)
        .expect_err("must be refused")
        .to_string();
    assert!(err.contains("chmod 600"), "{err}");
}
