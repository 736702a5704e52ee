//! VolumeImport reconciler (destination side): import the exported snapshot into this
//! cluster's chunk store, then create the PV, pre-bound to the claim, for ferry's driver.
//!
//! A VolumeImport in namespace N causes work in N only, whoever wrote it (a pair's account
//! on this cluster is a tenant's credential):
//! - the claim it lands on is N's (the spec names only its name);
//! - the transfer Secret is read from N;
//! - the data lands in the claim's landing volume (`names::landing`, from N and the claim:
//!   a name no provisioned volume, clone or other namespace's claim can have), and its PV has
//!   that name too; a PV of that name that is not this landing's is never taken over;
//! - a volume is updated in place only when it is the claim's landing volume, made by an
//!   import for that claim (the PV's origin annotation, which only cluster controllers
//!   write, names the same source volume), or, for a failback (`existingVolume`), when its PV
//!   is bound to that claim of N and the claim is bound to it;
//! - the PV's reclaim policy and mount options come from the StorageClass, which must be a
//!   ferry class of this cluster, never from the VolumeImport;
//! - the spec is frozen (a CRD rule) and the controller checks the digest it accepted.
//!
//! A volume in use on a node (leased) is never re-rooted under its writer. A landing volume
//! is imported into incrementally: only chunks it lacks are fetched.

use crate::crd::{ImportPhase, RetryStatus, VolumeImport, VolumeImportStatus};
use crate::error::{Error, Result};
use crate::pair::{secret_data, transfer_from_data};
use crate::runtime::{Cleanup, Next, Pass, Reconciler, finalizer};
use crate::transfers::{Look, Phase};
use crate::{Ctx, api, kinds_used, names};
use ferry_transfer::Key;
use kube::ResourceExt;
use serde_json::{Value, json};
use sha2::Digest;
use std::time::Duration;

/// How often a running import's progress is written to the status.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// Volume attribute carrying the chunk size (as the CSI controller sets it).
const CTX_CHUNK_SIZE: &str = "ferry.dev/chunkSize";

/// Annotation on a PV an import made: the source volume it was migrated from, so a
/// migration back (a failback) updates that volume in place instead of making a new one.
pub const ORIGIN_ANNOTATION: &str = "ferry.dev/origin-volume";

/// Annotation on a PV an import made: the claim (`namespace/name`) it was made for.
pub const CLAIM_ANNOTATION: &str = "ferry.dev/import-claim";

/// Label on a PV an import made: its landing name.
pub const LANDING_LABEL: &str = "ferry.dev/import-landing";

/// The VolumeImport reconciler.
#[derive(Clone, Copy, Debug, Default)]
pub struct Imports;

impl Reconciler for Imports {
    type K = VolumeImport;
    type S = VolumeImportStatus;
    const KIND: &'static str = "VolumeImport";
    const FINALIZER: Option<&'static str> = Some(finalizer::IMPORT);

    fn api(client: &kube::Client, ns: Option<&str>) -> kube::Api<VolumeImport> {
        kube::Api::namespaced(client.clone(), ns.unwrap_or_default())
    }

    fn status(obj: &VolumeImport) -> VolumeImportStatus {
        obj.status.clone().unwrap_or_default()
    }

    fn retry_of(s: &VolumeImportStatus) -> Option<&RetryStatus> {
        s.retry.as_ref()
    }

    fn set_retry(s: &mut VolumeImportStatus, r: Option<RetryStatus>) {
        crate::source::migrate::set_retry_reason(&mut s.reason, &r, "");
        s.retry = r;
    }

    /// One that ended makes nothing more: it may go without cleaning up.
    fn needs_finalizer(&self, vi: &VolumeImport) -> bool {
        !ended(vi)
    }

    async fn reconcile(&self, pass: &mut Pass<'_, Self>) -> Result<Next> {
        reconcile(pass).await
    }

    async fn cleanup(&self, ctx: &Ctx, vi: &VolumeImport) -> Result<Cleanup> {
        cleanup(ctx, vi).await
    }

