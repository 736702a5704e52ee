//! Reads and writes served on the calling thread, for a caller that may block (the FUSE
//! session thread of a volume server): when the state is free and everything needed is in
//! memory or in a local folder, the request is done without a hand-off to the runtime or
//! its blocking pool. Anything else (the state busy with a checkpoint, a tree page or chunk
//! to fetch from a service, a write that would pass the dirty limit) answers `None` and the
//! caller takes the async path, which does the same work.

use super::{State, VolumeHandle, check_range, span_in};
use crate::error::Result;
use crate::hash::Hash;
use crate::tree;
use std::sync::Arc;

impl VolumeHandle {
    /// As [`VolumeHandle::read_at`], on this thread; `None` when it cannot be done here,
    /// or when it would read more than one chunk from the store (the async path reads and
    /// verifies those in parallel). May block on a local folder's file read: never call it
    /// from a runtime worker.
    pub fn read_now(&self, offset: u64, len: usize) -> Option<Result<Vec<u8>>> {
        let st = self.state.try_lock().ok()?;
        if let Err(e) = check_range(offset, len, st.size) {
            return Some(Err(e));
        }
        let mut out = vec![0u8; len];
        if len == 0 {
            return Some(Ok(out));
        }
        let cs = st.head.chunk_size as u64;
        let mut fetched = false;
        for idx in offset / cs..=(offset + len as u64 - 1) / cs {
            let (lo, hi) = span_in(idx, cs, offset, len);
            let dst = (idx * cs + lo - offset) as usize;
            let n = (hi - lo) as usize;
            if let Some(buf) = st.dirty.get(&idx) {
                out[dst..dst + n].copy_from_slice(&buf[lo as usize..hi as usize]);
                continue;
            }
            let h = self.chunk_hash(&st, idx)?;
            if h.is_zero() {
                continue;
            }
            if !self.store.blobs().is_cached(&h) {
                if fetched {
                    return None;
                }
                fetched = true;
            }
            match self
                .store
                .blobs()
                .get_chunk_blocking(&h)
                .map(|r| r.map(Some))?
            {
                Ok(None) => {}
                Ok(Some(c)) => out[dst..dst + n].copy_from_slice(&c[lo as usize..hi as usize]),
                Err(e) => return Some(Err(e)),
            }
        }
        Some(Ok(out))
    }

    /// As [`VolumeHandle::write_at`], on this thread; `None` when it cannot be done here
    /// (nothing is changed then). May block as [`VolumeHandle::read_now`].
    pub fn write_now(&self, offset: u64, data: &[u8]) -> Option<Result<()>> {
        let mut st = self.state.try_lock().ok()?;
        if let Err(e) = check_range(offset, data.len(), st.size) {
            return Some(Err(e));
        }
        if data.is_empty() {
            return Some(Ok(()));
        }
        let cs = st.head.chunk_size as u64;
        let (first, last) = (offset / cs, (offset + data.len() as u64 - 1) / cs);
        // Every chunk the write needs first, so that a `None` leaves nothing half done.
        let mut bases = Vec::new();
        for idx in first..=last {
            let (lo, hi) = span_in(idx, cs, offset, data.len());
            if st.dirty.contains_key(&idx) {
                continue;
            }
            let base = if hi - lo == cs {
                vec![0u8; cs as usize]
            } else {
                match self.stored_chunk(&st, idx)? {
                    Ok(None) => vec![0u8; cs as usize],
                    Ok(Some(c)) => c.as_ref().clone(),
                    Err(e) => return Some(Err(e)),
                }
            };
            bases.push((idx, base));
        }
        let limit = self.store.options().max_dirty_bytes;
        if (st.dirty.len() + bases.len()) * cs as usize > limit {
            return None;
        }
        st.dirty.extend(bases);
        let mut done = 0usize;
        for idx in first..=last {
            let (lo, hi) = span_in(idx, cs, offset, data.len());
            let n = (hi - lo) as usize;
            if let Some(buf) = st.dirty.get_mut(&idx) {
                buf[lo as usize..hi as usize].copy_from_slice(&data[done..done + n]);
            }
            done += n;
        }
        if let Some(j) = st.journal.as_mut() {
            j.mark(offset, data.len() as u64);
        }
        Some(Ok(()))
    }

    /// The name of chunk `idx` from what was sealed and cached pages; `None` when a page is
    /// not cached.
    fn chunk_hash(&self, st: &State, idx: u64) -> Option<Hash> {
        match st.sealed.get(&idx) {
            Some(h) => Some(*h),
            None => tree::lookup_cached(self.store.blobs(), st.head.root, idx),
        }
    }

    /// The stored bytes of chunk `idx` (`Ok(None)`: a hole) from cached pages and the cache
    /// or a local folder; `None` when a page or the chunk must be fetched from a service.
    fn stored_chunk(&self, st: &State, idx: u64) -> Option<Result<Option<Arc<Vec<u8>>>>> {
        let h = self.chunk_hash(st, idx)?;
        if h.is_zero() {
            return Some(Ok(None));
        }
        self.store
            .blobs()
            .get_chunk_blocking(&h)
            .map(|r| r.map(Some))
    }
}
