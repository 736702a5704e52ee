//! Stage Final: delete the snapshots the migration made, then set the outcome and summary.

use crate::crd::{ItemStatus, Migration, MigrationStatus, ResourceInfo, Summary};
use crate::error::Result;
use crate::time::{human, now, seconds_between};
use crate::{Ctx, api, kinds_used};
use std::time::Duration;

/// A resource entry that records a purge on the destination, not a copy.
fn is_purge(r: &ResourceInfo) -> bool {
    r.reason
        .as_deref()
        .is_some_and(|x| x.starts_with(super::application::PURGED))
}

/// Deletes the VolumeSnapshots (and the group snapshot) the migration made; already gone
/// counts as deleted.
///
/// # Errors
/// API errors.
pub async fn delete_snapshots(ctx: &Ctx, st: &MigrationStatus) -> Result<()> {
    if let Some(g) = &st.group_snapshot {
        ctx.store.delete_group_snapshot(g).await?;
    }
    for v in &st.volumes {
        if let Some(s) = &v.snapshot {
            api::delete(
                &ctx.client,
                &kinds_used::volume_snapshot(),
                Some(&v.namespace),
                s,
            )
            .await?;
        }
    }
    Ok(())
}

/// Cleans up and ends the migration.
pub async fn run(ctx: &Ctx, mig: &Migration, st: &mut MigrationStatus) -> Result<Option<Duration>> {
    // A failed migration may still have exports running: their snapshots go next.
    super::volumes::cancel_jobs(ctx, mig);
    delete_snapshots(ctx, st).await?;
    let finished = now();
    let start = st
        .start_timestamp
        .clone()
        .unwrap_or_else(|| finished.clone());
    let vol_end = st.volume_migration_finish_timestamp.clone();
    let res_end = st.resource_migration_finish_timestamp.clone();
    st.summary = Some(Summary {
        total_number_of_volumes: st.volumes.len() as u64,
        number_of_migrated_volumes: st
            .volumes
            .iter()
            .filter(|v| v.status == ItemStatus::Successful)
            .count() as u64,
        total_number_of_resources: st.resources.iter().filter(|r| !is_purge(r)).count() as u64,
        number_of_migrated_resources: st
            .resources
            .iter()
            .filter(|r| !is_purge(r) && r.status == ItemStatus::Successful)
            .count() as u64,
        number_of_purged_resources: st
            .resources
            .iter()
            .filter(|r| is_purge(r) && r.status == ItemStatus::Successful)
            .count() as u64,
        total_bytes_migrated: st
            .volumes
            .iter()
            .filter(|v| v.exported)
            .map(|v| v.bytes_copied)
            .sum(),
        total_bytes_imported: st.volumes.iter().map(|v| v.bytes_imported).sum(),
        total_bytes_transferred: st
            .volumes
            .iter()
            .filter(|v| v.exported)
            .map(|v| v.bytes_transferred)
            .sum(),
        elapsed_time_for_volume_migration: vol_end
            .as_deref()
            .and_then(|e| seconds_between(&start, e))
            .map(human),
        elapsed_time_for_resource_migration: match (vol_end.as_deref(), res_end.as_deref()) {
            (Some(a), Some(b)) => seconds_between(a, b).map(human),
            (None, Some(b)) => seconds_between(&start, b).map(human),
            _ => None,
        },
    });
    if st.status != ItemStatus::Failed {
        let partial = st
            .volumes
            .iter()
            .any(|v| v.status != ItemStatus::Successful)
            || st
                .resources
                .iter()
                .any(|r| matches!(r.status, ItemStatus::Failed | ItemStatus::Skipped));
        st.status = if partial {
            ItemStatus::PartialSuccess
        } else {
            ItemStatus::Successful
        };
        if partial && st.reason.is_none() {
            st.reason =
                Some("some volumes or resources were skipped or failed; see their reasons".into());
        }
    }
    if st.status != ItemStatus::Failed && !mig.spec.dry_run {
        // Every volume that moved has its commit imported: older commits may go.
        super::retention::apply(ctx, mig).await;
    }
    st.finish_timestamp = Some(finished);
    let warning = st.status != ItemStatus::Successful;
    let note = match &st.reason {
        Some(r) => format!("migration {}: {r}", st.status),
        None => format!("migration {}", st.status),
    };
    if !mig.spec.dry_run {
        ctx.event(mig, warning, &format!("Migration{}", st.status), note)
            .await;
    }
    ferry_csi::metrics::add(
        "ferry_migrations_total",
        "Migrations ended, by outcome.",
        &[("status", &st.status.to_string())],
        1.0,
    );
    Ok(None)
}
