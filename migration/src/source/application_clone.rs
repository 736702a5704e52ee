//! ApplicationClone reconciler: a namespace copied into another inside this cluster.
//!
//! Volumes: one group snapshot of the source's ferry claims (one instant for all), a new
//! chunk-store volume from each member (metadata only: the tree's root is shared, so it
//! costs the same for any size), a PV bound to the claim's name in the destination
//! namespace, then the group is deleted (the copies keep their roots). Resources: the
//! Application stage's collection and transforms with the source namespace mapped to the
//! destination, claims bound to their copies, workloads parked unless asked; applied on
//! this cluster. Every name is derived from the clone's uid and every write is an apply, so
//! a retry after a crash at any point finishes the same copy.
//!
//! Honoured only in the controller's namespace: a clone reads one namespace and writes
//! another, which only a cluster admin may ask for. The writes need the opt-in
//! `ferry-clone` ClusterRole bound to the controller's account.

use crate::crd::RetryStatus;
use crate::crd::{
    ApplicationClone, ApplicationCloneStatus, ClonedVolume, ItemStatus, Migration, MigrationStatus,
    ResourceInfo, VolumeInfo,
};
use crate::error::{Error, Result};
use crate::resources::MIGRATED_LABEL;
use crate::runtime::{Next, Pass, Reconciler};
use crate::source::migrate::collect;
use crate::{Ctx, api, kinds_used, names};
use ferry_store::{Source, VolumeSpec};
use kube::ResourceExt;
use serde_json::{Value, json};

/// Label on a cloned PV naming the PV it was copied from.
pub const CLONED_FROM: &str = "ferry.dev/cloned-from";

/// The ApplicationClone reconciler.
#[derive(Clone, Copy, Debug, Default)]
pub struct Clones;

impl Reconciler for Clones {
    type K = ApplicationClone;
    type S = ApplicationCloneStatus;
    const KIND: &'static str = "ApplicationClone";

    fn api(client: &kube::Client, ns: Option<&str>) -> kube::Api<ApplicationClone> {
        kube::Api::namespaced(client.clone(), ns.unwrap_or_default())
    }

    fn status(obj: &ApplicationClone) -> ApplicationCloneStatus {
        obj.status.clone().unwrap_or_default()
    }

    fn retry_of(s: &ApplicationCloneStatus) -> Option<&RetryStatus> {
        s.retry.as_ref()
    }

    fn set_retry(s: &mut ApplicationCloneStatus, r: Option<RetryStatus>) {
        crate::source::migrate::set_retry_reason(&mut s.reason, &r, "");
        s.retry = r;
    }

    /// Runs a clone to its end.
    async fn reconcile(&self, pass: &mut Pass<'_, Self>) -> Result<Next> {
        if pass.status.status.is_final() {
            return Ok(Next::Idle);
        }
        if pass.status.start_timestamp.is_none() {
            pass.status.start_timestamp = Some(pass.ctx.stamp());
        }
        run(pass).await?;
        Ok(Next::Idle)
    }

    async fn give_up(&self, pass: &mut Pass<'_, Self>, reason: String) -> Next {
        let now = pass.ctx.stamp();
        fail_at(&mut pass.status, reason, now);
        Next::Idle
    }
}

fn fail_at(st: &mut ApplicationCloneStatus, why: String, now: String) {
    st.status = ItemStatus::Failed;
    st.reason = Some(why);
    st.stage = Some("Final".into());
    st.finish_timestamp = Some(now);
}

