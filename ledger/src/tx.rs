//! Transfers, their signatures, and the bounded decoder that peers and clients hit.

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

use crate::crypto::{Address, Hash, SecretKey, Signature, keccak256, keccak256_concat};
use crate::error::TxError;
use crate::eth::{EthTransaction, MAX_ETH_TX_BYTES, TRANSFER_GAS, base_fee_per_gas};
use crate::governance::{GovernanceAction, MAX_NAME_BYTES, SetChange, SignedGovernanceTx};

/// Longest memo a transaction may carry, in bytes.
pub const MAX_MEMO_BYTES: usize = 256;

/// Largest encoded native transaction: the kind tag, the fixed fields, a
/// full memo and the signature, with nothing to spare.
pub const MAX_TX_BYTES: usize = 1 + 8 + 8 + 20 + 16 + 16 + 4 + MAX_MEMO_BYTES + 65;

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

    pub fn sign(self, key: &SecretKey) -> SignedTransaction {
        let signature = key.sign_prehash(&self.sign_hash());
        SignedTransaction::Native(NativeTransaction {
            tx: self,
            signature,
        })
    }
}

/// A native transfer with its recoverable signature.
/// The sender is never sent: it is recovered from the signature.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct NativeTransaction {
    pub tx: Transaction,
    pub signature: Signature,
}

/// Every kind of signed transaction, in the form blocks, gossip, the journal
/// and the RPC carry it. The encoding is versioned by its first byte (the
/// borsh variant tag): 0 is a native transfer, 1 an Ethereum envelope (as
/// its raw EIP-2718 bytes, length-prefixed), 2 a validator-set governance
/// transaction ([`crate::governance`]). New kinds get new tags, so every
/// kind already committed keeps decoding.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SignedTransaction {
    Native(NativeTransaction),
    Ethereum(EthTransaction),
    Governance(SignedGovernanceTx),
}

impl From<EthTransaction> for SignedTransaction {
    fn from(tx: EthTransaction) -> Self {
        SignedTransaction::Ethereum(tx)
    }
}

/// Largest encoded signed transaction of any kind.
pub const MAX_SIGNED_TX_BYTES: usize = if MAX_TX_BYTES > 1 + 4 + MAX_ETH_TX_BYTES {
    MAX_TX_BYTES
} else {
    1 + 4 + MAX_ETH_TX_BYTES
};

impl SignedTransaction {
    pub fn encode(&self) -> Vec<u8> {
        borsh::to_vec(self).expect("borsh encoding into a Vec cannot fail")
    }

    /// Decodes untrusted bytes: bounded size, no trailing bytes, and each
    /// kind's own static checks. Any input gives a value or an error, never
    /// a panic.
    pub fn decode(bytes: &[u8]) -> Result<SignedTransaction, TxError> {
        if bytes.len() > MAX_SIGNED_TX_BYTES {
            return Err(TxError::TooLarge {
                size: bytes.len(),
                max: MAX_SIGNED_TX_BYTES,
            });
        }
        let signed = borsh::from_slice::<SignedTransaction>(bytes).map_err(|e| {
            // The Ethereum decoder's own error reaches here as a borsh
            // custom error; keep its words.
            TxError::Decode(e.to_string())
        })?;
        signed.check_static()?;
        Ok(signed)
    }

    /// Checks that need no state: memo length, an Ethereum transfer's gas
    /// limit and fee caps.
    pub fn check_static(&self) -> Result<(), TxError> {
        match self {
            SignedTransaction::Native(native) => {
                if native.tx.memo.len() > MAX_MEMO_BYTES {
                    return Err(TxError::MemoTooLong {
                        len: native.tx.memo.len(),
                        max: MAX_MEMO_BYTES,
                    });
                }
            }
            SignedTransaction::Governance(gov) => {
                if let GovernanceAction::Propose {
                    change: SetChange::Add { member },
                    ..
                } = &gov.tx.action
                {
                    if member.name.len() > MAX_NAME_BYTES {
                        return Err(TxError::Governance(
                            crate::governance::GovernanceError::NameTooLong(member.name.len()),
                        ));
                    }
                }
            }
            SignedTransaction::Ethereum(eth) => {
                let t = eth.transfer();
                if t.gas_limit < TRANSFER_GAS {
                    return Err(TxError::IntrinsicGasTooLow {
                        gas: t.gas_limit,
                        min: TRANSFER_GAS,
                    });
                }
                if t.max_priority_fee_per_gas > t.max_fee_per_gas {
                    return Err(TxError::TipAboveFeeCap {
                        tip: t.max_priority_fee_per_gas,
                        cap: t.max_fee_per_gas,
                    });
                }
            }
        }
        Ok(())
    }

