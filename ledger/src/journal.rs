//! The journal of transactions a node accepted from its own clients, so that
//! "accepted" survives a crash (as geth journals its local transactions).
//!
//! One append-only file: an 8-byte magic, then entries of
//! `[payload length: u32 LE][first 8 bytes of keccak256(payload)][payload]`,
//! where a payload is a tag byte and its body:
//! - `1` + a signed transaction's encoding: accepted;
//! - `2` + 32-byte hash + reason code: dropped, and why.
//!
//! A process killed mid-write leaves a torn last entry; a disk can return
//! garbage. Reading stops at the first entry that is short, too long, fails
//! its check or does not decode, keeps everything before it and says how many
//! bytes it ignored: the file is never trusted blindly, and nothing before a
//! bad entry is lost. Appends are written (not synced) before the node
//! answers the client, which survives the process dying; a rewrite (a
//! compaction, or the first write after reading) goes to a temporary file
//! that is synced and renamed over the old one.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::crypto::{Hash, keccak256};
use crate::mempool::DropReason;
use crate::tx::{MAX_SIGNED_TX_BYTES, SignedTransaction};

/// 2: transactions carry their kind tag (native or Ethereum).
const MAGIC: &[u8; 8] = b"TALLYJ2\n";
/// Journals of Tally before Ethereum transactions: untagged, not replayed.
const MAGIC_V1: &[u8; 8] = b"TALLYJ1\n";
const TAG_ACCEPTED: u8 = 1;
const TAG_DROPPED: u8 = 2;
/// The longest payload: a tag and the largest transaction.
const MAX_PAYLOAD: usize = 1 + MAX_SIGNED_TX_BYTES;
const HEADER: usize = 4 + 8;

/// What a journal held, up to its last whole entry.
#[derive(Clone, Debug, Default)]
pub struct Replay {
    /// Transactions accepted and not dropped since, each once, in the order
    /// first written.
    pub txs: Vec<SignedTransaction>,
    /// Transactions dropped (and not accepted again since), with the latest
    /// reason.
    pub dropped: Vec<(Hash, DropReason)>,
    /// Whole entries read.
    pub entries: usize,
    /// Bytes after the last whole entry, ignored.
    pub ignored_bytes: u64,
    /// Why reading stopped early, when it did.
    pub stopped: Option<String>,
}

/// An open journal, appending.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    out: BufWriter<File>,
    entries: usize,
}

fn frame(payload: &[u8], out: &mut impl Write) -> io::Result<()> {
    out.write_all(&(payload.len() as u32).to_le_bytes())?;
    out.write_all(&keccak256(payload).0[..8])?;
    out.write_all(payload)
}

fn accepted_payload(tx: &SignedTransaction) -> Vec<u8> {
    let mut payload = Vec::with_capacity(1 + MAX_SIGNED_TX_BYTES);
    payload.push(TAG_ACCEPTED);
    borsh::to_writer(&mut payload, tx).expect("borsh encoding into a Vec cannot fail");
    payload
}

fn dropped_payload(hash: &Hash, reason: DropReason) -> Vec<u8> {
    let mut payload = Vec::with_capacity(34);
    payload.push(TAG_DROPPED);
    payload.extend_from_slice(&hash.0);
    payload.push(reason.code());
    payload
}

enum Entry {
    Accepted(SignedTransaction),
    Dropped(Hash, DropReason),
}

fn decode_payload(payload: &[u8]) -> Result<Entry, String> {
    match payload.split_first() {
        Some((&TAG_ACCEPTED, body)) => SignedTransaction::decode(body)
            .map(Entry::Accepted)
            .map_err(|e| format!("an accepted entry does not decode: {e}")),
        Some((&TAG_DROPPED, body)) if body.len() == 33 => {
            let mut hash = [0u8; 32];
            hash.copy_from_slice(&body[..32]);
            DropReason::from_code(body[32])
                .map(|reason| Entry::Dropped(Hash(hash), reason))
                .ok_or_else(|| format!("unknown drop reason {}", body[32]))
        }
        Some((tag, _)) => Err(format!("unknown entry tag {tag}")),
        None => Err("an empty entry".into()),
    }
}

/// Reads exactly `buf.len()` bytes, or as many as there are (short at the end).
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

