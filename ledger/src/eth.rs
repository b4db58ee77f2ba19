//! Signed Ethereum transactions that carry a plain value transfer.
//!
//! A wallet signs an EIP-2718 envelope: legacy with EIP-155 replay protection,
//! EIP-2930 (type 1) or EIP-1559 (type 2). Tally keeps those exact bytes, so the
//! transaction id is what the wallet computed (keccak256 of the envelope), and
//! reads from them only what a transfer needs. The decoder is strict: canonical
//! RLP, the exact field count, no trailing bytes, `to` set, no data, no access
//! list entries, low-s signatures. It runs on untrusted bytes from clients and
//! peers, so it is bounded before it parses anything and never panics.
//!
//! Fees: a transfer uses [`TRANSFER_GAS`] gas whatever its gas limit, and pays
//! `TRANSFER_GAS * effective_gas_price`, where the effective price is
//! `min(max_fee_per_gas, base_fee + max_priority_fee_per_gas)` (a legacy or
//! type 1 price is both caps). The base fee is a chain constant derived from
//! the genesis minimum fee ([`base_fee_per_gas`]).

use alloy_rlp::{Encodable, Header};

use crate::crypto::{Address, Hash, SecretKey, Signature, keccak256};
use crate::error::{CryptoError, TxError};

/// Gas a value transfer uses, as on Ethereum.
pub const TRANSFER_GAS: u64 = 21_000;

/// Largest envelope accepted. A transfer takes about 110 bytes; anything much
/// longer carries data or an access list and is refused anyway, so the bound
/// is checked before parsing.
pub const MAX_ETH_TX_BYTES: usize = 512;

/// The base fee per gas of a chain whose genesis minimum fee is `min_fee`: the
/// smallest price at which a transfer pays at least the minimum fee, and never
/// zero (libraries read a zero base fee as a chain without EIP-1559).
pub fn base_fee_per_gas(min_fee: u128) -> u128 {
    min_fee.div_ceil(u128::from(TRANSFER_GAS)).max(1)
}

/// The envelope kinds accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EthTxKind {
    /// Untyped, with the chain id folded into `v` (EIP-155).
    Legacy,
    /// EIP-2930, type 1.
    AccessList,
    /// EIP-1559, type 2.
    DynamicFee,
}

impl EthTxKind {
    /// The EIP-2718 type number (0 for legacy).
    pub fn type_byte(self) -> u8 {
        match self {
            EthTxKind::Legacy => 0,
            EthTxKind::AccessList => 1,
            EthTxKind::DynamicFee => 2,
        }
    }
}

/// The fields of a transfer as a wallet fills them in, before signing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EthTransfer {
    pub kind: EthTxKind,
    pub chain_id: u64,
    pub nonce: u64,
    /// The tip cap; for legacy and type 1, the gas price.
    pub max_priority_fee_per_gas: u128,
    /// The fee cap; for legacy and type 1, the gas price.
    pub max_fee_per_gas: u128,
    pub gas_limit: u64,
    pub to: Address,
    pub value: u128,
}

impl EthTransfer {
    /// The gas price of a legacy or type 1 transaction.
    fn gas_price(&self) -> u128 {
        self.max_fee_per_gas
    }

    /// The RLP payload of the fields that are signed, in the kind's order
    /// (without the EIP-155 suffix of a legacy transaction).
    fn fields(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(96);
        let empty: &[u8] = &[];
        match self.kind {
            EthTxKind::Legacy => {
                self.nonce.encode(&mut out);
                self.gas_price().encode(&mut out);
            }
            EthTxKind::AccessList => {
                self.chain_id.encode(&mut out);
                self.nonce.encode(&mut out);
                self.gas_price().encode(&mut out);
            }
            EthTxKind::DynamicFee => {
                self.chain_id.encode(&mut out);
                self.nonce.encode(&mut out);
                self.max_priority_fee_per_gas.encode(&mut out);
                self.max_fee_per_gas.encode(&mut out);
            }
        }
        self.gas_limit.encode(&mut out);
        self.to.0.encode(&mut out);
        self.value.encode(&mut out);
        empty.encode(&mut out); // data
        if self.kind != EthTxKind::Legacy {
            Header {
                list: true,
                payload_length: 0,
            }
            .encode(&mut out); // access list
        }
        out
    }

    /// The prehash a wallet signs.
    pub fn sign_hash(&self) -> Hash {
        let mut fields = self.fields();
        if self.kind == EthTxKind::Legacy {
            self.chain_id.encode(&mut fields);
            0u8.encode(&mut fields);
            0u8.encode(&mut fields);
        }
        keccak256(&envelope(self.kind, &fields))
    }