async fn run(pass: &mut Pass<'_, Clones>) -> Result<()> {
    let ctx = pass.ctx;
    let ac = pass.obj.clone();
    let ac = &ac;
    let now = ctx.stamp();
    let fail = |st: &mut ApplicationCloneStatus, why: String| fail_at(st, why, now.clone());
    let st = &mut pass.status;
    let spec = &ac.spec;
    let ns = ac.namespace().unwrap_or_default();
    if ns != ctx.namespace {
        fail(
            st,
            format!(
                "an ApplicationClone is honoured only in {} (it reads one namespace and writes \
                 another, which cluster admins ask for); this one in {ns} is not",
                ctx.namespace
            ),
        );
        return Ok(());
    }
    for (field, n) in [
        ("spec.sourceNamespace", &spec.source_namespace),
        ("spec.destinationNamespace", &spec.destination_namespace),
    ] {
        if let Err(e) = crate::names::check_object_name(field, n) {
            fail(st, e.to_string());
            return Ok(());
        }
    }
    if spec.source_namespace == spec.destination_namespace {
        fail(
            st,
            "spec.destinationNamespace is the source namespace: name another".into(),
        );
        return Ok(());
    }
    let retain = match spec.replace_policy.as_deref() {
        None | Some("Retain") => true,
        Some("Delete") => false,
        Some(other) => {
            fail(
                st,
                format!("spec.replacePolicy {other:?}: use Retain or Delete"),
            );
            return Ok(());
        }
    };
    if api::get(
        &ctx.client,
        &kinds_used::namespace(),
        None,
        &spec.source_namespace,
    )
    .await?
    .is_none()
    {
        fail(
            st,
            format!(
                "namespace {} not found: fix spec.sourceNamespace",
                spec.source_namespace
            ),
        );
        return Ok(());
    }
    let uid = ac.metadata.uid.clone().unwrap_or_default();
    if st.stage.is_none() {
        if let Some(why) = write_refused(ctx, ac).await? {
            fail(st, why);
            return Ok(());
        }
        // The namespace first: a PV is never pre-bound to a namespace that does not exist.
        let mig = as_migration(ac)?;
        crate::source::migrate::landing::ensure_namespace(
            ctx,
            &mig,
            &ctx.client,
            &spec.source_namespace,
        )
        .await?;
    }
    if st.stage.is_none() || st.stage.as_deref() == Some("Volumes") {
        st.stage = Some("Volumes".into());
        st.status = ItemStatus::InProgress;
        clone_volumes(ctx, ac, &uid, st).await?;
        st.stage = Some("Application".into());
        pass.save().await?;
    }
    let st = &mut pass.status;
    copy_resources(ctx, ac, st, retain).await?;
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
    st.reason =
        partial.then(|| "some claims or objects were skipped or failed; see their reasons".into());
    st.stage = Some("Final".into());
    st.finish_timestamp = Some(now);
    ctx.event(
        ac,
        partial,
        "Cloned",
        format!(
            "{} copied into {}: {} volume(s), {} object(s)",
            spec.source_namespace,
            spec.destination_namespace,
            st.volumes
                .iter()
                .filter(|v| v.status == ItemStatus::Successful)
                .count(),
            st.resources
                .iter()
                .filter(|r| r.status == ItemStatus::Successful)
                .count()
        ),
    )
    .await;
    Ok(())
}

