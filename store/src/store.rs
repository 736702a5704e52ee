//! The store handle: one opendal `Operator`, the blob caches and the options, shared by every
//! volume, snapshot and GC operation.

use crate::blobs::Blobs;
use crate::config::{StoreConfig, StoreOptions};
use crate::error::{Error, Result};
use crate::layout;
use crate::objects::Objects;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

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
        Ok(store)
    }

    /// A store over already-built objects, without touching the backend.
    pub fn with_objects(objects: Objects, options: StoreOptions) -> Store {
        let cache_chunks = options.cache_bytes / (64 << 10);
        let blobs = Blobs::new(objects, cache_chunks, options.gc_grace);
        Store {
            inner: Arc::new(Inner { blobs, options }),
        }
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
    pub fn objects(&self) -> &Objects {
        self.inner.blobs.objects()
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
