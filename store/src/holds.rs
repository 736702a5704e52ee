//! In-flight work made visible to garbage collection.
//!
//! A writer that puts chunks or pages before the root naming them is committed (a node's
//! upload over the dirty limit, an import, a flush) or that copies a root into a new record
//! (a snapshot, a clone) declares what it holds in a **hold**: one record under `gc/holds/`
//! listing blob and root hashes, rewritten with a later expiry while the writer runs, and
//! removed once its commit is durable. A writer that dies leaves a record that expires.
//!
//! A GC run that deletes anything first announces a **sweep** (a record under `gc/sweeps/`),
//! then reads the live holds, then marks, then deletes, then removes its sweep record. A
//! writer adds hashes to its hold *before* it checks whether the store already has those
//! blobs, and then looks for a live sweep:
//! - none: any later sweep reads the holds after this point and sees the hashes; any earlier
//!   one has finished deleting, so the presence checks that follow see the store as it is;
//! - one: it may have read the holds before the hashes were added, so the writer waits for
//!   it to end (or expire) before it checks presence or relies on a root.
//!
//! The proof sketch is in docs/chunk-store.md.

use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::layout;
use crate::objects::Objects;
use crate::records::{self, RECORD_FORMAT, Versioned};
use crate::store::Store;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A hold record: what one writer has uploaded or relies on and has not committed yet.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HoldRecord {
    /// Record format.
    pub format: u32,
    /// Who holds (for operators reading the store).
    pub owner: String,
    /// When the hold was taken, ms since the epoch.
    pub created_ms: u64,
    /// After this instant (ms since the epoch) the hold is dead unless rewritten.
    pub expires_ms: u64,
    /// Chunks and pages held as objects.
    #[serde(default)]
    pub blobs: Vec<Hash>,
    /// Roots held with everything they reach.
    #[serde(default)]
    pub roots: Vec<Hash>,
}

impl Versioned for HoldRecord {
    fn format(&self) -> u32 {
        self.format
    }
}

/// A sweep record: a GC run that may be deleting.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SweepRecord {
    /// Record format.
    pub format: u32,
    /// Who sweeps.
    pub owner: String,
    /// When the sweep began, ms since the epoch.
    pub started_ms: u64,
    /// After this instant the sweep is dead unless rewritten.
    pub expires_ms: u64,
}

impl Versioned for SweepRecord {
    fn format(&self) -> u32 {
        self.format
    }
}

/// How long a hold or sweep record lives without being rewritten.
pub(crate) fn record_ttl(store: &Store) -> Duration {
    store.gc_policy().hold_ttl
}

/// A hold on blobs and roots, released after the writer's commit. Dropping it stops the
/// refresher; the record then expires by itself.
pub struct Hold {
    store: Store,
    id: String,
    state: Arc<Mutex<HoldState>>,
    life: Lifeline,
}

struct HoldState {
    record: HoldRecord,
    blobs: BTreeSet<Hash>,
    roots: BTreeSet<Hash>,
}

/// A record rewritten with a later expiry every third of its lifetime until dropped, and
/// until when (by this process's monotonic clock) the stored copy is known to live. Holds,
/// sweeps, and the transfer store's export and sweep records all live this way.
pub struct Lifeline {
    ttl: Duration,
    life: Arc<Mutex<Life>>,
    /// Taken around every write of the record (the owner's and the refresher's), so an
    /// older state never lands after a newer one.
    gate: Arc<tokio::sync::Mutex<()>>,
    task: tokio::task::JoinHandle<()>,
}

struct Life {
    until: Instant,
    /// The last rewrite failed with this.
    broken: Option<String>,
}

