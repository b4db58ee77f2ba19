//! Hashes, addresses, keys and recoverable secp256k1 signatures.
//!
//! Everything here is Ethereum-compatible: keccak256, addresses are the last 20
//! bytes of keccak256 of the 64-byte uncompressed public key, shown with the
//! EIP-55 checksum, and signatures are 65 bytes `r | s | v` with low `s` and
//! `v` in {0, 1}.

use std::fmt;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::str::FromStr;

use borsh::{BorshDeserialize, BorshSerialize};
use k256::ecdsa::{RecoveryId, Signature as EcdsaSignature, SigningKey, VerifyingKey};
use k256::elliptic_curve::scalar::IsHigh;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha3::{Digest, Keccak256};

use crate::error::CryptoError;

/// keccak256 of `data`.
pub fn keccak256(data: &[u8]) -> Hash {
    Hash(Keccak256::digest(data).into())
}

/// keccak256 over several slices, as if they were concatenated.
pub fn keccak256_concat(parts: &[&[u8]]) -> Hash {
    let mut hasher = Keccak256::new();
    for part in parts {
        hasher.update(part);
    }
    Hash(hasher.finalize().into())
}

/// Parses `0x`-prefixed (or bare) hex into exactly `N` bytes.
fn parse_hex_array<const N: usize>(s: &str) -> Result<[u8; N], CryptoError> {
    let digits = s.strip_prefix("0x").unwrap_or(s);
    if digits.len() != 2 * N {
        return Err(CryptoError::HexLength {
            expected: N,
            found: digits.len() / 2,
        });
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(digits, &mut out).map_err(|e| CryptoError::Hex(e.to_string()))?;
    Ok(out)
}

/// A 32-byte keccak256 digest.
#[derive(
    Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize,
)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// The all-zero hash, used where there is no predecessor (the parent of block 1).
    pub const ZERO: Hash = Hash([0u8; 32]);

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{}", hex::encode(self.0))
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Hash {
    type Err = CryptoError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_hex_array(s).map(Hash)
    }
}

/// An account address: the last 20 bytes of keccak256 of the public key.
#[derive(
    Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize,
)]
pub struct Address(pub [u8; 20]);

impl Address {
    pub const ZERO: Address = Address([0u8; 20]);

    pub fn from_public_key(key: &PublicKey) -> Address {
        let point = key.0.to_sec1_point(false);
        // Skip the 0x04 SEC1 tag: the address hashes the 64-byte x | y.
        let digest = keccak256(&point.as_bytes()[1..]);
        let mut out = [0u8; 20];
        out.copy_from_slice(&digest.0[12..]);
        Address(out)
    }

    pub fn as_bytes(&self) -> &[u8; 20] {
        &self.0
    }

    /// The EIP-55 mixed-case checksummed form, `0x`-prefixed.
    pub fn to_checksum(&self) -> String {
        let lower = hex::encode(self.0);
        let digest = keccak256(lower.as_bytes());
        let mut out = String::with_capacity(42);
        out.push_str("0x");
        for (i, c) in lower.chars().enumerate() {
            let nibble = (digest.0[i / 2] >> (if i % 2 == 0 { 4 } else { 0 })) & 0x0f;
            if c.is_ascii_alphabetic() && nibble >= 8 {
                out.push(c.to_ascii_uppercase());
            } else {
                out.push(c);
            }
        }
        out
    }
}

impl FromStr for Address {
    type Err = CryptoError;