    /// The transaction id: keccak256 of the bytes a client submits, which
    /// are [`SignedTransaction::encode`] for a native transfer and the
    /// envelope for an Ethereum one (the hash every wallet computes).
    pub fn hash(&self) -> Hash {
        match self {
            SignedTransaction::Native(_) | SignedTransaction::Governance(_) => {
                keccak256(&self.encode())
            }
            SignedTransaction::Ethereum(eth) => eth.hash(),
        }
    }

    pub fn chain_id(&self) -> u64 {
        match self {
            SignedTransaction::Native(n) => n.tx.chain_id,
            SignedTransaction::Ethereum(e) => e.transfer().chain_id,
            SignedTransaction::Governance(g) => g.tx.chain_id,
        }
    }

    pub fn nonce(&self) -> u64 {
        match self {
            SignedTransaction::Native(n) => n.tx.nonce,
            SignedTransaction::Ethereum(e) => e.transfer().nonce,
            SignedTransaction::Governance(g) => g.tx.nonce,
        }
    }

    /// The recipient of a transfer; none for a governance transaction.
    pub fn to(&self) -> Option<Address> {
        match self {
            SignedTransaction::Native(n) => Some(n.tx.to),
            SignedTransaction::Ethereum(e) => Some(e.transfer().to),
            SignedTransaction::Governance(_) => None,
        }
    }

    /// The amount transferred (zero for a governance transaction).
    pub fn amount(&self) -> u128 {
        match self {
            SignedTransaction::Native(n) => n.tx.amount,
            SignedTransaction::Ethereum(e) => e.transfer().value,
            SignedTransaction::Governance(_) => 0,
        }
    }

    /// The fee this transaction pays on a chain whose minimum fee is
    /// `min_fee`, or why it pays too little. A native transfer pays its fee;
    /// an Ethereum one `TRANSFER_GAS * min(max_fee, base_fee + tip)`, with the
    /// base fee derived from `min_fee` ([`base_fee_per_gas`]).
    pub fn fee(&self, min_fee: u128) -> Result<u128, TxError> {
        match self {
            SignedTransaction::Native(NativeTransaction {
                tx: Transaction { fee, .. },
                ..
            })
            | SignedTransaction::Governance(SignedGovernanceTx {
                tx: crate::governance::GovernanceTx { fee, .. },
                ..
            }) => {
                if *fee < min_fee {
                    return Err(TxError::FeeTooLow {
                        min: min_fee,
                        got: *fee,
                    });
                }
                Ok(*fee)
            }
            SignedTransaction::Ethereum(e) => {
                let t = e.transfer();
                let base_fee = base_fee_per_gas(min_fee);
                if t.max_fee_per_gas < base_fee {
                    return Err(TxError::FeeCapBelowBaseFee {
                        max_fee_per_gas: t.max_fee_per_gas,
                        base_fee,
                    });
                }
                let price = t
                    .max_fee_per_gas
                    .min(base_fee.saturating_add(t.max_priority_fee_per_gas));
                price
                    .checked_mul(u128::from(TRANSFER_GAS))
                    .ok_or(TxError::CostOverflow)
            }
        }
    }

    /// The total the sender must hold: amount plus fee.
    pub fn cost(&self, min_fee: u128) -> Result<u128, TxError> {
        self.amount()
            .checked_add(self.fee(min_fee)?)
            .ok_or(TxError::CostOverflow)
    }

    pub fn as_native(&self) -> Option<&NativeTransaction> {
        match self {
            SignedTransaction::Native(n) => Some(n),
            _ => None,
        }
    }

    pub fn as_governance(&self) -> Option<&SignedGovernanceTx> {
        match self {
            SignedTransaction::Governance(g) => Some(g),
            _ => None,
        }
    }

