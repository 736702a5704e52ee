//! A volume server's health, shared by its FUSE handlers and its lease keeper, and served
//! as the JSON file `status` for the node plugin's NodeGetVolumeStats.

use ferry_store::{FlushReport, Result};
use serde::{Deserialize, Serialize};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// What `status` holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The served volume.
    pub volume_id: String,
    /// Size of the image in bytes.
    pub size_bytes: u64,
    /// The generation the last successful flush committed.
    pub generation: u64,
    /// Successful flushes since the server started.
    pub flushes: u64,
    /// The last error met (a read, write or flush that failed), if it has not since been
    /// followed by a successful flush.
    pub error: Option<String>,
    /// Set once the lease was lost: the volume can no longer be written here.
    pub lease_lost: Option<String>,
}

/// Shared, updated state behind [`Report`].
pub struct Status {
    size: AtomicU64,
    inner: Mutex<Report>,
}

impl Status {
    /// A fresh status for `volume_id` of `size` bytes at `generation`.
    pub fn new(volume_id: &str, size: u64, generation: u64) -> Self {
        Status {
            size: AtomicU64::new(size),
            inner: Mutex::new(Report {
                volume_id: volume_id.to_string(),
                size_bytes: size,
                generation,
                ..Report::default()
            }),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Report) -> T) -> T {
        f(&mut self.inner.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The image size.
    pub fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }

    /// Records a new image size.
    pub fn set_size(&self, size: u64) {
        self.size.store(size, Ordering::Release);
        self.with(|r| r.size_bytes = size);
    }

    /// Records an error of a read, write or discard.
    pub fn error(&self, e: &ferry_store::Error) {
        tracing::error!(error = %e, "volume I/O failed");
        self.with(|r| r.error = Some(e.to_string()));
    }

    /// Records a flush's outcome.
    pub fn flushed(&self, result: &Result<FlushReport>) {
        match result {
            Ok(rep) => self.with(|r| {
                r.flushes += 1;
                r.error = None;
                if let Some(g) = rep.generation {
                    r.generation = g;
                }
            }),
            Err(e) => {
                tracing::error!(error = %e, "flush failed");
                self.with(|r| r.error = Some(format!("flush failed: {e}")));
            }
        }
    }

    /// Records that the lease is gone.
    pub fn lease_lost(&self, why: String) {
        tracing::error!(reason = %why, "lease lost; writes can no longer be committed");
        self.with(|r| r.lease_lost = Some(why));
    }

    /// The report as JSON text.
    pub fn report(&self) -> String {
        let r = self.with(|r| r.clone());
        let mut text = serde_json::to_string(&r).unwrap_or_default();
        text.push('\n');
        text
    }
}