/// The copies of the source's ferry claims, at one instant.
async fn clone_volumes(
    ctx: &Ctx,
    ac: &ApplicationClone,
    uid: &str,
    st: &mut ApplicationCloneStatus,
) -> Result<()> {
    let spec = &ac.spec;
    let src = &spec.source_namespace;
    let mut todo: Vec<(ClonedVolume, Value)> = Vec::new();
    st.volumes.clear();
    for pvc in api::list(&ctx.client, &kinds_used::pvc(), Some(src), None).await? {
        if crate::resources::select::skip_reason(&pvc, &spec.selectors, &Default::default())
            .is_some()
        {
            continue;
        }
        let name = pvc["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let mut v = ClonedVolume {
            persistent_volume_claim: name.clone(),
            ..Default::default()
        };
        let pv_name = pvc["spec"]["volumeName"].as_str().unwrap_or_default();
        let pv = if pv_name.is_empty() {
            None
        } else {
            api::get(&ctx.client, &kinds_used::pv(), None, pv_name).await?
        };
        let binding = pv
            .as_ref()
            .and_then(|pv| crate::resources::select::claim_binding_problem(&pvc, pv));
        match pv {
            Some(pv)
                if binding.is_some()
                    && pv["spec"]["csi"]["driver"].as_str() == Some(ferry_csi::DRIVER_NAME) =>
            {
                v.status = ItemStatus::Skipped;
                v.reason = binding;
                st.volumes.push(v);
            }
            Some(pv) if pv["spec"]["csi"]["driver"].as_str() == Some(ferry_csi::DRIVER_NAME) => {
                v.source_volume = pv["spec"]["csi"]["volumeHandle"]
                    .as_str()
                    .map(str::to_string);
                todo.push((v, pv));
            }
            Some(pv) => {
                v.status = ItemStatus::Skipped;
                v.reason = Some(format!(
                    "volume {pv_name} is not a {} volume (driver {}): only ferry's are cloned",
                    ferry_csi::DRIVER_NAME,
                    pv["spec"]["csi"]["driver"].as_str().unwrap_or("none")
                ));
                st.volumes.push(v);
            }
            None => {
                v.status = ItemStatus::Skipped;
                v.reason = Some(format!("claim {src}/{name} is not bound to a volume"));
                st.volumes.push(v);
            }
        }
    }
    if todo.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = todo
        .iter()
        .filter_map(|(v, _)| v.source_volume.clone())
        .collect();
    let group_name = names::clone_group(uid);
    let (group, members) = ctx
        .store
        .create_group_snapshot(&group_name, &ids, Default::default())
        .await?;
    for ((mut v, pv), snap) in todo.into_iter().zip(&members) {
        let source = ctx.store.get_volume(&snap.source_volume_id).await?;
        let copy = ctx
            .store
            .create_volume(VolumeSpec {
                name: names::clone_volume(uid, &v.persistent_volume_claim),
                capacity_bytes: snap.size_bytes,
                options: snap.options,
                parameters: source.record.spec.parameters.clone(),
                source: Some(Source::Snapshot(snap.id.clone())),
            })
            .await?;
        let pv_name = names::clone_pv(uid, &v.persistent_volume_claim);
        let mut spec_pv = pv["spec"].clone();
        if let Some(o) = spec_pv.as_object_mut() {
            o.remove("claimRef");
        }
        spec_pv["claimRef"] = json!({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "namespace": ac.spec.destination_namespace, "name": v.persistent_volume_claim,
        });
        spec_pv["csi"]["volumeHandle"] = json!(copy.id());
        spec_pv["persistentVolumeReclaimPolicy"] = json!("Delete");
        let obj = json!({
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {
                "name": pv_name,
                "labels": { CLONED_FROM: pv["metadata"]["name"] },
                "annotations": { "pv.kubernetes.io/provisioned-by": ferry_csi::DRIVER_NAME },
            },
            "spec": spec_pv,
        });
        api::apply(&ctx.client, &kinds_used::pv(), &obj).await?;
        v.clone_volume = Some(copy.id().to_string());
        v.persistent_volume = Some(pv_name);
        v.status = ItemStatus::Successful;
        st.volumes.push(v);
    }
    // The copies hold their roots; the group was only the instant.
    ctx.store.delete_group_snapshot(&group.id).await?;
    Ok(())
}

/// A clone as the Migration whose Application stage it runs: `src` mapped to `dst`.
fn as_migration(ac: &ApplicationClone) -> Result<Migration> {
    let spec = &ac.spec;
    let (src, dst) = (&spec.source_namespace, &spec.destination_namespace);
    serde_json::from_value(json!({
        "apiVersion": "ferry.dev/v1alpha1", "kind": "Migration",
        "metadata": {"name": ac.name_any(), "namespace": ac.namespace()},
        "spec": {"clusterPair": "", "namespaces": [src], "selectors": spec.selectors,
                 "startApplications": spec.start_applications,
                 "namespaceMapping": {src.as_str(): dst}},
    }))
    .map_err(|e| Error::Unexpected(e.to_string()))
}

