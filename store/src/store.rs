//! The store handle: one opendal `Operator`, the blob caches and the options, shared by every
//! volume, snapshot and GC operation.

use crate::blobs::{Blobs, Layout};
use crate::config::{StoreConfig, StoreOptions};
use crate::error::{Error, Result};
use crate::layout;
use crate::objects::Objects;
use crate::records::{self, RECORD_FORMAT, Versioned};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Version of the store layout written by this build: 2, chunks and pages in packs. A store
/// of format 1 (one object per chunk and page) is read as it is and written in its own
/// layout until [`Store::upgrade_format`] moves it to 2.
pub const STORE_FORMAT: u32 = 2;

#[derive(Serialize, Deserialize)]
struct Marker {
    kind: String,
    format: u32,
    /// Format 2 reached from 1: blobs stored one object each may remain until collection
    /// folds them into packs.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    loose: bool,
}

const KIND: &str = "ferry-chunk-store";

fn parse_marker(bytes: &[u8]) -> Result<Layout> {
    let m: Marker = serde_json::from_slice(bytes).map_err(|e| Error::Corrupt {
        path: layout::MARKER.into(),
        reason: format!("store marker does not parse: {e}"),
    })?;
    match (m.kind == KIND, m.format, m.loose) {
        (true, 1, _) => Ok(Layout::Loose),
        (true, 2, false) => Ok(Layout::Packed),
        (true, 2, true) => Ok(Layout::PackedOverLoose),
        _ => Err(Error::Corrupt {
            path: layout::MARKER.into(),
            reason: format!(
                "store is {} format {}; this build reads {KIND} formats 1 and {STORE_FORMAT}",
                m.kind, m.format
            ),
        }),
    }
}

/// The blob layout the store's marker names (a store without one is new: packed).
///
/// # Errors
/// Backend errors; [`Error::Corrupt`] for a marker of another kind or format.
pub(crate) async fn layout_of_marker(objects: &Objects) -> Result<Layout> {
    match objects.get(layout::MARKER).await? {
        Some(b) => parse_marker(&b),
        None => Ok(Layout::Packed),
    }
}

/// A handle on a chunk store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    blobs: Blobs,
    options: StoreOptions,
    policy: RwLock<GcPolicy>,
}

/// How garbage collection treats this store. Recorded in the store (`gc/policy.json`) the
/// first time it is opened, so every process (nodes, controller, `ferry gc`) uses the same
/// values whatever its own flags say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GcPolicy {
    /// Unreferenced objects younger than this are never condemned, and a condemned list is
    /// acted on only this long after it was written.
    pub grace: Duration,
    /// How long a hold or sweep record lives without being rewritten (see `holds`).
    pub hold_ttl: Duration,
}

/// Hold lifetime used when a store is first opened.
pub const DEFAULT_HOLD_TTL: Duration = Duration::from_secs(300);

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PolicyRecord {
    format: u32,
    grace_ms: u64,
    hold_ttl_ms: u64,
}

impl Versioned for PolicyRecord {
    fn format(&self) -> u32 {
        self.format
    }
}

impl Store {
    /// Opens the store described by `config`, writing its marker on first use and refusing a
    /// store of a newer format.
    ///
    /// # Errors
    /// [`Error::Config`] for bad settings, [`Error::Unavailable`] when the backend cannot be
    /// reached, [`Error::Corrupt`] for a store of an unknown format.
    pub async fn open(config: &StoreConfig, options: StoreOptions) -> Result<Store> {
        let objects = Objects::open(config, options.concurrency)?;
        let store = Store::with_objects(objects, options);
        store.check_marker().await?;
        store.load_gc_policy().await?;
        Ok(store)
    }

    /// A store over already-built objects, without touching the backend: its GC policy is
    /// the options' until [`Store::load_gc_policy`] reads the recorded one.
    pub fn with_objects(objects: Objects, options: StoreOptions) -> Store {
        let cache_chunks = options.cache_bytes / (64 << 10);
        let policy = GcPolicy {
            grace: options.gc_grace,
            hold_ttl: options.hold_ttl,
        };
        let blobs = Blobs::new(objects, cache_chunks, policy.grace);
        Store {
            inner: Arc::new(Inner {
                blobs,
                options,
                policy: RwLock::new(policy),
            }),
        }
    }

    /// The GC policy in force (as last read from the store).
    pub fn gc_policy(&self) -> GcPolicy {
        *self.inner.policy.read().unwrap_or_else(|p| p.into_inner())
    }

