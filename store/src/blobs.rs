//! Chunks and tree pages: encode, verify, cache, and upload only what the store lacks.

use crate::codec::{self, CodecPolicy, Kind};
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::layout;
use crate::objects::Objects;
use crate::tree::Page;
use lru::LruCache;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// An existing object older than this (ms) is written again before it is referenced, so
    /// a garbage collector that condemned it sees it was revived (see `gc`).
    refresh_after_ms: AtomicU64,
}

/// A chunk hashed and encoded, not stored yet.
pub struct Encoded {
    /// Its name.
    pub hash: Hash,
    raw: Arc<Vec<u8>>,
    blob: Vec<u8>,
}

impl Encoded {
    /// The chunk's bytes (shared with the read cache once stored).
    pub fn raw(&self) -> Arc<Vec<u8>> {
        self.raw.clone()
    }
}

/// A stored frame (the codec's bytes of a chunk or page) whose content was checked against
/// its name: only [`Frame::verify`] makes one, so only checked bytes can be stored.
#[derive(Clone)]
pub struct Frame {
    kind: Kind,
    hash: Hash,
    bytes: Vec<u8>,
}

impl Frame {
    /// Checks that `bytes` frame a blob of `kind` whose content hashes to `hash`, returning
    /// the frame and the content. `what` names the bytes in errors.
    ///
    /// # Errors
    /// [`Error::Corrupt`] when the framing is bad or the content does not match its name.
    pub fn verify(what: &str, kind: Kind, hash: &Hash, bytes: Vec<u8>) -> Result<(Frame, Vec<u8>)> {
        let raw = codec::decode(what, kind, hash, &bytes)?;
        Ok((
            Frame {
                kind,
                hash: *hash,
                bytes,
            },
            raw,
        ))
    }

    /// What the frame holds.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The content's name.
    pub fn hash(&self) -> &Hash {
        &self.hash
    }

