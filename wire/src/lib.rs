//! What nodes send each other: gossip payloads and sync requests, borsh
//! encoded. Decoding never trusts the sender: sizes are bounded by the
//! network's message limits and every field is checked by its consumer.

use borsh::{BorshDeserialize, BorshSerialize};
use tally_consensus::{SignedProposal, SignedVote};
use tally_ledger::snapshot::{SnapshotOffer, StateChunk};
use tally_ledger::{Address, Block, Commit, Hash, Signature};

pub type Proposal = SignedProposal<Address, Hash, Signature>;
pub type Vote = SignedVote<Address, Hash, Signature>;

/// A consensus message on the consensus topic.
#[derive(Clone, Debug, BorshSerialize, BorshDeserialize)]
pub struct ConsensusEnvelope {
    /// When it was sent (ms). Gossip drops identical payloads, so a message
    /// re-sent to help a stalled height must differ in bytes.
    pub sent_ms: u64,
    pub message: ConsensusMessage,
}

#[derive(Clone, Debug, BorshSerialize, BorshDeserialize)]
pub enum ConsensusMessage {
    /// A proposal and the block it proposes (the block's hash is the value).
    Proposal {
        proposal: Proposal,
        block: Block,
    },
    Vote(Vote),
}

/// Transactions on the txs topic: each the encoding of a signed transaction.
#[derive(Clone, Debug, Default, BorshSerialize, BorshDeserialize)]
pub struct TxBatch {
    pub txs: Vec<Vec<u8>>,
}

/// Requests of the sync protocol.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum SyncRequest {
    /// The peer's latest committed height.
    Status,
    /// Committed blocks `from..from + count` with their certificates.
    Blocks { from: u64, count: u32 },
    /// The snapshots the peer offers.
    Snapshots,
    /// Chunk `index` of `chunks` of the state at `height`, whose root is
    /// `state_root`.
    Chunk {
        height: u64,
        state_root: Hash,
        chunks: u32,
        index: u32,
    },
}

#[derive(Clone, Debug, BorshSerialize, BorshDeserialize)]
pub enum SyncResponse {
    Status {
        height: u64,
        hash: Hash,
    },
    /// In height order, possibly fewer than asked (response size limit, or
    /// the peer's tip), each with the certificate that decided it.
    Blocks(Vec<(Block, Commit)>),
    /// Newest first, each with its certified header.
    Snapshots(Vec<SnapshotOffer>),
    Chunk(StateChunk),
    /// The request could not be served.
    Error(String),
}

pub fn encode<T: BorshSerialize>(value: &T) -> Vec<u8> {
    borsh::to_vec(value).expect("borsh encoding into a Vec cannot fail")
}

pub fn decode<T: BorshDeserialize>(bytes: &[u8]) -> Result<T, borsh::io::Error> {
    borsh::from_slice(bytes)
}
