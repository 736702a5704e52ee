//! A Migration deleted mid-run: remove the VolumeSnapshots it made on the source and the
//! VolumeImports on the destination that had not finished. Runs before its finalizer is
//! removed; every step treats "already gone" as done, so it may run again.

use crate::Ctx;
use crate::crd::{ClusterPair, Migration, VolumeImport};
use crate::error::Result;
use crate::pair::PairSettings;
use crate::runtime::Cleanup;
use kube::ResourceExt;

/// Removes what the migration made and has not handed over; what it cannot remove is said
/// in the result (the runtime reports it and lets the Migration go).
///
/// # Errors
/// Temporary API errors (the cleanup is tried again, for a bounded time).
pub async fn run(ctx: &Ctx, mig: &Migration) -> Result<Cleanup> {
    super::volumes::cancel_jobs(ctx, mig);
    let st = mig.status.clone().unwrap_or_default();
    let mut left = Vec::new();
    match super::finish::delete_snapshots(ctx, &st).await {
        Ok(()) => {}
        Err(e) if e.is_permanent() => left.push(format!("its snapshots ({e})")),
        Err(e) => return Err(e),
    }
    let unfinished: Vec<(String, String)> = st
        .volumes
        .iter()
        .filter(|v| v.destination_volume.is_none())
        .filter_map(|v| {
            v.volume_import.as_ref().map(|i| {
                (
                    crate::resources::mapping::target(&mig.spec.namespace_mapping, &v.namespace)
                        .to_string(),
                    i.clone(),
                )
            })
        })
        .collect();
    let listed: Vec<String> = unfinished.iter().map(|(n, i)| format!("{n}/{i}")).collect();
    if !unfinished.is_empty() {
        match remove_imports(ctx, mig, &unfinished).await {
            Ok(()) => {}
            Err(e) if e.is_permanent() => left.push(format!(
                "unfinished VolumeImports {} on the destination ({e}); delete them there",
                listed.join(", ")
            )),
            Err(e) => return Err(e),
        }
    }
    if !left.is_empty() {
        return Ok(Cleanup::Left(left.join("; ")));
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
    Ok(Cleanup::Done)
}

/// Deletes the migration's unfinished VolumeImports (namespace, name) on the destination.
async fn remove_imports(ctx: &Ctx, mig: &Migration, imports: &[(String, String)]) -> Result<()> {
    let ns = mig.namespace().unwrap_or_default();
    let pairs: kube::Api<ClusterPair> = kube::Api::namespaced(ctx.client.clone(), &ns);
    let Some(pair) = pairs.get_opt(&mig.spec.cluster_pair).await? else {
        return Err(crate::Error::Invalid(format!(
            "ClusterPair {} is gone",
            mig.spec.cluster_pair
        )));
    };
    let settings = PairSettings::load(ctx, &pair).await?;
    let dest = settings.connect(ctx).await?;
    for (there, name) in imports {
        let api: kube::Api<VolumeImport> = kube::Api::namespaced(dest.clone(), there);
        match api.delete(name, &Default::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
