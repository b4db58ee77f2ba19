//! The signature scheme is a trait so that the node plugs in secp256k1 and
//! tests plug in something cheap.

use std::fmt::Debug;
use std::hash::Hash;

/// How validators are named and how their signatures are checked.
///
/// The node's implementation signs `keccak256(sign_bytes)` with a recoverable
/// ECDSA signature and verifies by recovering the 20-byte address. The machine
/// never interprets addresses or signatures beyond equality.
pub trait SigningScheme {
    /// A validator's identity (the node: a 20-byte address).
    type Address: Clone + Eq + Ord + Hash + Debug;
    /// A signature (the node: 65 bytes, r || s || v).
    type Signature: Clone + Eq + Debug;

    /// Whether `signature` is `signer`'s signature over `sign_bytes`.
    /// Must not panic on any input: signatures come from peers.
    fn verify(
        &self,
        signer: &Self::Address,
        sign_bytes: &[u8],
        signature: &Self::Signature,
    ) -> bool;
}

/// The local validator's key. A node without one runs the machine as an
/// observer: it counts votes and decides but never signs.
pub trait Signer<S: SigningScheme> {
    /// The address the key signs as.
    fn address(&self) -> &S::Address;
    /// Signs `sign_bytes` (see [`crate::sign_bytes`]).
    fn sign(&self, sign_bytes: &[u8]) -> S::Signature;
}
