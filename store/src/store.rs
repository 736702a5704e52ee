//! The store handle: one opendal `Operator`, the blob caches and the options, shared by every
//! volume, snapshot and GC operation.

use crate::blobs::Blobs;
use crate::config::{StoreConfig, StoreOptions};
use crate::error::{Error, Result};
use crate::layout;
use crate::objects::Objects;
use crate::records::{self, RECORD_FORMAT, Versioned};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Version of the store layout written by this build.
pub const STORE_FORMAT: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Marker {
    kind: String,
    format: u32,
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
            kind: "ferry-chunk-store".into(),
            format: STORE_FORMAT,
        };
        let bytes = serde_json::to_vec(&marker)
            .map_err(|e| Error::Internal(format!("encoding the store marker: {e}")))?;
        if self.objects().put_if_absent(layout::MARKER, bytes).await? {
            return Ok(());
        }
        let found = self
            .objects()
            .get(layout::MARKER)
            .await?
            .unwrap_or_default();
        let m: Marker = serde_json::from_slice(&found).map_err(|e| Error::Corrupt {
            path: layout::MARKER.into(),
            reason: format!("store marker does not parse: {e}"),
        })?;
        if m.kind != marker.kind || m.format != STORE_FORMAT {
            return Err(Error::Corrupt {
                path: layout::MARKER.into(),
                reason: format!(
                    "store is {} format {}; this build reads ferry-chunk-store format {STORE_FORMAT}",
                    m.kind, m.format
                ),
            });
        }
        Ok(())
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
