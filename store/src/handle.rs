//! Random access to one volume: read and write at any offset, and flush, which makes every
//! write so far durable before it returns.
//!
//! Writes land in whole-chunk buffers in memory. A handle opened under a lease and fenced
//! ([`VolumeHandle::fence`]) keeps a journal (see `journal`): a flush writes one record of
//! the 4 KiB blocks written since the last one, and a *checkpoint* uploads the dirty chunks,
//! the changed tree pages and a generation record naming the journal position the root
//! holds. Checkpoints run when the dirty buffers pass `max_dirty_bytes`, when a flush has
//! more than [`JOURNAL_RECORD_MAX`] to write (whole chunks cost no more than a record), when
//! the node's volume server finds the journal idle or long, and on unmount. Other handles
//! checkpoint on every flush.
//!
//! Uploaded chunks and pages are held by a GC hold (see `holds`) from their upload until the
//! commit naming them, so no collection can delete them however long the volume goes
//! without one.

use crate::blobs::{Blobs, Encoded};
use crate::codec::CodecPolicy;
use crate::error::{Error, Result};
use crate::fanout::fan_out;
use crate::hash::{Hash, is_all_zero};
use crate::holds::Hold;
use crate::journal::{self, JournalPos, Op, Tail};
use crate::pause::{self, Step};
use crate::records::GenRecord;
use crate::store::Store;
use crate::tree;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use tokio::sync::Mutex;

mod now;

/// What a flush wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlushReport {
    /// Chunks uploaded (new content).
    pub chunks_uploaded: u64,
    /// Chunks found already stored (deduplicated) or all-zero.
    pub chunks_skipped: u64,
    /// Bytes written to the store, chunks and pages.
    pub bytes_stored: u64,
    /// The generation committed, if anything changed.
    pub generation: Option<u64>,
    /// The journal record written, when the flush wrote one instead of a checkpoint.
    pub journal_record: Option<u64>,
}

/// Unit of change a journal record carries.
pub const JOURNAL_BLOCK: u64 = 4096;
/// Largest record a flush writes; a flush with more to write checkpoints instead.
pub const JOURNAL_RECORD_MAX: u64 = 4 << 20;
/// Record bytes after which a checkpoint is due, bounding replay.
pub const JOURNAL_CHECKPOINT_BYTES: u64 = 64 << 20;

/// An open volume. Calls are serialised; clone the `Arc` to share it.
pub struct VolumeHandle {
    store: Store,
    id: String,
    policy: CodecPolicy,
    /// The lease tag commits carry, when writing under a lease.
    writer: Option<String>,
    /// Serialises journal appends and checkpoints; taken before `state`.
    commits: Mutex<()>,
    state: Mutex<State>,
}

struct State {
    head: GenRecord,
    size: u64,
    dirty: BTreeMap<u64, Vec<u8>>,
    sealed: BTreeMap<u64, Hash>,
    report: FlushReport,
    /// Holds the sealed chunks and new pages from their upload until the commit naming them.
    hold: Option<Hold>,
    /// Where the content in memory stands in the head's journal (records applied at open).
    base_pos: Option<JournalPos>,
    /// The journal this handle writes, once fenced.
    journal: Option<Journaling>,
}

struct Journaling {
    name: String,
    /// The last record written.
    seq: u64,
    /// 4 KiB blocks written since the last record.
    unlogged: BTreeSet<u64>,
    /// Whole chunks discarded since the last record (first chunk, count).
    zeroed: Vec<(u64, u64)>,
    /// Record bytes written since the last checkpoint.
    since_checkpoint: u64,
    /// When the last record was written.
    last_record: std::time::Instant,
    /// On a local folder, the segment file records go to (a new one when `None`).
    segment: Option<String>,
    /// Segments started so far (names a new one, in order).
    segments_made: u64,
}

impl Journaling {
    fn new(name: String) -> Self {
        Journaling {
            name,
            seq: 0,
            unlogged: BTreeSet::new(),
            zeroed: Vec::new(),
            since_checkpoint: 0,
            last_record: std::time::Instant::now(),
            segment: None,
            segments_made: 0,
        }
    }

    fn mark(&mut self, offset: u64, len: u64) {
        if len == 0 {
            return;
        }
        let first = offset / JOURNAL_BLOCK;
        let last = (offset + len - 1) / JOURNAL_BLOCK;
        self.unlogged.extend(first..=last);
    }
}

