//! Collection of a transfer store: retention of commits per volume, then removal of the packs
//! no kept commit reaches.
//!
//! Every commit an export writes keeps the packs its tree reaches; an incremental export
//! writes only what the previous commit lacks, so a kept commit usually reaches packs of
//! older exports too. A run:
//! 1. announces a sweep (`gc/sweeps/<uuid>.json`, kept alive while it runs);
//! 2. keeps the newest `keep` commits of each volume (at least one: the base of the next
//!    incremental export) and deletes the older ones;
//! 3. lists the live export records (`exports/<uuid>.json`); if any export is running, it
//!    deletes no pack this time (the export may rely on any indexed pack);
//! 4. walks every kept commit's tree through the index and marks the packs holding any blob
//!    it reaches;
//! 5. deletes (index first, then pack) the unmarked packs the previous run condemned at
//!    least the grace period ago, or all unmarked packs at once with a zero grace period,
//!    and condemns the rest for the next run.
//!
//! An export writes its record, then waits out any live sweep, and only then reads the
//! commits and the index it builds on (see `export`), so a sweep that saw no export record
//! cannot delete a pack an export relies on.

use crate::error::{Error, Result};
use crate::import::TransferPages;
use crate::layout;
use crate::target::{Commit, TransferStore};
use ferry_store::Hash;
use ferry_store::tree;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

/// How to collect.
#[derive(Clone, Copy, Debug)]
pub struct GcOptions {
    /// Commits kept per volume, newest first (at least 1).
    pub keep: usize,
    /// Unreferenced packs are condemned by one run and deleted by a run this much later;
    /// zero deletes them in the same run.
    pub grace: Duration,
    /// Report only: delete and write nothing.
    pub dry_run: bool,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            keep: DEFAULT_KEEP,
            grace: Duration::from_secs(600),
            dry_run: false,
        }
    }
}

/// Commits kept per volume unless told otherwise: the newest (the base the next incremental
/// export diffs against) and the one before it.
pub const DEFAULT_KEEP: usize = 2;

/// What a run did (or would do, in a dry run).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GcReport {
    /// Nothing was written or deleted.
    pub dry_run: bool,
    /// Commits kept.
    pub commits_kept: usize,
    /// Commits deleted by retention.
    pub commits_removed: Vec<String>,
    /// Packs a kept commit reaches.
    pub packs_kept: usize,
    /// Packs deleted.
    pub packs_removed: usize,
    /// Stored bytes of the packs deleted.
    pub bytes_removed: u64,
    /// Packs condemned for a later run.
    pub packs_condemned: usize,
    /// Stored bytes of kept packs.
    pub bytes_kept: u64,
    /// Stored bytes of the blobs kept commits reach (the rest of `bytes_kept` is blobs no
    /// kept commit needs, sharing a pack with ones it does: what repacking would reclaim).
    pub live_bytes: u64,
    /// Running exports that made this run leave every pack alone.
    pub exports_running: usize,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Condemned {
    created_ms: u64,
    packs: Vec<String>,
}

/// Record of a running export or sweep.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Activity {
    owner: String,
    started_ms: u64,
    expires_ms: u64,
}

/// Lifetime of an export or sweep record without a rewrite.
pub(crate) const ACTIVITY_TTL: Duration = Duration::from_secs(300);

/// A live export or sweep record, rewritten until dropped or ended.
pub(crate) struct Announced {
    target: TransferStore,
    path: String,
    life: ferry_store::Lifeline,
}

impl Announced {
    /// Writes a record under `folder` and keeps it alive.
    pub(crate) async fn write(target: &TransferStore, folder: &str, owner: &str) -> Result<Self> {
        let path = format!("{folder}{}.json", uuid::Uuid::new_v4().simple());
        let now = ferry_store::records::now_ms();
        let rec = Activity {
            owner: owner.to_string(),
            started_ms: now,
            expires_ms: now + ACTIVITY_TTL.as_millis() as u64,
        };
        let at = Instant::now();
        put_json(target, &path, &rec).await?;
        let life = ferry_store::Lifeline::start(
            target.objects().clone(),
            path.clone(),
            ACTIVITY_TTL,
            at,
            move |expires_ms| {
                serde_json::to_vec_pretty(&Activity {
                    expires_ms,
                    owner: rec.owner.clone(),
                    started_ms: rec.started_ms,
                })
                .map_err(|e| ferry_store::Error::Internal(format!("encoding a record: {e}")))
            },
        );
        Ok(Announced {
            target: target.clone(),
            path,
            life,
        })
    }

    /// Fails once others may take the record as expired.
    pub(crate) fn check(&self) -> Result<()> {
        self.life.check().map_err(|why| {
            Error::Store(ferry_store::Error::Unavailable(format!(
                "{} could not be kept alive ({why}); stopping",
                self.path
            )))
        })
    }

