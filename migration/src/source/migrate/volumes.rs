//! Stage Volumes: for each PVC in scope, a VolumeSnapshot (which the csi-snapshotter turns
//! into ferry's CreateSnapshot), an export to the transfer store, a VolumeImport on the
//! destination, and its PV.

use super::Migrations;
use super::fail;
use crate::crd::{
    ClusterPair, ImportPhase, ImportSource, ItemStatus, Migration, MigrationStatus,
    PersistentVolumeTemplate, Stage, VolumeImport, VolumeImportSpec, VolumeInfo,
};
use crate::error::{Error, Result};
use crate::pair::PairSettings;
use crate::resources::mapping;
use crate::runtime::Pass;
use crate::runtime::retry::{self, Class};
use crate::transfers::{Look, Phase};
use crate::{Ctx, api, kinds_used, names};
use kube::ResourceExt;
use serde_json::{Value, json};
use std::time::Duration;

/// How often a running export's progress is written to the status.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// Label on every VolumeSnapshot a migration makes, naming the migration.
pub const SNAPSHOT_LABEL: &str = "ferry.dev/migration";

/// Moves each unfinished volume as far as it can go now.
pub async fn run(pass: &mut Pass<'_, Migrations>) -> Result<Option<Duration>> {
    let ctx = pass.ctx;
    let mig = pass.obj.clone();
    let mig = &mig;
    let ns = mig.namespace().unwrap_or_default();
    let pairs: kube::Api<ClusterPair> = kube::Api::namespaced(ctx.client.clone(), &ns);
    let Some(pair) = pairs.get_opt(&mig.spec.cluster_pair).await? else {
        fail(
            &mut pass.status,
            format!(
                "ClusterPair {} was deleted during the migration",
                mig.spec.cluster_pair
            ),
        );
        return Ok(None);
    };
    let settings = match PairSettings::load(ctx, &pair).await {
        Ok(s) => s,
        Err(e @ Error::Invalid(_)) => {
            fail(&mut pass.status, e.to_string());
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let dest = settings.connect(ctx).await?;
    if mig.spec.pre_exec_rule.is_some() || mig.spec.post_exec_rule.is_some() {
        if let Some(why) = snapshot_with_rules(ctx, mig, &mut pass.status).await? {
            ctx.event(mig, true, "ExecRuleFailed", why.clone()).await;
            fail(&mut pass.status, why);
            return Ok(None);
        }
    } else {
        take_group_snapshot(ctx, mig, &mut pass.status, 2).await?;
    }
    pass.save().await?;
    // Passes over the volumes until none waits, or only for something outside this
    // controller or a retry's time, or for longer than a progress interval (exports run in
    // the pool; each export that ends lets its volume go on at once).
    let started = std::time::Instant::now();
    let ours = jobs_of(mig);
    loop {
        let now = ctx.now();
        let st = &mut pass.status;
        let mut waiting = false;
        // The soonest time a volume must be looked at again without an export ending.
        let mut look_again: Option<Duration> = None;
        for i in 0..st.volumes.len() {
            if st.volumes[i].status.is_final() {
                continue;
            }
            if let Some(r) = &st.volumes[i].retry {
                let w = retry::wait(r, now);
                if !w.is_zero() {
                    // A failed step is tried again when its time comes.
                    waiting = true;
                    look_again = Some(look_again.map_or(w, |x| x.min(w)));
                    continue;
                }
            }
            let outcome = advance(ctx, mig, &pair, &settings, &dest, st, i).await;
            let v = &mut st.volumes[i];
            match outcome {
                Ok(wait) => {
                    v.retry = None;
                    if wait {
                        waiting = true;
                        if !ctx
                            .transfers
                            .keys(&ours)
                            .iter()
                            .any(|k| k.ends_with(v.snapshot_handle.as_deref().unwrap_or("-")))
                        {
                            look_again = Some(look_again.map_or(ctx.poll, |x| x.min(ctx.poll)));
                        }
                    }
                }
                Err(e) => {
                    e.count();
                    match retry::classify(&e, v.retry.as_ref(), now) {
                        Class::Permanent => {
                            v.status = ItemStatus::Failed;
                            v.reason = Some(e.to_string());
                            v.retry = None;
                        }
                        Class::Temporary => {
                            // Temporary trouble (API, network, a busy store): said, and tried
                            // again on its backoff.
                            let r = retry::record(v.retry.as_ref(), &e, now);
                            let w = retry::delay(r.attempt);
                            v.reason = Some(retry::reason("", &r));
                            v.retry = Some(r);
                            waiting = true;
                            look_again = Some(look_again.map_or(w, |x| x.min(w)));
                        }
                    }
                }
            }
        }
        // The Migration's own reason says which volume is retrying and why, as long as one is.
        let retrying = st.volumes.iter().find_map(|v| {
            v.retry.as_ref().map(|r| {
                retry::reason(
                    &format!("PVC {}/{}: ", v.namespace, v.persistent_volume_claim),
                    r,
                )
            })
        });
        match retrying {
            Some(r) => st.reason = Some(r),
            None => super::set_retry_reason(&mut st.reason, &None, ""),
        }
        pass.save().await?;
        if !waiting {
            break;
        }
        if ctx.transfers.keys(&ours).is_empty() {
            return Ok(Some(look_again.unwrap_or(ctx.poll)));
        }
        // The pass after the wait shows the progress made in it.
        let mut left = PROGRESS_EVERY.saturating_sub(started.elapsed());
        if let Some(w) = look_again {
            left = left.min(w);
        }
        if left.is_zero() {
            return Ok(Some(Duration::ZERO));
        }
        ctx.transfers.wait_for_an_end(&ours, left).await;
    }
    let st = &mut pass.status;
    st.volume_migration_finish_timestamp = Some(ctx.stamp());
    let failed: Vec<String> = st
        .volumes
        .iter()
        .filter(|v| v.status == ItemStatus::Failed)
        .map(|v| {
            format!(
                "{}/{}: {}",
                v.namespace,
                v.persistent_volume_claim,
                v.reason.as_deref().unwrap_or("failed")
            )
        })
        .collect();
    if !failed.is_empty() {
        let reason = format!(
            "volumes failed, resources were not copied: {}",
            failed.join("; ")
        );
        ctx.event(mig, true, "VolumesFailed", reason.clone()).await;
        fail(st, reason);
        return Ok(None);
    }
    let logical: u64 = st.volumes.iter().map(|v| v.bytes_done).sum();
    let moved: u64 = st.volumes.iter().map(|v| v.bytes_transferred).sum();
    ctx.event(
        mig,
        false,
        "VolumesMigrated",
        format!(
            "{} volume(s) on the destination: {logical} bytes of data, {moved} bytes \
             transferred",
            st.volumes
                .iter()
                .filter(|v| v.status == ItemStatus::Successful)
                .count()
        ),
    )
    .await;
    st.stage = Some(if mig.spec.include_resources {
        Stage::Application
    } else {
        Stage::Final
    });
    Ok(None)
}

/// Takes volume `i` one or more steps further; `Ok(true)` when it must wait.
#[allow(clippy::too_many_arguments)]
async fn advance(
    ctx: &Ctx,
    mig: &Migration,
    pair: &ClusterPair,
    settings: &PairSettings,
    dest: &kube::Client,
    st: &mut MigrationStatus,
    i: usize,
) -> Result<bool> {
    let v = &mut st.volumes[i];
    v.status = ItemStatus::InProgress;
    if v.snapshot.is_none() && v.snapshot_handle.is_none() {
        let name = create_snapshot(ctx, mig, v).await?;
        let Some(name) = name else { return Ok(false) };
        ctx.volume_event(
            mig,
            (&v.namespace, &v.persistent_volume_claim),
            "SnapshotCreated",
            format!(
                "VolumeSnapshot {}/{name} of PVC {}/{}",
                v.namespace, v.namespace, v.persistent_volume_claim
            ),
        )
        .await;
        v.snapshot = Some(name);
        v.reason = Some("waiting for the snapshot to be ready".into());
        return Ok(true);
    }
    if v.snapshot_handle.is_none() {
        match snapshot_handle(ctx, v).await? {
            Handle::Ready(h) => {
                v.snapshot_handle = Some(h);
                v.reason = None;
            }
            Handle::Waiting(why) => {
                v.reason = Some(why);
                return Ok(true);
            }
            Handle::Failed(why) => {
                v.status = ItemStatus::Failed;
                v.reason = Some(why);
                return Ok(false);
            }
        }
    }
    if !v.exported {
        match export(ctx, mig, settings, st, i).await {
            Ok(true) => {}
            Ok(false) => return Ok(true),
            Err(e) if e.is_permanent() => {
                e.count();
                let v = &mut st.volumes[i];
                v.status = ItemStatus::Failed;
                v.reason = Some(format!("export to the transfer store: {e}"));
                return Ok(false);
            }
            Err(e) => return Err(e),
        }
    }
    let v = &mut st.volumes[i];
    if v.volume_import.is_none() {
        let name = create_import(ctx, mig, pair, settings, dest, v).await?;
        v.volume_import = Some(name);
        v.reason = Some("waiting for the destination to import".into());
        return Ok(true);
    }
    if v.destination_volume.is_none() {
        let name = v.volume_import.clone().unwrap_or_default();
        let there = mapping::target(&mig.spec.namespace_mapping, &v.namespace).to_string();
        let imports: kube::Api<VolumeImport> = kube::Api::namespaced(dest.clone(), &there);
        let Some(vi) = imports.get_opt(&name).await? else {
            // Deleted on the destination: make it again.
            v.volume_import = None;
            return Ok(true);
        };
        let vst = vi.status.unwrap_or_default();
        let ours = vst.snapshot_id.as_deref() == v.snapshot_handle.as_deref();
        match (ours, vst.phase) {
            (true, ImportPhase::Ready) => {
                v.destination_volume = vst.persistent_volume.clone();
                v.bytes_imported = vst.bytes_fetched;
                v.status = ItemStatus::Successful;
                v.reason = None;
                ctx.volume_event(
                    mig,
                    (&v.namespace, &v.persistent_volume_claim),
                    "VolumeImported",
                    format!(
                        "PVC {}/{} is PV {} on the destination",
                        v.namespace,
                        v.persistent_volume_claim,
                        v.destination_volume.as_deref().unwrap_or_default()
                    ),
                )
                .await;
                // Its work is done and its outcome is here: the next run makes its own.
                forget_import(&imports, &name).await;
                return Ok(false);
            }
            (true, ImportPhase::Failed) => {
                v.status = ItemStatus::Failed;
                v.reason = Some(format!(
                    "destination import {there}/{name} failed: {}",
                    vst.reason.as_deref().unwrap_or("no reason given")
                ));
                forget_import(&imports, &name).await;
                return Ok(false);
            }
            _ => {
                v.reason = Some(match &vst.reason {
                    Some(r) => {
                        format!("waiting for the destination to import ({there}/{name}): {r}")
                    }
                    None => format!("waiting for the destination to import ({there}/{name})"),
                });
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// Deletes a VolumeImport that ended (its outcome is in the Migration's status): what it
/// made stays. A failure is only logged: an ended import does nothing more.
async fn forget_import(imports: &kube::Api<VolumeImport>, name: &str) {
    match imports.delete(name, &Default::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => tracing::info!(import = name, error = %e, "ended VolumeImport not removed"),
    }
}

/// With two or more claims still to snapshot (and `groupSnapshot` not false), snapshots
/// them all at one instant in the chunk store and records each member's handle, so the
/// volumes of, say, a replicated database are taken consistent with each other. The group
/// is named after the migration, so a retry finds it.
///
/// # Errors
/// Chunk-store errors; a busy store (writes never paused long enough) is temporary.
async fn take_group_snapshot(
    ctx: &Ctx,
    mig: &Migration,
    st: &mut MigrationStatus,
    at_least: usize,
) -> Result<()> {
    if st.group_snapshot.is_some() || (mig.spec.group_snapshot == Some(false) && at_least > 1) {
        return Ok(());
    }
    let todo: Vec<usize> = (0..st.volumes.len())
        .filter(|&i| {
            let v = &st.volumes[i];
            !v.status.is_final()
                && v.snapshot.is_none()
                && v.snapshot_handle.is_none()
                && v.volume_handle.is_some()
        })
        .collect();
    if todo.len() < at_least.max(1) {
        return Ok(());
    }
    let ids: Vec<String> = todo
        .iter()
        .filter_map(|&i| st.volumes[i].volume_handle.clone())
        .collect();
    let name = names::group_snapshot(
        &mig.namespace().unwrap_or_default(),
        &mig.name_any(),
        mig.metadata.uid.as_deref().unwrap_or_default(),
    );
    let (group, members) = ctx
        .store
        .create_group_snapshot(&name, &ids, Default::default())
        .await?;
    for (&i, m) in todo.iter().zip(&members) {
        let v = &mut st.volumes[i];
        v.snapshot_handle = Some(m.id.clone());
        v.reason = None;
        ctx.volume_event(
            mig,
            (&v.namespace, &v.persistent_volume_claim),
            "SnapshotCreated",
            format!(
                "snapshot {} of PVC {}/{} in group snapshot {} of {} claims",
                m.id,
                v.namespace,
                v.persistent_volume_claim,
                group.id,
                members.len()
            ),
        )
        .await;
    }
    st.group_snapshot = Some(group.id);
    Ok(())
}

/// With exec rules: the pre rule, then every claim's snapshot at once in the chunk store
/// (so its background actions end right after), then the post rule. The reason the
/// migration fails when a rule does; nothing is snapshotted after a failed pre rule.
///
/// # Errors
/// API and chunk-store errors a retry may cure (the pre rule then runs again).
async fn snapshot_with_rules(
    ctx: &Ctx,
    mig: &Migration,
    st: &mut MigrationStatus,
) -> Result<Option<String>> {
    let pending = st.group_snapshot.is_none()
        && st.volumes.iter().any(|v| {
            !v.status.is_final()
                && v.snapshot.is_none()
                && v.snapshot_handle.is_none()
                && v.volume_handle.is_some()
        });
    if !pending {
        return Ok(None);
    }
    let running = match &mig.spec.pre_exec_rule {
        Some(r) => match crate::source::exec_rules::run(ctx, mig, r).await? {
            Ok(running) => Some(running),
            Err(why) => return Ok(Some(format!("preExecRule {r} failed: {why}"))),
        },
        None => None,
    };
    let taken = take_group_snapshot(ctx, mig, st, 1).await;
    if let Some(r) = running {
        r.end().await;
    }
    taken?;
    if let Some(r) = &mig.spec.post_exec_rule {
        match crate::source::exec_rules::run(ctx, mig, r).await? {
            Ok(running) => running.end().await,
            Err(why) => return Ok(Some(format!("postExecRule {r} failed: {why}"))),
        }
    }
    Ok(None)
}

/// Creates the VolumeSnapshot of a volume's PVC; `None` when the volume failed instead.
async fn create_snapshot(ctx: &Ctx, mig: &Migration, v: &mut VolumeInfo) -> Result<Option<String>> {
    let Some(class) = snapshot_class(ctx).await? else {
        v.status = ItemStatus::Failed;
        v.reason = Some(format!(
            "no VolumeSnapshotClass for driver {}: apply manifests/snapshotclass.yaml",
            ferry_csi::DRIVER_NAME
        ));
        return Ok(None);
    };
    let name = names::snapshot(
        &mig.namespace().unwrap_or_default(),
        &mig.name_any(),
        &v.persistent_volume_claim,
    );
    let obj = json!({
        "apiVersion": "snapshot.storage.k8s.io/v1",
        "kind": "VolumeSnapshot",
        "metadata": {
            "name": name,
            "namespace": v.namespace,
            "labels": { SNAPSHOT_LABEL: mig.name_any() },
        },
        "spec": {
            "volumeSnapshotClassName": class,
            "source": { "persistentVolumeClaimName": v.persistent_volume_claim },
        },
    });
    api::apply(&ctx.client, &kinds_used::volume_snapshot(), &obj).await?;
    Ok(Some(name))
}

/// Ferry's VolumeSnapshotClass: the one marked default, else the first.
async fn snapshot_class(ctx: &Ctx) -> Result<Option<String>> {
    let classes = api::list(
        &ctx.client,
        &kinds_used::volume_snapshot_class(),
        None,
        None,
    )
    .await?;
    let ours: Vec<&Value> = classes
        .iter()
        .filter(|c| c["driver"].as_str() == Some(ferry_csi::DRIVER_NAME))
        .collect();
    let default = ours.iter().find(|c| {
        c["metadata"]["annotations"]["snapshot.storage.kubernetes.io/is-default-class"].as_str()
            == Some("true")
    });
    Ok(default
        .or(ours.first())
        .and_then(|c| c["metadata"]["name"].as_str())
        .map(str::to_string))
}

enum Handle {
    Ready(String),
    Waiting(String),
    Failed(String),
}

/// The chunk-store snapshot id behind a VolumeSnapshot, once the snapshotter made it.
async fn snapshot_handle(ctx: &Ctx, v: &VolumeInfo) -> Result<Handle> {
    let name = v.snapshot.clone().unwrap_or_default();
    let Some(vs) = api::get(
        &ctx.client,
        &kinds_used::volume_snapshot(),
        Some(&v.namespace),
        &name,
    )
    .await?
    else {
        return Ok(Handle::Failed(format!(
            "VolumeSnapshot {}/{name} disappeared before it was exported",
            v.namespace
        )));
    };
    if let Some(msg) = vs["status"]["error"]["message"].as_str() {
        return Ok(Handle::Failed(format!(
            "VolumeSnapshot {}/{name}: {msg}",
            v.namespace
        )));
    }
    let content = vs["status"]["boundVolumeSnapshotContentName"].as_str();
    if vs["status"]["readyToUse"].as_bool() != Some(true) || content.is_none() {
        return Ok(Handle::Waiting(format!(
            "waiting for VolumeSnapshot {}/{name} to be ready (is csi-snapshotter running?)",
            v.namespace
        )));
    }
    let content = content.unwrap_or_default();
    let vsc = api::get(
        &ctx.client,
        &kinds_used::volume_snapshot_content(),
        None,
        content,
    )
    .await?;
    match vsc
        .as_ref()
        .and_then(|c| c["status"]["snapshotHandle"].as_str())
    {
        Some(h) => Ok(Handle::Ready(h.to_string())),
        None => Ok(Handle::Waiting(format!(
            "waiting for VolumeSnapshotContent {content} to name its snapshot"
        ))),
    }
}

/// The pool key of a migration's jobs: its uid, so a deleted and re-made Migration of the
/// same name never takes the old one's outcome.
fn jobs_of(mig: &Migration) -> String {
    format!("{}/", mig.metadata.uid.as_deref().unwrap_or_default())
}

/// Moves volume `i`'s export on: submits it to the controller's transfer pool (when fewer
/// than the migration's width of its volumes are exporting), shows its progress while it
/// runs, takes its outcome once it ended. `Ok(true)` once exported.
///
/// # Errors
/// The export's own error once it ended with one (the caller decides: permanent fails the
/// volume, temporary is submitted again next time); transfer-store settings that do not
/// open.
async fn export(
    ctx: &Ctx,
    mig: &Migration,
    settings: &PairSettings,
    st: &mut MigrationStatus,
    i: usize,
) -> Result<bool> {
    let handle = st.volumes[i].snapshot_handle.clone().unwrap_or_default();
    let prefix = format!("{}export/", jobs_of(mig));
    let key = format!("{prefix}{handle}");
    let (report, p) = match ctx.transfers.look(&key) {
        Look::Ended(outcome, p) => match outcome {
            Ok(r) => (r, p),
            Err(e) => {
                // What the failed try copied is durable in the transfer store (the next try
                // skips it): it counts.
                let v = &mut st.volumes[i];
                v.bytes_copied += p.bytes_done;
                v.bytes_transferred += p.bytes_stored;
                return Err(e);
            }
        },
        Look::InFlight(view) => {
            let v = &mut st.volumes[i];
            v.bytes_total = view.progress.bytes_total;
            v.bytes_done = view.progress.bytes_done + view.progress.bytes_skipped;
            v.reason = Some(match view.phase {
                Phase::Queued => format!(
                    "export queued: the controller runs {} transfers at once",
                    ctx.transfers.limit()
                ),
                _ => "exporting to the transfer store".into(),
            });
            return Ok(false);
        }
        Look::Absent => {
            let busy = ctx.transfers.keys(&prefix).len();
            if busy >= ctx.volume_width.max(1) {
                st.volumes[i].reason = Some(format!(
                    "waiting to export: {busy} of this migration's volumes are exporting \
                     (at most {} at once)",
                    ctx.volume_width.max(1)
                ));
                return Ok(false);
            }
            let target = settings.open_transfer().await?;
            let (store, tuning) = (ctx.store.clone(), ctx.tuning);
            ctx.transfers.submit(&key, move |progress| async move {
                Ok(ferry_transfer::export(&store, &handle, &target, progress, tuning).await?)
            });
            st.volumes[i].reason = Some("export submitted".into());
            return Ok(false);
        }
    };
    let v = &mut st.volumes[i];
    v.bytes_total = p.bytes_total.max(report.bytes_read);
    v.bytes_done = v.bytes_total;
    // Over every try of this export: a retried one copies only what the earlier ones did not.
    v.bytes_copied += report.bytes_read;
    v.bytes_transferred += report.bytes_written;
    v.exported = true;
    v.reason = None;
    ferry_csi::metrics::bytes_moved("export", report.bytes_written);
    ctx.volume_event(
        mig,
        (&v.namespace, &v.persistent_volume_claim),
        "VolumeExported",
        format!(
            "PVC {}/{}: {} of {} chunks copied, {} bytes written",
            v.namespace,
            v.persistent_volume_claim,
            report.chunks_copied,
            report.chunks_total,
            report.bytes_written
        ),
    )
    .await;
    Ok(true)
}

/// Ends every transfer job `mig` has in this controller's pool (a deleted or failed
/// migration).
pub fn cancel_jobs(ctx: &Ctx, mig: &Migration) {
    ctx.transfers.cancel(&jobs_of(mig));
}

/// Puts the transfer Secret and the VolumeImport on the destination, in the namespace the
/// claim lands in (never the destination controller's own: a pair's account needs rights in
/// the namespaces it migrates into only).
async fn create_import(
    ctx: &Ctx,
    mig: &Migration,
    pair: &ClusterPair,
    settings: &PairSettings,
    dest: &kube::Client,
    v: &VolumeInfo,
) -> Result<String> {
    let claim_ns = mapping::target(&mig.spec.namespace_mapping, &v.namespace).to_string();
    super::landing::ensure_namespace(ctx, mig, dest, &v.namespace).await?;
    let secret_name = names::transfer_secret(
        &pair.namespace().unwrap_or_default(),
        &pair.name_any(),
        pair.metadata.uid.as_deref().unwrap_or_default(),
    );
    let secret = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": { "name": secret_name, "namespace": claim_ns },
        "type": "Opaque",
        "stringData": settings.destination_secret_data(),
    });
    api::apply(dest, &kinds_used::secret(), &secret).await?;
    let source_pv = api::get(&ctx.client, &kinds_used::pv(), None, &v.volume)
        .await?
        .ok_or_else(|| {
            Error::Invalid(format!(
                "PV {} of PVC {}/{} is gone",
                v.volume, v.namespace, v.persistent_volume_claim
            ))
        })?;
    let pvc = api::get(
        &ctx.client,
        &kinds_used::pvc(),
        Some(&v.namespace),
        &v.persistent_volume_claim,
    )
    .await?
    .unwrap_or_default();
    let text = |v: &Value| v.as_str().map(str::to_string);
    let volume_id = v.volume_handle.clone().unwrap_or_default();
    let snapshot_id = v.snapshot_handle.clone().unwrap_or_default();
    let name = names::import_of(&volume_id, &claim_ns, &snapshot_id);
    let class = text(&pvc["spec"]["storageClassName"])
        .or_else(|| text(&source_pv["spec"]["storageClassName"]))
        .map(|c| mig.spec.storage_class_mapping.get(&c).cloned().unwrap_or(c));
    let ps = &source_pv["spec"];
    let mut vi = VolumeImport::new(
        &name,
        VolumeImportSpec {
            source: ImportSource {
                volume_id,
                snapshot_id,
                migration: Some(format!(
                    "{}/{}",
                    mig.namespace().unwrap_or_default(),
                    mig.name_any()
                )),
            },
            transfer_secret: secret_name,
            persistent_volume: PersistentVolumeTemplate {
                claim_name: v.persistent_volume_claim.clone(),
                capacity: text(&ps["capacity"]["storage"]).unwrap_or_else(|| "1Gi".into()),
                access_modes: ps["accessModes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(text)
                    .collect(),
                volume_mode: text(&ps["volumeMode"]),
                storage_class_name: class,
                fs_type: text(&ps["csi"]["fsType"]),
            },
            // A volume that came here by an import goes back into the volume it came from,
            // when the destination still has it (a failback).
            existing_volume: text(
                &source_pv["metadata"]["annotations"]
                    [crate::destination::volume_import::ORIGIN_ANNOTATION],
            ),
        },
    );
    vi.metadata.namespace = Some(claim_ns.clone());
    let imports: kube::Api<VolumeImport> = kube::Api::namespaced(dest.clone(), &claim_ns);
    // Specs are immutable: made once, found again by a retry.
    match imports.create(&Default::default(), &vi).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    Ok(name)
}
