use libp2p::gossipsub::{IdentTopic, TopicHash};

/// The gossip topics of a chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Topic {
    /// Signed transactions on their way to the mempools.
    Txs,
    /// Proposals and votes.
    Consensus,
}

impl Topic {
    pub const ALL: [Topic; 2] = [Topic::Txs, Topic::Consensus];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Topic::Txs => "txs",
            Topic::Consensus => "consensus",
        }
    }

    /// The name on the wire, e.g. `/tally/7/1a2b3c4d/txs`. The chain id and a
    /// prefix of the genesis hash keep two chains (or a chain and its restart
    /// from a new genesis) from ever sharing a topic.
    pub fn wire_name(self, chain_id: u64, genesis_hash: &[u8; 32]) -> String {
        format!("{}/{}", chain_prefix(chain_id, genesis_hash), self.name())
    }

    pub(crate) fn ident(self, chain_id: u64, genesis_hash: &[u8; 32]) -> IdentTopic {
        IdentTopic::new(self.wire_name(chain_id, genesis_hash))
    }

    pub(crate) fn hash(self, chain_id: u64, genesis_hash: &[u8; 32]) -> TopicHash {
        self.ident(chain_id, genesis_hash).hash()
    }
}

/// `/tally/<chain id>/<first 4 bytes of the genesis hash in hex>`: the prefix
/// of every topic and protocol name of one chain.
pub(crate) fn chain_prefix(chain_id: u64, genesis_hash: &[u8; 32]) -> String {
    format!("/tally/{chain_id}/{}", hex::encode(&genesis_hash[..4]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_are_scoped_to_the_chain() {
        let g = [0xab; 32];
        assert_eq!(Topic::Txs.wire_name(7, &g), "/tally/7/abababab/txs");
        assert_ne!(Topic::Txs.wire_name(7, &g), Topic::Txs.wire_name(8, &g));
        assert_ne!(
            Topic::Txs.wire_name(7, &g),
            Topic::Txs.wire_name(7, &[0xac; 32])
        );
        assert_ne!(Topic::Txs.hash(7, &g), Topic::Consensus.hash(7, &g));
    }
}