    /// Removes the record (only logged on failure: it expires).
    pub(crate) async fn end(self) {
        drop(self.life);
        if let Err(e) = self.target.objects().delete(&self.path).await {
            tracing::warn!(path = %self.path, error = %e, "removing a transfer-store record failed; it will expire");
        }
    }
}

async fn put_json<T: Serialize>(target: &TransferStore, path: &str, v: &T) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(v)
        .map_err(|e| Error::Invalid(format!("encoding {path}: {e}")))?;
    target
        .objects()
        .put(path, bytes)
        .await
        .map_err(Error::Target)
}

/// Paths of the live records under `folder`.
pub(crate) async fn live(target: &TransferStore, folder: &str) -> Result<BTreeSet<String>> {
    let now = ferry_store::records::now_ms();
    let mut out = BTreeSet::new();
    for obj in target.objects().list(folder).await.map_err(Error::Target)? {
        let Some(bytes) = target
            .objects()
            .get(&obj.path)
            .await
            .map_err(Error::Target)?
        else {
            continue;
        };
        match serde_json::from_slice::<Activity>(&bytes) {
            Ok(a) if a.expires_ms <= now => {}
            // Live, or unreadable: counted as live rather than guessed at.
            _ => {
                out.insert(obj.path);
            }
        }
    }
    Ok(out)
}

/// Waits until every sweep live now has ended (a later one sees what was announced before
/// this call, so waiting for those too could only starve the caller).
pub(crate) async fn wait_for_sweeps(target: &TransferStore) -> Result<()> {
    let first = live(target, layout::SWEEPS).await?;
    let mut pause = Duration::from_millis(5);
    while !first.is_empty() {
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
        if live(target, layout::SWEEPS).await?.is_disjoint(&first) {
            break;
        }
    }
    Ok(())
}

/// Collects `target` (see the module documentation).
///
/// # Errors
/// A commit or index that does not open or parse (nothing is deleted then), backend errors.
pub async fn gc(target: &TransferStore, opts: GcOptions) -> Result<GcReport> {
    let sweep = if opts.dry_run {
        None
    } else {
        Some(Announced::write(target, layout::SWEEPS, "transfer gc").await?)
    };
    let outcome = collect(target, opts, sweep.as_ref()).await;
    if let Some(s) = sweep {
        s.end().await;
    }
    outcome
}

async fn collect(
    target: &TransferStore,
    opts: GcOptions,
    sweep: Option<&Announced>,
) -> Result<GcReport> {
    let keep = opts.keep.max(1);
    let mut report = GcReport {
        dry_run: opts.dry_run,
        ..GcReport::default()
    };
    let started_ms = ferry_store::records::now_ms();

    // Retention.
    let mut kept: Vec<Commit> = Vec::new();
    for volume in target.commit_volumes().await? {
        let mut commits = target.commits_of(&volume).await?;
        commits.sort_by_key(|c| std::cmp::Reverse(c.created_ms));
        for (i, c) in commits.into_iter().enumerate() {
            if i < keep {
                kept.push(c);
                continue;
            }
            if !opts.dry_run {
                target
                    .objects()
                    .delete(&layout::commit(&c.volume_id, &c.snapshot_id))
                    .await
                    .map_err(Error::Target)?;
            }
            report.commits_removed.push(c.id());
        }
    }
    report.commits_kept = kept.len();

    report.exports_running = live(target, layout::EXPORTS).await?.len();
    if report.exports_running > 0 && !opts.dry_run {
        tracing::info!(
            exports = report.exports_running,
            "exports are running: no pack is removed this run"
        );
        return Ok(report);
    }

    // Reachability through the index.
    let index = target.load_index().await?;
    let pages = TransferPages::new(target, &index);
    let mut names: HashSet<String> = HashSet::new();
    for c in &kept {
        let d = tree::diff(&pages, c.root, &pages, Hash::ZERO)
            .await
            .map_err(|e| match e {
                ferry_store::Error::Corrupt { reason, .. } => Error::Tampered(format!(
                    "commit {}: {reason}; no pack is removed while a kept commit cannot be read",
                    c.id()
                )),
                e => e.into(),
            })?;
        names.extend(d.chunks.iter().map(|h| target.name(h)));
        names.extend(d.pages.iter().map(|(h, _)| target.name(h)));
    }
    // The scan reads the whole index (from its temporary file when spilled): off the async
    // threads.
    let (marked, indexed, live_bytes) = tokio::task::spawn_blocking(move || {
        let mut marked: BTreeSet<String> = BTreeSet::new();
        let mut indexed: BTreeSet<String> = BTreeSet::new();
        let mut live_bytes = 0;
        index.scan(|name, loc| {
            if names.contains(&name) {
                marked.insert(loc.pack.to_string());
                live_bytes += loc.len;
            }
            if !indexed.contains(&*loc.pack) {
                indexed.insert(loc.pack.to_string());
            }
        })?;
        Ok::<_, Error>((marked, indexed, live_bytes))
    })
    .await
    .map_err(crate::target::task_failed)??;
    report.live_bytes += live_bytes;
    let packs = target.pack_sizes().await?;
    report.packs_kept = marked.len();
    report.bytes_kept = marked.iter().filter_map(|p| packs.get(p)).sum();

    // Unmarked: indexed packs no kept commit reaches, and packs without an index (an export
    // that died mid-pack: no export is running now).
    let unmarked: BTreeSet<String> = packs
        .keys()
        .chain(indexed.iter())
        .filter(|p| !marked.contains(*p))
        .cloned()
        .collect();

    let delete_now: BTreeSet<String> = if opts.grace.is_zero() {
        unmarked.clone()
    } else {
        match read_condemned(target).await? {
            Some(old)
                if started_ms.saturating_sub(old.created_ms) >= opts.grace.as_millis() as u64 =>
            {
                old.packs
                    .into_iter()
                    .filter(|p| unmarked.contains(p))
                    .collect()
            }
            _ => BTreeSet::new(),
        }
    };
    for pack in &delete_now {
        if let Some(s) = sweep {
            s.check()?;
        }
        if !opts.dry_run {
            delete_quiet(target, &layout::index(pack)).await?;
            delete_quiet(target, &layout::pack(pack)).await?;
        }
        report.packs_removed += 1;
        report.bytes_removed += packs.get(pack).copied().unwrap_or(0);
    }
    let condemn: Vec<String> = unmarked.difference(&delete_now).cloned().collect();
    report.packs_condemned = condemn.len();
    if !opts.dry_run && !opts.grace.is_zero() {
        let fresh = read_condemned(target).await?.is_none_or(|old| {
            started_ms.saturating_sub(old.created_ms) >= opts.grace.as_millis() as u64
        });
        // A young list stays until it is due; otherwise this run's list replaces it.
        if fresh {
            put_json(
                target,
                layout::CONDEMNED,
                &Condemned {
                    created_ms: started_ms,
                    packs: condemn,
                },
            )
            .await?;
        }
    }
    Ok(report)
}