    /// Signs as a wallet would.
    pub fn sign(&self, key: &SecretKey) -> EthTransaction {
        let sign_hash = self.sign_hash();
        let signature = key.sign_prehash(&sign_hash);
        let raw = self.encode_signed(&signature);
        EthTransaction {
            hash: keccak256(&raw),
            raw,
            transfer: self.clone(),
            signature,
            sign_hash,
        }
    }

    /// The envelope of this transfer with `signature` (`r | s | y_parity`).
    /// Decoding is canonical: a decoded transaction's transfer and signature
    /// encode back to exactly its bytes.
    pub fn encode_signed(&self, signature: &Signature) -> Vec<u8> {
        let parity = signature.0[64];
        let mut fields = self.fields();
        match self.kind {
            EthTxKind::Legacy => self
                .chain_id
                .saturating_mul(2)
                .saturating_add(35 + u64::from(parity))
                .encode(&mut fields),
            _ => parity.encode(&mut fields),
        }
        for scalar in [&signature.0[..32], &signature.0[32..64]] {
            let start = scalar.iter().position(|b| *b != 0).unwrap_or(32);
            scalar[start..].encode(&mut fields);
        }
        envelope(self.kind, &fields)
    }
}

/// `type || rlp_list(fields)`, with no type byte for legacy.
fn envelope(kind: EthTxKind, fields: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(fields.len() + 4);
    if kind != EthTxKind::Legacy {
        out.push(kind.type_byte());
    }
    Header {
        list: true,
        payload_length: fields.len(),
    }
    .encode(&mut out);
    out.extend_from_slice(fields);
    out
}

/// A decoded, well-formed signed Ethereum transfer. Its sender is recovered
/// by [`EthTransaction::recover_sender`], once per node, like a native one's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EthTransaction {
    raw: Vec<u8>,
    hash: Hash,
    transfer: EthTransfer,
    /// `r | s | y_parity`, the form the node's recovery takes.
    signature: Signature,
    sign_hash: Hash,
}

impl EthTransaction {
    /// The envelope exactly as signed.
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// keccak256 of the envelope: the id every Ethereum tool computes.
    pub fn hash(&self) -> Hash {
        self.hash
    }

    pub fn transfer(&self) -> &EthTransfer {
        &self.transfer
    }

    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// The prehash the signature covers.
    pub fn sign_hash(&self) -> Hash {
        self.sign_hash
    }

    pub fn recover_sender(&self) -> Result<Address, CryptoError> {
        self.signature.recover_address(&self.sign_hash)
    }

    /// Decodes untrusted bytes. Every way to be malformed is an error.
    pub fn decode(raw: &[u8]) -> Result<EthTransaction, TxError> {
        if raw.len() > MAX_ETH_TX_BYTES {
            return Err(TxError::TooLarge {
                size: raw.len(),
                max: MAX_ETH_TX_BYTES,
            });
        }
        let (kind, list) = match raw.first() {
            None => return Err(TxError::Decode("empty transaction".into())),
            Some(1) => (EthTxKind::AccessList, &raw[1..]),
            Some(2) => (EthTxKind::DynamicFee, &raw[1..]),
            Some(b) if *b >= 0xc0 => (EthTxKind::Legacy, raw),
            Some(b) => return Err(TxError::EthTypeNotSupported(*b)),
        };
        let mut buf = list;
        let payload = Header::decode_bytes(&mut buf, true).map_err(rlp_error)?;
        if !buf.is_empty() {
            return Err(TxError::Decode(format!(
                "{} bytes after the transaction",
                buf.len()
            )));
        }
        let mut fields = Fields { buf: payload, kind };
        let chain_id = match kind {
            EthTxKind::Legacy => 0,
            _ => fields.next("chainId")?,
        };
        let nonce: u64 = fields.next("nonce")?;
        let (tip, cap) = match kind {
            EthTxKind::DynamicFee => (
                fields.next("maxPriorityFeePerGas")?,
                fields.next("maxFeePerGas")?,
            ),
            _ => {
                let price: u128 = fields.next("gasPrice")?;
                (price, price)
            }
        };
        let gas_limit: u64 = fields.next("gas")?;
        let to = fields.bytes("to")?;
        let to = match to.len() {
            20 => Address(to.try_into().expect("length checked")),
            0 => return Err(TxError::EthContractCreation),
            n => {
                return Err(TxError::Decode(format!(
                    "`to` is {n} bytes, an address is 20"
                )));
            }
        };
        let value: u128 = fields.next("value")?;
        if !fields.bytes("data")?.is_empty() {
            return Err(TxError::EthHasData);
        }
        if kind != EthTxKind::Legacy {
            let list = Header::decode_bytes(&mut fields.buf, true)
                .map_err(|e| field_error("accessList", e))?;
            if !list.is_empty() {
                return Err(TxError::EthHasAccessList);
            }
        }
        // Everything so far is what was signed.
        let signed_fields = &payload[..payload.len() - fields.buf.len()];
        let (chain_id, parity) = match kind {
            EthTxKind::Legacy => {
                let v: u64 = fields.next("v")?;
                if v < 35 {
                    return Err(TxError::EthNotReplayProtected);
                }
                ((v - 35) / 2, ((v - 35) % 2) as u8)
            }
            _ => {
                let parity: u8 = fields.next("yParity")?;
                if parity > 1 {
                    return Err(TxError::Decode(format!(
                        "yParity {parity}, expected 0 or 1"
                    )));
                }
                (chain_id, parity)
            }
        };
        let mut signature = [0u8; 65];
        for (name, slot) in [("r", 0..32), ("s", 32..64)] {
            let scalar = fields.bytes(name)?;
            if scalar.len() > 32 || scalar.first() == Some(&0) {
                return Err(TxError::Decode(format!(
                    "`{name}` is not a canonical 32-byte integer"
                )));
            }
            signature[slot.end - scalar.len()..slot.end].copy_from_slice(scalar);
        }
        signature[64] = parity;
        if !fields.buf.is_empty() {
            return Err(TxError::Decode(format!(
                "more fields than a {kind:?} transaction has"
            )));
        }
        let sign_hash = match kind {
            EthTxKind::Legacy => {
                let mut unsigned = signed_fields.to_vec();
                chain_id.encode(&mut unsigned);
                0u8.encode(&mut unsigned);
                0u8.encode(&mut unsigned);
                keccak256(&envelope(kind, &unsigned))
            }
            _ => keccak256(&envelope(kind, signed_fields)),
        };
        Ok(EthTransaction {
            hash: keccak256(raw),
            raw: raw.to_vec(),
            transfer: EthTransfer {
                kind,
                chain_id,
                nonce,
                max_priority_fee_per_gas: tip,
                max_fee_per_gas: cap,
                gas_limit,
                to,
                value,
            },
            signature: Signature(signature),
            sign_hash,
        })
    }
}