    async fn give_up(&self, pass: &mut Pass<'_, Self>, reason: String) -> Next {
        let (ctx, vi) = (pass.ctx, pass.obj.clone());
        // It ends here: nothing is left to clean up.
        ctx.transfers.cancel(&jobs_of(&vi));
        let api = Imports::api(&ctx.client, vi.namespace().as_deref());
        match finalizer::release(&api, &vi, finalizer::IMPORT).await {
            Ok(Some(written)) => pass.rebase(&written),
            Ok(None) => {}
            Err(e) => tracing::info!(error = %e, "finalizer kept; removed on deletion"),
        }
        let st = &mut pass.status;
        st.phase = ImportPhase::Failed;
        st.reason = Some(reason.clone());
        st.snapshot_id = Some(vi.spec.source.snapshot_id.clone());
        ctx.event(&vi, true, "ImportFailed", reason).await;
        Next::Idle
    }
}

/// True once the import of the spec's snapshot ended (Ready or Failed).
fn ended(vi: &VolumeImport) -> bool {
    vi.status.as_ref().is_some_and(|s| {
        s.snapshot_id.as_ref() == Some(&vi.spec.source.snapshot_id)
            && matches!(s.phase, ImportPhase::Ready | ImportPhase::Failed)
    })
}

/// The digest of a spec, as `status.acceptedSpec` records it.
fn spec_digest(vi: &VolumeImport) -> Result<String> {
    let bytes = serde_json::to_vec(&vi.spec).map_err(|e| Error::Unexpected(e.to_string()))?;
    Ok(hex::encode(sha2::Sha256::digest(&bytes)))
}

