//! The journal of locally accepted transactions: what a crash or a bad disk
//! can do to it, and that reading keeps everything up to the damage.

use proptest::prelude::*;
use tally_ledger::{DropReason, Hash, Journal, SignedTransaction, keccak256};

use crate::common::{key, transfer};

fn txs(n: usize) -> Vec<SignedTransaction> {
    let to = key(9).address();
    (0..n)
        .map(|i| transfer(&key(i % 3), (i / 3) as u64, to, 1 + i as u128).into_signed())
        .collect()
}

/// Writes `txs` one by one with a drop (of another transaction) after every
/// third, the way the node appends; returns the file's bytes.
fn write_sample(path: &std::path::Path, txs: &[SignedTransaction]) -> Vec<u8> {
    let mut journal = Journal::create(path, &[], &[]).expect("create");
    for (i, tx) in txs.iter().enumerate() {
        journal.accepted(tx).expect("append");
        if i % 3 == 2 {
            journal
                .dropped(&other(i), DropReason::Expired)
                .expect("append");
        }
    }
    journal.flush().expect("flush");
    std::fs::read(path).expect("read back")
}

fn other(i: usize) -> Hash {
    keccak256(&i.to_le_bytes())
}

#[test]
fn entries_survive_reopening_and_a_missing_file_is_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("journal");
    let empty = Journal::read(&path).expect("read");
    assert!(empty.txs.is_empty() && empty.stopped.is_none());

    let sample = txs(10);
    write_sample(&path, &sample);
    let replay = Journal::read(&path).expect("read");
    assert_eq!(replay.txs, sample);
    assert_eq!(replay.entries, 13);
    assert_eq!(replay.ignored_bytes, 0);
    assert!(replay.stopped.is_none());
    let dropped: Vec<Hash> = replay.dropped.iter().map(|(h, _)| *h).collect();
    assert_eq!(
        dropped,
        [2, 5, 8].map(other).to_vec(),
        "each drop once, in order"
    );
    assert!(
        replay
            .dropped
            .iter()
            .all(|(_, r)| *r == DropReason::Expired)
    );
}

#[test]
fn the_last_entry_of_a_transaction_decides() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("journal");
    let sample = txs(3);
    let mut journal = Journal::create(&path, &sample, &[]).expect("create");
    journal.accepted(&sample[0]).expect("append");
    // Dropped twice: the latest reason.
    journal
        .dropped(&sample[1].hash(), DropReason::Evicted)
        .expect("append");
    journal
        .dropped(&sample[1].hash(), DropReason::NonceUsed)
        .expect("append");
    // Dropped, then submitted again: pending.
    journal
        .dropped(&sample[2].hash(), DropReason::Expired)
        .expect("append");
    journal.accepted(&sample[2]).expect("append");
    journal.flush().expect("flush");
    let replay = Journal::read(&path).expect("read");
    assert_eq!(replay.txs, vec![sample[0].clone(), sample[2].clone()]);
    assert_eq!(
        replay.dropped,
        vec![(sample[1].hash(), DropReason::NonceUsed)]
    );
}

#[test]
fn a_torn_journal_is_read_up_to_its_last_whole_entry_at_every_cut() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("journal");
    let sample = txs(6);
    let full = write_sample(&path, &sample);
    let whole = Journal::read(&path).expect("read");
    let mut last_entries = 0;
    for cut in 0..full.len() {
        std::fs::write(&path, &full[..cut]).expect("write");
        let replay = Journal::read(&path).expect("a torn journal reads");
        assert!(
            replay.entries >= last_entries,
            "a longer prefix never reads less"
        );
        last_entries = replay.entries;
        assert!(replay.entries < whole.entries, "a cut loses the torn entry");
        assert_eq!(
            replay.txs[..],
            sample[..replay.txs.len()],
            "a prefix of what was written"
        );
        assert_eq!(
            replay.stopped.is_some(),
            replay.ignored_bytes > 0,
            "cut {cut}: torn bytes are counted and said"
        );
    }
    assert_eq!(last_entries, whole.entries - 1);
}

