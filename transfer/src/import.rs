//! Import (rehydration): a commit's tree and chunks into a chunk store, then a volume.
//!
//! The commit's tree is compared with the target volume's current tree (nothing, for a
//! first import): only chunks that differ are considered, and of those only the ones the
//! destination store lacks are fetched. Every blob is authenticated (when encrypted) and
//! hash-checked before it is stored. Chunks land first, then pages level by level, and the
//! volume is created (or moved to the new root) last: a failed import leaves no volume.

use crate::error::{Error, Result};
use crate::export::Tuning;
use crate::progress::{Progress, Report};
use crate::target::{Commit, Index, TransferStore};
use ferry_store::diff_walk::DiffWalk;
use ferry_store::tree::{OnePass, Page, PageSource};
use ferry_store::{Frame, Hash, ImportSource, Kind, Source, Store, VolumeSpec};
use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Pages read so far: their stored frames and decoded pages.
type PageCache = HashMap<Hash, (Frame, Arc<Page>)>;

/// Pages read from a transfer store through its index, kept (with their frames) for the
/// import to store afterwards: all of them for a whole-tree reader (GC, verify), the open
/// ones for a streaming import ([`TransferPages::keep_only`]).
pub struct TransferPages<'a> {
    target: &'a TransferStore,
    index: &'a Index,
    got: Mutex<PageCache>,
}

impl<'a> TransferPages<'a> {
    /// Pages of `target` found through `index`.
    pub fn new(target: &'a TransferStore, index: &'a Index) -> Self {
        TransferPages {
            target,
            index,
            got: Mutex::new(HashMap::new()),
        }
    }

