//! Transfers, their signatures, and the bounded decoder that peers and clients hit.

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

use crate::crypto::{Address, Hash, SecretKey, Signature, keccak256, keccak256_concat};
use crate::error::TxError;

/// Longest memo a transaction may carry, in bytes.
pub const MAX_MEMO_BYTES: usize = 256;

/// Largest encoded signed transaction accepted anywhere: the fixed fields,
/// a full memo and the signature, with nothing to spare.
pub const MAX_TX_BYTES: usize = 8 + 8 + 20 + 16 + 16 + 4 + MAX_MEMO_BYTES + 65;

/// Domain tag mixed into every transaction's sign bytes, so that a transaction
/// signature can never be replayed as a consensus vote or any other message.
pub const TX_SIGN_DOMAIN: &[u8] = b"tally/tx/v1";

/// An unsigned transfer of `amount` from the signer to `to`, paying `fee` to the
/// block proposer.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Transaction {
    pub chain_id: u64,
    pub nonce: u64,
    pub to: Address,
    #[serde(with = "crate::serde_u128")]
    pub amount: u128,
    #[serde(with = "crate::serde_u128")]
    pub fee: u128,
    #[serde(with = "hex_bytes")]
    pub memo: Vec<u8>,
}

impl Transaction {
    /// The 32-byte prehash that is signed: keccak256(domain tag || borsh(tx)).
    pub fn sign_hash(&self) -> Hash {
        let body = borsh::to_vec(self).expect("borsh encoding into a Vec cannot fail");
        keccak256_concat(&[TX_SIGN_DOMAIN, &body])
    }

    /// The total the sender must hold: amount plus fee (`None` on overflow).
    pub fn cost(&self) -> Option<u128> {
        self.amount.checked_add(self.fee)
    }

    pub fn sign(self, key: &SecretKey) -> SignedTransaction {
        let signature = key.sign_prehash(&self.sign_hash());
        SignedTransaction {
            tx: self,
            signature,
        }
    }
}

/// A transaction with its recoverable signature; the wire and storage form.
/// The sender is never sent: it is recovered from the signature.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct SignedTransaction {
    pub tx: Transaction,
    pub signature: Signature,
}

impl SignedTransaction {
    pub fn encode(&self) -> Vec<u8> {
        borsh::to_vec(self).expect("borsh encoding into a Vec cannot fail")
    }

    /// Decodes untrusted bytes: bounded size, no trailing bytes, bounded memo.
    /// Any input gives a value or an error, never a panic.
    pub fn decode(bytes: &[u8]) -> Result<SignedTransaction, TxError> {
        if bytes.len() > MAX_TX_BYTES {
            return Err(TxError::TooLarge {
                size: bytes.len(),
                max: MAX_TX_BYTES,
            });
        }
        let signed = borsh::from_slice::<SignedTransaction>(bytes)
            .map_err(|e| TxError::Decode(e.to_string()))?;
        signed.check_static()?;
        Ok(signed)
    }

    /// Checks that need no state: memo length.
    pub fn check_static(&self) -> Result<(), TxError> {
        if self.tx.memo.len() > MAX_MEMO_BYTES {
            return Err(TxError::MemoTooLong {
                len: self.tx.memo.len(),
                max: MAX_MEMO_BYTES,
            });
        }
        Ok(())
    }

    /// The transaction id: keccak256 of the signed encoding.
    pub fn hash(&self) -> Hash {
        keccak256(&self.encode())
    }

    /// Recovers the sender and wraps the transaction with everything later
    /// stages need, so the signature is checked exactly once per node.
    pub fn verify(self) -> Result<VerifiedTransaction, TxError> {
        self.check_static()?;
        let encoded = self.encode();
        let hash = keccak256(&encoded);
        let sender = self
            .signature
            .recover_address(&self.tx.sign_hash())
            .map_err(TxError::BadSignature)?;
        Ok(VerifiedTransaction {
            hash,
            sender,
            encoded_len: encoded.len(),
            signed: self,
        })
    }
}

/// A signed transaction whose signature has been checked, with its sender,
/// id and encoded size cached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedTransaction {
    signed: SignedTransaction,
    hash: Hash,
    sender: Address,
    encoded_len: usize,
}

impl VerifiedTransaction {
    /// Decodes and verifies untrusted bytes in one step.
    pub fn from_bytes(bytes: &[u8]) -> Result<VerifiedTransaction, TxError> {
        SignedTransaction::decode(bytes)?.verify()
    }

    pub fn signed(&self) -> &SignedTransaction {
        &self.signed
    }

    pub fn into_signed(self) -> SignedTransaction {
        self.signed
    }

    pub fn tx(&self) -> &Transaction {
        &self.signed.tx
    }

    pub fn hash(&self) -> Hash {
        self.hash
    }

    pub fn sender(&self) -> Address {
        self.sender
    }

    pub fn encoded_len(&self) -> usize {
        self.encoded_len
    }
}

/// Serde for byte strings as `0x` hex.
pub(crate) mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("0x{}", hex::encode(bytes)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = <std::borrow::Cow<'de, str> as Deserialize>::deserialize(d)?;
        hex::decode(s.strip_prefix("0x").unwrap_or(&s)).map_err(serde::de::Error::custom)
    }
}
