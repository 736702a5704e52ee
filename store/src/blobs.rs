//! Chunks and tree pages: encode, verify, cache, and upload only what the store lacks.
//!
//! A store of format 2 keeps blobs in packs (`pack`, found through `pack_index`): a batch
//! of blobs is written as one pack (or a few, cut at [`crate::pack::TARGET`]), and reads
//! fetch a frame's byte range. A store of format 1 keeps each blob as its own object; this
//! build reads those wherever they are and writes them while the store is format 1, so that
//! older processes sharing the store keep reading what it writes (see `store::upgrade`).

use crate::codec::{self, CodecPolicy, Kind};
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::layout;
use crate::objects::Objects;
use crate::pack::{self, Builder};
use crate::pack_index::{Loc, PackIndex, PackInfo};
use crate::tree::Page;
use futures::{StreamExt, TryStreamExt};
use lru::LruCache;
use std::collections::{HashMap, HashSet};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

mod frames;
mod local_packs;
mod pack_writer;

use crate::store::Store;
pub use frames::{Encoded, Frame};
pub use pack_writer::PackWriter;

/// What an upload did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PutOutcome {
    /// Bytes written to the store (0 when the object was already there).
    pub stored_bytes: u64,
    /// True when the object was written by this call.
    pub uploaded: bool,
}

/// How blobs are laid out, as the store's marker says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Layout {
    /// Not read yet.
    Unknown = 0,
    /// Format 1: one object per blob.
    Loose = 1,
    /// Format 2: packs only.
    Packed = 2,
    /// Format 2 upgraded from 1: packs, and loose objects until collection folds them.
    PackedOverLoose = 3,
}

/// Reads and writes content-addressed blobs with verification and caches.
pub struct Blobs {
    objects: Objects,
    chunks: Mutex<LruCache<Hash, Arc<Vec<u8>>>>,
    pages: Mutex<LruCache<Hash, Arc<Page>>>,
    /// An existing object older than this (ms) is written again before it is referenced, so
    /// a garbage collector that condemned it sees it was revived (see `gc`).
    refresh_after_ms: AtomicU64,
    index: PackIndex,
    layout: AtomicU8,
    files: local_packs::Files,
}

fn path_of(kind: Kind, h: &Hash) -> String {
    match kind {
        Kind::Chunk => layout::chunk(h),
        Kind::Page => layout::page(h),
    }
}