    /// Accepts all-lowercase or all-uppercase hex as given; a mixed-case string
    /// must carry a correct EIP-55 checksum.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let address = Address(parse_hex_array(s)?);
        let digits = s.strip_prefix("0x").unwrap_or(s);
        let has_lower = digits.chars().any(|c| c.is_ascii_lowercase());
        let has_upper = digits.chars().any(|c| c.is_ascii_uppercase());
        if has_lower && has_upper && address.to_checksum()[2..] != *digits {
            return Err(CryptoError::BadChecksum(s.to_string()));
        }
        Ok(address)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_checksum())
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Implements serde as a string through `Display` / `FromStr`.
macro_rules! serde_via_str {
    ($ty:ty) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str> as Deserialize>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
serde_via_str!(Hash);
serde_via_str!(Address);
serde_via_str!(PublicKey);
serde_via_str!(Signature);

/// A secp256k1 public key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// Parses a SEC1 encoding, compressed (33 bytes) or uncompressed (65 bytes).
    pub fn from_sec1(bytes: &[u8]) -> Result<Self, CryptoError> {
        VerifyingKey::from_sec1_bytes(bytes)
            .map(PublicKey)
            .map_err(|_| CryptoError::InvalidPublicKey)
    }

    /// The 65-byte uncompressed SEC1 encoding (`0x04 | x | y`).
    pub fn to_uncompressed(&self) -> [u8; 65] {
        let mut out = [0u8; 65];
        out.copy_from_slice(self.0.to_sec1_point(false).as_bytes());
        out
    }

    /// The 33-byte compressed SEC1 encoding.
    pub fn to_compressed(&self) -> [u8; 33] {
        let mut out = [0u8; 33];
        out.copy_from_slice(self.0.to_sec1_point(true).as_bytes());
        out
    }

    pub fn address(&self) -> Address {
        Address::from_public_key(self)
    }
}

impl fmt::Display for PublicKey {
    /// Compressed SEC1 hex, the form used in genesis files.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{}", hex::encode(self.to_compressed()))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for PublicKey {
    type Err = CryptoError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits = s.strip_prefix("0x").unwrap_or(s);
        let bytes = hex::decode(digits).map_err(|e| CryptoError::Hex(e.to_string()))?;
        PublicKey::from_sec1(&bytes)
    }
}

/// A 65-byte recoverable ECDSA signature: `r (32) | s (32, low) | v (0 or 1)`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize)]
pub struct Signature(pub [u8; 65]);

impl Signature {
    /// Signs a 32-byte prehash with RFC 6979 deterministic nonces.
    pub fn sign_prehash(key: &SecretKey, prehash: &Hash) -> Signature {
        let (sig, recid) = key.0.sign_prehash_recoverable(&prehash.0);
        // k256 already emits low-s for secp256k1; normalising again keeps the
        // invariant explicit and flips the recovery id if it ever did not.
        let (sig, recid) = match sig.normalize_s() {
            normalized if normalized != sig => (
                normalized,
                RecoveryId::new(!recid.is_y_odd(), recid.is_x_reduced()),
            ),
            _ => (sig, recid),
        };
        let mut out = [0u8; 65];
        out[..64].copy_from_slice(&sig.to_bytes());
        out[64] = recid.to_byte();
        Signature(out)
    }

    /// Recovers the signer's public key from a 32-byte prehash. Rejects high-s
    /// signatures (malleable), recovery ids other than 0 or 1, and `r`/`s` out of range.
    pub fn recover_prehash(&self, prehash: &Hash) -> Result<PublicKey, CryptoError> {
        let sig =
            EcdsaSignature::from_slice(&self.0[..64]).map_err(|_| CryptoError::InvalidSignature)?;
        if bool::from(sig.s().is_high()) {
            return Err(CryptoError::HighS);
        }
        let v = self.0[64];
        if v > 1 {
            return Err(CryptoError::InvalidRecoveryId(v));
        }
        let recid = RecoveryId::from_byte(v).ok_or(CryptoError::InvalidRecoveryId(v))?;
        VerifyingKey::recover_from_prehash(&prehash.0, &sig, recid)
            .map(PublicKey)
            .map_err(|_| CryptoError::InvalidSignature)
    }