impl Lifeline {
    /// Keeps the record at `path`, written at `written`, alive: `encode` makes its bytes
    /// with a given expiry (ms since the epoch).
    pub fn start<F>(
        objects: Objects,
        path: String,
        ttl: Duration,
        written: Instant,
        encode: F,
    ) -> Lifeline
    where
        F: Fn(u64) -> Result<Vec<u8>> + Send + 'static,
    {
        let life = Arc::new(Mutex::new(Life {
            until: written + ttl,
            broken: None,
        }));
        let gate = Arc::new(tokio::sync::Mutex::new(()));
        let task = tokio::spawn({
            let (life, gate) = (life.clone(), gate.clone());
            async move {
                loop {
                    tokio::time::sleep(ttl / 3).await;
                    let _writing = gate.lock().await;
                    let at = Instant::now();
                    let put = match encode(records::now_ms() + ttl.as_millis() as u64) {
                        Ok(b) => objects.put(&path, b).await,
                        Err(e) => Err(e),
                    };
                    let mut l = lock(&life);
                    match put {
                        Ok(()) => {
                            l.until = at + ttl;
                            l.broken = None;
                        }
                        Err(e) => {
                            tracing::warn!(path, error = %e, "rewriting a GC record failed");
                            l.broken = Some(e.to_string());
                        }
                    }
                }
            }
        });
        Lifeline {
            ttl,
            life,
            gate,
            task,
        }
    }

    /// The owner rewrote the record itself, begun at `at`.
    pub fn renewed(&self, at: Instant) {
        let mut l = lock(&self.life);
        l.until = l.until.max(at + self.ttl);
    }

    /// Fails with the reason once less than a quarter of the lifetime is left: what the
    /// record protects must not be relied on past its expiry.
    ///
    /// # Errors
    /// The last rewrite's failure, or "not refreshed in time".
    pub fn check(&self) -> std::result::Result<(), String> {
        let l = lock(&self.life);
        if Instant::now() + self.ttl / 4 >= l.until {
            return Err(l
                .broken
                .clone()
                .unwrap_or_else(|| "not refreshed in time".into()));
        }
        Ok(())
    }

    /// The lifetime.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }
}

impl Drop for Lifeline {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Store {
    /// Takes a hold named after `owner` (empty until [`Hold::protect`]).
    ///
    /// # Errors
    /// Backend errors writing the hold record.
    pub async fn hold(&self, owner: &str) -> Result<Hold> {
        self.hold_blobs(owner, &[]).await
    }

    /// Takes a hold on `blobs` with one record write, then as [`Hold::protect`] waits out
    /// sweeps that may have read the holds before it. What a writer with new blobs to
    /// upload takes: one write, not one for the empty hold and one for its names.
    ///
    /// # Errors
    /// Backend errors; [`Error::Unavailable`] when the hold could not be kept alive.
    pub async fn hold_protecting(&self, owner: &str, blobs: &[Hash]) -> Result<Hold> {
        let hold = self.hold_blobs(owner, blobs).await?;
        if !blobs.is_empty() {
            self.wait_for_sweeps().await?;
            hold.check()?;
        }
        Ok(hold)
    }

    async fn hold_blobs(&self, owner: &str, blobs: &[Hash]) -> Result<Hold> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let ttl = record_ttl(self);
        let now = records::now_ms();
        let set: BTreeSet<Hash> = blobs.iter().copied().filter(|h| !h.is_zero()).collect();
        let record = HoldRecord {
            format: RECORD_FORMAT,
            owner: owner.to_string(),
            created_ms: now,
            expires_ms: now + ttl.as_millis() as u64,
            blobs: set.iter().copied().collect(),
            roots: Vec::new(),
        };
        let started = Instant::now();
        self.objects()
            .put(&layout::hold(&id), records::encode(&record)?)
            .await?;
        let state = Arc::new(Mutex::new(HoldState {
            record,
            blobs: set,
            roots: BTreeSet::new(),
        }));
        let life = Lifeline::start(self.objects().clone(), layout::hold(&id), ttl, started, {
            let state = state.clone();
            move |expires_ms| {
                let mut st = lock(&state);
                st.record.expires_ms = expires_ms;
                records::encode(&st.record)
            }
        });
        Ok(Hold {
            store: self.clone(),
            id,
            state,
            life,
        })
    }

