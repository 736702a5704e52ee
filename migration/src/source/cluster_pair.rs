//! ClusterPair reconciler: checks both sides of a pair and records what it found.
//!
//! Scheduler side: the destination API answers, ferry's CSIDriver is registered there and
//! the VolumeImport resource is served in ferry's namespace. Storage side: the transfer store
//! opens (key checked) and accepts a write and a read.

use crate::crd::{ClusterPair, ClusterPairStatus, Migration, PairState};
use crate::error::{Error, Result};
use crate::pair::PairSettings;
use crate::runtime::{Cleanup, Next, Pass, Reconciler, finalizer};
use crate::{Ctx, api, kinds_used};
use kube::ResourceExt;
use std::time::Duration;

/// How often a pair is checked again.
pub const RECHECK: Duration = Duration::from_secs(300);

/// Checks a pair; never fails: what goes wrong becomes a reason.
pub async fn check(ctx: &Ctx, pair: &ClusterPair) -> ClusterPairStatus {
    checked(ctx, pair, true).await
}

/// The checks of [`check`]; the transfer store's probe write only when `probe`.
async fn checked(ctx: &Ctx, pair: &ClusterPair, probe: bool) -> ClusterPairStatus {
    let mut st = ClusterPairStatus {
        last_checked: Some(ctx.stamp()),
        observed_generation: pair.metadata.generation,
        ..Default::default()
    };
    let settings = match PairSettings::load(ctx, pair).await {
        Ok(s) => s,
        Err(e) => {
            let reason = e.to_string();
            st.scheduler_status = PairState::Error;
            st.scheduler_reason = Some(reason.clone());
            st.storage_status = PairState::Error;
            st.storage_reason = Some(reason);
            return st;
        }
    };
    match check_scheduler(ctx, &settings, &pair.namespace().unwrap_or_default()).await {
        Ok(()) => st.scheduler_status = PairState::Ready,
        Err(reason) => {
            st.scheduler_status = PairState::Error;
            st.scheduler_reason = Some(reason);
        }
    }
    let who = format!(
        "{}-{}",
        pair.namespace().unwrap_or_default(),
        pair.name_any()
    );
    let storage = if probe {
        check_storage(&settings, &who).await
    } else {
        settings
            .open_transfer_read_only()
            .await
            .map(|_| ())
            .map_err(|e| transfer_problem(&e))
    };
    match storage {
        Ok(()) => st.storage_status = PairState::Ready,
        Err(reason) => {
            st.storage_status = PairState::Error;
            st.storage_reason = Some(reason);
        }
    }
    st
}

/// Like [`check`], writing nothing: the transfer store is opened and its marker and key
/// checked, without the probe write (a dry run's check).
pub async fn check_read_only(ctx: &Ctx, pair: &ClusterPair) -> ClusterPairStatus {
    checked(ctx, pair, false).await
}

async fn check_scheduler(ctx: &Ctx, s: &PairSettings, ns: &str) -> std::result::Result<(), String> {
    let dest = s.connect(ctx).await.map_err(|e| e.to_string())?;
    check_destination(&dest, ns).await
}

/// The scheduler side of a pair: the destination API answers, ferry's CSIDriver is there and
/// VolumeImports are served, and the pair's account may read them in namespace `ns` (where
/// a migration of the pair's namespace lands unless it maps it). Returns the reason when
/// not.
///
/// # Errors
/// The reason, for a person.
pub async fn check_destination(dest: &kube::Client, ns: &str) -> std::result::Result<(), String> {
    let dest = dest.clone();
    let unreachable = |e: Error| crate::destination_problem(&e);
    let driver = api::get(
        &dest,
        &kinds_used::csi_driver(),
        None,
        ferry_csi::DRIVER_NAME,
    )
    .await
    .map_err(unreachable)?;
    if driver.is_none() {
        return Err(format!(
            "ferry is not installed on the destination: no CSIDriver {}; apply manifests/ there",
            ferry_csi::DRIVER_NAME
        ));
    }
    match api::list(&dest, &kinds_used::volume_import(), Some(ns), None).await {
        Ok(_) => Ok(()),
        Err(e) if e.api_code() == Some(404) => Err(
            "the destination does not serve VolumeImports: apply manifests/ there (ferry's \
             CRDs)"
                .to_string(),
        ),
        Err(e) if e.api_code() == Some(403) => Err(format!(
            "the pair's account may not read VolumeImports in namespace {ns} on the \
             destination: bind ferry-migration-destination to it there (and \
             ferry-migration-pair to it cluster-wide)"
        )),
        Err(e) => Err(unreachable(e)),
    }
}

/// The storage side of a pair: the transfer store opens (key checked) and takes a write and
/// a read of a probe named after `who`. Returns the reason when not.
///
/// # Errors
/// The reason, for a person.
pub async fn check_storage(s: &PairSettings, who: &str) -> std::result::Result<(), String> {
    let store = s.open_transfer().await.map_err(|e| transfer_problem(&e))?;
    store
        .probe(who)
        .await
        .map_err(|e| format!("transfer store did not accept a write and a read: {e}"))
}

