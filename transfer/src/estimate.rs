//! Estimate: what an export of a volume's current state would move, read without writing
//! anything anywhere (a dry run's planning).
//!
//! The figure is the one an export reports as its `bytes_total`: the chunks of the tree
//! that the newest commit of the volume in the transfer store does not hold, times the
//! chunk size (holes never count). It is exact for a volume that does not change before
//! the export's snapshot.

use crate::error::Result;
use crate::target::TransferStore;
use ferry_store::tree;
use ferry_store::{Hash, Store};

/// What an export of a volume would move.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Estimate {
    /// The volume's logical size.
    pub size_bytes: u64,
    /// Its chunk size.
    pub chunk_size: u32,
    /// Chunks that differ from the newest commit (all allocated ones without a commit).
    pub chunks: u64,
    /// `chunks` times the chunk size: uncompressed bytes the export reads and moves.
    pub bytes: u64,
    /// Of those chunks, how many the transfer store holds already (from other volumes).
    pub chunks_present: u64,
    /// The commit the export would build on, `<volume>/<snapshot>`.
    pub base: Option<String>,
}

/// Estimates an export of volume `volume_id` of `source` (its current root) into `target`
/// (`None`: a transfer store nothing was exported to yet). Reads only.
///
/// # Errors
/// A missing volume, a damaged tree page, backend errors.
pub async fn estimate(
    source: &Store,
    volume_id: &str,
    target: Option<&TransferStore>,
) -> Result<Estimate> {
    let volume = source.get_volume(volume_id).await?;
    let chunk_size = volume.head.chunk_size;
    let base = match target {
        Some(t) => t.latest_commit(volume_id).await?,
        None => None,
    };
    let root = volume.head.root;
    let diff = match base.as_ref().map(|c| c.root) {
        Some(b) => match tree::diff(source.blobs(), root, source.blobs(), b).await {
            Ok(d) => d,
            // As an export does: the base's pages are gone from the source, so all of it.
            Err(ferry_store::Error::Corrupt { .. }) => {
                tree::diff(source.blobs(), root, source.blobs(), Hash::ZERO).await?
            }
            Err(e) => return Err(e.into()),
        },
        None => tree::diff(source.blobs(), root, source.blobs(), Hash::ZERO).await?,
    };
    let chunks = diff.chunks.len() as u64;
    let chunks_present = match target {
        Some(t) if chunks > 0 => {
            let index = t.load_index().await?;
            chunks - t.unindexed(&index, diff.chunks).await?.len() as u64
        }
        _ => 0,
    };
    Ok(Estimate {
        size_bytes: volume.size_bytes(),
        chunk_size,
        chunks,
        bytes: chunks * chunk_size as u64,
        chunks_present,
        base: base.map(|c| c.id()),
    })
}