#[test]
fn after_a_torn_tail_the_rewritten_journal_takes_new_entries() {
    // The node's start: read, rewrite what was read (dropping the torn
    // tail), then append. Appending after a torn tail would hide every new
    // entry behind the damage.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("journal");
    let sample = txs(5);
    let full = write_sample(&path, &sample[..4]);
    std::fs::write(&path, &full[..full.len() - 7]).expect("tear");
    let replay = Journal::read(&path).expect("read");
    assert_eq!(
        replay.txs,
        sample[..3],
        "the torn entry was the fourth transfer"
    );
    assert_eq!(replay.dropped.len(), 1);
    let mut journal = Journal::create(&path, &replay.txs, &replay.dropped).expect("rewrite");
    journal.accepted(&sample[4]).expect("append");
    journal.flush().expect("flush");
    let again = Journal::read(&path).expect("read");
    let expected: Vec<_> = sample[..3].iter().chain(&sample[4..]).cloned().collect();
    assert_eq!(again.txs, expected);
    assert_eq!(again.dropped, replay.dropped);
    assert!(again.stopped.is_none() && again.ignored_bytes == 0);
    assert!(
        !path.with_extension("tmp").exists(),
        "no temporary file left"
    );
}

#[test]
fn compaction_keeps_only_what_it_is_given() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("journal");
    let sample = txs(9);
    let mut journal = Journal::create(&path, &sample, &[]).expect("create");
    assert_eq!(journal.entries(), 9);
    let drops = vec![(sample[0].hash(), DropReason::Replaced)];
    journal.rewrite(&sample[7..], &drops).expect("rewrite");
    assert_eq!(journal.entries(), 3);
    journal.accepted(&sample[1]).expect("append");
    journal.flush().expect("flush");
    let replay = Journal::read(&path).expect("read");
    assert_eq!(
        replay.txs,
        vec![sample[7].clone(), sample[8].clone(), sample[1].clone()]
    );
    assert_eq!(replay.dropped, drops);
}

#[test]
fn garbage_is_never_trusted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("journal");
    std::fs::write(&path, b"not a journal at all").expect("write");
    let replay = Journal::read(&path).expect("read");
    assert!(replay.txs.is_empty() && replay.entries == 0);
    assert_eq!(replay.ignored_bytes, 20);
    assert!(replay.stopped.expect("says why").contains("magic"));

    // A journal of the release before transaction kinds says so.
    std::fs::write(&path, b"TALLYJ1\n\x05\x00\x00\x00").expect("write");
    let replay = Journal::read(&path).expect("read");
    assert!(replay.txs.is_empty());
    assert!(replay.stopped.expect("says why").contains("older Tally"));

    // A length field claiming 4 GiB is refused before anything is read.
    let mut huge = b"TALLYJ2\n".to_vec();
    huge.extend_from_slice(&u32::MAX.to_le_bytes());
    huge.extend_from_slice(&[0u8; 8]);
    std::fs::write(&path, &huge).expect("write");
    let replay = Journal::read(&path).expect("read");
    assert_eq!(replay.entries, 0);
    assert!(replay.stopped.expect("says why").contains("bytes"));

    // A well-framed entry (its check matches) with an unknown tag, or a
    // transaction that does not decode, also ends the read.
    for payload in [vec![9u8, 1, 2, 3], vec![1u8, 0xff, 0xff]] {
        let mut bad = b"TALLYJ2\n".to_vec();
        bad.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        bad.extend_from_slice(&keccak256(&payload).0[..8]);
        bad.extend_from_slice(&payload);
        std::fs::write(&path, &bad).expect("write");
        let replay = Journal::read(&path).expect("read");
        assert_eq!(replay.entries, 0);
        assert!(replay.stopped.is_some());
        assert_eq!(replay.ignored_bytes, bad.len() as u64 - 8);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any flipped byte loses at most the entry it hits and those after it:
    /// every transaction read back is one that was written, in order.
    #[test]
    fn a_flipped_byte_loses_nothing_before_it(at in any::<prop::sample::Index>(), bit in 0u8..8) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("journal");
        let sample = txs(6);
        let mut bytes = write_sample(&path, &sample);
        let i = at.index(bytes.len());
        bytes[i] ^= 1 << bit;
        std::fs::write(&path, &bytes).expect("write");
        let replay = Journal::read(&path).expect("read");
        prop_assert_eq!(&replay.txs[..], &sample[..replay.txs.len()]);
        if i < 8 {
            prop_assert_eq!(replay.entries, 0);
        } else {
            prop_assert!(replay.stopped.is_some(), "the damage at byte {} is seen", i);
        }
    }
}
