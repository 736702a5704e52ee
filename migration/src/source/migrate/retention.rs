//! After a successful migration: apply the ClusterPair's transfer-store retention (keep the
//! newest commits of each volume, remove packs no kept commit reaches). Best effort: the
//! migration has succeeded whatever happens here; a failure is logged and shown as an Event.

use crate::Ctx;
use crate::crd::{ClusterPair, Migration};
use crate::error::Result;
use crate::pair::PairSettings;
use ferry_transfer::{GcOptions, GcReport};
use kube::ResourceExt;
use std::time::Duration;

/// Applies the retention of the migration's pair.
pub async fn apply(ctx: &Ctx, mig: &Migration) {
    match collect(ctx, mig).await {
        Ok(Some(r)) => tracing::info!(
            migration = %mig.name_any(),
            commits_removed = r.commits_removed.len(),
            packs_removed = r.packs_removed,
            bytes_removed = r.bytes_removed,
            exports_running = r.exports_running,
            "transfer store retention applied"
        ),
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(migration = %mig.name_any(), error = %e, "transfer store retention failed");
            ctx.event(
                mig,
                true,
                "TransferRetentionFailed",
                format!("the transfer store was not collected after this migration: {e}"),
            )
            .await;
        }
    }
}

async fn collect(ctx: &Ctx, mig: &Migration) -> Result<Option<GcReport>> {
    let ns = mig.namespace().unwrap_or_default();
    let pairs: kube::Api<ClusterPair> = kube::Api::namespaced(ctx.client.clone(), &ns);
    let Some(pair) = pairs.get_opt(&mig.spec.cluster_pair).await? else {
        return Ok(None);
    };
    let settings = PairSettings::load(ctx, &pair).await?;
    let target = settings.open_transfer().await?;
    let r = pair.spec.transfer_retention.clone().unwrap_or_default();
    let defaults = GcOptions::default();
    let opts = GcOptions {
        keep: r
            .keep_commits
            .map_or(defaults.keep, |k| (k as usize).max(1)),
        grace: r.grace_seconds.map_or(defaults.grace, Duration::from_secs),
        dry_run: false,
    };
    Ok(Some(ferry_transfer::gc(&target, opts).await?))
}
