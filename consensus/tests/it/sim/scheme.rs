//! A cheap deterministic signature scheme for tests: a validator's signature
//! is a keyed SipHash of its address and the sign bytes. Anyone could compute
//! it, but no test actor signs for another validator, so within the tests it
//! behaves like a real scheme (and a flipped bit never verifies).

use std::hash::{DefaultHasher, Hasher};

use tally_consensus::{
    Action, CommitCertificate, Event, Evidence, Message, SignedProposal, SignedVote, Signer,
    SigningScheme,
};

/// Validator address in tests.
pub type Addr = u32;
/// Signature in tests.
pub type Sig = u64;

/// An 8-byte value id (a stand-in for a block hash).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Val(pub [u8; 8]);

impl Val {
    pub fn new(n: u64) -> Self {
        Self(n.to_be_bytes())
    }

    pub fn number(&self) -> u64 {
        u64::from_be_bytes(self.0)
    }
}

impl std::fmt::Debug for Val {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "v{}", self.number())
    }
}

impl AsRef<[u8]> for Val {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// The test signature scheme.
#[derive(Debug, Clone, Copy, Default)]
pub struct TestScheme;

pub fn mac(signer: Addr, bytes: &[u8]) -> Sig {
    let mut h = DefaultHasher::new();
    h.write(b"tally-test-key");
    h.write_u32(signer);
    h.write(bytes);
    h.finish()
}

impl SigningScheme for TestScheme {
    type Address = Addr;
    type Signature = Sig;

    fn verify(&self, signer: &Addr, sign_bytes: &[u8], signature: &Sig) -> bool {
        mac(*signer, sign_bytes) == *signature
    }
}

/// The key of one validator.
#[derive(Debug, Clone)]
pub struct TestSigner(pub Addr);

impl Signer<TestScheme> for TestSigner {
    fn address(&self) -> &Addr {
        &self.0
    }

    fn sign(&self, sign_bytes: &[u8]) -> Sig {
        mac(self.0, sign_bytes)
    }
}

pub type TEvent = Event<Addr, Val, Sig>;
pub type TAction = Action<Addr, Val, Sig>;
pub type TMessage = Message<Addr, Val, Sig>;
pub type TVote = SignedVote<Addr, Val, Sig>;
pub type TProposal = SignedProposal<Addr, Val, Sig>;
pub type TCert = CommitCertificate<Addr, Val, Sig>;
pub type TEvidence = Evidence<Addr, Val, Sig>;
