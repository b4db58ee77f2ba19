//! The proposed blocks the driver holds for the current and the next height.
//!
//! Only a round's proposer can fill its slot, and rounds are bounded by the
//! gate, so one Byzantine validator cannot crowd honest proposals out: each
//! (height, round) holds at most [`PER_ROUND`] distinct blocks (two: an
//! equivocating proposer's both values, so a decision on either can be
//! completed), and past the total bound the block least likely to be needed
//! goes first. Blocks the lock, the valid value or the current round refer
//! to are never evicted. A body is inserted only after it was checked
//! against its header, so a later copy never replaces a checked one.

use tally_ledger::{Block, Hash};

/// Distinct blocks kept per (height, round).
pub const PER_ROUND: usize = tally_consensus::MAX_PROPOSALS_PER_ROUND;

#[derive(Debug)]
struct Entry {
    height: u64,
    round: u32,
    value: Hash,
    block: Block,
}

#[derive(Debug)]
pub struct BlockCache {
    entries: Vec<Entry>,
    max: usize,
}

/// Where the machine is, and which values it must keep.
#[derive(Clone, Copy, Debug)]
pub struct Position<'a> {
    pub height: u64,
    pub round: u32,
    pub keep: &'a [Hash],
}

impl BlockCache {
    pub fn new(max: usize) -> Self {
        Self {
            entries: Vec::new(),
            max: max.max(PER_ROUND + 1),
        }
    }

    pub fn get(&self, value: &Hash) -> Option<&Block> {
        self.entries
            .iter()
            .find(|e| &e.value == value)
            .map(|e| &e.block)
    }

    pub fn contains(&self, value: &Hash) -> bool {
        self.get(value).is_some()
    }

    /// Whether a block for (`height`, `round`) would be kept: the slot has
    /// room, or holds it already.
    pub fn has_room(&self, height: u64, round: u32, value: &Hash) -> bool {
        let mut in_slot = 0;
        for e in &self.entries {
            if e.height == height && e.round == round {
                if &e.value == value {
                    return true;
                }
                in_slot += 1;
            }
        }
        in_slot < PER_ROUND
    }

    /// Holds `block` (hash `value`) for (`height`, `round`) unless its slot
    /// is full; then evicts down to the bound. Returns whether it is held.
    pub fn insert(&mut self, round: u32, value: Hash, block: Block, at: Position<'_>) -> bool {
        let height = block.height();
        if self.contains(&value) {
            return true;
        }
        if !self.has_room(height, round, &value) {
            return false;
        }
        self.entries.push(Entry {
            height,
            round,
            value,
            block,
        });
        while self.entries.len() > self.max {
            let Some(worst) = self
                .entries
                .iter()
                .enumerate()
                .filter(|(_, e)| !protected(e, at))
                .max_by_key(|(_, e)| distance(e, at))
                .map(|(i, _)| i)
            else {
                break;
            };
            self.entries.swap_remove(worst);
        }
        self.contains(&value)
    }

    /// Forgets blocks below `height`.
    pub fn retain_from(&mut self, height: u64) {
        self.entries.retain(|e| e.height >= height);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

fn protected(e: &Entry, at: Position<'_>) -> bool {
    at.keep.contains(&e.value) || (e.height == at.height && e.round == at.round)
}

/// How far a block is from being needed: rounds away from the current one
/// (past rounds count a little further than future ones); next-height
/// blocks as if their round followed the current round.
fn distance(e: &Entry, at: Position<'_>) -> (u64, bool) {
    if e.height > at.height {
        return (u64::from(e.round) + 1, false);
    }
    let past = e.round < at.round;
    (u64::from(e.round.abs_diff(at.round)), past)
}

#[cfg(test)]
mod tests {
    use tally_ledger::{Address, Header};

    use super::*;

    fn block(height: u64, tag: u8) -> (Hash, Block) {
        let block = Block {
            header: Header {
                chain_id: 1,
                height,
                time: u64::from(tag),
                prev_hash: Hash::ZERO,
                tx_root: Hash::ZERO,
                state_root: Hash::ZERO,
                proposer: Address([tag; 20]),
                validators_hash: Hash::ZERO,
                next_validators_hash: Hash::ZERO,
                last_commit_hash: Hash::ZERO,
            },
            txs: Vec::new(),
            last_commit: None,
        };
        (block.hash(), block)
    }

    #[test]
    fn a_slot_holds_two_values_and_the_bound_evicts_the_farthest_round() {
        let mut cache = BlockCache::new(4);
        let at = Position {
            height: 5,
            round: 2,
            keep: &[],
        };
        let (a, ba) = block(5, 1);
        let (b, bb) = block(5, 2);
        let (c, bc) = block(5, 3);
        assert!(cache.insert(2, a, ba, at));
        assert!(cache.insert(2, b, bb, at));
        assert!(!cache.insert(2, c, bc, at), "a third value for one slot");
        let (old, bold) = block(5, 4);
        let (next, bnext) = block(6, 5);
        let (future, bfuture) = block(5, 6);
        assert!(cache.insert(0, old, bold, at));
        assert!(cache.insert(0, next, bnext, at));
        assert_eq!(cache.len(), 4);
        // Round 2 is current (protected); round 0 is the farthest.
        assert!(cache.insert(3, future, bfuture, at));
        assert!(!cache.contains(&old) && cache.contains(&next) && cache.contains(&future));
        cache.retain_from(6);
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn locked_and_valid_blocks_are_never_evicted() {
        let mut cache = BlockCache::new(3);
        let (locked, bl) = block(5, 1);
        let keep = [locked];
        let at = Position {
            height: 5,
            round: 9,
            keep: &keep,
        };
        assert!(cache.insert(0, locked, bl, at));
        for (i, round) in (9..13).enumerate() {
            let (v, b) = block(5, 10 + i as u8);
            cache.insert(round, v, b, at);
        }
        assert!(cache.contains(&locked));
        assert_eq!(cache.len(), 3);
    }
}
