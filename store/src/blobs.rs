//! Chunks and tree pages: encode, verify, cache, and upload only what the store lacks.

use crate::codec::{self, CodecPolicy, Kind};
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::layout;
use crate::objects::Objects;
use crate::tree::Page;
use lru::LruCache;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// What an upload did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PutOutcome {
    /// Bytes written to the store (0 when the object was already there).
    pub stored_bytes: u64,
    /// True when the object was written by this call.
    pub uploaded: bool,
}

/// Reads and writes content-addressed blobs with verification and caches.
pub struct Blobs {
    objects: Objects,
    chunks: Mutex<LruCache<Hash, Arc<Vec<u8>>>>,
    pages: Mutex<LruCache<Hash, Arc<Page>>>,
    /// An existing object older than this is written again before it is referenced, so a
    /// garbage collector that condemned it sees it was revived (see `gc`).
    refresh_after: Duration,
}

impl Blobs {
    /// A blob layer over `objects`, caching up to `cache_chunks` decoded chunks.
    pub fn new(objects: Objects, cache_chunks: usize, gc_grace: Duration) -> Self {
        let n = NonZeroUsize::new(cache_chunks.max(16)).unwrap_or(NonZeroUsize::MIN);
        let pages = NonZeroUsize::new(4096).unwrap_or(NonZeroUsize::MIN);
        Blobs {
            objects,
            chunks: Mutex::new(LruCache::new(n)),
            pages: Mutex::new(LruCache::new(pages)),
            refresh_after: gc_grace / 2,
        }
    }

    /// The object layer below.
    pub fn objects(&self) -> &Objects {
        &self.objects
    }

    /// Reads and verifies a chunk.
    ///
    /// # Errors
    /// [`Error::MissingChunk`] when absent, [`Error::Corrupt`] when its bytes do not hash to
    /// its name; backend errors.
    pub async fn get_chunk(&self, h: &Hash) -> Result<Arc<Vec<u8>>> {
        if let Some(c) = lock(&self.chunks).get(h) {
            return Ok(c.clone());
        }
        let path = layout::chunk(h);
        let expect = *h;
        let raw = if let Some(root) = self.objects.fs_root() {
            // A local folder: read and verify in one trip to the blocking pool, the hot path
            // of a node's cache misses.
            let file = root.join(&path);
            tokio::task::spawn_blocking(move || match std::fs::read(&file) {
                Ok(blob) => codec::decode(&path, Kind::Chunk, &expect, &blob),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    Err(Error::MissingChunk(expect))
                }
                Err(e) => Err(Error::Unavailable(format!("read {}: {e}", file.display()))),
            })
            .await
            .map_err(|e| Error::Internal(format!("read task: {e}")))??
        } else {
            let blob = self
                .objects
                .get(&path)
                .await?
                .ok_or(Error::MissingChunk(*h))?;
            tokio::task::spawn_blocking(move || codec::decode(&path, Kind::Chunk, &expect, &blob))
                .await
                .map_err(|e| Error::Internal(format!("decode task: {e}")))??
        };
        let raw = Arc::new(raw);
        lock(&self.chunks).put(*h, raw.clone());
        Ok(raw)
    }

    /// Hashes, encodes and uploads a chunk unless the store already has it. Returns its name.
    /// All-zero chunks must not be passed here: they are holes.
    ///
    /// # Errors
    /// Backend errors ([`Error::StoreFull`] when out of space).
    pub async fn put_chunk(&self, raw: Vec<u8>, policy: CodecPolicy) -> Result<(Hash, PutOutcome)> {
        let (h, raw, blob) = tokio::task::spawn_blocking(move || {
            let h = Hash::of(&raw);
            let (blob, _) = codec::encode(Kind::Chunk, &raw, policy);
            (h, raw, blob)
        })
        .await
        .map_err(|e| Error::Internal(format!("encode task: {e}")))?;
        let out = self.put_blob(&layout::chunk(&h), blob).await?;
        lock(&self.chunks).put(h, Arc::new(raw));
        Ok((h, out))
    }

    /// Reads and verifies a tree page.
    ///
    /// # Errors
    /// [`Error::Corrupt`] when missing or damaged (a referenced page must exist), backend
    /// errors.
    pub async fn get_page(&self, h: &Hash) -> Result<Arc<Page>> {
        if let Some(p) = lock(&self.pages).get(h) {
            return Ok(p.clone());
        }
        let path = layout::page(h);
        let blob = self
            .objects
            .get(&path)
            .await?
            .ok_or_else(|| Error::Corrupt {
                path: path.clone(),
                reason: "tree page is referenced but missing".into(),
            })?;
        let raw = codec::decode(&path, Kind::Page, h, &blob)?;
        let page = Arc::new(Page::decode(&path, &raw)?);
        lock(&self.pages).put(*h, page.clone());
        Ok(page)
    }

    /// Uploads an encoded page. Pages are nearly always new (each names its children), so
    /// no existence check is spent on them: rewriting an existing page stores the same bytes
    /// and refreshes its age, as a revival would.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn put_page(&self, h: Hash, raw: &[u8], page: Arc<Page>) -> Result<PutOutcome> {
        let (blob, _) = codec::encode(Kind::Page, raw, CodecPolicy::default());
        let n = blob.len() as u64;
        self.objects.put(&layout::page(&h), blob).await?;
        let out = PutOutcome {
            stored_bytes: n,
            uploaded: true,
        };
        lock(&self.pages).put(h, page);
        Ok(out)
    }

    /// Writes an immutable blob unless a fresh copy is already stored.
    async fn put_blob(&self, path: &str, blob: Vec<u8>) -> Result<PutOutcome> {
        if let Some(meta) = self.objects.stat(path).await? {
            let fresh = meta
                .modified
                .and_then(|m| SystemTime::now().duration_since(m).ok())
                .is_none_or(|age| age < self.refresh_after);
            if fresh {
                return Ok(PutOutcome::default());
            }
        }
        let n = blob.len() as u64;
        self.objects.put(path, blob).await?;
        Ok(PutOutcome {
            stored_bytes: n,
            uploaded: true,
        })
    }

    /// Drops a cached chunk, so the next read goes to the store (tests of corruption).
    pub fn forget_chunk(&self, h: &Hash) {
        lock(&self.chunks).pop(h);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding a cache lock leaves a usable cache; take it back.
    m.lock().unwrap_or_else(|p| p.into_inner())
}