    pub fn as_ethereum(&self) -> Option<&EthTransaction> {
        match self {
            SignedTransaction::Ethereum(e) => Some(e),
            _ => None,
        }
    }

    /// Recovers the sender and wraps the transaction with everything later
    /// stages need, so the signature is checked exactly once per node.
    pub fn verify(self) -> Result<VerifiedTransaction, TxError> {
        self.check_static()?;
        // A Tally-signed kind: its id and size are of the whole encoding.
        let signed_by = |signature: &Signature, prehash: Hash| {
            let encoded = self.encode();
            let sender = signature
                .recover_address(&prehash)
                .map_err(TxError::BadSignature)?;
            Ok::<_, TxError>((keccak256(&encoded), encoded.len(), sender))
        };
        let (hash, encoded_len, sender) = match &self {
            SignedTransaction::Native(native) => {
                signed_by(&native.signature, native.tx.sign_hash())?
            }
            SignedTransaction::Governance(gov) => signed_by(&gov.signature, gov.tx.sign_hash())?,
            SignedTransaction::Ethereum(eth) => {
                let sender = eth.recover_sender().map_err(TxError::BadSignature)?;
                (eth.hash(), eth.raw().len() + 5, sender)
            }
        };
        Ok(VerifiedTransaction {
            hash,
            sender,
            encoded_len,
            signed: self,
        })
    }
}

impl BorshSerialize for EthTransaction {
    fn serialize<W: borsh::io::Write>(&self, writer: &mut W) -> borsh::io::Result<()> {
        BorshSerialize::serialize(self.raw(), writer)
    }
}

impl BorshDeserialize for EthTransaction {
    fn deserialize_reader<R: borsh::io::Read>(reader: &mut R) -> borsh::io::Result<Self> {
        let len = u32::deserialize_reader(reader)? as usize;
        if len > MAX_ETH_TX_BYTES {
            return Err(borsh::io::Error::new(
                borsh::io::ErrorKind::InvalidData,
                TxError::TooLarge {
                    size: len,
                    max: MAX_ETH_TX_BYTES,
                }
                .to_string(),
            ));
        }
        let mut raw = vec![0u8; len];
        reader.read_exact(&mut raw)?;
        EthTransaction::decode(&raw)
            .map_err(|e| borsh::io::Error::new(borsh::io::ErrorKind::InvalidData, e.to_string()))
    }
}

/// The JSON form of an Ethereum transaction: its envelope, plus the decoded
/// fields for people reading it (ignored on input).
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EthJson {
    #[serde(with = "hex_bytes")]
    raw: Vec<u8>,
    #[serde(default, skip_deserializing)]
    r#type: u8,
    #[serde(default, skip_deserializing)]
    chain_id: u64,
    #[serde(default, skip_deserializing)]
    nonce: u64,
    #[serde(default, skip_deserializing)]
    to: Address,
    #[serde(default, skip_deserializing, with = "crate::serde_u128")]
    value: u128,
    #[serde(default, skip_deserializing)]
    gas: u64,
    #[serde(default, skip_deserializing, with = "crate::serde_u128")]
    max_fee_per_gas: u128,
    #[serde(default, skip_deserializing, with = "crate::serde_u128")]
    max_priority_fee_per_gas: u128,
}

impl Serialize for EthTransaction {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let t = self.transfer();
        EthJson {
            raw: self.raw().to_vec(),
            r#type: t.kind.type_byte(),
            chain_id: t.chain_id,
            nonce: t.nonce,
            to: t.to,
            value: t.value,
            gas: t.gas_limit,
            max_fee_per_gas: t.max_fee_per_gas,
            max_priority_fee_per_gas: t.max_priority_fee_per_gas,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for EthTransaction {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let json = EthJson::deserialize(d)?;
        EthTransaction::decode(&json.raw).map_err(serde::de::Error::custom)
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

    pub fn hash(&self) -> Hash {
        self.hash
    }

    pub fn sender(&self) -> Address {
        self.sender
    }

    pub fn nonce(&self) -> u64 {
        self.signed.nonce()
    }

    /// The size of the transaction's encoding in a block.
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