impl Journal {
    /// Reads the journal at `path` (none there reads as empty). Only an IO
    /// error fails; bad content ends the read at the last whole entry.
    pub fn read(path: &Path) -> io::Result<Replay> {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Replay::default()),
            Err(e) => return Err(e),
        };
        let len = file.metadata()?.len();
        if len == 0 {
            return Ok(Replay::default());
        }
        let mut input = BufReader::new(file);
        let mut replay = Replay::default();
        let mut magic = [0u8; 8];
        if read_full(&mut input, &mut magic)? < MAGIC.len() || &magic != MAGIC {
            replay.ignored_bytes = len;
            replay.stopped = Some(if &magic == MAGIC_V1 {
                "a journal of an older Tally (format 1), whose transactions this one does not \
                 read; its clients must resubmit"
                    .into()
            } else {
                "not a Tally journal (bad magic)".into()
            });
            return Ok(replay);
        }
        let mut offset = MAGIC.len() as u64;
        // The last entry of a hash decides: accepted again after a drop
        // is pending, dropped after acceptance is dropped.
        let mut txs: Vec<Option<SignedTransaction>> = Vec::new();
        let mut tx_at: HashMap<Hash, usize> = HashMap::new();
        let mut drops: Vec<Option<(Hash, DropReason)>> = Vec::new();
        let mut drop_at: HashMap<Hash, usize> = HashMap::new();
        let mut payload = vec![0u8; MAX_PAYLOAD];
        loop {
            let mut header = [0u8; HEADER];
            let got = read_full(&mut input, &mut header)?;
            if got == 0 {
                break;
            }
            let stop = |why: String| Some(format!("{why} at byte {offset}"));
            if got < HEADER {
                replay.stopped = stop("a torn entry header".into());
                break;
            }
            let size = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
            if size == 0 || size > MAX_PAYLOAD {
                replay.stopped = stop(format!("an entry of {size} bytes"));
                break;
            }
            let body = &mut payload[..size];
            if read_full(&mut input, body)? < size {
                replay.stopped = stop("a torn entry".into());
                break;
            }
            if keccak256(body).0[..8] != header[4..] {
                replay.stopped = stop("an entry that fails its check".into());
                break;
            }
            match decode_payload(body) {
                Ok(Entry::Accepted(tx)) => {
                    let hash = tx.hash();
                    if let Some(at) = drop_at.remove(&hash) {
                        drops[at] = None;
                    }
                    tx_at.entry(hash).or_insert_with(|| {
                        txs.push(Some(tx));
                        txs.len() - 1
                    });
                }
                Ok(Entry::Dropped(hash, reason)) => {
                    if let Some(at) = tx_at.remove(&hash) {
                        txs[at] = None;
                    }
                    match drop_at.get(&hash) {
                        Some(&at) => drops[at] = Some((hash, reason)),
                        None => {
                            drop_at.insert(hash, drops.len());
                            drops.push(Some((hash, reason)));
                        }
                    }
                }
                Err(why) => {
                    replay.stopped = stop(why);
                    break;
                }
            }
            offset += (HEADER + size) as u64;
            replay.entries += 1;
        }
        replay.ignored_bytes = len.saturating_sub(offset);
        replay.txs = txs.into_iter().flatten().collect();
        replay.dropped = drops.into_iter().flatten().collect();
        Ok(replay)
    }

    /// Replaces the journal at `path` with one holding `txs` and `dropped`
    /// (through a synced temporary file renamed over it), and opens it to
    /// append. The file appended to is the one renamed, opened before the
    /// rename: there is no moment where appends could go to the old one.
    pub fn create(
        path: &Path,
        txs: &[SignedTransaction],
        dropped: &[(Hash, DropReason)],
    ) -> io::Result<Journal> {
        let tmp = path.with_extension("tmp");
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&tmp)?;
        let mut out = BufWriter::with_capacity(256 * 1024, file);
        out.write_all(MAGIC)?;
        for (hash, reason) in dropped {
            frame(&dropped_payload(hash, *reason), &mut out)?;
        }
        for tx in txs {
            frame(&accepted_payload(tx), &mut out)?;
        }
        out.flush()?;
        out.get_ref().sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            // The rename itself survives a power cut once the directory is synced.
            let _ = File::open(dir).and_then(|d| d.sync_all());
        }
        Ok(Journal {
            path: path.to_path_buf(),
            out,
            entries: txs.len() + dropped.len(),
        })
    }

    /// Appends an accepted transaction (buffered until [`Journal::flush`]).
    pub fn accepted(&mut self, tx: &SignedTransaction) -> io::Result<()> {
        self.append(&accepted_payload(tx))
    }

    /// Appends a drop (buffered until [`Journal::flush`]).
    pub fn dropped(&mut self, hash: &Hash, reason: DropReason) -> io::Result<()> {
        self.append(&dropped_payload(hash, reason))
    }

    fn append(&mut self, payload: &[u8]) -> io::Result<()> {
        frame(payload, &mut self.out)?;
        self.entries += 1;
        Ok(())
    }

    /// Writes what is buffered to the file (the OS keeps it if the process
    /// dies).
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// Entries in the file (written or buffered) since it was created.
    pub fn entries(&self) -> usize {
        self.entries
    }

    /// Rewrites the journal to hold only `txs` and `dropped` (a compaction).
    /// On an error the journal is as it was, still appending.
    pub fn rewrite(
        &mut self,
        txs: &[SignedTransaction],
        dropped: &[(Hash, DropReason)],
    ) -> io::Result<()> {
        self.flush()?;
        *self = Journal::create(&self.path, txs, dropped)?;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}
