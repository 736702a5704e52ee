//! VolumeImport reconciler (destination side): import the exported snapshot into this
//! cluster's chunk store, then create the PV, pre-bound to the claim, for ferry's driver.
//!
//! The chunk-store volume is named after the VolumeImport, so a retry (or a later import of
//! a newer snapshot of the same source volume) finds it and fetches only what differs. A
//! volume in use on a node (leased) is never re-rooted under its writer.

use crate::crd::{ImportPhase, VolumeImport, VolumeImportStatus};
use crate::error::{Error, Result};
use crate::pair::{secret_data, transfer_from_data};
use crate::runtime::status::StatusWriter;
use crate::transfers::{Look, Phase};
use crate::{Ctx, api, kinds_used, names};
use ferry_transfer::Key;
use kube::ResourceExt;
use serde_json::json;
use std::time::Duration;

/// How often a running import's progress is written to the status.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// Volume attribute carrying the chunk size (as the CSI controller sets it).
const CTX_CHUNK_SIZE: &str = "ferry.dev/chunkSize";

/// Annotation on a PV an import made: the source volume it was migrated from, so a
/// migration back (a failback) updates that volume in place instead of making a new one.
pub const ORIGIN_ANNOTATION: &str = "ferry.dev/origin-volume";

/// Brings one VolumeImport to Ready (or Failed); returns when to look again.
///
/// # Errors
/// API errors a retry may cure.
pub async fn reconcile(ctx: &Ctx, vi: &VolumeImport) -> Result<Option<Duration>> {
    // A watch cache may hand over an older copy; decide on the current one.
    let api: kube::Api<VolumeImport> =
        kube::Api::namespaced(ctx.client.clone(), &vi.namespace().unwrap_or_default());
    let Some(fresh) = api.get_opt(&vi.name_any()).await? else {
        // Deleted: an import still running for it would make a volume no one asked for.
        ctx.transfers.cancel(&jobs_of(vi));
        return Ok(None);
    };
    let vi = &fresh;
    let mut w = StatusWriter::new(&ctx.client, vi)?;
    let mut st = vi.status.clone().unwrap_or_default();
    let snap = &vi.spec.source.snapshot_id;
    if st.snapshot_id.as_ref() == Some(snap)
        && matches!(st.phase, ImportPhase::Ready | ImportPhase::Failed)
    {
        return Ok(None);
    }
    let started = std::time::Instant::now();
    let outcome = import(ctx, vi, &mut st, &mut w).await;
    // One operation per import, not per pass: timed by the job when it ran one.
    match &outcome {
        Ok(None) => {}
        Ok(Some(took)) => ferry_csi::metrics::operation("volume_import", None, *took),
        Err(e) => ferry_csi::metrics::operation("volume_import", Some(e.kind()), started.elapsed()),
    }
    match outcome {
        Ok(None) => {
            // In the pool: show its progress, come back when a transfer ends (or to show
            // progress again).
            w.save(&st).await?;
            // The outcome is taken on the next pass.
            let _ = ctx
                .transfers
                .wait_for_an_end(&jobs_of(vi), PROGRESS_EVERY)
                .await;
            return Ok(Some(Duration::ZERO));
        }
        Ok(Some(_)) => {
            st.phase = ImportPhase::Ready;
            st.reason = None;
            ctx.event(
                vi,
                false,
                "Imported",
                format!(
                    "PV {} ready for claim {}/{}",
                    st.persistent_volume.as_deref().unwrap_or_default(),
                    vi.spec.persistent_volume.claim_namespace,
                    vi.spec.persistent_volume.claim_name
                ),
            )
            .await;
        }
        Err(e) if e.is_permanent() => {
            e.count();
            st.phase = ImportPhase::Failed;
            st.reason = Some(e.to_string());
            ctx.event(vi, true, "ImportFailed", e.to_string()).await;
        }
        Err(e) => {
            // Temporary: say so and try again.
            e.count();
            st.reason = Some(format!("retrying: {e}"));
            w.save(&st).await?;
            return Ok(Some(ctx.poll));
        }
    }
    st.snapshot_id = Some(snap.clone());
    w.save(&st).await?;
    Ok(None)
}

/// The pool key prefix of an import's jobs: its uid (a re-made VolumeImport of the same name
/// never takes the old one's outcome).
fn jobs_of(vi: &VolumeImport) -> String {
    format!("{}/import/", vi.metadata.uid.as_deref().unwrap_or_default())
}

