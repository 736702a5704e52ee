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
use ferry_store::diff_walk::DiffWalk;
use ferry_store::tree::OnePass;
use ferry_store::{Hash, Store};
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
    /// Chunks an export takes from its tree walk at a time.
    pub diff_batch: usize,
    /// Chunk and page names an export remembers to copy each once (see
    /// `ferry_store::diff_walk`).
    pub diff_window: usize,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            width: 32,
            pack_bytes: 16 << 20,
            packs_in_flight: 4,
            diff_batch: 4096,
            diff_window: ferry_store::diff_walk::DEFAULT_WINDOW,
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
    let index = target.load_index().await?;
    let mut packs = PackWriter::new(
        target.clone(),
        progress.clone(),
        tuning.pack_bytes,
        tuning.packs_in_flight,
    );
    let mut base = base.map(|c| c.root);
    let walked = loop {
        let outcome = walk(
            source, snap, base, target, &index, &progress, &mut packs, tuning,
        )
        .await;
        match outcome {
            Err(Error::Store(ferry_store::Error::Corrupt { .. })) if base.is_some() => {
                // Its pages may be collected from the source since: copy against nothing
                // (what this export packed so far is copied again, never lost).
                tracing::info!("previous export's tree is gone from the source; full walk");
                base = None;
            }
            other => break other?,
        }
    };
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
        chunks_total: walked.chunks_total,
        chunks_copied: walked.chunks_copied,
        chunks_skipped: walked.chunks_total - walked.chunks_copied,
        pages_copied: walked.pages_copied,
        bytes_read: walked.bytes_read,
        bytes_written: written,
        duration: started.elapsed(),
        volume_id: None,
        names_held_peak: walked.names_held_peak,
    })
}

/// What a walk of the tree copied.
#[derive(Default)]
struct Walked {
    chunks_total: u64,
    chunks_copied: u64,
    pages_copied: u64,
    bytes_read: u64,
    names_held_peak: u64,
}

/// Walks the snapshot's tree against `base` batch by batch, packing each batch's chunks
/// the transfer store's index lacks, then the pages that became complete with them. What
/// is held at once is one batch and the walk's bounded state, whatever the volume's size.
#[allow(clippy::too_many_arguments)]
async fn walk(
    source: &Store,
    snap: &ferry_store::SnapshotRecord,
    base: Option<Hash>,
    target: &TransferStore,
    index: &Index,
    progress: &Progress,
    packs: &mut PackWriter,
    tuning: Tuning,
) -> Result<Walked> {
    let chunk = snap.chunk_size as u64;
    // Each page is read once: through the page cache, not into it.
    let pages = OnePass(source.blobs());
    let mut walk = DiffWalk::new(
        &pages,
        snap.root,
        &pages,
        base.unwrap_or(Hash::ZERO),
        tuning.diff_window,
    );
    let mut w = Walked::default();
    while let Some(batch) = walk.next_batch(tuning.diff_batch).await? {
        let n = batch.chunks.len() as u64;
        let todo = target.unindexed(index, batch.chunks).await?;
        let copied = todo.len() as u64;
        progress.plan(n, n * chunk);
        progress.skipped(n - copied, (n - copied) * chunk);
        w.chunks_total += n;
        w.chunks_copied += copied;
        w.bytes_read += copy(
            source,
            target,
            &todo,
            Kind::Chunk,
            packs,
            tuning.width,
            chunk,
        )
        .await?;
        let pages = target
            .unindexed(index, batch.pages.into_iter().map(|(h, _)| h).collect())
            .await?;
        w.pages_copied += pages.len() as u64;
        copy(source, target, &pages, Kind::Page, packs, tuning.width, 0).await?;
    }
    w.names_held_peak = walk.peak_held() as u64;
    Ok(w)
}

/// Reads each blob from the source, checks it, and packs it: a run of blobs in one source
/// pack is one ranged read. Returns the uncompressed bytes.
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
    // A read's worth of names at a time (up to 16 spans of the source's packs).
    for batch in hashes.chunks(width.max(1) * 16) {
        for (h, frame, raw) in source.blobs().read_frames(kind, batch).await? {
            raw_bytes += raw.len() as u64;
            let (chunks, vol) = if kind == Kind::Chunk {
                (1, chunk)
            } else {
                (0, 0)
            };
            packs
                .add(target.name(&h), kind as u8, frame.into_bytes(), chunks, vol)
                .await?;
        }
    }
    Ok(raw_bytes)
}