/// Brings one VolumeImport to Ready (or Failed); returns when to look again.
async fn reconcile(pass: &mut Pass<'_, Imports>) -> Result<Next> {
    let ctx = pass.ctx;
    let vi = pass.obj.clone();
    let vi = &vi;
    if ended(vi) {
        return Ok(Next::Idle);
    }
    let digest = spec_digest(vi)?;
    match &pass.status.accepted_spec {
        None => pass.status.accepted_spec = Some(digest),
        Some(d) if *d == digest => {}
        Some(_) => {
            return Err(Error::Invalid(
                "spec changed after it was accepted: a VolumeImport's spec is immutable, so \
                 this one imports nothing more; create a new VolumeImport"
                    .into(),
            ));
        }
    }
    let started = std::time::Instant::now();
    let outcome = import(pass).await;
    // One operation per import, not per pass: timed by the job when it ran one.
    match &outcome {
        Ok(None) => {}
        Ok(Some(took)) => ferry_csi::metrics::operation("volume_import", None, *took),
        Err(e) => ferry_csi::metrics::operation("volume_import", Some(e.kind()), started.elapsed()),
    }
    let snap = vi.spec.source.snapshot_id.clone();
    match outcome? {
        None => {
            // In the pool: show its progress, come back when a transfer ends (or to show
            // progress again).
            pass.save().await?;
            let _ = ctx
                .transfers
                .wait_for_an_end(&jobs_of(vi), PROGRESS_EVERY)
                .await;
            Ok(Next::After(Duration::ZERO))
        }
        Some(_) => {
            // Nothing is left to clean up once it ended.
            let api = Imports::api(&ctx.client, vi.namespace().as_deref());
            if let Some(written) = finalizer::release(&api, vi, finalizer::IMPORT).await? {
                pass.rebase(&written);
            }
            let st = &mut pass.status;
            st.phase = ImportPhase::Ready;
            st.reason = None;
            st.snapshot_id = Some(snap);
            ctx.event(
                vi,
                false,
                "Imported",
                format!(
                    "PV {} ready for claim {}/{}",
                    st.persistent_volume.as_deref().unwrap_or_default(),
                    vi.namespace().unwrap_or_default(),
                    vi.spec.persistent_volume.claim_name
                ),
            )
            .await;
            Ok(Next::Idle)
        }
    }
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
    names::check_object_name(
        "spec.persistentVolume.claimName",
        &s.persistent_volume.claim_name,
    )?;
    if let Some(c) = &s.persistent_volume.storage_class_name
        && !c.is_empty()
    {
        names::check_object_name("spec.persistentVolume.storageClassName", c)?;
    }
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

/// The settings of this cluster's StorageClass named by the import: a ferry class's
/// parameters, reclaim policy and mount options (as a provisioned volume of the class would
/// get). Refused when the class is missing, another driver's, or its parameters do not
/// parse; a claim with no class gets reclaim policy Delete and no mount options.
async fn landing_class(ctx: &Ctx, vi: &VolumeImport) -> Result<LandingClass> {
    let name = match &vi.spec.persistent_volume.storage_class_name {
        Some(n) if !n.is_empty() => n,
        _ => {
            return Ok(LandingClass {
                options: ferry_store::VolumeOptions::default(),
                reclaim_policy: "Delete".into(),
                mount_options: Vec::new(),
            });
        }
    };
    let Some(sc) = api::get(&ctx.client, &kinds_used::storage_class(), None, name).await? else {
        return Err(Error::Invalid(format!(
            "StorageClass {name} does not exist on this cluster: create it (a class of {}), or \
             map the claim's class to one that exists with storageClassMapping",
            ferry_csi::DRIVER_NAME
        )));
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
    Ok(LandingClass {
        options,
        reclaim_policy: sc["reclaimPolicy"].as_str().unwrap_or("Delete").to_string(),
        mount_options: sc["mountOptions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m.as_str().map(str::to_string))
            .collect(),
    })
}

/// Where an import's data goes.
struct Target {
    /// The chunk-store volume's name.
    volume_name: String,
    /// The PV: kept as it is for an update in place, made (or updated) for a landing.
    pv: String,
    /// True for a failback into an existing volume: its PV is not touched.
    in_place: bool,
}

/// The PV of this cluster whose CSI volume handle is `id`, if any.
async fn pv_of_volume(ctx: &Ctx, id: &str) -> Result<Option<Value>> {
    let pvs = api::list(&ctx.client, &kinds_used::pv(), None, None).await?;
    Ok(pvs.into_iter().find(|pv| {
        pv["spec"]["csi"]["driver"].as_str() == Some(ferry_csi::DRIVER_NAME)
            && pv["spec"]["csi"]["volumeHandle"].as_str() == Some(id)
    }))
}

/// The existing volume `id` to update in place (a failback), when it is here and has a PV;
/// refused unless that PV is bound to claim `ns/claim` and the claim is bound to it (both
/// written by the cluster's own controllers, never by a VolumeImport's author).
async fn in_place(ctx: &Ctx, ns: &str, claim: &str, id: &str) -> Result<Option<Target>> {
    let volume = match ctx.store.get_volume(id).await {
        Ok(v) => v,
        Err(ferry_store::Error::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let Some(pv) = pv_of_volume(ctx, id).await? else {
        return Ok(None);
    };
    let pv_name = pv["metadata"]["name"].as_str().unwrap_or_default();
    let r = &pv["spec"]["claimRef"];
    let refuse = |why: String| {
        Error::Invalid(format!(
            "spec.existingVolume {id} is not overwritten: {why}; only a volume bound to claim \
             {ns}/{claim} is updated in place"
        ))
    };
    if r["namespace"].as_str() != Some(ns) || r["name"].as_str() != Some(claim) {
        return Err(refuse(format!(
            "its PV {pv_name} is bound to claim {}/{}",
            r["namespace"].as_str().unwrap_or("-"),
            r["name"].as_str().unwrap_or("-")
        )));
    }
    let pvc = api::get(&ctx.client, &kinds_used::pvc(), Some(ns), claim).await?;
    let bound = pvc.as_ref().is_some_and(|c| {
        c["status"]["phase"].as_str() == Some("Bound")
            && c["spec"]["volumeName"].as_str() == Some(pv_name)
            && (r["uid"].is_null() || c["metadata"]["uid"] == r["uid"])
    });
    if !bound {
        return Err(refuse(format!(
            "claim {ns}/{claim} is not bound to its PV {pv_name}"
        )));
    }
    Ok(Some(Target {
        volume_name: volume.record.spec.name.clone(),
        pv: pv_name.to_string(),
        in_place: true,
    }))
}

/// The claim's landing volume and PV; refused when a PV of that name is not this landing's,
/// or holds the data of another source volume.
async fn landing(ctx: &Ctx, ns: &str, claim: &str, source_volume: &str) -> Result<Target> {
    let name = names::landing(ns, claim);
    if let Some(pv) = api::get(&ctx.client, &kinds_used::pv(), None, &name).await? {
        let ours = pv["metadata"]["labels"][LANDING_LABEL].as_str() == Some(&name)
            && pv["metadata"]["annotations"][CLAIM_ANNOTATION].as_str()
                == Some(&format!("{ns}/{claim}"));
        if !ours {
            return Err(Error::Invalid(format!(
                "PV {name} exists and was not made by an import for claim {ns}/{claim}: it is \
                 not taken over; remove it if it is not needed"
            )));
        }
        let origin = pv["metadata"]["annotations"][ORIGIN_ANNOTATION]
            .as_str()
            .unwrap_or_default();
        if !origin.is_empty() && origin != source_volume {
            return Err(Error::Invalid(format!(
                "claim {ns}/{claim} already holds the data of source volume {origin}, not of \
                 {source_volume}: it is not overwritten; delete the claim and PV {name} here \
                 to land this volume"
            )));
        }
    }
    Ok(Target {
        volume_name: name.clone(),
        pv: name,
        in_place: false,
    })
}

/// Moves the import on: submits it to the controller's transfer pool, shows its progress
/// while it runs, and once it ended, makes the PV. `Ok(Some(how long the import took))`
/// when it is done, `Ok(None)` while it is in the pool.
async fn import(pass: &mut Pass<'_, Imports>) -> Result<Option<Duration>> {
    let ctx = pass.ctx;
    let vi = pass.obj.clone();
    let vi = &vi;
    check_spec(vi)?;
    let ns = vi.namespace().unwrap_or_default();
    let claim = vi.spec.persistent_volume.claim_name.clone();
    let src = &vi.spec.source;
    // Where the data would go is decided first, before anything is read: a VolumeImport
    // that may not write where it asks learns nothing from a transfer store either.
    let class = landing_class(ctx, vi).await?;
    let into = match &vi.spec.existing_volume {
        Some(id) => in_place(ctx, &ns, &claim, id).await?,
        None => None,
    };
    let into = match into {
        Some(t) => t,
        None => landing(ctx, &ns, &claim, &src.volume_id).await?,
    };
    if let Some(existing) = ctx.store.volume_by_name(&into.volume_name).await? {
        ctx.store.check_unleased(existing.id()).await.map_err(|e| {
            Error::Invalid(format!(
                "volume {} is in use on the destination cluster ({e}); stop what uses claim \
                 {ns}/{claim} there and the import goes on",
                existing.id()
            ))
        })?;
    }
    let what = format!("Secret {ns}/{}", vi.spec.transfer_secret);
    let data = secret_data(&ctx.client, &ns, &vi.spec.transfer_secret)
        .await?
        .ok_or_else(|| Error::Invalid(format!("{what} named by the VolumeImport not found")))?;
    let origin = crate::trust::Origin::new(&ns, ctx.trust(&ns));
    let (_, config, key) = transfer_from_data(&what, &data, &ctx.policy, origin)?;
    let key = key.as_deref().map(Key::parse).transpose()?;
    let target = crate::pair::open_transfer(&config, key).await?;
    let mut commit = target
        .get_commit(&src.volume_id, &src.snapshot_id)
        .await?
        .ok_or_else(|| {
            Error::Invalid(format!(
                "snapshot {} of volume {} is not in the transfer store (export it first)",
                src.snapshot_id, src.volume_id
            ))
        })?;
    // The chunk size is the source volume's (the tree is built of it); the codec for new
    // writes is the class's.
    commit.options.compression = class.options.compression;
    let key = format!("{}{}", jobs_of(vi), src.snapshot_id);
    let (report, p) = match ctx.transfers.look(&key) {
        Look::Ended(outcome, p) => (outcome?, p),
        Look::InFlight(view) => {
            let st = &mut pass.status;
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
            let st = &mut pass.status;
            st.phase = ImportPhase::InProgress;
            st.reason = None;
            pass.save().await?;
            let (store, tuning) = (ctx.store.clone(), ctx.tuning);
            let name = into.volume_name.clone();
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
    pass.status.bytes_total = p.bytes_total;
    pass.status.bytes_done = p.bytes_total;
    pass.status.bytes_fetched = report.bytes_read;
    let volume = ctx
        .store
        .volume_by_name(&into.volume_name)
        .await?
        .ok_or_else(|| {
            Error::Unexpected(format!("imported volume {} not found", into.volume_name))
        })?;
    if !into.in_place {
        let pv = landing_pv(vi, &into.pv, volume.id(), &class, &commit);
        api::apply(&ctx.client, &kinds_used::pv(), &pv).await?;
    }
    // For an update in place the claim keeps the PV it has: only the data under it moved.
    pass.status.persistent_volume = Some(into.pv);
    pass.status.volume_handle = Some(volume.id().to_string());
    Ok(Some(report.duration))
}

/// The PV of a claim's landing volume.
fn landing_pv(
    vi: &VolumeImport,
    name: &str,
    volume_id: &str,
    class: &LandingClass,
    commit: &ferry_transfer::Commit,
) -> Value {
    let ns = vi.namespace().unwrap_or_default();
    let t = &vi.spec.persistent_volume;
    let mut obj = json!({
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": name,
            "labels": { LANDING_LABEL: name },
            "annotations": {
                "pv.kubernetes.io/provisioned-by": ferry_csi::DRIVER_NAME,
                ORIGIN_ANNOTATION: vi.spec.source.volume_id,
                CLAIM_ANNOTATION: format!("{ns}/{}", t.claim_name),
            },
        },
        "spec": {
            "capacity": { "storage": t.capacity },
            "accessModes": t.access_modes,
            "claimRef": { "apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": ns, "name": t.claim_name },
            "persistentVolumeReclaimPolicy": class.reclaim_policy,
            "storageClassName": t.storage_class_name.clone().unwrap_or_default(),
            "csi": {
                "driver": ferry_csi::DRIVER_NAME,
                "volumeHandle": volume_id,
                "volumeAttributes": { CTX_CHUNK_SIZE: commit.options.chunk_size.to_string() },
            },
        },
    });
    if let Some(m) = &t.volume_mode {
        obj["spec"]["volumeMode"] = json!(m);
    }
    if !class.mount_options.is_empty() {
        obj["spec"]["mountOptions"] = json!(class.mount_options);
    }
    if let Some(f) = &t.fs_type {
        obj["spec"]["csi"]["fsType"] = json!(f);
    }
    obj
}

/// A VolumeImport deleted before it ended: its transfer stops, and a landing volume that has
/// no PV yet (the first import for that claim) is removed from the chunk store; a volume
/// with a PV (an earlier run's, or a failback's) keeps what it has.
async fn cleanup(ctx: &Ctx, vi: &VolumeImport) -> Result<Cleanup> {
    ctx.transfers.cancel(&jobs_of(vi));
    if ended(vi) || vi.spec.existing_volume.is_some() {
        return Ok(Cleanup::Done);
    }
    let ns = vi.namespace().unwrap_or_default();
    let name = names::landing(&ns, &vi.spec.persistent_volume.claim_name);
    if api::get(&ctx.client, &kinds_used::pv(), None, &name)
        .await?
        .is_some()
    {
        return Ok(Cleanup::Done);
    }
    let Some(v) = ctx.store.volume_by_name(&name).await? else {
        return Ok(Cleanup::Done);
    };
    match ctx.store.delete_volume(v.id()).await {
        Ok(()) | Err(ferry_store::Error::NotFound(_)) => Ok(Cleanup::Done),
        Err(e) if e.is_temporary() => Err(e.into()),
        Err(e) => Ok(Cleanup::Left(format!(
            "the partly imported volume {} ({e})",
            v.id()
        ))),
    }
}