/// Why the controller's account may not write the clone, if it may not: asked of this
/// cluster (SelfSubjectAccessReview) before anything is made, so a clone without the
/// opt-in role leaves nothing behind (no volume, no PV for a namespace never made).
async fn write_refused(ctx: &Ctx, ac: &ApplicationClone) -> Result<Option<String>> {
    let dst = &ac.spec.destination_namespace;
    let exists = api::get(&ctx.client, &kinds_used::namespace(), None, dst)
        .await?
        .is_some();
    let mut needs = crate::source::migrate::landing::needs(
        dst,
        exists,
        false,
        &crate::resources::kinds::default_kinds(),
        false,
    );
    needs.push(crate::source::migrate::landing::Need {
        verb: "create",
        group: String::new(),
        resource: "persistentvolumes".into(),
        namespace: None,
    });
    let missing = crate::source::migrate::landing::missing(&ctx.client, &needs).await?;
    Ok((!missing.is_empty()).then(|| {
        let list: Vec<String> = missing.iter().take(4).map(ToString::to_string).collect();
        format!(
            "the controller's account may not {}{}: nothing was cloned; bind the ferry-clone \
             ClusterRole to it (kubectl create clusterrolebinding ferry-clone \
             --clusterrole=ferry-clone --serviceaccount={}:ferry-migration)",
            list.join(", "),
            if missing.len() > 4 {
                format!(" (and {} more)", missing.len() - 4)
            } else {
                String::new()
            },
            ctx.namespace
        )
    }))
}

/// Copies the objects, mapped into the destination namespace.
async fn copy_resources(
    ctx: &Ctx,
    ac: &ApplicationClone,
    st: &mut ApplicationCloneStatus,
    retain: bool,
) -> Result<()> {
    let spec = &ac.spec;
    let (src, dst) = (&spec.source_namespace, &spec.destination_namespace);
    let mig = as_migration(ac)?;
    let landed = MigrationStatus {
        volumes: st
            .volumes
            .iter()
            .map(|v| VolumeInfo {
                namespace: src.clone(),
                persistent_volume_claim: v.persistent_volume_claim.clone(),
                status: v.status,
                reason: v.reason.clone(),
                destination_volume: v.persistent_volume.clone(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let collected = collect(ctx, &mig, &landed, &Vec::new()).await?;
    let mut out = Vec::new();
    for p in collected.plan {
        let mut i: ResourceInfo = p.info;
        i.namespace = if i.namespace.is_empty() {
            String::new()
        } else {
            dst.clone()
        };
        match p.object {
            Err(_) if i.status == ItemStatus::Skipped => {}
            Err(why) => {
                i.status = ItemStatus::Failed;
                i.reason = Some(why);
            }
            Ok(obj) => {
                let name = obj["metadata"]["name"].as_str().unwrap_or_default();
                i.name = name.to_string();
                let ns = obj["metadata"]["namespace"].as_str();
                let there = api::get(&ctx.client, &p.kind, ns, name).await?;
                let ours = there.as_ref().is_some_and(|t| {
                    t["metadata"]["labels"][MIGRATED_LABEL].as_str() == Some("true")
                });
                if retain && there.is_some() && !ours && p.kind.kind != "Namespace" {
                    i.status = ItemStatus::Skipped;
                    i.reason = Some(format!("exists in {dst}; replacePolicy Retain keeps it"));
                } else {
                    match api::apply(&ctx.client, &p.kind, &obj).await {
                        Ok(_) => i.status = ItemStatus::Successful,
                        Err(e) if e.is_permanent() => {
                            e.count();
                            i.status = ItemStatus::Failed;
                            i.reason = Some(if e.is_refusal() {
                                format!(
                                    "{e}: bind the ferry-clone ClusterRole to the controller's \
                                     account to let it write clones"
                                )
                            } else if e.api_code() == Some(403) {
                                format!(
                                    "{e}: it grants what the controller's account does not \
                                     hold, which the API server refuses (escalation); give \
                                     that account the role it refers to, or leave the object \
                                     out with selectors"
                                )
                            } else {
                                e.to_string()
                            });
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        out.push(i);
    }
    st.resources = out;
    Ok(())
}
