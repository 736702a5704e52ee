//! Garbage collection: delete chunks and pages no live root reaches.
//!
//! Two runs, at least the grace period apart, must agree before anything goes:
//! 1. Mark every page and chunk reachable from every volume generation and every snapshot.
//! 2. Delete what the previous run condemned, if it is still unreachable now and was not
//!    written again since it was condemned (a writer that reuses a stored chunk older than
//!    half the grace period writes it again first, see `Blobs::put_blob`).
//! 3. Condemn what is unreachable and older than the grace period, for the next run.
//!
//! Objects a writer uploaded but has not committed yet are younger than the grace period,
//! so they are never condemned. If any root cannot be read, the run stops before deleting.

use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::layout;
use crate::records::{self, GenRecord, SnapshotRecord};
use crate::store::Store;
use crate::tree;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What a GC run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Roots marked from (generations and snapshots).
    pub roots: usize,
    /// Chunks reachable.
    pub live_chunks: usize,
    /// Pages reachable.
    pub live_pages: usize,
    /// Objects deleted by this run.
    pub deleted: usize,
    /// Objects condemned for the next run.
    pub condemned: usize,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Condemned {
    format: u32,
    created_ms: u64,
    paths: Vec<String>,
}

impl Store {
    /// Runs one GC pass (see the module documentation).
    ///
    /// # Errors
    /// Backend errors, or a root that cannot be read: then nothing is deleted.
    pub async fn gc(&self) -> Result<GcReport> {
        let started = SystemTime::now();
        let grace = self.options().gc_grace;
        let mut report = GcReport::default();
        let (pages, chunks) = self.mark(&mut report).await?;
        report.live_pages = pages.len();
        report.live_chunks = chunks.len();
        let live = |path: &str| match layout::hash_of_path(path) {
            Some(h) if path.starts_with(layout::CHUNKS) => chunks.contains(&h),
            Some(h) if path.starts_with(layout::TREES) => pages.contains(&h),
            _ => false,
        };

        if let Some(bytes) = self.objects().get(layout::GC_CONDEMNED).await? {
            let old: Condemned = serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
                path: layout::GC_CONDEMNED.into(),
                reason: e.to_string(),
            })?;
            let condemned_at = UNIX_EPOCH + Duration::from_millis(old.created_ms);
            if started.duration_since(condemned_at).unwrap_or_default() < grace {
                // Too young to act on; it stays the list the next run checks.
                return Ok(report);
            }
            for path in old.paths.iter().filter(|p| !live(p)) {
                let Some(meta) = self.objects().stat(path).await? else {
                    continue;
                };
                if meta.modified.is_some_and(|m| m > condemned_at) {
                    continue; // written again since: a writer revived it
                }
                self.objects().delete(path).await?;
                report.deleted += 1;
            }
        }

        let mut paths = Vec::new();
        for dir in [layout::CHUNKS, layout::TREES, layout::TMP] {
            for obj in self.objects().list(dir).await? {
                if live(&obj.path) {
                    continue;
                }
                let modified = match obj.modified {
                    Some(m) => Some(m),
                    None => self
                        .objects()
                        .stat(&obj.path)
                        .await?
                        .and_then(|m| m.modified),
                };
                // Without a write time (the memory service) age is unknown: only a zero
                // grace period condemns.
                let old_enough = match modified {
                    Some(m) => started.duration_since(m).is_ok_and(|age| age >= grace),
                    None => grace.is_zero(),
                };
                if old_enough {
                    paths.push(obj.path);
                }
            }
        }
        report.condemned = paths.len();
        let list = Condemned {
            format: records::RECORD_FORMAT,
            created_ms: started
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            paths,
        };
        self.objects()
            .put(layout::GC_CONDEMNED, records::encode(&list)?)
            .await?;
        Ok(report)
    }

    async fn mark(&self, report: &mut GcReport) -> Result<(HashSet<Hash>, HashSet<Hash>)> {
        let mut roots = Vec::new();
        for id in self.objects().list_names(layout::VOLUMES).await? {
            for obj in self.objects().list(&layout::gens(&id)).await? {
                let Some(bytes) = self.objects().get(&obj.path).await? else {
                    continue;
                };
                match records::decode::<GenRecord>(&obj.path, &bytes) {
                    Ok(g) => roots.push(g.root),
                    Err(Error::Corrupt { .. }) => {} // torn, never committed
                    Err(e) => return Err(e),
                }
            }
        }
        for obj in self.objects().list(layout::SNAPSHOTS).await? {
            let Some(bytes) = self.objects().get(&obj.path).await? else {
                continue;
            };
            let s: SnapshotRecord = records::decode(&obj.path, &bytes)?;
            roots.push(s.root);
        }
        report.roots = roots.len();
        let mut pages = HashSet::new();
        let mut chunks = HashSet::new();
        for root in roots {
            tree::walk(self.blobs(), root, &mut pages, &mut chunks).await?;
        }
        Ok((pages, chunks))
    }
}
