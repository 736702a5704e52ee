//! Random access to one volume: read and write at any offset, and flush, which uploads the
//! dirty chunks and commits a new root, returning only once the commit is durable.
//!
//! Writes land in whole-chunk buffers in memory. When more than `max_dirty_bytes` are dirty,
//! the chunks are uploaded ("sealed") without a commit: the store holds them, unreferenced,
//! until the next flush names them in a root. Meanwhile a GC hold (see `holds`) names them,
//! so no collection can delete them however long the volume goes without a flush.

use crate::blobs::{Blobs, Encoded};
use crate::codec::CodecPolicy;
use crate::error::{Error, Result};
use crate::fanout::fan_out;
use crate::hash::{Hash, is_all_zero};
use crate::holds::Hold;
use crate::records::GenRecord;
use crate::store::Store;
use crate::tree;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::Mutex;

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
}

/// An open volume. Calls are serialised; clone the `Arc` to share it.
pub struct VolumeHandle {
    store: Store,
    id: String,
    policy: CodecPolicy,
    /// The lease tag commits carry, when writing under a lease.
    writer: Option<String>,
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
        Ok(Arc::new(VolumeHandle {
            store: self.clone(),
            id: id.to_string(),
            writer,
            policy: CodecPolicy {
                codec: info.record.spec.options.compression,
            },
            state: Mutex::new(State {
                size: info.head.size_bytes,
                head: info.head,
                dirty: BTreeMap::new(),
                sealed: BTreeMap::new(),
                report: FlushReport::default(),
                hold: None,
            }),
        }))
    }
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

    /// Commits the current root again under this handle's writer tag, so that a writer that
    /// held the volume before (and may not know it lost its lease) can no longer commit: its
    /// next commit finds a generation of another writer and fails.
    ///
    /// # Errors
    /// [`Error::Conflict`] when the volume moved since the handle was opened; backend errors.
    pub async fn fence(&self) -> Result<GenRecord> {
        let mut st = self.state.lock().await;
        let committed = self
            .store
            .commit_as(&st.head, st.head.root, st.size, self.writer.as_deref())
            .await?;
        st.head = committed.clone();
        Ok(committed)
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
                    self.load_chunk(&st, idx).await?
                };
                st.dirty.insert(idx, base);
            }
            if let Some(buf) = st.dirty.get_mut(&idx) {
                buf[lo..lo + n].copy_from_slice(&data[done..done + n]);
            }
            done += n;
        }
        if st.dirty.len() * cs as usize > self.store.options().max_dirty_bytes {
            self.seal(&mut st).await?;
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
            for idx in first_whole..last_whole {
                st.dirty.remove(&idx);
                st.sealed.insert(idx, Hash::ZERO);
            }
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

    /// Uploads every dirty chunk (hashing and compressing on the blocking pool, uploads in
    /// parallel), remembering their names for the next commit. The names go into the
    /// handle's GC hold before the store is asked whether it has them.
    async fn seal(&self, st: &mut State) -> Result<()> {
        if st.dirty.is_empty() {
            return Ok(());
        }
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
        let hashes: Vec<Hash> = encoded
            .iter()
            .filter_map(|(_, e)| e.as_ref().map(|e| e.hash))
            .collect();
        if let Err(e) = self.protect(st, &hashes).await {
            drop(encoded);
            restore(st, kept);
            return Err(e);
        }
        let results = fan_out(encoded, width, |(idx, enc)| {
            let store = self.store.clone();
            async move {
                let Some(enc) = enc else {
                    return Ok((idx, Hash::ZERO, None));
                };
                let h = enc.hash;
                let out = store.blobs().put_encoded(enc).await?;
                Ok((idx, h, Some(out)))
            }
        })
        .await;
        let results = match results {
            Ok(r) => r,
            Err(e) => {
                // Keep the writes: a later flush tries again.
                restore(st, kept);
                return Err(e);
            }
        };
        drop(kept);
        for (idx, h, out) in results {
            st.sealed.insert(idx, h);
            match out {
                Some(o) if o.uploaded => {
                    st.report.chunks_uploaded += 1;
                    st.report.bytes_stored += o.stored_bytes;
                }
                _ => st.report.chunks_skipped += 1,
            }
        }
        Ok(())
    }

    /// Adds blobs to the handle's GC hold, taking one first if it has none.
    async fn protect(&self, st: &mut State, blobs: &[Hash]) -> Result<()> {
        if blobs.is_empty() {
            return Ok(());
        }
        if st.hold.is_none() {
            st.hold = Some(self.store.hold(&format!("volume {}", self.id)).await?);
        }
        match &st.hold {
            Some(h) => h.protect(blobs, &[]).await,
            None => Ok(()),
        }
    }

    /// Makes every write so far durable: uploads dirty chunks, then the changed tree pages,
    /// then commits the new root. Returns what it wrote since the last flush.
    ///
    /// # Errors
    /// [`Error::Conflict`] when another writer changed the volume's content since this handle
    /// read it; backend errors. After an error the writes stay buffered and a later flush
    /// may retry.
    pub async fn flush(&self) -> Result<FlushReport> {
        let started = std::time::Instant::now();
        let mut st = self.state.lock().await;
        let locked = started.elapsed();
        self.seal(&mut st).await?;
        let sealed = started.elapsed();
        if st.sealed.is_empty() && st.size == st.head.size_bytes {
            return Ok(std::mem::take(&mut st.report));
        }
        let changes: Vec<(u64, Hash)> = st.sealed.iter().map(|(i, h)| (*i, *h)).collect();
        let blobs = self.store.blobs();
        let (root, pages) = tree::update(blobs, st.head.root, &changes).await?;
        let n_pages = pages.len();
        let page_hashes: Vec<Hash> = pages.iter().map(|p| p.hash()).collect();
        self.protect(&mut st, &page_hashes).await?;
        let page_bytes = tree::upload(&self.store, pages, self.store.options().concurrency).await?;
        let uploaded = started.elapsed();
        if let Some(h) = &st.hold {
            h.check()?;
        }
        let writer = self.writer.as_deref();
        let committed = match self.store.commit_as(&st.head, root, st.size, writer).await {
            Ok(rec) => rec,
            Err(Error::Conflict(msg)) => {
                // The controller's expansion moves only the size: rebase on it and commit
                // again. Anything else (new content, or another lease's fencing commit)
                // means this handle lost the volume.
                let now = self.store.head(&self.id).await?;
                if now.root != st.head.root || now.writer.is_some() {
                    return Err(Error::Conflict(msg));
                }
                st.size = st.size.max(now.size_bytes);
                self.store.commit_as(&now, root, st.size, writer).await?
            }
            Err(e) => return Err(e),
        };
        st.head = committed;
        if let Some(h) = st.hold.take() {
            h.release().await;
        }
        tracing::debug!(
            volume.id = %self.id,
            chunks = st.sealed.len(),
            pages = n_pages,
            ?locked,
            ?sealed,
            ?uploaded,
            total = ?started.elapsed(),
            "flushed"
        );
        st.sealed.clear();
        let mut report = std::mem::take(&mut st.report);
        report.bytes_stored += page_bytes;
        report.generation = Some(st.head.generation);
        Ok(report)
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