    /// Recovers the signer's address from a 32-byte prehash.
    pub fn recover_address(&self, prehash: &Hash) -> Result<Address, CryptoError> {
        self.recover_prehash(prehash).map(|pk| pk.address())
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{}", hex::encode(self.0))
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Signature {
    type Err = CryptoError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_hex_array(s).map(Signature)
    }
}

/// A secp256k1 private key.
#[derive(Clone)]
pub struct SecretKey(SigningKey);

impl SecretKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Result<SecretKey, CryptoError> {
        loop {
            let mut bytes = [0u8; 32];
            getrandom::fill(&mut bytes).map_err(|e| CryptoError::Random(e.to_string()))?;
            // Fewer than 1 in 2^127 draws is zero or above the group order.
            if let Ok(key) = SecretKey::from_bytes(&bytes) {
                return Ok(key);
            }
        }
    }

    /// A key derived from a seed string by keccak256. Only for well-known dev and
    /// test accounts: anyone who knows the seed holds the key.
    pub fn from_seed(seed: &str) -> SecretKey {
        let mut counter = 0u32;
        loop {
            let digest = keccak256_concat(&[seed.as_bytes(), &counter.to_be_bytes()]);
            if let Ok(key) = SecretKey::from_bytes(&digest.0) {
                return key;
            }
            counter += 1;
        }
    }

    pub fn from_bytes(bytes: &[u8; 32]) -> Result<SecretKey, CryptoError> {
        SigningKey::from_slice(bytes)
            .map(SecretKey)
            .map_err(|_| CryptoError::InvalidSecretKey)
    }

    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes().into()
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey(*self.0.verifying_key())
    }

    pub fn address(&self) -> Address {
        self.public_key().address()
    }

    pub fn sign_prehash(&self, prehash: &Hash) -> Signature {
        Signature::sign_prehash(self, prehash)
    }

    /// Writes the key as a JSON key file readable only by its owner (0600).
    /// The file is created with those permissions, never widened afterwards.
    pub fn save(&self, path: &Path) -> Result<(), CryptoError> {
        let file = KeyFile {
            address: self.address(),
            public_key: self.public_key(),
            secret_key: format!("0x{}", hex::encode(self.to_bytes())),
        };
        let json = serde_json::to_string_pretty(&file)
            .map_err(|e| CryptoError::KeyFile(path.display().to_string(), e.to_string()))?;
        let io_err =
            |e: std::io::Error| CryptoError::KeyFile(path.display().to_string(), e.to_string());
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(io_err)?;
        }
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut f = options.open(path).map_err(io_err)?;
        f.write_all(json.as_bytes()).map_err(io_err)?;
        f.write_all(b"\n").map_err(io_err)?;
        f.sync_all().map_err(io_err)?;
        Ok(())
    }

    /// Reads a key file written by [`SecretKey::save`]. Refuses a file whose
    /// address does not match its key, and (on Unix) one that others can read.
    pub fn load(path: &Path) -> Result<SecretKey, CryptoError> {
        let err = |msg: String| CryptoError::KeyFile(path.display().to_string(), msg);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(path)
                .map_err(|e| err(e.to_string()))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(err(format!(
                    "permissions {:o} let other users read the key; run `chmod 600` on it",
                    mode & 0o777
                )));
            }
        }
        let text = fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let file: KeyFile = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
        let bytes = parse_hex_array::<32>(&file.secret_key).map_err(|e| err(e.to_string()))?;
        let key = SecretKey::from_bytes(&bytes).map_err(|e| err(e.to_string()))?;
        if key.address() != file.address {
            return Err(err(format!(
                "address {} does not match the key's address {}",
                file.address,
                key.address()
            )));
        }
        Ok(key)
    }
}

impl fmt::Debug for SecretKey {
    /// Never prints the key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({})", self.address())
    }
}

#[derive(Serialize, Deserialize)]
struct KeyFile {
    address: Address,
    public_key: PublicKey,
    secret_key: String,
}

impl AsRef<[u8]> for Hash {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}
