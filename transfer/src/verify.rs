//! Verify: read back everything a commit needs from the transfer store, authenticate it and
//! check every hash, without writing anywhere.

use crate::error::{Error, Result};
use crate::export::Tuning;
use crate::import::TransferPages;
use crate::progress::{Progress, Report};
use crate::target::{Commit, TransferStore};
use ferry_store::Hash;
use ferry_store::Kind;
use ferry_store::tree;
use futures::{StreamExt, TryStreamExt};
use std::sync::Arc;
use std::time::Instant;

/// Checks that `commit` can be imported: every page and chunk present, authentic, intact.
///
/// # Errors
/// The first missing or damaged object, named.
pub async fn verify(
    target: &TransferStore,
    commit: &Commit,
    progress: Arc<Progress>,
    tuning: Tuning,
) -> Result<Report> {
    let started = Instant::now();
    progress.start();
    let index = target.load_index().await?;
    let pages = TransferPages::new(target, &index);
    let diff = tree::diff(&pages, commit.root, &pages, Hash::ZERO)
        .await
        .map_err(|e| match e {
            ferry_store::Error::Corrupt { reason, .. } => Error::Tampered(reason),
            e => e.into(),
        })?;
    let chunk = commit.options.chunk_size as u64;
    progress.plan(diff.chunks.len() as u64, diff.chunks.len() as u64 * chunk);
    let read = std::sync::atomic::AtomicU64::new(0);
    futures::stream::iter(diff.chunks.iter().copied())
        .map(|h| {
            let (index, progress, read) = (&index, &progress, &read);
            async move {
                let loc = index.get(&target.name(&h))?.ok_or_else(|| {
                    Error::Missing(format!("chunk {h} is missing from the transfer store"))
                })?;
                let (_, raw) = target.read_blob(&h, Kind::Chunk, &loc).await?;
                read.fetch_add(raw.len() as u64, std::sync::atomic::Ordering::Relaxed);
                progress.done(1, chunk);
                Ok::<(), Error>(())
            }
        })
        .buffer_unordered(tuning.width.max(1))
        .try_collect::<()>()
        .await?;
    Ok(Report {
        commit: commit.id(),
        chunks_total: diff.chunks.len() as u64,
        pages_copied: 0,
        bytes_read: read.into_inner(),
        duration: started.elapsed(),
        ..Report::default()
    })
}