    async fn fetch(&self, h: &Hash) -> Result<Arc<Page>> {
        if let Some((_, p)) = self.lock().get(h) {
            return Ok(p.clone());
        }
        let loc = self.index.get(&self.target.name(h))?.ok_or_else(|| {
            Error::Missing(format!("tree page {h} is missing from the transfer store"))
        })?;
        let (frame, raw) = self.target.read_blob(h, Kind::Page, &loc).await?;
        let page = Arc::new(
            Page::decode(&format!("tree page {h}"), &raw)
                .map_err(|e| Error::Tampered(format!("tree page {h}: {e}")))?,
        );
        self.lock().insert(*h, (frame, page.clone()));
        Ok(page)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PageCache> {
        self.got.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The stored frame of page `h` if it was read, no longer kept here.
    fn take_frame(&self, h: &Hash) -> Option<Frame> {
        self.lock().remove(h).map(|(f, _)| f)
    }

    /// The entries of the pages kept now.
    fn names_kept(&self) -> u64 {
        self.lock()
            .values()
            .map(|(_, p)| p.entries.len() as u64)
            .sum()
    }

    /// Forgets every page read except `keep`: a streaming reader's pages still open.
    fn keep_only(&self, keep: impl Iterator<Item = Hash>) {
        let keep: HashSet<Hash> = keep.collect();
        self.lock().retain(|h, _| keep.contains(h));
    }
}

impl PageSource for TransferPages<'_> {
    fn page<'b>(&'b self, h: &'b Hash) -> BoxFuture<'b, ferry_store::Result<Arc<Page>>> {
        Box::pin(async move {
            self.fetch(h).await.map_err(|e| match e {
                Error::Store(s) => s,
                // The tree walk speaks the store's errors; keep the message whole and
                // whether the page was missing or damaged (`from_walk` turns it back).
                Error::Missing(reason) => ferry_store::Error::Corrupt {
                    path: MISSING.into(),
                    reason,
                },
                other => ferry_store::Error::Corrupt {
                    path: TAMPERED.into(),
                    reason: other.to_string(),
                },
            })
        })
    }
}

/// Where a page error of the transfer store says it came from, through the tree walk.
const TAMPERED: &str = "transfer store";
const MISSING: &str = "transfer store (missing)";

/// A tree walk's error as the transfer error it was.
fn from_walk(e: ferry_store::Error) -> Error {
    match e {
        ferry_store::Error::Corrupt { reason, path } if path == TAMPERED => Error::Tampered(reason),
        ferry_store::Error::Corrupt { reason, path } if path == MISSING => Error::Missing(reason),
        e => e.into(),
    }
}

/// Wanted blobs of one pack read with one request: (hash, offset, length) each.
struct Span {
    pack: Arc<str>,
    offset: u64,
    len: u64,
    blobs: Vec<(Hash, u64, u64)>,
}

/// Largest gap of unwanted bytes read through rather than split at.
const SPAN_GAP: u64 = 1 << 20;
/// Largest single read.
const SPAN_MAX: u64 = 8 << 20;

fn spans(mut wanted: Vec<(Hash, crate::target::Location)>) -> Vec<Span> {
    wanted.sort_by(|a, b| (&a.1.pack, a.1.offset).cmp(&(&b.1.pack, b.1.offset)));
    let mut out: Vec<Span> = Vec::new();
    for (h, loc) in wanted {
        if let Some(s) = out.last_mut()
            && s.pack == loc.pack
            && loc.offset >= s.offset + s.len
            && loc.offset - (s.offset + s.len) <= SPAN_GAP
            && loc.offset + loc.len - s.offset <= SPAN_MAX
        {
            s.len = loc.offset + loc.len - s.offset;
            s.blobs.push((h, loc.offset, loc.len));
            continue;
        }
        out.push(Span {
            pack: loc.pack.clone(),
            offset: loc.offset,
            len: loc.len,
            blobs: vec![(h, loc.offset, loc.len)],
        });
    }
    out
}

/// Imports `commit` from `target` into `dest` as the volume named `name` (a CSI-style name):
/// created on first import, moved to the new root on later ones.
///
/// # Errors
/// A missing or damaged chunk or page (named), a volume of that name staged for writing or
/// with another chunk size, backend errors. No volume is created or changed on error.
pub async fn import(
    target: &TransferStore,
    commit: &Commit,
    dest: &Store,
    name: &str,
    progress: Arc<Progress>,
    tuning: Tuning,
) -> Result<Report> {
    import_gated(
        target,
        commit,
        dest,
        name,
        progress,
        tuning,
        std::future::ready(()),
    )
    .await
}

/// Like [`import`], awaiting `before_commit` once every blob is stored and before the volume
/// is created or moved (a caller that must order the commit after other work, and tests that
/// hold an import open past the GC grace period).
///
/// While it runs, the import's GC hold names every chunk and page the new tree needs and
/// the volume's current root, so no collection deletes them, whether they were copied or
/// found already in the store.
///
/// # Errors
/// As [`import`].
pub async fn import_gated(
    target: &TransferStore,
    commit: &Commit,
    dest: &Store,
    name: &str,
    progress: Arc<Progress>,
    tuning: Tuning,
    before_commit: impl std::future::Future<Output = ()>,
) -> Result<Report> {
    let hold = dest
        .hold(&format!("import of {} as {name}", commit.id()))
        .await?;
    let outcome = import_held(
        target,
        commit,
        dest,
        name,
        progress,
        tuning,
        before_commit,
        &hold,
    )
    .await;
    hold.release().await;
    outcome
}

#[allow(clippy::too_many_arguments)]
async fn import_held(
    target: &TransferStore,
    commit: &Commit,
    dest: &Store,
    name: &str,
    progress: Arc<Progress>,
    tuning: Tuning,
    before_commit: impl std::future::Future<Output = ()>,
    hold: &ferry_store::Hold,
) -> Result<Report> {
    let started = Instant::now();
    progress.start();
    let existing = dest.volume_by_name(name).await?;
    let base = existing.as_ref().map_or(Hash::ZERO, |v| v.head.root);
    let index = target.load_index().await?;
    let pages = TransferPages::new(target, &index);
    let chunk = commit.options.chunk_size as u64;
    let old_pages = OnePass(dest.blobs());
    let mut walk = DiffWalk::new(&pages, commit.root, &old_pages, base, tuning.diff_window);
    let mut totals = Totals::default();
    let mut finished = ferry_store::diff_walk::Finished::default();
    // Chunks and pages go into packs across spans and levels; every batch ends with them
    // durable, before the next hold names what it stored by its subtrees' roots.
    let mut sink = dest
        .pack_writer(IMPORT_PACK, tuning.packs_in_flight)
        .await?;
    while let Some(batch) = walk
        .next_batch(tuning.diff_batch)
        .await
        .map_err(from_walk)?
    {
        let n = batch.chunks.len() as u64;
        progress.plan(n, n * chunk);
        // Held before the store is asked what it has: this batch's chunks and pages, and
        // what earlier batches stored, by the roots of their finished subtrees (stored by
        // now) and the chunks of the page still open. The record stays a few pages' worth
        // of names, not one per chunk.
        let mut blobs = finished.chunks;
        blobs.extend(&batch.chunks);
        blobs.extend(batch.pages.iter().map(|(h, _)| *h));
        let mut roots = finished.pages;
        roots.push(base);
        hold.replace(&blobs, &roots).await?;
        totals.hold_peak = totals.hold_peak.max((blobs.len() + roots.len()) as u64);

        store_chunks(
            target,
            &index,
            dest,
            &mut sink,
            &batch.chunks,
            &progress,
            tuning,
            chunk,
            &mut totals,
        )
        .await?;
        // Pages after the chunks they name; nothing reads a page but through a commit,
        // which comes after every pack is durable.
        for (h, _) in &batch.pages {
            let frame = pages
                .take_frame(h)
                .ok_or_else(|| Error::Missing(format!("tree page {h} was not read")))?;
            totals.page_bytes += frame.bytes().len() as u64;
            sink.add(frame).await?;
        }
        sink.flush().await?;
        totals.pages += batch.pages.len() as u64;
        totals.kept_peak = totals.kept_peak.max(pages.names_kept());
        // Pages read but not handed out (seen earlier in the walk) are not kept.
        pages.keep_only(walk.open_pages());
        finished = walk.finished();
    }
    // Everything is stored: the new root now reaches all of it.
    hold.replace(&[], &[base, commit.root]).await?;

    before_commit.await;
    hold.check()?;

    let volume_id = match existing {
        Some(v) => {
            dest.set_root(
                v.id(),
                commit.root,
                commit.size_bytes,
                commit.options.chunk_size,
            )
            .await?;
            v.id().to_string()
        }
        None => {
            let spec = VolumeSpec {
                name: name.to_string(),
                capacity_bytes: commit.size_bytes,
                options: commit.options,
                parameters: Default::default(),
                source: Some(Source::Import(ImportSource {
                    commit: commit.id(),
                    root: commit.root,
                    size_bytes: commit.size_bytes,
                    chunk_size: commit.options.chunk_size,
                })),
            };
            dest.create_volume(spec).await?.id().to_string()
        }
    };
    Ok(Report {
        commit: commit.id(),
        chunks_total: totals.chunks,
        chunks_copied: totals.copied,
        chunks_skipped: totals.chunks - totals.copied,
        pages_copied: totals.pages,
        bytes_read: totals.read,
        bytes_written: totals.written + totals.page_bytes,
        duration: started.elapsed(),
        volume_id: Some(volume_id),
        // Names in the walk, in the pages kept for storing, and in the GC hold: each
        // bounded by the batch, the window and the tree's depth.
        names_held_peak: walk.peak_held() as u64 + totals.kept_peak + totals.hold_peak,
    })
}

/// What an import did, summed over its batches.
#[derive(Default)]
struct Totals {
    chunks: u64,
    copied: u64,
    read: u64,
    written: u64,
    pages: u64,
    page_bytes: u64,
    /// Most entries of pages kept at once for storing.
    kept_peak: u64,
    /// Most names in the GC hold at once.
    hold_peak: u64,
}

/// Stores the chunks of one batch the destination lacks (or holds too old to reuse without
/// writing them again, the refresh rule), read from the transfer store one span at a time
/// and added to `sink`.
#[allow(clippy::too_many_arguments)]
async fn store_chunks(
    target: &TransferStore,
    index: &Index,
    dest: &Store,
    sink: &mut ferry_store::PackWriter,
    chunks: &[Hash],
    progress: &Progress,
    tuning: Tuning,
    chunk: u64,
    totals: &mut Totals,
) -> Result<()> {
    totals.chunks += chunks.len() as u64;
    let present = dest.blobs().fresh_many(Kind::Chunk, chunks).await?;
    let lacking: Vec<Hash> = chunks
        .iter()
        .zip(present)
        .filter_map(|(h, here)| (!here).then_some(*h))
        .collect();
    let skipped = (chunks.len() - lacking.len()) as u64;
    progress.skipped(skipped, skipped * chunk);
    let found = index
        .get_many(lacking.iter().map(|h| target.name(h)).collect())
        .await?;
    let mut wanted = Vec::with_capacity(lacking.len());
    for (h, loc) in lacking.into_iter().zip(found) {
        let loc = loc.ok_or_else(|| {
            Error::Missing(format!("chunk {h} is missing from the transfer store"))
        })?;
        wanted.push((h, loc));
    }
    // One ranged read per run of wanted blobs in a pack, not one per chunk.
    let mut opened = futures::stream::iter(spans(wanted))
        .map(|span| async move {
            let what = format!("chunk {}", span.blobs[0].0);
            let bytes = target
                .read_span(&span.pack, span.offset, span.len, &what)
                .await?;
            let t = target.clone();
            tokio::task::spawn_blocking(move || {
                span.blobs
                    .iter()
                    .map(|(h, off, len)| {
                        let at = (*off - span.offset) as usize;
                        let sealed = bytes[at..at + *len as usize].to_vec();
                        t.open_blob(h, Kind::Chunk, sealed)
                            .map(|(f, raw)| (f, raw.len()))
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .await
            .map_err(crate::target::task_failed)?
        })
        .buffer_unordered(tuning.packs_in_flight.max(1));
    while let Some(blobs) = opened.try_next().await? {
        let n = blobs.len() as u64;
        for (frame, raw) in blobs {
            let stored = frame.bytes().len() as u64;
            sink.add(frame).await?;
            totals.copied += 1;
            totals.read += raw as u64;
            totals.written += stored;
            progress.stored(stored);
        }
        progress.done(n, n * chunk);
    }
    Ok(())
}

/// Pack size an import writes: a GiB imported is a few dozen objects, and what the import
/// holds for packs (this one and those uploading) stays a few of these.
const IMPORT_PACK: usize = 16 << 20;
