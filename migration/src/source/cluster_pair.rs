//! ClusterPair reconciler: checks both sides of a pair and records what it found.
//!
//! Scheduler side: the destination API answers, ferry's CSIDriver is registered there and
//! the VolumeImport resource is served in ferry's namespace. Storage side: the transfer store
//! opens (key checked) and accepts a write and a read.

use crate::crd::{ClusterPair, ClusterPairStatus, Migration, PairState};
use crate::error::{Error, Result};
use crate::pair::PairSettings;
use crate::runtime::finalizer;
use crate::runtime::status::StatusWriter;
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
        last_checked: Some(crate::time::now()),
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
    match check_scheduler(ctx, &settings).await {
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

async fn check_scheduler(ctx: &Ctx, s: &PairSettings) -> std::result::Result<(), String> {
    let dest = s.connect(ctx).await.map_err(|e| e.to_string())?;
    check_destination(&dest, &s.ferry_namespace).await
}

/// The scheduler side of a pair: the destination API answers, ferry's CSIDriver is there and
/// VolumeImports are served in `ferry_namespace`. Returns the reason when not.
///
/// # Errors
/// The reason, for a person.
pub async fn check_destination(
    dest: &kube::Client,
    ferry_namespace: &str,
) -> std::result::Result<(), String> {
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
    match api::list(
        &dest,
        &kinds_used::volume_import(),
        Some(ferry_namespace),
        None,
    )
    .await
    {
        Ok(_) => Ok(()),
        Err(e) if e.api_code() == Some(404) => Err(format!(
            "the destination does not serve VolumeImports in namespace {}: apply \
             manifests/crds there, or set ferryNamespace in the pair's Secret",
            ferry_namespace
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

/// When the pair's next check is due, counted from now: zero when its spec changed since
/// the last check or it was never checked.
pub fn due_in(pair: &ClusterPair) -> Duration {
    let Some(st) = &pair.status else {
        return Duration::ZERO;
    };
    if st.observed_generation != pair.metadata.generation {
        return Duration::ZERO;
    }
    let Some(since) = st
        .last_checked
        .as_deref()
        .and_then(|t| crate::time::seconds_between(t, &crate::time::now()))
    else {
        return Duration::ZERO;
    };
    recheck_after(st).saturating_sub(Duration::from_secs_f64(since.max(0.0)))
}

/// Checks a pair when a check is due and writes its status; returns when to look again.
///
/// Every status write makes the API send a watch event for the pair, which brings it back
/// here at once; a pair whose check is not due yet is therefore left alone (no dial to the
/// destination, no write), so a pair that is not Ready is checked on its backoff, not in a
/// loop.
///
/// # Errors
/// API errors reading the pair or writing its status.
pub async fn reconcile(ctx: &Ctx, pair: &ClusterPair) -> Result<Duration> {
    let api: kube::Api<ClusterPair> =
        kube::Api::namespaced(ctx.client.clone(), &pair.namespace().unwrap_or_default());
    let Some(fresh) = api.get_opt(&pair.name_any()).await? else {
        return Ok(RECHECK);
    };
    if finalizer::deleting(&fresh) {
        if finalizer::has(&fresh, finalizer::PAIR) {
            if let Some(user) = running_user(ctx, &fresh).await? {
                let note = format!(
                    "ClusterPair {} is deleted once Migration {user} that uses it ends",
                    fresh.name_any()
                );
                ctx.event(&fresh, false, "PairInUse", note).await;
                return Ok(Duration::from_secs(10));
            }
            finalizer::remove(&ctx.client, &fresh, finalizer::PAIR).await?;
        }
        return Ok(RECHECK);
    }
    let fresh = if finalizer::has(&fresh, finalizer::PAIR) {
        fresh
    } else {
        finalizer::add(&ctx.client, &fresh, finalizer::PAIR).await?
    };
    let wait = due_in(&fresh);
    if !wait.is_zero() {
        return Ok(wait);
    }
    let mut st = check(ctx, &fresh).await;
    let old = fresh.status.clone().unwrap_or_default();
    st.failed_checks = if st.ready() {
        0
    } else {
        old.failed_checks.saturating_add(1)
    };
    if (old.scheduler_status, old.storage_status) != (st.scheduler_status, st.storage_status) {
        let warning = !st.ready();
        let note = match st.reasons() {
            r if r.is_empty() => "destination and transfer store are ready".to_string(),
            r => r.join("; "),
        };
        let reason = if warning { "PairNotReady" } else { "PairReady" };
        ctx.event(&fresh, warning, reason, note).await;
    }
    StatusWriter::new(&ctx.client, &fresh)?.save(&st).await?;
    Ok(recheck_after(&st))
}
