//! Export: a snapshot's chunks and tree pages into a transfer store, then its commit.
//!
//! Only what differs from the volume's previous commit is even looked at (a tree diff), and
//! of that only what the transfer store's index lacks is copied, so a re-export after a
//! small change reads and writes about the change. A killed export leaves packs that are
//! either indexed (kept and skipped next time) or not (ignored); the commit comes last.

use crate::error::{Error, Result};
use crate::pack::PackWriter;
use crate::progress::{Progress, Report};
use crate::target::{Commit, Index, TRANSFER_FORMAT, TransferStore};
use ferry_store::Kind;
use ferry_store::tree::{self, Diff};
use ferry_store::{Hash, Store};
use futures::{StreamExt, TryStreamExt};
use std::sync::Arc;
use std::time::Instant;

/// Tuning of a transfer.
#[derive(Clone, Copy, Debug)]
pub struct Tuning {
    /// Blobs read and checked at once.
    pub width: usize,
    /// Pack size to aim for.
    pub pack_bytes: usize,
    /// Packs uploading at once.
    pub packs_in_flight: usize,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            width: 32,
            pack_bytes: 16 << 20,
            packs_in_flight: 4,
        }
    }
}

/// Exports snapshot `snapshot_id` of `source` into `target`.
///
/// # Errors
/// A missing snapshot, a damaged chunk in the source (named), a full or refusing transfer
/// store (with the backend's reason); nothing committed before is touched.
pub async fn export(
    source: &Store,
    snapshot_id: &str,
    target: &TransferStore,
    progress: Arc<Progress>,
    tuning: Tuning,
) -> Result<Report> {
    let started = Instant::now();
    progress.start();
    let snap = source.get_snapshot(snapshot_id).await?;
    let commit_id = format!("{}/{}", snap.source_volume_id, snap.id);
    if target
        .get_commit(&snap.source_volume_id, &snap.id)
        .await?
        .is_some()
    {
        tracing::info!(commit = %commit_id, "already exported");
        return Ok(Report {
            commit: commit_id,
            duration: started.elapsed(),
            ..Report::default()
        });
    }
    // Announced before reading what it builds on, so a collection either sees this export
    // and removes no pack, or has finished before the index is read (see `gc`).
    let record = crate::gc::Announced::write(target, crate::layout::EXPORTS, &commit_id).await?;
    let outcome =
        export_announced(source, &snap, &commit_id, target, progress, tuning, &record).await;
    record.end().await;
    outcome.map(|mut r| {
        r.duration = started.elapsed();
        r
    })
}

async fn export_announced(
    source: &Store,
    snap: &ferry_store::SnapshotRecord,
    commit_id: &str,
    target: &TransferStore,
    progress: Arc<Progress>,
    tuning: Tuning,
    record: &crate::gc::Announced,
) -> Result<Report> {
    let started = Instant::now();
    crate::gc::wait_for_sweeps(target).await?;
    let base = target.latest_commit(&snap.source_volume_id).await?;
    let diff = diff_from_base(source, snap.root, base.as_ref().map(|c| c.root)).await?;
    let index = target.load_index().await?;
    let chunk = snap.chunk_size as u64;

    let (todo, present): (Vec<Hash>, Vec<Hash>) = diff
        .chunks
        .iter()
        .partition(|h| !index.contains_key(&target.name(h)));
    progress.plan(diff.chunks.len() as u64, diff.chunks.len() as u64 * chunk);
    progress.skipped(present.len() as u64, present.len() as u64 * chunk);

    let mut packs = PackWriter::new(
        target.clone(),
        progress.clone(),
        tuning.pack_bytes,
        tuning.packs_in_flight,
    );
    let bytes_read = copy(
        source,
        target,
        &todo,
        Kind::Chunk,
        &mut packs,
        tuning.width,
        chunk,
    )
    .await?;
    packs.finish().await?;
    // Pages after every chunk they name is indexed.
    let pages = pages_missing(&diff, &index, target);
    copy(
        source,
        target,
        &pages,
        Kind::Page,
        &mut packs,
        tuning.width,
        0,
    )
    .await?;
    let written = packs.finish().await?;
    record.check()?;
    target
        .put_commit(&Commit {
            format: TRANSFER_FORMAT,
            volume_id: snap.source_volume_id.clone(),
            snapshot_id: snap.id.clone(),
            root: snap.root,
            size_bytes: snap.size_bytes,
            options: snap.options,
            created_ms: ferry_store::records::now_ms(),
        })
        .await?;
    Ok(Report {
        commit: commit_id.to_string(),
        chunks_total: diff.chunks.len() as u64,
        chunks_copied: todo.len() as u64,
        chunks_skipped: present.len() as u64,
        pages_copied: pages.len() as u64,
        bytes_read,
        bytes_written: written,
        duration: started.elapsed(),
        volume_id: None,
    })
}

/// The diff against the previous export's root, or against nothing when that root's pages
/// are no longer in the source store.
async fn diff_from_base(source: &Store, root: Hash, base: Option<Hash>) -> Result<Diff> {
    if let Some(b) = base {
        match tree::diff(source.blobs(), root, source.blobs(), b).await {
            Ok(d) => return Ok(d),
            Err(ferry_store::Error::Corrupt { .. }) => {
                tracing::info!("previous export's tree is gone from the source; full diff")
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(tree::diff(source.blobs(), root, source.blobs(), Hash::ZERO).await?)
}

fn pages_missing(diff: &Diff, index: &Index, target: &TransferStore) -> Vec<Hash> {
    diff.pages
        .iter()
        .map(|(h, _)| *h)
        .filter(|h| !index.contains_key(&target.name(h)))
        .collect()
}

/// Reads each blob from the source, checks it, and packs it. Returns the uncompressed bytes.
async fn copy(
    source: &Store,
    target: &TransferStore,
    hashes: &[Hash],
    kind: Kind,
    packs: &mut PackWriter,
    width: usize,
    chunk: u64,
) -> Result<u64> {
    let mut raw_bytes = 0;
    let mut stream = futures::stream::iter(hashes.iter().copied())
        .map(|h| async move {
            let (frame, raw) = source.blobs().read_frame(kind, &h).await?;
            Ok::<_, Error>((h, frame.into_bytes(), raw.len() as u64))
        })
        .buffer_unordered(width.max(1));
    while let Some((h, frame, raw)) = stream.try_next().await? {
        raw_bytes += raw;
        let (chunks, vol) = if kind == Kind::Chunk {
            (1, chunk)
        } else {
            (0, 0)
        };
        packs
            .add(target.name(&h), kind as u8, frame, chunks, vol)
            .await?;
    }
    Ok(raw_bytes)
}