impl Store {
    /// Opens volume `id` for reading and writing at its newest generation.
    ///
    /// # Errors
    /// [`Error::NotFound`], backend errors.
    pub async fn open_volume(&self, id: &str) -> Result<Arc<VolumeHandle>> {
        self.open_volume_as(id, None).await
    }

    /// Opens volume `id` for writing under a lease whose tag is `writer` (see
    /// [`crate::LeaseRecord::writer`]); every commit carries the tag.
    ///
    /// # Errors
    /// [`Error::NotFound`], backend errors.
    pub async fn open_volume_as(
        &self,
        id: &str,
        writer: Option<String>,
    ) -> Result<Arc<VolumeHandle>> {
        let info = self.get_volume(id).await?;
        let policy = CodecPolicy {
            codec: info.record.spec.options.compression,
        };
        if writer.is_some() {
            // The fence replays the journal, after sealing it.
            return self
                .handle_at(id, policy, writer, info.head, Tail::default())
                .await;
        }
        for _ in 0..POINT_ATTEMPTS {
            let head = self.head(id).await?;
            match self.tail_at(&head).await? {
                Some(tail) => return self.handle_at(id, policy, None, head, tail).await,
                None => continue,
            }
        }
        Err(moving(id))
    }

    /// A handle standing at `head` with `tail`'s records applied in memory.
    async fn handle_at(
        &self,
        id: &str,
        policy: CodecPolicy,
        writer: Option<String>,
        head: GenRecord,
        tail: Tail,
    ) -> Result<Arc<VolumeHandle>> {
        let base_pos = head.journal.clone().map(|p| JournalPos {
            applied: tail.last,
            ..p
        });
        let h = VolumeHandle {
            store: self.clone(),
            id: id.to_string(),
            writer,
            policy,
            commits: Mutex::new(()),
            state: Mutex::new(State {
                size: head.size_bytes,
                head,
                dirty: BTreeMap::new(),
                sealed: BTreeMap::new(),
                report: FlushReport::default(),
                hold: None,
                base_pos,
                journal: None,
            }),
        };
        {
            let mut st = h.state.lock().await;
            for (_, ops) in &tail.records {
                h.apply(&mut st, ops).await?;
            }
        }
        Ok(Arc::new(h))
    }