/// A cursor over a transaction's list of fields.
struct Fields<'a> {
    buf: &'a [u8],
    kind: EthTxKind,
}

impl<'a> Fields<'a> {
    fn check_more(&self, name: &str) -> Result<(), TxError> {
        if self.buf.is_empty() {
            return Err(TxError::Decode(format!(
                "a {:?} transaction needs `{name}`: too few fields",
                self.kind
            )));
        }
        Ok(())
    }

    fn next<T: alloy_rlp::Decodable>(&mut self, name: &str) -> Result<T, TxError> {
        self.check_more(name)?;
        T::decode(&mut self.buf).map_err(|e| field_error(name, e))
    }

    fn bytes(&mut self, name: &str) -> Result<&'a [u8], TxError> {
        self.check_more(name)?;
        Header::decode_bytes(&mut self.buf, false).map_err(|e| field_error(name, e))
    }
}

fn rlp_error(e: alloy_rlp::Error) -> TxError {
    TxError::Decode(format!("bad RLP: {e}"))
}

fn field_error(name: &str, e: alloy_rlp::Error) -> TxError {
    match e {
        alloy_rlp::Error::Overflow => {
            TxError::Decode(format!("`{name}` is larger than Tally accepts"))
        }
        e => TxError::Decode(format!("bad RLP in `{name}`: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transfer(kind: EthTxKind) -> EthTransfer {
        EthTransfer {
            kind,
            chain_id: 4242,
            nonce: 7,
            max_priority_fee_per_gas: 2,
            max_fee_per_gas: 3_000_000_000,
            gas_limit: 31_500,
            to: Address([0x11; 20]),
            value: 10u128.pow(18),
        }
    }

    #[test]
    fn signed_transfers_decode_to_what_was_signed() {
        let key = SecretKey::from_seed("eth");
        for kind in [
            EthTxKind::Legacy,
            EthTxKind::AccessList,
            EthTxKind::DynamicFee,
        ] {
            let mut t = transfer(kind);
            if kind != EthTxKind::DynamicFee {
                t.max_priority_fee_per_gas = t.max_fee_per_gas;
            }
            let signed = t.sign(&key);
            let decoded = EthTransaction::decode(signed.raw()).expect("valid");
            assert_eq!(decoded, signed);
            assert_eq!(decoded.recover_sender().expect("valid"), key.address());
        }
    }

    #[test]
    fn truncations_and_extensions_are_errors() {
        let raw = transfer(EthTxKind::DynamicFee)
            .sign(&SecretKey::from_seed("eth"))
            .raw
            .clone();
        for len in 0..raw.len() {
            assert!(EthTransaction::decode(&raw[..len]).is_err(), "{len}");
        }
        let mut longer = raw.clone();
        longer.push(0x80);
        assert!(EthTransaction::decode(&longer).is_err());
    }
}