    /// Waits until every sweep live now has ended. A sweep that starts later reads the
    /// holds after this call began, so it sees whatever was held before: waiting only for
    /// the ones listed first keeps back-to-back sweeps from starving a writer. A sweep record
    /// whose expiry has passed belongs to a GC that died (a live one rewrites it, and stops
    /// deleting when it cannot).
    ///
    /// # Errors
    /// Backend errors listing or reading sweep records.
    pub(crate) async fn wait_for_sweeps(&self) -> Result<()> {
        let first: BTreeSet<String> = self
            .live_sweeps()
            .await?
            .into_iter()
            .map(|(path, _)| path)
            .collect();
        if first.is_empty() {
            return Ok(());
        }
        let mut pause = Duration::from_millis(5);
        loop {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(200));
            let now = self.live_sweeps().await?;
            if !now.iter().any(|(path, _)| first.contains(path)) {
                return Ok(());
            }
        }
    }

    /// Sweep records that have not expired, with their paths.
    pub(crate) async fn live_sweeps(&self) -> Result<Vec<(String, SweepRecord)>> {
        let now = records::now_ms();
        let mut out = Vec::new();
        for obj in self.objects().list(layout::GC_SWEEPS).await? {
            let Some(bytes) = self.objects().get(&obj.path).await? else {
                continue;
            };
            match records::decode::<SweepRecord>(&obj.path, &bytes) {
                Ok(s) if s.expires_ms > now => out.push((obj.path, s)),
                Ok(_) => {}
                // A record being written: take it as live for one look.
                Err(Error::Corrupt { .. }) => {
                    if !self.objects().older_than(&obj.path, TORN).await? {
                        let rec = SweepRecord {
                            format: RECORD_FORMAT,
                            owner: "unknown".into(),
                            started_ms: now,
                            expires_ms: now + 1,
                        };
                        out.push((obj.path, rec))
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Every live hold's blobs and roots; dead hold records older than their expiry by a
    /// further TTL are removed when `reap` is set.
    pub(crate) async fn held(&self, reap: bool) -> Result<(Vec<Hash>, Vec<Hash>, usize)> {
        let now = records::now_ms();
        let ttl = record_ttl(self).as_millis() as u64;
        let (mut blobs, mut roots, mut live) = (Vec::new(), Vec::new(), 0);
        for obj in self.objects().list(layout::GC_HOLDS).await? {
            let Some(bytes) = self.objects().get(&obj.path).await? else {
                continue;
            };
            match records::decode::<HoldRecord>(&obj.path, &bytes) {
                Ok(h) if h.expires_ms > now => {
                    live += 1;
                    blobs.extend(h.blobs);
                    roots.extend(h.roots);
                }
                Ok(h) => {
                    if reap && h.expires_ms + ttl < now {
                        self.objects().delete(&obj.path).await?;
                    }
                }
                // A torn record cannot be read, so nothing it held can be honoured: no
                // deletion this run. It is either a writer's record being replaced (read
                // again next run) or debris an operator removes.
                Err(Error::Corrupt { path, reason }) => {
                    return Err(Error::Corrupt {
                        path,
                        reason: format!("hold record unreadable, GC will not delete: {reason}"),
                    });
                }
                Err(e) => return Err(e),
            }
        }
        Ok((blobs, roots, live))
    }
}

impl Store {
    /// Runs `write`, which records `root` (read from a volume generation or a snapshot) under
    /// a new record, with `root` held, so a sweep that listed the records before `write` and
    /// the source after its removal cannot delete what `root` reaches. `source_exists`
    /// answers whether the record `root` was read from still exists; when it no longer
    /// does after a sweep was waited out, [`Error::Conflict`] asks the caller to read the
    /// source again.
    pub(crate) async fn with_root_held<T, W, E>(
        &self,
        owner: &str,
        root: Hash,
        source_exists: E,
        write: W,
    ) -> Result<T>
    where
        W: std::future::Future<Output = Result<T>>,
        E: std::future::Future<Output = Result<bool>>,
    {
        if root.is_zero() {
            return write.await;
        }
        let hold = self.hold(owner).await?;
        let outcome = async {
            hold.protect(&[], &[root]).await?;
            // A record that still exists now existed through any sweep that ended since it
            // was read (records are never re-created), so that sweep marked `root`.
            if !source_exists.await? {
                return Err(Error::Conflict(format!(
                    "{owner}: the source changed while it was being copied; try again"
                )));
            }
            let out = write.await?;
            hold.check()?;
            Ok(out)
        }
        .await;
        hold.release().await;
        outcome
    }

    /// True while generation `generation` of volume `id` exists.
    pub(crate) async fn gen_exists(&self, id: &str, generation: u64) -> Result<bool> {
        self.objects()
            .exists(&layout::gen_path(id, generation))
            .await
    }
}

/// Age after which an unreadable sweep record is debris, not one being written.
const TORN: Duration = Duration::from_secs(60);

impl Hold {
    /// Adds blobs and roots to the hold and makes it durable, then waits out any sweep that
    /// may have read the holds before this call. Only after this returns may the writer
    /// check whether the store has those blobs, or rely on those roots.
    ///
    /// # Errors
    /// Backend errors; [`Error::Unavailable`] when the hold could not be kept alive.
    pub async fn protect(&self, blobs: &[Hash], roots: &[Hash]) -> Result<()> {
        self.update(|st| {
            let before = (st.blobs.len(), st.roots.len());
            st.blobs
                .extend(blobs.iter().copied().filter(|h| !h.is_zero()));
            st.roots
                .extend(roots.iter().copied().filter(|h| !h.is_zero()));
            (st.blobs.len(), st.roots.len()) != before
        })
        .await
    }

    /// Makes the hold name exactly `blobs` and `roots` from now on, then as
    /// [`Hold::protect`]. A writer that streams uses it to keep its record small: what it
    /// stored earlier it names by the roots of the finished subtrees holding it, once those
    /// pages are stored, instead of blob by blob. Dropping a name is safe only for what such
    /// a stored root (or one still named) reaches: a GC that reads the record before the
    /// rewrite sees the old names, one that reads it after walks the roots.
    ///
    /// # Errors
    /// As [`Hold::protect`].
    pub async fn replace(&self, blobs: &[Hash], roots: &[Hash]) -> Result<()> {
        self.update(|st| {
            let blobs: BTreeSet<Hash> = blobs.iter().copied().filter(|h| !h.is_zero()).collect();
            let roots: BTreeSet<Hash> = roots.iter().copied().filter(|h| !h.is_zero()).collect();
            let changed = blobs != st.blobs || roots != st.roots;
            st.blobs = blobs;
            st.roots = roots;
            changed
        })
        .await
    }

    /// Applies `change` to what is held; when it says it changed something, writes the
    /// record. Then waits out sweeps and checks the hold is alive.
    async fn update(&self, change: impl FnOnce(&mut HoldState) -> bool) -> Result<()> {
        let writing = self.life.gate.clone().lock_owned().await;
        let (bytes, written) = {
            let mut st = lock(&self.state);
            if !change(&mut st) {
                (None, Instant::now())
            } else {
                st.record.blobs = st.blobs.iter().copied().collect();
                st.record.roots = st.roots.iter().copied().collect();
                st.record.expires_ms = records::now_ms() + self.life.ttl().as_millis() as u64;
                (Some(records::encode(&st.record)?), Instant::now())
            }
        };
        if let Some(bytes) = bytes {
            self.store
                .objects()
                .put(&layout::hold(&self.id), bytes)
                .await?;
            self.life.renewed(written);
        }
        drop(writing);
        self.store.wait_for_sweeps().await?;
        self.check()
    }

    /// Checks the hold is still alive: call before committing what it protects.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when the record may have expired (refreshes failed): the
    /// writer must not commit, and a retry starts over with a new hold.
    pub fn check(&self) -> Result<()> {
        // The margin leaves room for the commit that follows to land before any expiry.
        self.life.check().map_err(|why| {
            Error::Unavailable(format!(
                "GC hold {} lapsed ({why}): not committing what it protected",
                self.id
            ))
        })
    }

    /// Removes the hold. A failure is only logged: the record expires by itself.
    pub async fn release(self) {
        drop(self.life);
        if let Err(e) = self.store.objects().delete(&layout::hold(&self.id)).await {
            tracing::warn!(hold = %self.id, error = %e, "removing a GC hold failed; it will expire");
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