/// A transfer store's error, said as the transfer store's once.
fn transfer_problem(e: &Error) -> String {
    let text = e.to_string();
    if text.starts_with("transfer store") {
        text
    } else {
        format!("transfer store: {text}")
    }
}

/// A Migration of the pair's namespace that uses it and has not ended, by name.
async fn running_user(ctx: &Ctx, pair: &ClusterPair) -> Result<Option<String>> {
    let migs: kube::Api<Migration> =
        kube::Api::namespaced(ctx.client.clone(), &pair.namespace().unwrap_or_default());
    let name = pair.name_any();
    Ok(migs
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .find(|m| {
            m.spec.cluster_pair == name
                && m.status
                    .as_ref()
                    .is_some_and(|s| s.stage.is_some() && s.finish_timestamp.is_none())
        })
        .map(|m| m.name_any()))
}

/// How long after a check the next one is due: [`RECHECK`] while Ready; while not, 30 s
/// doubling with each failed check in a row, at most [`RECHECK`].
pub fn recheck_after(st: &ClusterPairStatus) -> Duration {
    if st.ready() {
        return RECHECK;
    }
    let doublings = st.failed_checks.saturating_sub(1).min(8);
    (Duration::from_secs(30) * 2u32.pow(doublings)).min(RECHECK)
}

/// When the pair's next check is due, counted from `now`: zero when its spec changed since
/// the last check or it was never checked.
pub fn due_in(pair: &ClusterPair, now: jiff::Timestamp) -> Duration {
    let Some(st) = &pair.status else {
        return Duration::ZERO;
    };
    if st.observed_generation != pair.metadata.generation {
        return Duration::ZERO;
    }
    let Some(since) = st
        .last_checked
        .as_deref()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
    else {
        return Duration::ZERO;
    };
    let elapsed = now.duration_since(since).unsigned_abs();
    recheck_after(st).saturating_sub(elapsed)
}

/// The ClusterPair reconciler: checks a pair when a check is due and records what it found.
#[derive(Clone, Copy, Debug, Default)]
pub struct Pairs;

impl Reconciler for Pairs {
    type K = ClusterPair;
    type S = ClusterPairStatus;
    const KIND: &'static str = "ClusterPair";
    const FINALIZER: Option<&'static str> = Some(finalizer::PAIR);

    fn api(client: &kube::Client, ns: Option<&str>) -> kube::Api<ClusterPair> {
        kube::Api::namespaced(client.clone(), ns.unwrap_or_default())
    }

    fn status(obj: &ClusterPair) -> ClusterPairStatus {
        obj.status.clone().unwrap_or_default()
    }

    /// A pair whose check is not due yet is left alone (no dial to the destination, no
    /// write).
    async fn reconcile(&self, pass: &mut Pass<'_, Self>) -> Result<Next> {
        let ctx = pass.ctx;
        let wait = due_in(&pass.obj, ctx.now());
        if !wait.is_zero() {
            return Ok(Next::After(wait));
        }
        let pair = pass.obj.clone();
        let st = check(ctx, &pair).await;
        record_check(ctx, &pair, &mut pass.status, st).await;
        Ok(Next::After(recheck_after(&pass.status)))
    }

    /// Deleting a pair waits until no running Migration uses it.
    async fn cleanup(&self, ctx: &Ctx, pair: &ClusterPair) -> Result<Cleanup> {
        Ok(match running_user(ctx, pair).await? {
            Some(user) => Cleanup::Wait(
                Duration::from_secs(10),
                format!(
                    "ClusterPair {} is deleted once Migration {user} that uses it ends",
                    pair.name_any()
                ),
            ),
            None => Cleanup::Done,
        })
    }
}

/// Puts a check's result `st` in the pair's status `into` (counting failed checks in a
/// row), with an Event when the pair's readiness changed.
pub async fn record_check(
    ctx: &Ctx,
    pair: &ClusterPair,
    into: &mut ClusterPairStatus,
    mut st: ClusterPairStatus,
) {
    st.failed_checks = if st.ready() {
        0
    } else {
        into.failed_checks.saturating_add(1)
    };
    if (into.scheduler_status, into.storage_status) != (st.scheduler_status, st.storage_status) {
        let warning = !st.ready();
        let note = match st.reasons() {
            r if r.is_empty() => "destination and transfer store are ready".to_string(),
            r => r.join("; "),
        };
        let reason = if warning { "PairNotReady" } else { "PairReady" };
        ctx.event(pair, warning, reason, note).await;
    }
    *into = st;
}

/// Records a check a Migration made of `pair` in the pair's status, when its readiness
/// changed; a failure to write is only logged (the pair's own check writes it later).
pub async fn record_live(ctx: &Ctx, pair: &ClusterPair, st: ClusterPairStatus) {
    let mut now = pair.status.clone().unwrap_or_default();
    if (now.scheduler_status, now.storage_status) == (st.scheduler_status, st.storage_status) {
        return;
    }
    record_check(ctx, pair, &mut now, st).await;
    let written = match crate::runtime::status::StatusWriter::new(&ctx.client, pair) {
        Ok(mut w) => w.save(&now).await.map(|_| ()),
        Err(e) => Err(e),
    };
    if let Err(e) = written {
        tracing::info!(pair = %pair.name_any(), error = %e, "pair status not refreshed");
    }
}