    fn use_policy(&self, policy: GcPolicy) {
        *self.inner.policy.write().unwrap_or_else(|p| p.into_inner()) = policy;
        self.inner.blobs.set_grace(policy.grace);
    }

    /// Reads the store's recorded GC policy, recording this handle's one if there is none.
    ///
    /// # Errors
    /// Backend errors; [`Error::Corrupt`] for a record that does not parse.
    pub async fn load_gc_policy(&self) -> Result<GcPolicy> {
        let mine = self.gc_policy();
        let rec = PolicyRecord {
            format: RECORD_FORMAT,
            grace_ms: mine.grace.as_millis() as u64,
            hold_ttl_ms: mine.hold_ttl.as_millis() as u64,
        };
        // Read first: the record exists but for a store's first open, and every GC run
        // reads it again.
        let bytes = match self.objects().get(layout::GC_POLICY).await? {
            Some(b) => b,
            None => {
                if self
                    .objects()
                    .put_if_absent(layout::GC_POLICY, records::encode(&rec)?)
                    .await?
                {
                    return Ok(mine);
                }
                self.objects()
                    .get(layout::GC_POLICY)
                    .await?
                    .unwrap_or_default()
            }
        };
        let found: PolicyRecord = records::decode(layout::GC_POLICY, &bytes)?;
        let policy = GcPolicy {
            grace: Duration::from_millis(found.grace_ms),
            hold_ttl: Duration::from_millis(found.hold_ttl_ms.max(1000)),
        };
        if policy != mine {
            tracing::debug!(?policy, flags = ?mine, "using the GC policy recorded in the store");
        }
        self.use_policy(policy);
        Ok(policy)
    }

    /// Records a new GC policy in the store. Other processes use it from their next open;
    /// the collector reads it at the start of every run.
    ///
    /// # Errors
    /// Backend errors; [`Error::Config`] for a hold lifetime under a second.
    pub async fn set_gc_policy(&self, policy: GcPolicy) -> Result<()> {
        if policy.hold_ttl < Duration::from_secs(1) {
            return Err(Error::Config(
                "the hold lifetime must be at least one second".into(),
            ));
        }
        let rec = PolicyRecord {
            format: RECORD_FORMAT,
            grace_ms: policy.grace.as_millis() as u64,
            hold_ttl_ms: policy.hold_ttl.as_millis() as u64,
        };
        self.objects()
            .put(layout::GC_POLICY, records::encode(&rec)?)
            .await?;
        self.use_policy(policy);
        Ok(())
    }

    async fn check_marker(&self) -> Result<()> {
        let marker = Marker {
            kind: KIND.into(),
            format: STORE_FORMAT,
            loose: false,
        };
        let bytes = serde_json::to_vec(&marker)
            .map_err(|e| Error::Internal(format!("encoding the store marker: {e}")))?;
        if self.objects().put_if_absent(layout::MARKER, bytes).await? {
            self.blobs().set_layout(Layout::Packed);
            return Ok(());
        }
        let found = self
            .objects()
            .get(layout::MARKER)
            .await?
            .unwrap_or_default();
        self.blobs().set_layout(parse_marker(&found)?);
        Ok(())
    }

    /// The store's format: 1 (one object per chunk and page) or 2 (packs).
    ///
    /// # Errors
    /// Backend errors reading the marker.
    pub async fn format(&self) -> Result<u32> {
        Ok(match self.blobs().layout().await? {
            Layout::Loose => 1,
            _ => 2,
        })
    }

    /// Moves a store of format 1 to format 2: from now on this process (and every process
    /// that opens the store after, or writes a pack-layout blob after re-reading the
    /// marker) writes packs, and each collection folds the blobs still stored one object
    /// each into packs. Run it once every process sharing the store runs a build that
    /// reads format 2: an older build refuses a store of format 2 when it opens it, and one
    /// already running would not find blobs that were folded. Returns true when the format
    /// changed (false: it was 2 already).
    ///
    /// # Errors
    /// Backend errors.
    pub async fn upgrade_format(&self) -> Result<bool> {
        let now = layout_of_marker(self.objects()).await?;
        if now != Layout::Loose {
            self.blobs().set_layout(now);
            return Ok(false);
        }
        let marker = Marker {
            kind: KIND.into(),
            format: STORE_FORMAT,
            loose: true,
        };
        let bytes = serde_json::to_vec(&marker)
            .map_err(|e| Error::Internal(format!("encoding the store marker: {e}")))?;
        self.objects().put(layout::MARKER, bytes).await?;
        self.blobs().set_layout(Layout::PackedOverLoose);
        tracing::info!("store upgraded to format 2: blobs go into packs from now on");
        Ok(true)
    }