    /// The stored bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The stored bytes, owned.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

fn path_of(kind: Kind, h: &Hash) -> String {
    match kind {
        Kind::Chunk => layout::chunk(h),
        Kind::Page => layout::page(h),
    }
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
            refresh_after_ms: AtomicU64::new((gc_grace / 2).as_millis() as u64),
        }
    }

    /// Takes the store's recorded grace period for the refresh rule.
    pub(crate) fn set_grace(&self, grace: Duration) {
        self.refresh_after_ms
            .store((grace / 2).as_millis() as u64, Ordering::Relaxed);
    }

    fn refresh_after(&self) -> Duration {
        Duration::from_millis(self.refresh_after_ms.load(Ordering::Relaxed))
    }

    /// The object layer below.
    pub(crate) fn objects(&self) -> &Objects {
        &self.objects
    }

    /// Reads a stored chunk or page as it is stored, checked against its name.
    ///
    /// # Errors
    /// [`Error::MissingChunk`] for an absent chunk, [`Error::Corrupt`] for an absent page or
    /// damaged bytes; backend errors.
    pub async fn read_frame(&self, kind: Kind, h: &Hash) -> Result<(Frame, Vec<u8>)> {
        let path = path_of(kind, h);
        let bytes = self.objects.get(&path).await?.ok_or_else(|| match kind {
            Kind::Chunk => Error::MissingChunk(*h),
            Kind::Page => Error::Corrupt {
                path: path.clone(),
                reason: "tree page is referenced but missing".into(),
            },
        })?;
        let h = *h;
        tokio::task::spawn_blocking(move || Frame::verify(&path, kind, &h, bytes))
            .await
            .map_err(|e| Error::Internal(format!("decode task: {e}")))?
    }

    /// True when the store has the blob and it is young enough to be referenced without
    /// being written again (the refresh rule). Call only for hashes a [`crate::Hold`]
    /// protects: a blob this answers true for is then safe until the hold is released.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn has_fresh(&self, kind: Kind, h: &Hash) -> Result<bool> {
        self.is_fresh(&path_of(kind, h)).await
    }

    /// True when `path` exists and is younger than the refresh age (an unknown write time
    /// counts as young).
    async fn is_fresh(&self, path: &str) -> Result<bool> {
        let Some(meta) = self.objects.stat(path).await? else {
            return Ok(false);
        };
        Ok(meta
            .modified
            .and_then(|m| SystemTime::now().duration_since(m).ok())
            .is_none_or(|age| age < self.refresh_after()))
    }

    /// Stores a checked frame unless a fresh copy is already there (the refresh rule).
    ///
    /// # Errors
    /// Backend errors ([`Error::StoreFull`] when out of space).
    pub async fn put_frame(&self, frame: Frame) -> Result<PutOutcome> {
        let path = path_of(frame.kind, &frame.hash);
        self.put_blob(&path, frame.bytes).await
    }

    /// Stores a checked frame without looking first: for blobs [`Blobs::has_fresh`] just
    /// found missing or stale.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn write_frame(&self, frame: Frame) -> Result<PutOutcome> {
        self.write(&path_of(frame.kind, &frame.hash), frame.bytes)
            .await
    }

    /// Stores several checked frames (as [`Blobs::write_frame`] each), durable together
    /// on return with far fewer syncs on a local folder. Returns the bytes written.
    ///
    /// # Errors
    /// Backend errors; frames stored before one fails stay (content-addressed, harmless).
    pub async fn write_frames(&self, frames: Vec<Frame>) -> Result<u64> {
        let n = frames.iter().map(|f| f.bytes.len() as u64).sum();
        let items = frames
            .into_iter()
            .map(|f| (path_of(f.kind, &f.hash), f.bytes))
            .collect();
        self.objects.put_many(items).await?;
        Ok(n)
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
            let root = root.to_path_buf();
            tokio::task::spawn_blocking(move || read_chunk_file(&root, &expect))
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

    /// A chunk from the cache, or on a local folder read and verified here, blocking the
    /// calling thread (not a runtime worker); `None` when it must be fetched from a service.
    pub fn get_chunk_blocking(&self, h: &Hash) -> Option<Result<Arc<Vec<u8>>>> {
        if let Some(c) = lock(&self.chunks).get(h) {
            return Some(Ok(c.clone()));
        }
        let root = self.objects.fs_root()?;
        Some(read_chunk_file(root, h).map(|raw| {
            let raw = Arc::new(raw);
            lock(&self.chunks).put(*h, raw.clone());
            raw
        }))
    }

    /// True when chunk `h` is in the read cache.
    pub fn is_cached(&self, h: &Hash) -> bool {
        lock(&self.chunks).contains(h)
    }

    /// A tree page if it is cached.
    pub fn cached_page(&self, h: &Hash) -> Option<Arc<Page>> {
        lock(&self.pages).get(h).cloned()
    }

    /// Hashes, encodes and uploads a chunk unless the store already has it. Returns its name.
    /// All-zero chunks must not be passed here: they are holes.
    ///
    /// # Errors
    /// Backend errors ([`Error::StoreFull`] when out of space).
    pub async fn put_chunk(&self, raw: Vec<u8>, policy: CodecPolicy) -> Result<(Hash, PutOutcome)> {
        let enc = Self::encode_chunk(raw, policy).await?;
        let h = enc.hash;
        Ok((h, self.put_encoded(enc).await?))
    }

    /// Hashes and encodes a chunk on the blocking pool, without storing it.
    ///
    /// # Errors
    /// [`Error::Internal`] when the task fails.
    pub async fn encode_chunk(raw: Vec<u8>, policy: CodecPolicy) -> Result<Encoded> {
        tokio::task::spawn_blocking(move || {
            let hash = Hash::of(&raw);
            let (blob, _) = codec::encode(Kind::Chunk, &raw, policy);
            Encoded {
                hash,
                raw: Arc::new(raw),
                blob,
            }
        })
        .await
        .map_err(|e| Error::Internal(format!("encode task: {e}")))
    }

    /// Stores an encoded chunk unless a fresh copy is already there (the refresh rule).
    ///
    /// # Errors
    /// Backend errors ([`Error::StoreFull`] when out of space).
    pub async fn put_encoded(&self, enc: Encoded) -> Result<PutOutcome> {
        let out = self.put_blob(&layout::chunk(&enc.hash), enc.blob).await?;
        lock(&self.chunks).put(enc.hash, enc.raw);
        Ok(out)
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
        let page = self.read_page(h).await?;
        lock(&self.pages).put(*h, page.clone());
        Ok(page)
    }

    /// A verified tree page, from the cache when it is there but not added to it: for walks
    /// that read each page of a tree once (an export or import of a large volume would
    /// otherwise fill the cache, up to 4 096 pages of 32 KiB, with pages nobody reads again).
    ///
    /// # Errors
    /// As [`Blobs::get_page`].
    pub async fn get_page_once(&self, h: &Hash) -> Result<Arc<Page>> {
        if let Some(p) = lock(&self.pages).peek(h) {
            return Ok(p.clone());
        }
        self.read_page(h).await
    }

    async fn read_page(&self, h: &Hash) -> Result<Arc<Page>> {
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
        Ok(Arc::new(Page::decode(&path, &raw)?))
    }

    /// Uploads an encoded page. Pages are nearly always new (each names its children), so
    /// no existence check is spent on them: rewriting an existing page stores the same bytes
    /// and refreshes its age, as a revival would.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn put_page(&self, h: Hash, raw: &[u8], page: Arc<Page>) -> Result<PutOutcome> {
        let (blob, _) = codec::encode(Kind::Page, raw, CodecPolicy::default());
        let out = self.write(&layout::page(&h), blob).await?;
        lock(&self.pages).put(h, page);
        Ok(out)
    }

    /// Writes an immutable blob unless a fresh copy is already stored.
    async fn put_blob(&self, path: &str, blob: Vec<u8>) -> Result<PutOutcome> {
        if self.is_fresh(path).await? {
            return Ok(PutOutcome::default());
        }
        self.write(path, blob).await
    }

    /// Writes a blob without looking first.
    async fn write(&self, path: &str, blob: Vec<u8>) -> Result<PutOutcome> {
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

/// Reads chunk `h` from a local folder store at `root` and verifies it.
fn read_chunk_file(root: &std::path::Path, h: &Hash) -> Result<Vec<u8>> {
    let path = layout::chunk(h);
    let file = root.join(&path);
    match std::fs::read(&file) {
        Ok(blob) => codec::decode(&path, Kind::Chunk, h, &blob),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::MissingChunk(*h)),
        Err(e) => Err(Error::Unavailable(format!("read {}: {e}", file.display()))),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding a cache lock leaves a usable cache; take it back.
    m.lock().unwrap_or_else(|p| p.into_inner())
}
