//! ClusterPair reconciler: checks both sides of a pair and records what it found.
//!
//! Scheduler side: the destination API answers, ferry's CSIDriver is registered there and
//! the VolumeImport resource is served in ferry's namespace. Storage side: the transfer store
//! opens (key checked) and accepts a write and a read.

use crate::crd::{ClusterPair, ClusterPairStatus, PairState};
use crate::error::{Error, Result};
use crate::pair::PairSettings;
use crate::{Ctx, api, kinds_used};
use kube::ResourceExt;
use std::time::Duration;

/// How often a pair is checked again.
pub const RECHECK: Duration = Duration::from_secs(300);

/// Checks a pair; never fails: what goes wrong becomes a reason.
pub async fn check(ctx: &Ctx, pair: &ClusterPair) -> ClusterPairStatus {
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
    match check_storage(&settings, &who).await {
        Ok(()) => st.storage_status = PairState::Ready,
        Err(reason) => {
            st.storage_status = PairState::Error;
            st.storage_reason = Some(reason);
        }
    }
    st
}

async fn check_scheduler(ctx: &Ctx, s: &PairSettings) -> std::result::Result<(), String> {
    let dest = s.connect(ctx).await.map_err(|e| e.to_string())?;
    let unreachable = |e: Error| {
        format!(
            "destination API did not answer: {e}; check the kubeconfig's server and credentials"
        )
    };
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
        Some(&s.ferry_namespace),
        None,
    )
    .await
    {
        Ok(_) => Ok(()),
        Err(e) if e.api_code() == Some(404) => Err(format!(
            "the destination does not serve VolumeImports in namespace {}: apply \
             manifests/crds there, or set ferryNamespace in the pair's Secret",
            s.ferry_namespace
        )),
        Err(e) => Err(unreachable(e)),
    }
}

async fn check_storage(s: &PairSettings, who: &str) -> std::result::Result<(), String> {
    let store = s
        .open_transfer()
        .await
        .map_err(|e| format!("transfer store: {e}"))?;
    store
        .probe(who)
        .await
        .map_err(|e| format!("transfer store did not accept a write and a read: {e}"))
}

/// Checks a pair and writes its status; returns when to check again.
///
/// # Errors
/// API errors writing the status.
pub async fn reconcile(ctx: &Ctx, pair: &ClusterPair) -> Result<Duration> {
    let st = check(ctx, pair).await;
    let old = pair.status.clone().unwrap_or_default();
    if (old.scheduler_status, old.storage_status) != (st.scheduler_status, st.storage_status) {
        let warning = !st.ready();
        let note = match (&st.scheduler_reason, &st.storage_reason) {
            (None, None) => "destination and transfer store are ready".to_string(),
            (a, b) => [a.as_deref(), b.as_deref()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join("; "),
        };
        let reason = if warning { "PairNotReady" } else { "PairReady" };
        ctx.event(pair, warning, reason, note).await;
    }
    let status = serde_json::to_value(&st).map_err(|e| Error::Unexpected(e.to_string()))?;
    api::patch_status(
        &ctx.client,
        &kinds_used::cluster_pair(),
        &pair.namespace().unwrap_or_default(),
        &pair.name_any(),
        &status,
    )
    .await?;
    Ok(if st.ready() {
        RECHECK
    } else {
        Duration::from_secs(30)
    })
}