async fn read_condemned(target: &TransferStore) -> Result<Option<Condemned>> {
    let Some(bytes) = target
        .objects()
        .get(layout::CONDEMNED)
        .await
        .map_err(Error::Target)?
    else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| Error::Tampered(format!("{} does not parse: {e}", layout::CONDEMNED)))
}

async fn delete_quiet(target: &TransferStore, path: &str) -> Result<()> {
    target.objects().delete(path).await.map_err(Error::Target)
}

impl TransferStore {
    /// Volumes with commits.
    pub(crate) async fn commit_volumes(&self) -> Result<Vec<String>> {
        let names = self
            .objects()
            .list_names(layout::COMMITS)
            .await
            .map_err(Error::Target)?;
        Ok(names
            .into_iter()
            .map(|n| n.trim_end_matches('/').to_string())
            .filter(|v| crate::bounds::check_id("volume", v).is_ok())
            .collect())
    }

    /// Every commit of `volume`.
    ///
    /// # Errors
    /// As [`TransferStore::get_commit`].
    pub async fn commits_of(&self, volume: &str) -> Result<Vec<Commit>> {
        crate::bounds::check_id("volume", volume)?;
        let mut out = Vec::new();
        for name in self
            .objects()
            .list_names(&layout::commits(volume))
            .await
            .map_err(Error::Target)?
        {
            let Some(snap) = name.strip_suffix(".json") else {
                continue;
            };
            if crate::bounds::check_id("snapshot", snap).is_err() {
                continue;
            }
            if let Some(c) = self.get_commit(volume, snap).await? {
                out.push(c);
            }
        }
        Ok(out)
    }

    /// Every pack object and its stored size.
    pub(crate) async fn pack_sizes(&self) -> Result<HashMap<String, u64>> {
        let mut out = HashMap::new();
        for obj in self
            .objects()
            .list(layout::PACKS)
            .await
            .map_err(Error::Target)?
        {
            if let Some(id) = obj.path.rsplit('/').next()
                && crate::bounds::is_hex_name(id)
            {
                out.insert(id.to_string(), obj.size);
            }
        }
        Ok(out)
    }
}

/// Counts of what a transfer store holds, for operators and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Contents {
    /// Commits per volume.
    pub commits: BTreeMap<String, usize>,
    /// Pack objects.
    pub packs: usize,
    /// Their stored bytes.
    pub pack_bytes: u64,
    /// Pack indexes.
    pub indexes: usize,
}

impl TransferStore {
    /// What the store holds.
    ///
    /// # Errors
    /// Backend errors; a commit that does not open.
    pub async fn contents(&self) -> Result<Contents> {
        let mut c = Contents::default();
        for v in self.commit_volumes().await? {
            let n = self.commits_of(&v).await?.len();
            c.commits.insert(v, n);
        }
        let packs = self.pack_sizes().await?;
        c.packs = packs.len();
        c.pack_bytes = packs.values().sum();
        c.indexes = self
            .objects()
            .list_names(layout::INDEX)
            .await
            .map_err(Error::Target)?
            .len();
        Ok(c)
    }
}