/// Gap of unwanted bytes read through rather than split at, and the largest read.
const SPAN_GAP: u64 = 1 << 20;
const SPAN_MAX: u64 = 8 << 20;
/// Pack ranges read at once by [`Blobs::read_frames`].
const SPAN_READS: usize = 4;
/// Packs uploading at once.
const PACK_UPLOADS: usize = 4;

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
            index: PackIndex::default(),
            layout: AtomicU8::new(Layout::Unknown as u8),
            files: local_packs::Files::default(),
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

    /// The pack index.
    pub(crate) fn index(&self) -> &PackIndex {
        &self.index
    }

    pub(crate) fn set_layout(&self, l: Layout) {
        self.layout.store(l as u8, Ordering::Relaxed);
    }

    /// The layout, read from the marker the first time it is needed.
    pub(crate) async fn layout(&self) -> Result<Layout> {
        match self.layout.load(Ordering::Relaxed) {
            1 => return Ok(Layout::Loose),
            2 => return Ok(Layout::Packed),
            3 => return Ok(Layout::PackedOverLoose),
            _ => {}
        }
        let l = crate::store::layout_of_marker(&self.objects).await?;
        self.set_layout(l);
        Ok(l)
    }

    /// Stored frame bytes of blob `h`, wherever it lives; `None` when the store lacks it.
    async fn fetch(&self, kind: Kind, h: &Hash) -> Result<Option<(String, Vec<u8>)>> {
        let layout = self.layout().await?;
        let loose = path_of(kind, h);
        if layout == Layout::Loose
            && let Some(b) = self.objects.get(&loose).await?
        {
            return Ok(Some((loose, b)));
        }
        self.index.ensure_loaded(&self.objects).await?;
        let mut refreshed = false;
        for _ in 0..4 {
            let seen = self.index.epoch();
            if let Some((loc, info)) = self.index.lookup(kind, h) {
                match self.read_loc(&info, loc).await? {
                    Some(b) => return Ok(Some((in_pack(&info.id, kind, h), b))),
                    None => {
                        // Repacked and deleted since: look again in a fresh listing.
                        self.index.forget(loc.pack);
                        self.index.refresh_after(&self.objects, seen).await?;
                        continue;
                    }
                }
            }
            if layout == Layout::PackedOverLoose
                && let Some(b) = self.objects.get(&loose).await?
            {
                return Ok(Some((loose, b)));
            }
            if refreshed {
                break;
            }
            // Another process may have written it since this one listed the packs.
            self.index.refresh_after(&self.objects, seen).await?;
            refreshed = true;
        }
        // Folded into a pack and deleted while this process read the loose layout.
        if layout == Layout::Loose
            && let Some(b) = self.objects.get(&loose).await?
        {
            return Ok(Some((loose, b)));
        }
        Ok(None)
    }

    /// The frame at `loc` of pack `info`; `None` when the pack is gone.
    async fn read_loc(&self, info: &PackInfo, loc: Loc) -> Result<Option<Vec<u8>>> {
        let (off, len) = (u64::from(loc.offset), u64::from(loc.len));
        if let Some(root) = self.objects.fs_root() {
            let file = self.files.path(root, &info.id);
            let files = self.files.clone();
            return crate::local::blocking(move || files.read(&file, off, len)).await;
        }
        self.objects
            .get_range(&layout::pack(&info.id), off, len)
            .await
    }

    /// Reads a stored chunk or page as it is stored, checked against its name.
    ///
    /// # Errors
    /// [`Error::MissingChunk`] for an absent chunk, [`Error::Corrupt`] for an absent page or
    /// damaged bytes; backend errors.
    pub async fn read_frame(&self, kind: Kind, h: &Hash) -> Result<(Frame, Vec<u8>)> {
        let Some((path, bytes)) = self.fetch(kind, h).await? else {
            return Err(missing(kind, h));
        };
        let h = *h;
        tokio::task::spawn_blocking(move || Frame::verify(&path, kind, &h, bytes))
            .await
            .map_err(|e| Error::Internal(format!("decode task: {e}")))?
    }

    /// Reads and checks several blobs of `kind`, one ranged read per run of them in a pack
    /// (an export carries frames without touching each blob as an object). Returns each
    /// blob's name, frame and bytes, in no particular order.
    ///
    /// # Errors
    /// As [`Blobs::read_frame`] for any of them.
    pub async fn read_frames(
        &self,
        kind: Kind,
        hashes: &[Hash],
    ) -> Result<Vec<(Hash, Frame, Vec<u8>)>> {
        let mut spans: Vec<Span> = Vec::new();
        let mut single = Vec::new();
        if self.layout().await? != Layout::Loose {
            self.index.ensure_loaded(&self.objects).await?;
        }
        let mut located: Vec<(Hash, Loc, PackInfo)> = Vec::new();
        for h in hashes {
            match self.index.lookup(kind, h) {
                Some((loc, info)) => located.push((*h, loc, info)),
                None => single.push(*h),
            }
        }
        located.sort_by(|a, b| (&a.2.id, a.1.offset).cmp(&(&b.2.id, b.1.offset)));
        for (h, loc, info) in located {
            let (off, len) = (u64::from(loc.offset), u64::from(loc.len));
            if let Some(s) = spans.last_mut()
                && s.pack.id == info.id
                && off >= s.offset + s.len
                && off - (s.offset + s.len) <= SPAN_GAP
                && off + len - s.offset <= SPAN_MAX
            {
                s.len = off + len - s.offset;
                s.blobs.push((h, off, len));
                continue;
            }
            spans.push(Span {
                pack: info,
                offset: off,
                len,
                blobs: vec![(h, off, len)],
            });
        }
        let read: Vec<SpanRead> = futures::stream::iter(spans)
            .map(|s| async move { self.read_span(kind, s).await })
            .buffer_unordered(SPAN_READS)
            .try_collect()
            .await?;
        let mut out: Vec<(Hash, Frame, Vec<u8>)> = Vec::with_capacity(hashes.len());
        let mut retry = single;
        for r in read {
            match r {
                SpanRead::Read(blobs) => out.extend(blobs),
                SpanRead::Gone(hs) => retry.extend(hs),
            }
        }
        for h in retry {
            let (f, raw) = self.read_frame(kind, &h).await?;
            out.push((h, f, raw));
        }
        Ok(out)
    }

    /// One span's blobs, or their names when the pack vanished (each is then read alone).
    async fn read_span(&self, kind: Kind, s: Span) -> Result<SpanRead> {
        let loc = Loc {
            pack: 0,
            offset: s.offset as u32,
            len: s.len as u32,
        };
        let Some(bytes) = self.read_loc(&s.pack, loc).await? else {
            return Ok(SpanRead::Gone(
                s.blobs.into_iter().map(|(h, _, _)| h).collect(),
            ));
        };
        tokio::task::spawn_blocking(move || {
            s.blobs
                .iter()
                .map(|(h, off, len)| {
                    let at = (off - s.offset) as usize;
                    let frame = bytes[at..at + *len as usize].to_vec();
                    let what = in_pack(&s.pack.id, kind, h);
                    Frame::verify(&what, kind, h, frame).map(|(f, raw)| (*h, f, raw))
                })
                .collect::<Result<Vec<_>>>()
                .map(SpanRead::Read)
        })
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
        Ok(self.fresh_many(kind, &[*h]).await?[0])
    }

    /// [`Blobs::has_fresh`] for many blobs: in a packed store one look-up each in the
    /// index and one `stat` per pack they are in (a pack is never changed, only deleted, so
    /// the pack existing now, after the caller's hold waited out any sweep, is the blob).
    ///
    /// # Errors
    /// Backend errors.
    pub async fn fresh_many(&self, kind: Kind, hashes: &[Hash]) -> Result<Vec<bool>> {
        if self.layout().await? == Layout::Loose {
            return futures::stream::iter(hashes.iter().copied())
                .map(|h| async move { self.is_fresh(&path_of(kind, &h)).await })
                .buffered(16)
                .try_collect()
                .await;
        }
        self.index.ensure_loaded(&self.objects).await?;
        let found: Vec<Option<PackInfo>> = hashes
            .iter()
            .map(|h| self.index.lookup(kind, h).map(|(_, info)| info))
            .collect();
        let packs: HashSet<String> = found.iter().flatten().map(|p| p.id.clone()).collect();
        let fresh: HashMap<String, bool> = futures::stream::iter(packs)
            .map(|id| async move {
                let f = self.is_fresh(&layout::pack(&id)).await?;
                Ok::<_, Error>((id, f))
            })
            .buffer_unordered(16)
            .try_collect()
            .await?;
        Ok(found
            .iter()
            .map(|p| p.as_ref().is_some_and(|p| fresh.get(&p.id) == Some(&true)))
            .collect())
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
        if self.has_fresh(frame.kind(), frame.hash()).await? {
            return Ok(PutOutcome::default());
        }
        self.write_frame(frame).await
    }

    /// Stores a checked frame without looking first: for blobs [`Blobs::has_fresh`] just
    /// found missing or stale.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn write_frame(&self, frame: Frame) -> Result<PutOutcome> {
        let n = self.write_frames(vec![frame]).await?;
        Ok(PutOutcome {
            stored_bytes: n,
            uploaded: true,
        })
    }

    /// Stores several checked frames, durable together on return: in a packed store as
    /// one pack (or a few of [`crate::pack::TARGET`] each), else one object each (a local
    /// folder syncing twice for the lot). Returns the bytes written.
    ///
    /// # Errors
    /// Backend errors; frames stored before one fails stay (content-addressed, harmless).
    pub async fn write_frames(&self, frames: Vec<Frame>) -> Result<u64> {
        if frames.is_empty() {
            return Ok(0);
        }
        if self.layout().await? == Layout::Loose {
            let n = frames.iter().map(|f| f.bytes().len() as u64).sum();
            let items = frames
                .into_iter()
                .map(|f| (path_of(f.kind(), f.hash()), f.into_bytes()))
                .collect();
            self.objects.put_many(items).await?;
            return Ok(n);
        }
        // As few packs as fit a quarter over the target, of even size.
        let total: usize = frames.iter().map(|f| f.bytes().len()).sum();
        let n = total.div_ceil(pack::TARGET + pack::TARGET / 4).max(1);
        let each = total.div_ceil(n);
        let mut packs = vec![Builder::default()];
        for f in &frames {
            if packs.last().is_some_and(|b| b.len() >= each) {
                packs.push(Builder::default());
            }
            if let Some(b) = packs.last_mut() {
                b.push(f.kind(), *f.hash(), f.bytes());
            }
        }
        drop(frames);
        let sizes: Vec<u64> = futures::stream::iter(packs)
            .map(|b| self.upload_pack(b))
            .buffer_unordered(PACK_UPLOADS)
            .try_collect()
            .await?;
        Ok(sizes.iter().sum())
    }

    /// Writes one pack and adds it to the index. Returns its size.
    pub(crate) async fn upload_pack(&self, b: Builder) -> Result<u64> {
        let (bytes, entries) = b.finish();
        let id = uuid::Uuid::new_v4().simple().to_string();
        let size = bytes.len() as u64;
        self.objects.put(&layout::pack(&id), bytes).await?;
        let info = PackInfo {
            id,
            size,
            modified: Some(SystemTime::now()),
            gone: false,
        };
        self.index.add(info, &entries);
        Ok(size)
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
        let raw = match self.pack_file_of(h) {
            // A local folder's pack: read and verify in one trip to the blocking pool, the
            // hot path of a node's cache misses.
            Some((file, what, off, len)) => {
                let (files, h) = (self.files.clone(), *h);
                let read = crate::local::blocking(move || match files.read(&file, off, len)? {
                    Some(frame) => codec::decode(&what, Kind::Chunk, &h, &frame).map(Some),
                    None => Ok(None),
                })
                .await?;
                match read {
                    Some(raw) => raw,
                    None => self.read_frame(Kind::Chunk, &h).await?.1,
                }
            }
            None => self.read_frame(Kind::Chunk, h).await?.1,
        };
        let raw = Arc::new(raw);
        lock(&self.chunks).put(*h, raw.clone());
        Ok(raw)
    }

    /// Where chunk `h` lies in a local folder's pack, as the index knows it now: the file,
    /// the name errors give it, offset and length.
    fn pack_file_of(&self, h: &Hash) -> Option<(std::path::PathBuf, String, u64, u64)> {
        let root = self.objects.fs_root()?;
        if !matches!(self.layout.load(Ordering::Relaxed), 2 | 3) {
            return None;
        }
        let (loc, info) = self.index.lookup(Kind::Chunk, h)?;
        Some((
            self.files.path(root, &info.id),
            in_pack(&info.id, Kind::Chunk, h),
            u64::from(loc.offset),
            u64::from(loc.len),
        ))
    }

    /// A chunk from the cache, or on a local folder read and verified here, blocking the
    /// calling thread (not a runtime worker); `None` when it must be fetched another way
    /// (a service, or a pack this process has not indexed yet).
    pub fn get_chunk_blocking(&self, h: &Hash) -> Option<Result<Arc<Vec<u8>>>> {
        if let Some(c) = lock(&self.chunks).get(h) {
            return Some(Ok(c.clone()));
        }
        let root = self.objects.fs_root()?;
        let raw = match self.layout.load(Ordering::Relaxed) {
            1 => local_packs::read_loose_chunk(root, h)?,
            2 | 3 => {
                let (file, what, off, len) = self.pack_file_of(h)?;
                match self.files.read(&file, off, len) {
                    Ok(Some(frame)) => codec::decode(&what, Kind::Chunk, h, &frame),
                    Ok(None) => return None,
                    Err(e) => Err(e),
                }
            }
            _ => return None,
        };
        Some(raw.map(|raw| {
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
        tokio::task::spawn_blocking(move || Encoded::new(raw, policy))
            .await
            .map_err(|e| Error::Internal(format!("encode task: {e}")))
    }

    /// Stores an encoded chunk unless a fresh copy is already there (the refresh rule).
    ///
    /// # Errors
    /// Backend errors ([`Error::StoreFull`] when out of space).
    pub async fn put_encoded(&self, enc: Encoded) -> Result<PutOutcome> {
        let (out, _) = self.put_new(vec![enc], Vec::new()).await?;
        Ok(out[0])
    }

    /// Stores the chunks of `chunks` the store lacks (or holds too old to reuse, the refresh
    /// rule) and every page of `pages` (new by construction), in one pack where they fit:
    /// what a checkpoint writes. Call with every hash already in a hold. Returns each
    /// chunk's outcome, in order, and the page bytes written.
    ///
    /// # Errors
    /// Backend errors ([`Error::StoreFull`] when out of space).
    pub async fn put_new(
        &self,
        chunks: Vec<Encoded>,
        pages: Vec<(Hash, Vec<u8>, Arc<Page>)>,
    ) -> Result<(Vec<PutOutcome>, u64)> {
        let hashes: Vec<Hash> = chunks.iter().map(|e| e.hash).collect();
        let fresh = self.fresh_many(Kind::Chunk, &hashes).await?;
        let mut outcomes = Vec::with_capacity(chunks.len());
        let mut frames = Vec::new();
        let mut cached = Vec::new();
        for (enc, here) in chunks.into_iter().zip(fresh) {
            if here {
                outcomes.push(PutOutcome::default());
                cached.push((enc.hash, enc.raw()));
                continue;
            }
            outcomes.push(PutOutcome {
                stored_bytes: enc.stored_len(),
                uploaded: true,
            });
            cached.push((enc.hash, enc.raw()));
            frames.push(enc.into_frame());
        }
        let mut page_bytes = 0;
        let mut page_cache = Vec::new();
        for (h, raw, page) in pages {
            let (blob, _) = codec::encode(Kind::Page, &raw, CodecPolicy::default());
            page_bytes += blob.len() as u64;
            frames.push(Frame::trusted(Kind::Page, h, blob));
            page_cache.push((h, page));
        }
        self.write_frames(frames).await?;
        let mut c = lock(&self.chunks);
        for (h, raw) in cached {
            c.put(h, raw);
        }
        drop(c);
        let mut p = lock(&self.pages);
        for (h, page) in page_cache {
            p.put(h, page);
        }
        Ok((outcomes, page_bytes))
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
        let (frame, raw) = self.read_frame(Kind::Page, h).await?;
        let _ = frame;
        Ok(Arc::new(Page::decode(&layout::page(h), &raw)?))
    }

    /// Uploads an encoded page (no existence check: pages are nearly always new).
    ///
    /// # Errors
    /// Backend errors.
    pub async fn put_page(&self, h: Hash, raw: &[u8], page: Arc<Page>) -> Result<PutOutcome> {
        let (_, n) = self
            .put_new(Vec::new(), vec![(h, raw.to_vec(), page)])
            .await?;
        Ok(PutOutcome {
            stored_bytes: n,
            uploaded: true,
        })
    }

    /// Drops a cached chunk, so the next read goes to the store (tests of corruption).
    pub fn forget_chunk(&self, h: &Hash) {
        lock(&self.chunks).pop(h);
    }

    /// Forgets every cached chunk and page and what it knew of the packs, so the next read
    /// goes to the store (tests that damage a store on purpose).
    #[cfg(feature = "test-access")]
    pub fn forget_all(&self) {
        lock(&self.chunks).clear();
        lock(&self.pages).clear();
        self.files.clear();
    }
}

enum SpanRead {
    Read(Vec<(Hash, Frame, Vec<u8>)>),
    Gone(Vec<Hash>),
}

/// Wanted blobs of one pack, read with one request.
struct Span {
    pack: PackInfo,
    offset: u64,
    len: u64,
    blobs: Vec<(Hash, u64, u64)>,
}

/// How a blob in a pack is named in errors: the pack's path and the blob.
fn in_pack(id: &str, kind: Kind, h: &Hash) -> String {
    let what = match kind {
        Kind::Chunk => "chunk",
        Kind::Page => "tree page",
    };
    format!("{} ({what} {h})", layout::pack(id))
}

fn missing(kind: Kind, h: &Hash) -> Error {
    match kind {
        Kind::Chunk => Error::MissingChunk(*h),
        Kind::Page => Error::Corrupt {
            path: layout::page(h),
            reason: "tree page is referenced but missing".into(),
        },
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding a cache lock leaves a usable cache; take it back.
    m.lock().unwrap_or_else(|p| p.into_inner())
}
