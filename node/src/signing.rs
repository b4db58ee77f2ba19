//! The validator's signing state on disk: what it signed last and its lock.
//! Written before any vote or proposal it guards leaves the node, so that a
//! validator killed at any instant never signs two different messages for
//! one height, round and step when it comes back.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use anyhow::Context;
use tally_consensus::SigningStateOf;
use tally_ledger::Hash;

use crate::chain::Secp256k1;

pub type SigningState = SigningStateOf<Secp256k1, Hash>;

/// Writes `state` durably: to a temporary file, fsync'd, renamed over the
/// old one, and the directory fsync'd so the rename itself survives a crash.
pub fn save(path: &Path, state: &SigningState) -> anyhow::Result<()> {
    let bytes = borsh::to_vec(state).context("encoding the signing state")?;
    let dir = path
        .parent()
        .context("signing state path has no directory")?;
    let tmp = path.with_extension("tmp");
    let mut file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    file.write_all(&bytes)
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
