//! Progress of a transfer, readable while it runs, and its final report.

use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Counters a running transfer updates; clone the `Arc` it lives in to watch it.
///
/// It also carries a brake: [`Progress::hold_after_packs`] lets an export start only so
/// many packs and then wait, in place, until the brake is let off (an operator pausing a
/// transfer, and tests that need a transfer stopped half way at a known point).
#[derive(Debug, Default)]
pub struct Progress {
    brake: Brake,
    started: OnceLock<Instant>,
    chunks_total: AtomicU64,
    chunks_done: AtomicU64,
    chunks_skipped: AtomicU64,
    bytes_total: AtomicU64,
    bytes_done: AtomicU64,
    bytes_skipped: AtomicU64,
    bytes_stored: AtomicU64,
}

/// One reading of [`Progress`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProgressSnapshot {
    /// Chunks the transfer covers.
    pub chunks_total: u64,
    /// Chunks copied.
    pub chunks_done: u64,
    /// Chunks found already present at the other end.
    pub chunks_skipped: u64,
    /// Volume bytes the transfer covers (chunks times chunk size).
    pub bytes_total: u64,
    /// Volume bytes copied.
    pub bytes_done: u64,
    /// Volume bytes not copied because already present.
    pub bytes_skipped: u64,
    /// Bytes written to the other end (compressed, sealed, packed).
    pub bytes_stored: u64,
    /// Time since the transfer started.
    pub elapsed: Duration,
}

impl ProgressSnapshot {
    /// Volume bytes handled (copied or skipped) per second.
    pub fn throughput(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 {
            (self.bytes_done + self.bytes_skipped) as f64 / s
        } else {
            0.0
        }
    }

    /// True when every chunk is copied or skipped.
    pub fn finished(&self) -> bool {
        self.chunks_done + self.chunks_skipped >= self.chunks_total
    }
}

/// How many packs may start: `None` for any number.
#[derive(Debug, Default)]
struct Brake {
    /// (packs allowed in all, packs started)
    state: Mutex<(Option<u64>, u64)>,
    changed: Notify,
}

impl Progress {
    /// Lets the transfer start at most `packs` packs in all (`None`: no limit); a transfer
    /// at the limit waits until it is raised.
    pub fn hold_after_packs(&self, packs: Option<u64>) {
        self.brake.state.lock().unwrap_or_else(|p| p.into_inner()).0 = packs;
        self.brake.changed.notify_waiters();
    }

    /// Packs started so far.
    pub fn packs_started(&self) -> u64 {
        self.brake.state.lock().unwrap_or_else(|p| p.into_inner()).1
    }

    /// Waits until one more pack may start, and counts it.
    pub(crate) async fn pack_slot(&self) {
        loop {
            let changed = self.brake.changed.notified();
            {
                let mut s = self.brake.state.lock().unwrap_or_else(|p| p.into_inner());
                if s.0.is_none_or(|limit| s.1 < limit) {
                    s.1 += 1;
                    return;
                }
            }
            changed.await;
        }
    }

    pub(crate) fn start(&self) {
        let _ = self.started.set(Instant::now());
    }

    pub(crate) fn plan(&self, chunks: u64, bytes: u64) {
        self.chunks_total.fetch_add(chunks, Relaxed);
        self.bytes_total.fetch_add(bytes, Relaxed);
    }

    pub(crate) fn skipped(&self, chunks: u64, bytes: u64) {
        self.chunks_skipped.fetch_add(chunks, Relaxed);
        self.bytes_skipped.fetch_add(bytes, Relaxed);
    }

    pub(crate) fn done(&self, chunks: u64, bytes: u64) {
        self.chunks_done.fetch_add(chunks, Relaxed);
        self.bytes_done.fetch_add(bytes, Relaxed);
    }

    pub(crate) fn stored(&self, bytes: u64) {
        self.bytes_stored.fetch_add(bytes, Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> ProgressSnapshot {
        ProgressSnapshot {
            chunks_total: self.chunks_total.load(Relaxed),
            chunks_done: self.chunks_done.load(Relaxed),
            chunks_skipped: self.chunks_skipped.load(Relaxed),
            bytes_total: self.bytes_total.load(Relaxed),
            bytes_done: self.bytes_done.load(Relaxed),
            bytes_skipped: self.bytes_skipped.load(Relaxed),
            bytes_stored: self.bytes_stored.load(Relaxed),
            elapsed: self.started.get().map(Instant::elapsed).unwrap_or_default(),
        }
    }
}

/// What a finished transfer did.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The commit exported or imported.
    pub commit: String,
    /// Chunks of the snapshot that differ from what the other end had at the same place.
    pub chunks_total: u64,
    /// Chunks copied.
    pub chunks_copied: u64,
    /// Chunks already present at the other end.
    pub chunks_skipped: u64,
    /// Tree pages copied.
    pub pages_copied: u64,
    /// Uncompressed bytes of the chunks copied.
    pub bytes_read: u64,
    /// Bytes written at the other end (chunks and pages as stored).
    pub bytes_written: u64,
    /// How long it took.
    pub duration: Duration,
    /// The volume an import created or updated.
    pub volume_id: Option<String>,
    /// Of an export: the most tree names (chunks and pages) it held at once while walking
    /// the snapshot's tree; bounded by its batch and window, not by the volume's size.
    pub names_held_peak: u64,
}

impl Report {
    /// Share of chunks not copied because the other end had them.
    pub fn dedup_ratio(&self) -> f64 {
        if self.chunks_total == 0 {
            0.0
        } else {
            self.chunks_skipped as f64 / self.chunks_total as f64
        }
    }

    /// Bytes written per uncompressed byte read.
    pub fn compression_ratio(&self) -> f64 {
        if self.bytes_read == 0 {
            1.0
        } else {
            self.bytes_written as f64 / self.bytes_read as f64
        }
    }
}
