//! A Migration deleted mid-run: remove the VolumeSnapshots it made on the source and the
//! VolumeImports on the destination that had not finished. Runs before its finalizer is
//! removed; every step treats "already gone" as done, so it may run again.

use crate::Ctx;
use crate::crd::{ClusterPair, Migration, VolumeImport};
use crate::error::Result;
use crate::pair::PairSettings;
use kube::ResourceExt;

/// Removes what the migration made and has not handed over.
///
/// # Errors
/// Temporary API errors (the cleanup is tried again).
pub async fn run(ctx: &Ctx, mig: &Migration) -> Result<()> {
    super::volumes::cancel_jobs(ctx, mig);
    let st = mig.status.clone().unwrap_or_default();
    super::finish::delete_snapshots(ctx, &st).await?;
    let unfinished: Vec<&str> = st
        .volumes
        .iter()
        .filter(|v| v.destination_volume.is_none())
        .filter_map(|v| v.volume_import.as_deref())
        .collect();
    if unfinished.is_empty() {
        return Ok(());
    }
    let ns = mig.namespace().unwrap_or_default();
    let pairs: kube::Api<ClusterPair> = kube::Api::namespaced(ctx.client.clone(), &ns);
    let settings = match pairs.get_opt(&mig.spec.cluster_pair).await? {
        Some(pair) => PairSettings::load(ctx, &pair).await,
        None => Err(crate::Error::Invalid(format!(
            "ClusterPair {} is gone",
            mig.spec.cluster_pair
        ))),
    };
    let settings = match settings {
        Ok(s) => s,
        Err(e) if e.is_permanent() => {
            let note = format!(
                "unfinished VolumeImports {} left on the destination: {e}; delete them there",
                unfinished.join(", ")
            );
            ctx.event(mig, true, "CleanupIncomplete", note).await;
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let dest = settings.connect(ctx).await?;
    let imports: kube::Api<VolumeImport> = kube::Api::namespaced(dest, &settings.ferry_namespace);
    for name in &unfinished {
        match imports.delete(name, &Default::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    ctx.event(
        mig,
        false,
        "MigrationDeleted",
        format!(
            "removed its snapshots and {} unfinished import(s)",
            unfinished.len()
        ),
    )
    .await;
    Ok(())
}