    /// `head`'s journal tail, or `None` when the head moved while it was read (records it
    /// needs may have been pruned): read the head again.
    async fn tail_at(&self, head: &GenRecord) -> Result<Option<Tail>> {
        let tail = match self.journal_tail(head, None).await {
            Ok(t) => t,
            Err(Error::Conflict(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        if tail.records.is_empty() {
            return Ok(Some(tail));
        }
        let now = self.head(&head.volume_id).await?;
        Ok((now.generation == head.generation).then_some(tail))
    }

    /// Volume `id`'s content now, as a root: its head's root when its journal has nothing
    /// past it, else a root built from the head and the journal's records (chunks and pages
    /// uploaded, held by the returned hold until the caller's record names the root). What
    /// a snapshot or a clone of a volume in use copies: every write flushed before the call.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::Conflict`] when the volume keeps moving, backend errors.
    pub async fn content_now(&self, id: &str) -> Result<(GenRecord, Hash, Option<Hold>)> {
        for _ in 0..POINT_ATTEMPTS {
            let (head, tail) = self.point(id).await?;
            match self.build_root(&head, tail).await {
                Ok((root, hold)) => return Ok((head, root, hold)),
                // The head was pruned (and its chunks maybe collected) while being read.
                Err(Error::Conflict(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(moving(id))
    }

    /// Volume `id`'s head and its journal's records past it, read together.
    pub(crate) async fn point(&self, id: &str) -> Result<(GenRecord, Tail)> {
        for _ in 0..POINT_ATTEMPTS {
            let head = self.head(id).await?;
            if let Some(tail) = self.tail_at(&head).await? {
                return Ok((head, tail));
            }
        }
        Err(moving(id))
    }

    /// The root of `head` with `tail` applied; a hold protects it when new objects were made.
    pub(crate) async fn build_root(
        &self,
        head: &GenRecord,
        tail: Tail,
    ) -> Result<(Hash, Option<Hold>)> {
        if tail.records.is_empty() {
            return Ok((head.root, None));
        }
        let id = &head.volume_id;
        let hold = self.hold(&format!("volume {id} content")).await?;
        let kept = async {
            hold.protect(&[], &[head.root]).await?;
            if !self.gen_exists(id, head.generation).await? {
                return Err(Error::Conflict(format!(
                    "volume {id} moved while being read"
                )));
            }
            Ok(())
        }
        .await;
        if let Err(e) = kept {
            hold.release().await;
            return Err(e);
        }
        let info = self.get_volume(id).await?;
        let policy = CodecPolicy {
            codec: info.record.spec.options.compression,
        };
        let h = self.handle_at(id, policy, None, head.clone(), tail).await?;
        let mut st = h.state.lock().await;
        st.hold = Some(hold);
        let built = h.prepare_root(&mut st).await;
        let hold = st.hold.take();
        match (built, hold) {
            (Ok((root, _)), hold) => Ok((root, hold)),
            (Err(e), Some(hold)) => {
                hold.release().await;
                Err(e)
            }
            (Err(e), None) => Err(e),
        }
    }
}

/// Reads of a head and its journal tried before giving up on a moving volume.
const POINT_ATTEMPTS: usize = 16;

fn moving(id: &str) -> Error {
    Error::Conflict(format!(
        "volume {id} kept committing while its content was being read; try again"
    ))
}

impl VolumeHandle {
    /// The volume id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Current size in bytes.
    pub async fn size(&self) -> u64 {
        self.state.lock().await.size
    }

    /// The generation this handle last read or committed.
    pub async fn head(&self) -> GenRecord {
        self.state.lock().await.head.clone()
    }

    /// Bytes written but not yet uploaded.
    pub async fn dirty_bytes(&self) -> u64 {
        let st = self.state.lock().await;
        st.dirty.len() as u64 * st.head.chunk_size as u64
    }

    /// Takes the volume up for this handle's writer: seals the journal the head continues
    /// with (so the writer before, which may not know it lost its lease, can append no more),
    /// applies its records, and commits the result under this handle's writer tag with a new
    /// journal. The writer before can then commit nothing either: its next commit finds a
    /// generation of another writer. From here on a flush writes a journal record.
    ///
    /// # Errors
    /// [`Error::Conflict`] when the volume keeps moving, [`Error::Corrupt`] naming a damaged
    /// journal record (nothing is taken up past it); backend errors.
    pub async fn fence(&self) -> Result<GenRecord> {
        let _commits = self.commits.lock().await;
        let mut st = self.state.lock().await;
        let name = journal::new_name();
        for _ in 0..POINT_ATTEMPTS {
            let head = self.store.head(&self.id).await?;
            let tail = match self.store.journal_tail(&head, Some(&name)).await {
                Ok(t) => t,
                Err(Error::Conflict(_)) => continue,
                Err(e) => return Err(e),
            };
            let old = head.journal.clone();
            let replayed = tail.last;
            st.head = head;
            st.size = st.head.size_bytes;
            st.dirty.clear();
            st.sealed.clear();
            st.journal = None;
            for (_, ops) in &tail.records {
                self.apply(&mut st, ops).await?;
            }
            let pos = JournalPos {
                name: name.clone(),
                applied: 0,
            };
            let (root, page_bytes) = self.prepare_root(&mut st).await?;
            pause::at(Step::TakeUpCommit).await;
            let base = st.head.clone();
            match self
                .store
                .commit_with(&base, root, st.size, self.writer.as_deref(), Some(pos))
                .await
            {
                Ok(rec) => {
                    self.committed(&mut st, rec.clone(), page_bytes).await;
                    st.journal = Some(Journaling::new(name));
                    if let Some(old) = old {
                        let store = self.store.clone();
                        let id = self.id.clone();
                        tokio::spawn(async move {
                            store.journal_prune(&id, &old.name, replayed).await;
                        });
                    }
                    tracing::info!(volume.id = %self.id, generation = rec.generation, records = tail.records.len(), "took the volume up");
                    return Ok(rec);
                }
                Err(Error::Conflict(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(moving(&self.id))
    }

    /// True while this handle writes a journal (it was fenced).
    pub async fn journaling(&self) -> bool {
        self.state.lock().await.journal.is_some()
    }

    /// Whether a checkpoint is due: records written and none for `idle`, or more record
    /// bytes than [`JOURNAL_CHECKPOINT_BYTES`] since the last one.
    pub async fn checkpoint_due(&self, idle: std::time::Duration) -> bool {
        let st = self.state.lock().await;
        st.journal.as_ref().is_some_and(|j| {
            j.since_checkpoint > 0
                && (j.last_record.elapsed() >= idle
                    || j.since_checkpoint >= JOURNAL_CHECKPOINT_BYTES)
        })
    }

    /// Reads `len` bytes at `offset`, including writes not yet flushed.
    ///
    /// # Errors
    /// [`Error::OutOfRange`] past the end; [`Error::Corrupt`] or [`Error::MissingChunk`]
    /// when stored data fails verification (never returned as data); backend errors.
    pub async fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        let st = self.state.lock().await;
        check_range(offset, len, st.size)?;
        let cs = st.head.chunk_size as u64;
        let mut out = vec![0u8; len];
        if len == 0 {
            return Ok(out);
        }
        let first = offset / cs;
        let last = (offset + len as u64 - 1) / cs;
        // Where each chunk comes from: a dirty buffer is copied now, the rest is fetched.
        let mut wanted = Vec::new();
        for idx in first..=last {
            let (lo, hi) = span_in(idx, cs, offset, len);
            let dst = (idx * cs + lo - offset) as usize;
            if let Some(buf) = st.dirty.get(&idx) {
                out[dst..dst + (hi - lo) as usize].copy_from_slice(&buf[lo as usize..hi as usize]);
            } else {
                let h = match st.sealed.get(&idx) {
                    Some(h) => *h,
                    None => tree::lookup(self.store.blobs(), st.head.root, idx).await?,
                };
                if !h.is_zero() {
                    wanted.push((h, lo, hi, dst));
                }
            }
        }
        drop(st);
        let width = self.store.options().concurrency;
        let chunks = fan_out(wanted, width, |(h, lo, hi, dst)| {
            let store = self.store.clone();
            async move { store.blobs().get_chunk(&h).await.map(|c| (c, lo, hi, dst)) }
        })
        .await?;
        for (c, lo, hi, dst) in chunks {
            out[dst..dst + (hi - lo) as usize].copy_from_slice(&c[lo as usize..hi as usize]);
        }
        Ok(out)
    }

    /// Writes `data` at `offset`. Durable only after [`VolumeHandle::flush`].
    ///
    /// # Errors
    /// [`Error::OutOfRange`] past the end; errors reading the chunks a partial write
    /// modifies; backend errors when uploading over the dirty limit.
    pub async fn write_at(&self, offset: u64, data: &[u8]) -> Result<()> {
        let mut st = self.state.lock().await;
        check_range(offset, data.len(), st.size)?;
        self.write_into(&mut st, offset, data).await?;
        if let Some(j) = st.journal.as_mut() {
            j.mark(offset, data.len() as u64);
        }
        if st.dirty.len() * st.head.chunk_size as usize > self.store.options().max_dirty_bytes {
            if st.journal.is_some() {
                // The journal's records stay small: over the limit, checkpoint.
                drop(st);
                self.checkpoint().await?;
            } else {
                self.seal(&mut st).await?;
            }
        }
        Ok(())
    }

    /// Copies `data` into the chunk buffers, reading the chunks a partial write modifies.
    async fn write_into(&self, st: &mut State, offset: u64, data: &[u8]) -> Result<()> {
        let cs = st.head.chunk_size as u64;
        let mut done = 0usize;
        while done < data.len() {
            let pos = offset + done as u64;
            let idx = pos / cs;
            let lo = (pos % cs) as usize;
            let n = (cs as usize - lo).min(data.len() - done);
            if !st.dirty.contains_key(&idx) {
                let base = if n == cs as usize {
                    vec![0u8; cs as usize]
                } else {
                    self.load_chunk(st, idx).await?
                };
                st.dirty.insert(idx, base);
            }
            if let Some(buf) = st.dirty.get_mut(&idx) {
                buf[lo..lo + n].copy_from_slice(&data[done..done + n]);
            }
            done += n;
        }
        Ok(())
    }

    /// Makes chunks `first..last` holes.
    fn zero_chunks(st: &mut State, first: u64, last: u64) {
        let cs = st.head.chunk_size as u64;
        for idx in first..last {
            st.dirty.remove(&idx);
            st.sealed.insert(idx, Hash::ZERO);
        }
        if let Some(j) = st.journal.as_mut() {
            let blocks = cs / JOURNAL_BLOCK;
            let dropped: Vec<u64> = j
                .unlogged
                .range(first * blocks..last * blocks)
                .copied()
                .collect();
            for b in dropped {
                j.unlogged.remove(&b);
            }
            j.zeroed.push((first, last - first));
        }
    }

    /// Applies a journal record's changes (a replay; nothing is marked for the journal).
    async fn apply(&self, st: &mut State, ops: &[Op]) -> Result<()> {
        let cs = st.head.chunk_size as u64;
        for op in ops {
            match op {
                Op::Write { offset, data } => {
                    check_range(*offset, data.len(), st.size)?;
                    self.write_into(st, *offset, data).await?;
                }
                Op::Zero { offset, len } => {
                    check_range(
                        *offset,
                        usize::try_from(*len).unwrap_or(usize::MAX),
                        st.size,
                    )?;
                    Self::zero_chunks(st, offset / cs, (offset + len) / cs);
                }
            }
        }
        Ok(())
    }

    /// Makes `len` bytes at `offset` read as zeros (a discard). Whole chunks become holes
    /// that take no space; the edges are written as zeros.
    ///
    /// # Errors
    /// As [`VolumeHandle::write_at`].
    pub async fn zero_range(&self, offset: u64, len: u64) -> Result<()> {
        let cs = {
            let st = self.state.lock().await;
            check_range(offset, 0, st.size)?;
            check_range(offset, usize::try_from(len).unwrap_or(usize::MAX), st.size)?;
            st.head.chunk_size as u64
        };
        let end = offset + len;
        let first_whole = offset.div_ceil(cs);
        let last_whole = end / cs; // exclusive
        if first_whole >= last_whole {
            return self.write_zeros(offset, end).await;
        }
        self.write_zeros(offset, first_whole * cs).await?;
        {
            let mut st = self.state.lock().await;
            Self::zero_chunks(&mut st, first_whole, last_whole);
        }
        self.write_zeros(last_whole * cs, end).await
    }

    async fn write_zeros(&self, from: u64, to: u64) -> Result<()> {
        if to <= from {
            return Ok(());
        }
        self.write_at(from, &vec![0u8; (to - from) as usize]).await
    }

    async fn load_chunk(&self, st: &State, idx: u64) -> Result<Vec<u8>> {
        let h = match st.sealed.get(&idx) {
            Some(h) => *h,
            None => tree::lookup(self.store.blobs(), st.head.root, idx).await?,
        };
        if h.is_zero() {
            return Ok(vec![0u8; st.head.chunk_size as usize]);
        }
        Ok(self.store.blobs().get_chunk(&h).await?.as_ref().clone())
    }

    /// Uploads every dirty chunk (hashing and compressing on the blocking pool) as one pack
    /// or a few, remembering their names for the next commit. The names go into the
    /// handle's GC hold before the store is asked whether it has them.
    async fn seal(&self, st: &mut State) -> Result<()> {
        self.store_dirty(st, |_| Ok(Vec::new())).await.map(|_| ())
    }

    /// Hashes and encodes every dirty chunk; `more` then names the tree pages to store with
    /// them (from the chunk names each index will hold). Holds chunks and pages, stores what
    /// the store lacks in one batch, and records the chunks as sealed. On failure the
    /// writes stay dirty for a later try. Returns the page bytes written.
    async fn store_dirty<F>(&self, st: &mut State, more: F) -> Result<u64>
    where
        F: FnOnce(&BTreeMap<u64, Hash>) -> Result<Vec<tree::NewPage>>,
    {
        let dirty = std::mem::take(&mut st.dirty);
        let policy = self.policy;
        let width = self.store.options().concurrency;
        let cs = st.head.chunk_size as usize;
        // Hashing moves the buffers to the blocking pool; they come back inside the encoded
        // chunks, whose bytes are kept (shared, not copied) so a failed upload can put them
        // back as dirty.
        let encoded: Vec<(u64, Option<Encoded>)> = fan_out(dirty, width, |(idx, buf)| async move {
            if is_all_zero(&buf) {
                return Ok((idx, None));
            }
            Ok((idx, Some(Blobs::encode_chunk(buf, policy).await?)))
        })
        .await?;
        let kept: Vec<(u64, Option<Arc<Vec<u8>>>)> = encoded
            .iter()
            .map(|(idx, e)| (*idx, e.as_ref().map(Encoded::raw)))
            .collect();
        let restore = |st: &mut State, kept: Vec<(u64, Option<Arc<Vec<u8>>>)>| {
            for (idx, raw) in kept {
                let buf = match raw {
                    None => vec![0u8; cs],
                    Some(r) => Arc::try_unwrap(r).unwrap_or_else(|r| r.as_ref().clone()),
                };
                st.dirty.insert(idx, buf);
            }
        };
        let mut names: BTreeMap<u64, Hash> = st.sealed.clone();
        for (idx, e) in &encoded {
            names.insert(*idx, e.as_ref().map_or(Hash::ZERO, |e| e.hash));
        }
        let stored = async {
            let pages = more(&names)?;
            let mut held: Vec<Hash> = encoded
                .iter()
                .filter_map(|(_, e)| e.as_ref().map(|e| e.hash))
                .collect();
            held.extend(pages.iter().map(|p| p.hash()));
            self.protect(st, &held).await?;
            Ok::<_, Error>(pages)
        }
        .await;
        let pages = match stored {
            Ok(p) => p,
            Err(e) => {
                drop(encoded);
                restore(st, kept);
                return Err(e);
            }
        };
        let (zeros, chunks): (Vec<_>, Vec<_>) = encoded.into_iter().partition(|(_, e)| e.is_none());
        let idxs: Vec<u64> = chunks.iter().map(|(i, _)| *i).collect();
        let chunks: Vec<Encoded> = chunks.into_iter().filter_map(|(_, e)| e).collect();
        let hashes: Vec<Hash> = chunks.iter().map(|e| e.hash).collect();
        let pages = pages.into_iter().map(tree::NewPage::into_parts).collect();
        let (outcomes, page_bytes) = match self.store.blobs().put_new(chunks, pages).await {
            Ok(r) => r,
            Err(e) => {
                // Keep the writes: a later flush tries again.
                restore(st, kept);
                return Err(e);
            }
        };
        drop(kept);
        for (idx, _) in zeros {
            st.sealed.insert(idx, Hash::ZERO);
            st.report.chunks_skipped += 1;
        }
        for ((idx, h), o) in idxs.into_iter().zip(hashes).zip(outcomes) {
            st.sealed.insert(idx, h);
            if o.uploaded {
                st.report.chunks_uploaded += 1;
                st.report.bytes_stored += o.stored_bytes;
            } else {
                st.report.chunks_skipped += 1;
            }
        }
        Ok(page_bytes)
    }

    /// Adds blobs to the handle's GC hold, taking one first if it has none.
    async fn protect(&self, st: &mut State, blobs: &[Hash]) -> Result<()> {
        if blobs.is_empty() {
            return Ok(());
        }
        match &st.hold {
            Some(h) => h.protect(blobs, &[]).await,
            None => {
                let owner = format!("volume {}", self.id);
                st.hold = Some(self.store.hold_protecting(&owner, blobs).await?);
                Ok(())
            }
        }
    }

    /// Makes every write so far durable. A fenced handle writes one journal record of the
    /// blocks written since the last (nothing when there are none); concurrent flushes share
    /// a record (the writes of a flush that waits for another's record go into the next).
    /// Other handles, and a flush with more than [`JOURNAL_RECORD_MAX`] to write, checkpoint.
    ///
    /// # Errors
    /// [`Error::Conflict`] when another writer took the volume (sealed its journal or
    /// committed past it); backend errors. After an error the writes stay buffered and a
    /// later flush may retry.
    pub async fn flush(&self) -> Result<FlushReport> {
        let _commits = self.commits.lock().await;
        let mut st = self.state.lock().await;
        let Some(j) = st.journal.as_mut() else {
            return self.checkpoint_locked(&mut st).await;
        };
        if j.unlogged.is_empty() && j.zeroed.is_empty() {
            return Ok(FlushReport::default());
        }
        if j.unlogged.len() as u64 * JOURNAL_BLOCK > JOURNAL_RECORD_MAX {
            return self.checkpoint_locked(&mut st).await;
        }
        let unlogged = std::mem::take(&mut j.unlogged);
        let zeroed = std::mem::take(&mut j.zeroed);
        let seq = j.seq + 1;
        let name = j.name.clone();
        let segment = j.segment.clone();
        let made = j.segments_made;
        let ops = match self.capture(&st, &unlogged, &zeroed).await {
            Ok(ops) => ops,
            Err(e) => {
                Self::put_back(&mut st, unlogged, zeroed);
                return Err(e);
            }
        };
        // Reads and writes go on while the record is written; writes made meanwhile are
        // marked for the next one.
        drop(st);
        let bytes: u64 = ops
            .iter()
            .map(|op| match op {
                Op::Write { data, .. } => data.len() as u64,
                Op::Zero { .. } => 0,
            })
            .sum();
        let appended = self
            .store
            .journal_append(&self.id, &name, seq, &ops, segment.as_deref(), made)
            .await;
        let mut st = self.state.lock().await;
        if let Some(j) = st.journal.as_mut() {
            // A new segment was tried: the next one gets the next number, whatever happened.
            j.segments_made += u64::from(segment.is_none());
        }
        let segment = match appended {
            Ok(s) => s,
            Err(e) => {
                if let Some(j) = st.journal.as_mut() {
                    j.segment = None;
                }
                Self::put_back(&mut st, unlogged, zeroed);
                return Err(e);
            }
        };
        if let Some(j) = st.journal.as_mut() {
            j.segment = segment;
            j.seq = seq;
            j.since_checkpoint += bytes.max(1);
            j.last_record = std::time::Instant::now();
        }
        tracing::trace!(volume.id = %self.id, seq, bytes, "journal record written");
        Ok(FlushReport {
            bytes_stored: bytes,
            journal_record: Some(seq),
            ..FlushReport::default()
        })
    }

    /// Marks blocks and discards of a record that was not written for the next one.
    fn put_back(st: &mut State, unlogged: BTreeSet<u64>, zeroed: Vec<(u64, u64)>) {
        if let Some(j) = st.journal.as_mut() {
            j.unlogged.extend(unlogged);
            let mut all = zeroed;
            all.append(&mut j.zeroed);
            j.zeroed = all;
        }
    }

    /// A record's ops: the discards first, then the blocks' current bytes, clipped to the
    /// volume's size and merged into runs.
    async fn capture(
        &self,
        st: &State,
        unlogged: &BTreeSet<u64>,
        zeroed: &[(u64, u64)],
    ) -> Result<Vec<Op>> {
        let cs = st.head.chunk_size as u64;
        let mut ops: Vec<Op> = zeroed
            .iter()
            .map(|(first, n)| Op::Zero {
                offset: first * cs,
                len: n * cs,
            })
            .collect();
        let mut loaded: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
        let mut run: Option<(u64, Vec<u8>)> = None;
        for &b in unlogged {
            let start = b * JOURNAL_BLOCK;
            if start >= st.size {
                continue;
            }
            let end = (start + JOURNAL_BLOCK).min(st.size);
            let idx = start / cs;
            let lo = (start % cs) as usize;
            let hi = lo + (end - start) as usize;
            let bytes: &[u8] = match st.dirty.get(&idx) {
                Some(buf) => &buf[lo..hi],
                None => {
                    if let std::collections::btree_map::Entry::Vacant(e) = loaded.entry(idx) {
                        e.insert(self.load_chunk(st, idx).await?);
                    }
                    match loaded.get(&idx) {
                        Some(c) => &c[lo..hi],
                        None => continue,
                    }
                }
            };
            match run.as_mut() {
                Some((off, data)) if *off + data.len() as u64 == start => {
                    data.extend_from_slice(bytes)
                }
                _ => {
                    if let Some((offset, data)) = run.take() {
                        ops.push(Op::Write { offset, data });
                    }
                    run = Some((start, bytes.to_vec()));
                }
            }
        }
        if let Some((offset, data)) = run {
            ops.push(Op::Write { offset, data });
        }
        Ok(ops)
    }

    /// Uploads every dirty chunk and the changed tree pages and commits a new root; for a
    /// fenced handle, the root names the last journal record it holds.
    ///
    /// # Errors
    /// As [`VolumeHandle::flush`].
    pub async fn checkpoint(&self) -> Result<FlushReport> {
        let _commits = self.commits.lock().await;
        let mut st = self.state.lock().await;
        self.checkpoint_locked(&mut st).await
    }

    async fn checkpoint_locked(&self, st: &mut State) -> Result<FlushReport> {
        let started = std::time::Instant::now();
        let journaling = st.journal.is_some();
        if journaling {
            pause::at(Step::CheckpointStart).await;
        }
        let pos = match &st.journal {
            Some(j) => Some(JournalPos {
                name: j.name.clone(),
                applied: j.seq,
            }),
            None => st.base_pos.clone(),
        };
        if st.dirty.is_empty()
            && st.sealed.is_empty()
            && st.size == st.head.size_bytes
            && (st.journal.is_none() || pos == st.head.journal)
        {
            if let Some(j) = st.journal.as_mut() {
                j.unlogged.clear();
                j.zeroed.clear();
            }
            return Ok(std::mem::take(&mut st.report));
        }
        let (root, page_bytes) = self.prepare_root(st).await?;
        if journaling {
            pause::at(Step::CheckpointCommit).await;
        }
        let writer = self.writer.as_deref();
        let base = st.head.clone();
        let committed = match self
            .store
            .commit_with(&base, root, st.size, writer, pos.clone())
            .await
        {
            Ok(rec) => rec,
            Err(Error::Conflict(msg)) => {
                // The controller's expansion moves only the size: rebase on it and commit
                // again. Anything else (new content, or another lease's fencing commit)
                // means this handle lost the volume.
                let now = self.store.head(&self.id).await?;
                if now.root != base.root || now.writer.is_some() || now.journal != base.journal {
                    return Err(Error::Conflict(msg));
                }
                st.size = st.size.max(now.size_bytes);
                self.store
                    .commit_with(&now, root, st.size, writer, pos.clone())
                    .await?
            }
            Err(e) => return Err(e),
        };
        let chunks = st.sealed.len();
        let mut report = self.committed(st, committed, page_bytes).await;
        if let Some(j) = st.journal.as_mut() {
            j.unlogged.clear();
            j.zeroed.clear();
            j.since_checkpoint = 0;
            // Records after the checkpoint go to a new segment, so the old ones can go.
            j.segment = None;
            let store = self.store.clone();
            let id = self.id.clone();
            let (name, through) = (j.name.clone(), j.seq);
            tokio::spawn(async move { store.journal_prune(&id, &name, through).await });
        }
        st.base_pos = pos;
        report.generation = Some(st.head.generation);
        tracing::debug!(
            volume.id = %self.id,
            chunks,
            total = ?started.elapsed(),
            "checkpoint committed"
        );
        Ok(report)
    }

    /// Uploads the dirty chunks and the tree pages over them, in one pack where they fit;
    /// the root they make. The new objects are in the handle's hold.
    async fn prepare_root(&self, st: &mut State) -> Result<(Hash, u64)> {
        if st.dirty.is_empty() && st.sealed.is_empty() {
            return Ok((st.head.root, 0));
        }
        let blobs = self.store.blobs();
        let base = st.head.root;
        // The pages over the head's tree with every sealed and dirty chunk in place: the
        // head's pages are read first (they are committed), so the closure below only builds.
        let mut all: Vec<u64> = st.sealed.keys().copied().collect();
        all.extend(st.dirty.keys().copied());
        all.sort_unstable();
        all.dedup();
        let paths = tree::pages_over(blobs, base, &all).await?;
        let mut root = base;
        let page_bytes = self
            .store_dirty(st, |names| {
                let changes: Vec<(u64, Hash)> = names.iter().map(|(i, h)| (*i, *h)).collect();
                let (r, pages) = tree::update_from(&paths, base, &changes)?;
                root = r;
                Ok(pages)
            })
            .await?;
        if let Some(h) = &st.hold {
            h.check()?;
        }
        Ok((root, page_bytes))
    }

    /// Takes up a commit: the new head, the hold released, the report handed out.
    async fn committed(&self, st: &mut State, rec: GenRecord, page_bytes: u64) -> FlushReport {
        st.head = rec;
        if let Some(h) = st.hold.take() {
            h.release().await;
        }
        st.sealed.clear();
        let mut report = std::mem::take(&mut st.report);
        report.bytes_stored += page_bytes;
        report.generation = Some(st.head.generation);
        report
    }

    /// Picks up a larger size committed by an expansion (the next flush keeps it).
    ///
    /// # Errors
    /// Backend errors.
    pub async fn refresh_size(&self) -> Result<u64> {
        let mut st = self.state.lock().await;
        let now = self.store.head(&self.id).await?;
        st.size = st.size.max(now.size_bytes);
        Ok(st.size)
    }
}

fn check_range(offset: u64, len: usize, size: u64) -> Result<()> {
    let end = offset.checked_add(len as u64);
    if end.is_none_or(|e| e > size) {
        return Err(Error::OutOfRange(format!(
            "range {offset}+{len} is past the end of the volume ({size} bytes)"
        )));
    }
    Ok(())
}

/// The part of chunk `idx` (as offsets inside it) that `offset..offset+len` covers.
fn span_in(idx: u64, cs: u64, offset: u64, len: usize) -> (u64, u64) {
    let start = idx * cs;
    let lo = offset.max(start) - start;
    let hi = (offset + len as u64).min(start + cs) - start;
    (lo, hi)
}

/// Steps cut short, as a process killed at that point leaves the store (crash tests).
#[cfg(feature = "test-access")]
impl VolumeHandle {
    /// A checkpoint killed before its commit: chunks and pages uploaded, no generation.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn checkpoint_killed_before_commit(&self) -> Result<()> {
        let _commits = self.commits.lock().await;
        let mut st = self.state.lock().await;
        self.prepare_root(&mut st).await.map(|_| ())
    }
}

#[cfg(feature = "test-access")]
impl Store {
    /// A take-up killed after sealing the head's journal, before its commit.
    ///
    /// # Errors
    /// As [`VolumeHandle::fence`].
    pub async fn take_up_killed_after_seal(&self, id: &str) -> Result<()> {
        let head = self.head(id).await?;
        self.journal_tail(&head, Some(&journal::new_name()))
            .await
            .map(|_| ())
    }
}