/// Checks the spec fields that become names, paths and ids before any is used.
fn check_spec(vi: &VolumeImport) -> Result<()> {
    let s = &vi.spec;
    ferry_transfer::bounds::check_id("spec.source.volumeId", &s.source.volume_id)?;
    ferry_transfer::bounds::check_id("spec.source.snapshotId", &s.source.snapshot_id)?;
    names::check_object_name("spec.transferSecret", &s.transfer_secret)?;
    let pv = &s.persistent_volume;
    names::check_object_name("spec.persistentVolume.name", &pv.name)?;
    names::check_object_name("spec.persistentVolume.claimNamespace", &pv.claim_namespace)?;
    names::check_object_name("spec.persistentVolume.claimName", &pv.claim_name)?;
    if let Some(id) = &s.existing_volume {
        ferry_transfer::bounds::check_id("spec.existingVolume", id)?;
    }
    Ok(())
}

/// What the StorageClass a volume lands in gives it.
struct LandingClass {
    options: ferry_store::VolumeOptions,
    reclaim_policy: String,
    mount_options: Vec<String>,
}

/// The settings of this cluster's StorageClass named by the import's PV template, when it
/// exists: a ferry class's parameters, reclaim policy and mount options (as a provisioned
/// volume of the class would get). Refused when the class is another driver's or its
/// parameters do not parse; `None` when there is no such class here.
async fn landing_class(ctx: &Ctx, vi: &VolumeImport) -> Result<Option<LandingClass>> {
    let Some(name) = &vi.spec.persistent_volume.storage_class_name else {
        return Ok(None);
    };
    let Some(sc) = api::get(&ctx.client, &kinds_used::storage_class(), None, name).await? else {
        return Ok(None);
    };
    let provisioner = sc["provisioner"].as_str().unwrap_or_default();
    if provisioner != ferry_csi::DRIVER_NAME {
        return Err(Error::Invalid(format!(
            "StorageClass {name} is provisioned by {provisioner:?}, not {}: a ferry volume \
             cannot land in it",
            ferry_csi::DRIVER_NAME
        )));
    }
    let params = crate::source::migrate::class_parameters(&sc);
    let options = ferry_store::VolumeOptions::from_params(&params)
        .map_err(|e| Error::Invalid(format!("StorageClass {name}: {e}")))?;
    Ok(Some(LandingClass {
        options,
        reclaim_policy: sc["reclaimPolicy"].as_str().unwrap_or("Delete").to_string(),
        mount_options: sc["mountOptions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m.as_str().map(str::to_string))
            .collect(),
    }))
}

/// The volume an import updates in place, with its PV.
struct InPlace {
    volume_name: String,
    volume_id: String,
    pv: String,
}

/// The existing volume `id` to update in place, when it is here and has a PV; refused when
/// that PV belongs to another claim than the one the import is for.
async fn in_place(ctx: &Ctx, vi: &VolumeImport, id: &str) -> Result<Option<InPlace>> {
    let volume = match ctx.store.get_volume(id).await {
        Ok(v) => v,
        Err(ferry_store::Error::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let pvs = api::list(&ctx.client, &kinds_used::pv(), None, None).await?;
    let Some(pv) = pvs.iter().find(|pv| {
        pv["spec"]["csi"]["driver"].as_str() == Some(ferry_csi::DRIVER_NAME)
            && pv["spec"]["csi"]["volumeHandle"].as_str() == Some(id)
    }) else {
        return Ok(None);
    };
    let want = &vi.spec.persistent_volume;
    let claim = &pv["spec"]["claimRef"];
    let name = pv["metadata"]["name"].as_str().unwrap_or_default();
    if claim["namespace"].as_str() != Some(want.claim_namespace.as_str())
        || claim["name"].as_str() != Some(want.claim_name.as_str())
    {
        return Err(Error::Invalid(format!(
            "spec.existingVolume {id} is PV {name}, bound to claim {}/{}, not to {}/{}: \
             it is not overwritten",
            claim["namespace"].as_str().unwrap_or("-"),
            claim["name"].as_str().unwrap_or("-"),
            want.claim_namespace,
            want.claim_name
        )));
    }
    Ok(Some(InPlace {
        volume_name: volume.record.spec.name.clone(),
        volume_id: id.to_string(),
        pv: name.to_string(),
    }))
}

/// Moves the import on: submits it to the controller's transfer pool, shows its progress
/// while it runs, and once it ended, makes the PV. `Ok(Some(how long the import took))`
/// when it is done, `Ok(None)` while it is in the pool.
async fn import(
    ctx: &Ctx,
    vi: &VolumeImport,
    st: &mut VolumeImportStatus,
    w: &mut StatusWriter<VolumeImport>,
) -> Result<Option<Duration>> {
    check_spec(vi)?;
    let ns = vi.namespace().unwrap_or_default();
    let what = format!("Secret {ns}/{}", vi.spec.transfer_secret);
    let data = secret_data(&ctx.client, &ns, &vi.spec.transfer_secret)
        .await?
        .ok_or_else(|| Error::Invalid(format!("{what} named by the VolumeImport not found")))?;
    let origin = crate::trust::Origin::new(&ns, ctx.trust(&ns));
    let (_, config, key) = transfer_from_data(&what, &data, &ctx.policy, origin)?;
    let key = key.as_deref().map(Key::parse).transpose()?;
    let target = crate::pair::open_transfer(&config, key).await?;
    let src = &vi.spec.source;
    let commit = target
        .get_commit(&src.volume_id, &src.snapshot_id)
        .await?
        .ok_or_else(|| {
            Error::Invalid(format!(
                "snapshot {} of volume {} is not in the transfer store (export it first)",
                src.snapshot_id, src.volume_id
            ))
        })?;
    let class = landing_class(ctx, vi).await?;
    let mut commit = commit;
    if let Some(c) = &class {
        // The chunk size is the source volume's (the tree is built of it); the codec for
        // new writes is the class's.
        commit.options.compression = c.options.compression;
    }
    let keep = match &vi.spec.existing_volume {
        Some(id) => in_place(ctx, vi, id).await?,
        None => None,
    };
    let name = keep
        .as_ref()
        .map_or_else(|| vi.name_any(), |t| t.volume_name.clone());
    if let Some(existing) = ctx.store.volume_by_name(&name).await? {
        ctx.store.check_unleased(existing.id()).await.map_err(|e| {
            Error::Invalid(format!("volume {} is in use on the destination ({e}); stop what uses claim {}/{} and the import goes on", existing.id(), vi.spec.persistent_volume.claim_namespace, vi.spec.persistent_volume.claim_name))
        })?;
    }
    let key = format!("{}{}", jobs_of(vi), src.snapshot_id);
    let (report, p) = match ctx.transfers.look(&key) {
        Look::Ended(outcome, p) => (outcome?, p),
        Look::InFlight(view) => {
            st.phase = ImportPhase::InProgress;
            st.bytes_total = view.progress.bytes_total;
            st.bytes_done = view.progress.bytes_done + view.progress.bytes_skipped;
            st.reason = (view.phase == Phase::Queued).then(|| {
                format!(
                    "queued: the controller runs {} transfers at once",
                    ctx.transfers.limit()
                )
            });
            return Ok(None);
        }
        Look::Absent => {
            st.phase = ImportPhase::InProgress;
            st.reason = None;
            w.save(st).await?;
            let (store, tuning) = (ctx.store.clone(), ctx.tuning);
            ctx.transfers.submit(&key, move |progress| async move {
                Ok(
                    ferry_transfer::import(&target, &commit, &store, &name, progress, tuning)
                        .await?,
                )
            });
            return Ok(None);
        }
    };
    ferry_csi::metrics::bytes_moved("import", report.bytes_read);
    st.bytes_total = p.bytes_total;
    st.bytes_done = p.bytes_total;
    let volume = ctx
        .store
        .volume_by_name(&name)
        .await?
        .ok_or_else(|| Error::Unexpected(format!("imported volume {name} not found")))?;
    if let Some(t) = keep {
        // The claim keeps the PV it has: only the data under it moved.
        st.persistent_volume = Some(t.pv);
        st.volume_handle = Some(t.volume_id);
        return Ok(Some(report.duration));
    }
    let pv = &vi.spec.persistent_volume;
    let mut obj = json!({
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": pv.name,
            "labels": { "ferry.dev/volume-import": name },
            "annotations": {
                "pv.kubernetes.io/provisioned-by": ferry_csi::DRIVER_NAME,
                ORIGIN_ANNOTATION: src.volume_id,
            },
        },
        "spec": {
            "capacity": { "storage": pv.capacity },
            "accessModes": pv.access_modes,
            "claimRef": { "apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": pv.claim_namespace, "name": pv.claim_name },
            "persistentVolumeReclaimPolicy": class.as_ref().map_or_else(
                || pv.reclaim_policy.clone().unwrap_or_else(|| "Delete".into()),
                |c| c.reclaim_policy.clone(),
            ),
            "csi": {
                "driver": ferry_csi::DRIVER_NAME,
                "volumeHandle": volume.id(),
                "volumeAttributes": { CTX_CHUNK_SIZE: commit.options.chunk_size.to_string() },
            },
        },
    });
    if let Some(m) = &pv.volume_mode {
        obj["spec"]["volumeMode"] = json!(m);
    }
    if let Some(c) = &pv.storage_class_name {
        obj["spec"]["storageClassName"] = json!(c);
    }
    let mount_options = class
        .as_ref()
        .map_or(&pv.mount_options, |c| &c.mount_options);
    if !mount_options.is_empty() {
        obj["spec"]["mountOptions"] = json!(mount_options);
    }
    if let Some(f) = &pv.fs_type {
        obj["spec"]["csi"]["fsType"] = json!(f);
    }
    api::apply(&ctx.client, &kinds_used::pv(), &obj).await?;
    st.persistent_volume = Some(pv.name.clone());
    st.volume_handle = Some(volume.id().to_string());
    Ok(Some(report.duration))
}
