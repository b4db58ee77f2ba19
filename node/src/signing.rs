//! The validator's signing state on disk: what it signed last and its lock.
//! Written before any vote or proposal it guards leaves the node, so that a
//! validator killed at any instant never signs two different messages for
//! one height, round and step when it comes back.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use anyhow::Context;
use tally_consensus::SigningStateOf;
use tally_ledger::{Block, Hash};
use tracing::warn;

use crate::chain::Secp256k1;

pub type SigningState = SigningStateOf<Secp256k1, Hash>;

/// Writes `state` durably: to a temporary file, fsync'd, renamed over the
/// old one, and the directory fsync'd so the rename itself survives a crash.
pub fn save(path: &Path, state: &SigningState) -> anyhow::Result<()> {
    let bytes = borsh::to_vec(state).context("encoding the signing state")?;
    write_durably(path, &bytes)
}

/// Writes the bodies of the blocks a signing state of `height` refers to
/// (its proposal, lock and valid value, each with its round), durably and
/// before the state itself: after a crash the node can propose, verify and
/// commit them again instead of leaving a locked value nobody holds.
pub fn save_blocks(path: &Path, height: u64, blocks: &[(u32, &Block)]) -> anyhow::Result<()> {
    let bytes = borsh::to_vec(&(height, blocks)).context("encoding the signed blocks")?;
    write_durably(path, &bytes)
}

/// The blocks saved by [`save_blocks`], with their height. Unreadable is
/// only a warning: the blocks are checked like any proposal before use, and
/// without them the node is only slower to recover (the others may hold
/// them), never unsafe.
pub fn load_blocks(path: &Path) -> Option<(u64, Vec<(u32, Block)>)> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            warn!(path = %path.display(), error = %e, "cannot read the signed blocks");
            return None;
        }
    };
    match borsh::from_slice(&bytes) {
        Ok(blocks) => Some(blocks),
        Err(e) => {
            warn!(path = %path.display(), error = %e, "the signed blocks file is corrupt; ignored");
            None
        }
    }
}

fn write_durably(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .context("signing state path has no directory")?;
    let tmp = path.with_extension("tmp");
    let mut file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing directory {}", dir.display()))?;
    Ok(())
}

/// Reads the state saved by [`save`]; `None` if there is none yet. A file
/// that exists but does not decode is an error: starting without it could
/// make the validator sign twice, so the operator must look.
pub fn load(path: &Path) -> anyhow::Result<Option<SigningState>> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    borsh::from_slice(&bytes).map(Some).with_context(|| {
        format!(
            "the signing state {} is corrupt; refusing to start a validator that could double-sign \
             (restore it, or delete it only if this validator signed nothing at or above the chain's height)",
            path.display()
        )
    })
}
