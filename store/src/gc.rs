//! Garbage collection: delete chunks and pages no live root reaches.
//!
//! Two runs, at least the grace period apart, must agree before anything goes:
//! 1. A run with a condemned list at least the grace period old announces a sweep (a record
//!    under `gc/sweeps/`), reads every live hold, then marks every page and chunk reachable
//!    from every volume generation, every snapshot and every held root, plus every held blob.
//! 2. It deletes what the previous run condemned, if it is still unmarked now and was not
//!    written again since it was condemned, then removes its sweep record.
//! 3. It condemns what is unmarked and older than the grace period, for the next run.
//!
//! Writers put the names of what they upload or reuse in a hold before they look at the
//! store, and wait out a sweep that may have missed them (see `holds`), so no grace period
//! has to outlast the longest transfer; the grace period and the refresh rule of
//! `Blobs::put_blob` remain as a second line for writers of older builds. If any root cannot
//! be read, or any hold record cannot be parsed, the run stops before deleting.

use crate::codec::Kind;
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::holds::{Lifeline, SweepRecord, record_ttl};
use crate::layout;
use crate::records::{self, GenRecord, RECORD_FORMAT, SnapshotRecord};
use crate::repack::{self, Live, Stored};
use crate::store::Store;
use crate::torn::Unreadable;
use crate::tree;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What a GC run did (or, in a dry run, would do).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    /// True when nothing was written or deleted.
    pub dry_run: bool,
    /// Roots marked from (generations, snapshots and held roots).
    pub roots: usize,
    /// Live holds honoured.
    pub holds: usize,
    /// Chunks reachable.
    pub live_chunks: usize,
    /// Pages reachable.
    pub live_pages: usize,
    /// Chunks and pages deleted by this run (would be, in a dry run): unreachable blobs in
    /// the packs and single-blob objects it deleted.
    pub deleted: usize,
    /// Stored bytes of the objects (packs, single-blob objects) deleted.
    pub deleted_bytes: u64,
    /// Condemned chunks and pages kept because a writer wrote them again or a root or hold
    /// names them again (their pack stays, or is deleted only because another kept pack
    /// holds them too).
    pub revived: usize,
    /// Chunks and pages in the objects condemned for the next run.
    pub condemned: usize,
    /// Stored bytes of the objects condemned.
    pub condemned_bytes: u64,
    /// Packs deleted.
    pub packs_deleted: usize,
    /// Packs (and single-blob objects of a format-1 store, folded) whose live blobs this run
    /// copied into new packs, then condemned.
    pub repacked: usize,
    /// Bytes of the new packs written by repacking.
    pub repacked_bytes: u64,
    /// Seconds until the condemned list may be acted on, when this run found it too young.
    pub next_sweep_in: Option<Duration>,
    /// How long the run took.
    pub elapsed: Duration,
}

/// How to run GC.
#[derive(Clone, Copy, Debug, Default)]
pub struct GcOptions {
    /// Report what would be deleted and condemned, writing and deleting nothing.
    pub dry_run: bool,
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
    /// Backend errors, or a root or hold that cannot be read: then nothing is deleted.
    pub async fn gc(&self) -> Result<GcReport> {
        self.gc_with(GcOptions::default()).await
    }

    /// Runs one GC pass with `opts`.
    ///
    /// # Errors
    /// As [`Store::gc`].
    pub async fn gc_with(&self, opts: GcOptions) -> Result<GcReport> {
        self.gc_repacking(opts, repack::REPACK_BELOW).await
    }

    /// Runs one GC pass with `opts`, repacking packs whose live share of frame bytes is
    /// under `below` (a default run repacks those under half live; 1.0 repacks every pack
    /// that holds anything unreachable).
    ///
    /// # Errors
    /// As [`Store::gc`].
    pub async fn gc_repacking(&self, opts: GcOptions, below: f64) -> Result<GcReport> {
        let clock = Instant::now();
        let mut report = GcReport {
            dry_run: opts.dry_run,
            ..GcReport::default()
        };
        if !opts.dry_run {
            // Every run uses the grace period the store records, whatever this process's
            // flags say.
            self.load_gc_policy().await?;
        }
        let grace = self.gc_policy().grace;
        let started = SystemTime::now();

        let old = self.condemned_list().await?;
        let due = match &old {
            Some((_, at)) => {
                let age = started.duration_since(*at).unwrap_or_default();
                if age < grace {
                    report.next_sweep_in = Some(grace - age);
                }
                age >= grace
            }
            None => false,
        };
        if old.is_some() && !due {
            // Too young to act on; it stays the list the next run checks.
            report.elapsed = clock.elapsed();
            return Ok(report);
        }

        let sweep = if due && !opts.dry_run {
            Some(Sweep::announce(self).await?)
        } else {
            None
        };
        let outcome = self
            .mark_and_delete(
                &mut report,
                old,
                sweep.as_ref(),
                (opts, below),
                started,
                grace,
            )
            .await;
        if let Some(s) = sweep {
            s.end().await;
        }
        outcome?;
        report.elapsed = clock.elapsed();
        Ok(report)
    }