    /// Checks the backend answers: reads the store marker.
    ///
    /// # Errors
    /// The backend's error when it does not.
    pub async fn probe(&self) -> Result<()> {
        self.objects().stat(layout::MARKER).await.map(|_| ())
    }

    /// The object layer.
    pub(crate) fn objects(&self) -> &Objects {
        self.inner.blobs.objects()
    }

    /// The object layer, for tests that damage a store on purpose.
    #[cfg(feature = "test-access")]
    pub fn raw_objects(&self) -> &Objects {
        self.objects()
    }

    /// Distinct chunks (or pages) the store holds now, in packs or one object each
    /// (tests and benchmarks).
    ///
    /// # Errors
    /// Backend errors.
    #[cfg(feature = "test-access")]
    pub async fn stored_blobs(&self, kind: crate::Kind) -> Result<usize> {
        self.blobs().index().refresh(self.objects()).await?;
        let dir = match kind {
            crate::Kind::Chunk => layout::CHUNKS,
            crate::Kind::Page => layout::TREES,
        };
        let mut all: std::collections::HashSet<crate::Hash> =
            self.blobs().index().hashes(kind).into_iter().collect();
        for m in self.objects().list(dir).await? {
            all.extend(layout::hash_of_path(&m.path));
        }
        Ok(all.len())
    }

    /// Where the stored frame of a blob lies: the object's path, offset and length (tests
    /// that damage a store on purpose).
    ///
    /// # Errors
    /// Backend errors.
    #[cfg(feature = "test-access")]
    pub async fn blob_location(
        &self,
        kind: crate::Kind,
        h: &crate::Hash,
    ) -> Result<Option<(String, u64, u64)>> {
        let idx = self.blobs().index();
        idx.refresh(self.objects()).await?;
        if let Some((loc, info)) = idx.lookup(kind, h) {
            let p = layout::pack(&info.id);
            return Ok(Some((p, u64::from(loc.offset), u64::from(loc.len))));
        }
        let p = match kind {
            crate::Kind::Chunk => layout::chunk(h),
            crate::Kind::Page => layout::page(h),
        };
        Ok(self.objects().stat(&p).await?.map(|m| (p, 0, m.size)))
    }

    /// Removes one blob from the store as if it had been lost: its own object, or its pack
    /// rewritten without it (tests that damage a store on purpose).
    ///
    /// # Errors
    /// Backend errors.
    #[cfg(feature = "test-access")]
    pub async fn drop_blob(&self, kind: crate::Kind, h: &crate::Hash) -> Result<()> {
        let Some((path, _, _)) = self.blob_location(kind, h).await? else {
            return Ok(());
        };
        let Some(id) = layout::pack_id_of_path(&path).map(str::to_string) else {
            return self.objects().delete(&path).await;
        };
        let others: Vec<(crate::Kind, crate::Hash)> = self
            .blobs()
            .index()
            .packs_with_entries()
            .into_iter()
            .filter(|(p, _)| p.id == id)
            .flat_map(|(_, e)| e.into_iter().map(|(k, x, _)| (k, x)))
            .filter(|(k, x)| !(*k == kind && x == h))
            .collect();
        let mut frames = Vec::new();
        for (k, x) in others {
            frames.push(self.blobs().read_frame(k, &x).await?.0);
        }
        self.blobs().write_frames(frames).await?;
        self.objects().delete(&path).await?;
        self.blobs().index().refresh(self.objects()).await
    }

    /// Requests this handle (and its clones) made to the backend so far: objects written,
    /// read, looked up, listed and deleted (what a service charging per request bills).
    pub fn requests(&self) -> crate::Requests {
        self.objects().requests()
    }

    /// The blob layer.
    pub fn blobs(&self) -> &Blobs {
        &self.inner.blobs
    }

    /// The options.
    pub fn options(&self) -> &StoreOptions {
        &self.inner.options
    }

    /// Bytes available for new data: the folder's free space for a local store, the
    /// configured capacity or "unbounded" (`u64::MAX`) for object stores.
    pub fn available_bytes(&self) -> u64 {
        if let Some(c) = self.options().capacity_bytes {
            return c;
        }
        self.objects().fs_available_bytes().unwrap_or(u64::MAX)
    }
}