    async fn condemned_list(&self) -> Result<Option<(Condemned, SystemTime)>> {
        let Some(bytes) = self.objects().get(layout::GC_CONDEMNED).await? else {
            return Ok(None);
        };
        let list: Condemned = serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
            path: layout::GC_CONDEMNED.into(),
            reason: e.to_string(),
        })?;
        let at = UNIX_EPOCH + Duration::from_millis(list.created_ms);
        Ok(Some((list, at)))
    }

    async fn mark_and_delete(
        &self,
        report: &mut GcReport,
        old: Option<(Condemned, SystemTime)>,
        sweep: Option<&Sweep>,
        (opts, below): (GcOptions, f64),
        started: SystemTime,
        grace: Duration,
    ) -> Result<()> {
        // Holds first, then roots: a writer that released its hold after committing has a
        // root the mark will find.
        let (held_blobs, held_roots, holds) = self.held(!opts.dry_run).await?;
        report.holds = holds;
        // The packs as they are now: the mark reads pages from them.
        self.blobs().index().refresh(self.objects()).await?;
        let (mut pages, mut chunks) = self.mark(report, &held_roots).await?;
        for h in held_blobs {
            pages.insert(h);
            chunks.insert(h);
        }
        report.live_pages = pages.len();
        report.live_chunks = chunks.len();
        let live = Live { chunks, pages };
        let mut objects = Stored::list(self).await?;

        if let Some((old, condemned_at)) = old {
            self.delete_condemned(report, &live, &mut objects, &old, condemned_at, sweep, opts)
                .await?;
        }

        let old_enough = |modified: Option<SystemTime>| match modified {
            Some(m) => started.duration_since(m).is_ok_and(|age| age >= grace),
            // Without a write time (the memory service) age is unknown: only a zero grace
            // period condemns.
            None => grace.is_zero(),
        };
        let layout = self.blobs().layout().await?;
        let plan = repack::plan(&objects, &live, layout, below, &old_enough);
        let mut paths = Vec::new();
        for o in &plan.condemn {
            report.condemned += o.blobs.len().max(1);
            report.condemned_bytes += o.size;
            paths.push(o.path.clone());
        }
        report.repacked = plan.repack.len();
        if !opts.dry_run && !plan.repack.is_empty() {
            report.repacked_bytes = repack::copy_live(self, &plan.repack, &live, &objects).await?;
        }
        for o in &plan.repack {
            // Superseded: what is live in it now lives in a new pack too.
            report.condemned += o.blobs.len();
            report.condemned_bytes += o.size;
            paths.push(o.path.clone());
        }
        objects.clear();
        if opts.dry_run {
            return Ok(());
        }
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
            .await
    }

    /// Deletes what the previous run condemned, where that is still safe: an object whose
    /// blobs are all unreachable now, or whose reachable blobs another object that stays
    /// holds too (a repacked pack, a folded single-blob object). Objects are taken one by
    /// one against the set of those that stay, which only grows, so no blob loses its last
    /// copy.
    #[allow(clippy::too_many_arguments)]
    async fn delete_condemned(
        &self,
        report: &mut GcReport,
        live: &Live,
        objects: &mut Stored,
        old: &Condemned,
        condemned_at: SystemTime,
        sweep: Option<&Sweep>,
        opts: GcOptions,
    ) -> Result<()> {
        let condemned: HashSet<&str> = old.paths.iter().map(String::as_str).collect();
        let mut kept = objects.blobs_outside(&condemned);
        let mut gone = HashSet::new();
        for path in &old.paths {
            let Some(o) = objects.get(path) else {
                continue; // deleted already
            };
            if o.modified.is_some_and(|m| m > condemned_at) {
                // Written again since (a single-blob object revived by a writer).
                report.revived += o.blobs.len().max(1);
                kept.extend(o.blobs.iter().copied());
                continue;
            }
            let needed: Vec<&(Kind, Hash)> = o.blobs.iter().filter(|b| live.has(b)).collect();
            if needed.iter().any(|b| !kept.contains(b)) {
                report.revived += needed.len();
                kept.extend(o.blobs.iter().copied());
                continue;
            }
            if let Some(s) = sweep {
                s.check()?;
            }
            if !opts.dry_run {
                self.objects().delete(path).await?;
            }
            report.revived += needed.len();
            report.deleted += o.blobs.len().max(1) - needed.len();
            report.deleted_bytes += o.size;
            report.packs_deleted += usize::from(o.pack);
            gone.insert(path.clone());
        }
        objects.remove(&gone);
        Ok(())
    }

    async fn mark(
        &self,
        report: &mut GcReport,
        held_roots: &[Hash],
    ) -> Result<(HashSet<Hash>, HashSet<Hash>)> {
        let mut roots = Vec::new();
        for id in self.objects().list_names(layout::VOLUMES).await? {
            for obj in self.objects().list(&layout::gens(&id)).await? {
                let Some(bytes) = self.objects().get(&obj.path).await? else {
                    continue;
                };
                match records::decode::<GenRecord>(&obj.path, &bytes) {
                    Ok(g) => roots.push(g.root),
                    Err(e @ Error::Corrupt { .. }) => {
                        match self.unreadable(&obj.path, &bytes, e).await? {
                            // A dead writer's torn commit: never a root.
                            Unreadable::Torn { young: false } => {}
                            // A root may be in it: mark nothing, delete nothing.
                            Unreadable::Torn { young: true } => {
                                return Err(Error::Unavailable(format!(
                                    "generation record {} is being written; GC deletes nothing                                      this run",
                                    obj.path
                                )));
                            }
                            Unreadable::Refused(e) => return Err(unreadable_root(e)),
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        for obj in self.objects().list(layout::SNAPSHOTS).await? {
            let Some(bytes) = self.objects().get(&obj.path).await? else {
                continue;
            };
            let s: SnapshotRecord = records::decode(&obj.path, &bytes).map_err(unreadable_root)?;
            roots.push(s.root);
        }
        report.roots = roots.len() + held_roots.len();
        let mut pages = HashSet::new();
        let mut chunks = HashSet::new();
        for root in roots {
            tree::walk(self.blobs(), root, &mut pages, &mut chunks).await?;
        }
        for root in held_roots {
            // A held root is one a writer is copying from a record that exists; if it cannot
            // be walked, that writer finds its source gone and starts over.
            if let Err(e) = tree::walk(self.blobs(), *root, &mut pages, &mut chunks).await {
                tracing::warn!(root = %root, error = %e, "a held root cannot be walked");
            }
        }
        Ok((pages, chunks))
    }
}

/// This run's sweep record, kept alive while it deletes.
struct Sweep {
    store: Store,
    id: String,
    life: Lifeline,
}

impl Sweep {
    async fn announce(store: &Store) -> Result<Sweep> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let ttl = record_ttl(store);
        let now = records::now_ms();
        let rec = SweepRecord {
            format: RECORD_FORMAT,
            owner: format!("gc on {}", hostname()),
            started_ms: now,
            expires_ms: now + ttl.as_millis() as u64,
        };
        let written = Instant::now();
        store
            .objects()
            .put(&layout::sweep(&id), records::encode(&rec)?)
            .await?;
        let life = Lifeline::start(
            store.objects().clone(),
            layout::sweep(&id),
            ttl,
            written,
            move |expires_ms| {
                records::encode(&SweepRecord {
                    expires_ms,
                    ..rec.clone()
                })
            },
        );
        Ok(Sweep {
            store: store.clone(),
            id,
            life,
        })
    }

    /// Refuses to delete once writers may take the sweep record as expired.
    fn check(&self) -> Result<()> {
        self.life.check().map_err(|why| {
            Error::Unavailable(format!(
                "the sweep record could not be kept alive ({why}); stopped deleting"
            ))
        })
    }

    async fn end(self) {
        drop(self.life);
        if let Err(e) = self.store.objects().delete(&layout::sweep(&self.id)).await {
            tracing::warn!(error = %e, "removing the sweep record failed; it will expire");
        }
    }
}

/// A root record GC cannot read: the run stops before deleting anything, naming it.
fn unreadable_root(e: Error) -> Error {
    match e {
        Error::Corrupt { path, reason } => Error::Corrupt {
            path,
            reason: format!(
                "{reason}; GC deletes nothing while a root cannot be read (repair or remove \
                 the record, or run a build that reads it)"
            ),
        },
        e => e,
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}
