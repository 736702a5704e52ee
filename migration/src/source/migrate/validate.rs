//! Validation: what must hold before a migration touches anything.

use super::fail;
use super::shape;
use crate::crd::{ClusterPair, ItemStatus, Migration, MigrationStatus, Stage, VolumeInfo};
use crate::error::Result;
use crate::pair::PairSettings;
use crate::resources::mapping;
use crate::{Ctx, api, kinds_used};
use kube::ResourceExt;
use std::time::Duration;

/// Checks the spec, the pair and the namespaces; lists the volumes in scope. Returns a wait
/// when the pair has not been checked yet.
pub async fn run(ctx: &Ctx, mig: &Migration, st: &mut MigrationStatus) -> Result<Option<Duration>> {
    let ns = mig.namespace().unwrap_or_default();
    let spec = &mig.spec;
    if st.start_timestamp.is_none() {
        st.start_timestamp = Some(ctx.stamp());
    }
    if spec.namespaces.is_empty() {
        fail(
            st,
            "spec.namespaces is empty: name the namespaces to migrate".into(),
        );
        return Ok(None);
    }
    if ns != ctx.namespace && spec.namespaces.iter().any(|n| *n != ns) {
        fail(
            st,
            format!(
                "a Migration in namespace {ns} may only migrate {ns}; create it in {} to migrate other namespaces",
                ctx.namespace
            ),
        );
        return Ok(None);
    }
    let pairs: kube::Api<ClusterPair> = kube::Api::namespaced(ctx.client.clone(), &ns);
    let Some(pair) = pairs.get_opt(&spec.cluster_pair).await? else {
        fail(
            st,
            format!(
                "ClusterPair {} not found in namespace {ns}: create it (ferryctl generate clusterpair) or fix spec.clusterPair",
                spec.cluster_pair
            ),
        );
        return Ok(None);
    };
    if let Err(why) = mapping::check(&spec.namespace_mapping, &spec.namespaces) {
        fail(st, why);
        return Ok(None);
    }
    // The pair is checked now, not trusted from its last status: a destination or bucket
    // that went away since fails the migration here, before anything is made. A dry run
    // checks without the probe write.
    let pst = if spec.dry_run {
        crate::source::cluster_pair::check_read_only(ctx, &pair).await
    } else {
        crate::source::cluster_pair::check(ctx, &pair).await
    };
    if !spec.dry_run {
        // What was just found is the pair's state: its status says so now, not at its next
        // scheduled check (a dry run writes nothing but its own status).
        crate::source::cluster_pair::record_live(ctx, &pair, pst.clone()).await;
    }
    if !pst.ready() {
        let why = pst.reasons();
        fail(
            st,
            format!(
                "ClusterPair {} is not ready: {}",
                spec.cluster_pair,
                why.join("; ")
            ),
        );
        return Ok(None);
    }
    for n in &spec.namespaces {
        if api::get(&ctx.client, &kinds_used::namespace(), None, n)
            .await?
            .is_none()
        {
            fail(
                st,
                format!("namespace {n} not found on the source: fix spec.namespaces"),
            );
            return Ok(None);
        }
    }
    if let Some(other) = running_elsewhere(ctx, mig).await? {
        fail(st, other);
        return Ok(None);
    }
    for (field, rule) in [
        ("preExecRule", &spec.pre_exec_rule),
        ("postExecRule", &spec.post_exec_rule),
    ] {
        let Some(rule) = rule else { continue };
        if let Err(why) = crate::source::exec_rules::load(ctx, &ns, rule).await? {
            fail(st, format!("{field} {rule}: {why}"));
            return Ok(None);
        }
    }
    let rules = match shape::load_rules(ctx, mig).await? {
        Ok(r) => r,
        Err(why) => {
            fail(st, why);
            return Ok(None);
        }
    };
    st.volumes = if spec.include_volumes {
        volumes_in_scope(ctx, mig).await?
    } else {
        Vec::new()
    };
    let settings = PairSettings::load(ctx, &pair).await?;
    if let Some(why) = folder_refused(ctx, mig, &settings) {
        fail(st, why);
        return Ok(None);
    }
    let dest = settings.connect(ctx).await?;
    let classes = match shape::landing_classes(ctx, mig, &dest, &st.volumes).await? {
        Ok(c) => c,
        Err(why) => {
            fail(st, why);
            return Ok(None);
        }
    };
    if let Some(why) = access_refused(mig, &dest, st).await? {
        fail(st, why);
        return Ok(None);
    }
    if spec.dry_run {
        let plan = super::dry_run::plan(ctx, mig, st, &settings, &dest, &rules, &classes).await?;
        super::dry_run::finish(st, plan, ctx.stamp());
        return Ok(None);
    }
    st.reason = None;
    st.validated_spec = Some(super::spec_hash(mig)?);
    st.status = ItemStatus::InProgress;
    st.stage = Some(Stage::Volumes);
    ctx.event(
        mig,
        false,
        "MigrationStarted",
        format!(
            "migrating {} to ClusterPair {}: {} volume(s)",
            spec.namespaces.join(","),
            spec.cluster_pair,
            st.volumes.len()
        ),
    )
    .await;
    Ok(None)
}

/// Another migration in progress over one of the same namespaces, described.
async fn running_elsewhere(ctx: &Ctx, mig: &Migration) -> Result<Option<String>> {
    let all: kube::Api<Migration> = kube::Api::all(ctx.client.clone());
    for other in all.list(&Default::default()).await?.items {
        if other.metadata.uid == mig.metadata.uid {
            continue;
        }
        let running = other
            .status
            .as_ref()
            .is_some_and(|s| s.status == ItemStatus::InProgress && s.finish_timestamp.is_none());
        if let Some(n) = other
            .spec
            .namespaces
            .iter()
            .find(|n| mig.spec.namespaces.contains(n))
            && running
        {
            {
                return Ok(Some(format!(
                    "Migration {}/{} is already migrating namespace {n}: wait for it to end",
                    other.namespace().unwrap_or_default(),
                    other.name_any()
                )));
            }
        }
    }
    Ok(None)
}

/// Every PVC in the namespaces that the selectors take, with ferry's ones Pending and the
/// others Skipped with the reason.
async fn volumes_in_scope(ctx: &Ctx, mig: &Migration) -> Result<Vec<VolumeInfo>> {
    let mut out = Vec::new();
    for n in &mig.spec.namespaces {
        for pvc in api::list(&ctx.client, &kinds_used::pvc(), Some(n), None).await? {
            if crate::resources::select::skip_reason(
                &pvc,
                &mig.spec.selectors,
                &mig.spec.exclude_selectors,
            )
            .is_some()
            {
                continue;
            }
            let name = pvc["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let only = &mig.spec.persistent_volume_claims;
            if !only.is_empty() && !only.contains(&name) {
                continue;
            }
            let mut v = VolumeInfo {
                namespace: n.clone(),
                persistent_volume_claim: name.clone(),
                ..Default::default()
            };
            let pv_name = pvc["spec"]["volumeName"].as_str().unwrap_or_default();
            if pvc["status"]["phase"].as_str() != Some("Bound") || pv_name.is_empty() {
                v.status = ItemStatus::Skipped;
                v.reason = Some(format!(
                    "PVC {n}/{name} is not bound to a volume; bind it or leave it out with excludeSelectors"
                ));
                out.push(v);
                continue;
            }
            v.volume = pv_name.to_string();
            let pv = api::get(&ctx.client, &kinds_used::pv(), None, pv_name).await?;

            let driver = pv
                .as_ref()
                .and_then(|p| p["spec"]["csi"]["driver"].as_str())
                .unwrap_or("");
            if driver != ferry_csi::DRIVER_NAME {
                let by = if driver.is_empty() {
                    "a non-CSI volume plugin".to_string()
                } else {
                    format!("driver {driver}")
                };
                v.status = ItemStatus::Skipped;
                v.reason = Some(format!(
                    "volume {pv_name} belongs to {by}; ferry moves the data of {} volumes only, so this PVC is left out",
                    ferry_csi::DRIVER_NAME
                ));
                out.push(v);
                continue;
            }
            if let Some(why) = pv
                .as_ref()
                .and_then(|pv| crate::resources::select::claim_binding_problem(&pvc, pv))
            {
                v.status = ItemStatus::Skipped;
                v.reason = Some(why);
                out.push(v);
                continue;
            }
            v.volume_handle = pv
                .as_ref()
                .and_then(|p| p["spec"]["csi"]["volumeHandle"].as_str())
                .map(str::to_string);
            out.push(v);
        }
    }
    Ok(out)
}

/// Why the pair's account may not write what this migration writes on the destination, if
/// it may not (checked there with its own credentials, namespace by namespace).
async fn access_refused(
    mig: &Migration,
    dest: &kube::Client,
    st: &MigrationStatus,
) -> Result<Option<String>> {
    let spec = &mig.spec;
    let volumes = st.volumes.iter().any(|v| v.status == ItemStatus::Pending);
    let kinds = if spec.include_resources {
        crate::resources::kinds::kinds_in_scope(
            Vec::new(),
            &spec.include_optional_resource_types,
            &spec.exclude_resource_types,
        )
    } else {
        Vec::new()
    };
    let mut missing = Vec::new();
    for n in &spec.namespaces {
        let there = mapping::target(&spec.namespace_mapping, n);
        let exists = match api::get(dest, &kinds_used::namespace(), None, there).await {
            Ok(found) => found.is_some(),
            // Reading it may be refused where writing in it is not: the checks below say.
            Err(e) if e.api_code() == Some(403) => true,
            Err(e) => return Err(e),
        };
        let needs =
            super::landing::needs(there, exists, volumes, &kinds, spec.purge_deleted_resources);
        missing.extend(super::landing::missing(dest, &needs).await?);
    }
    Ok((!missing.is_empty()).then(|| super::landing::refusal(&missing)))
}

/// A folder transfer store is split by namespace, and the destination opens it for each
/// namespace a migration lands in as a VolumeImport there asks: checked here as the
/// destination will check it, so a migration that could not be imported (a namespace
/// mapped away from the folder's, or several namespaces over one folder) is refused before
/// anything is snapshotted.
fn folder_refused(ctx: &Ctx, mig: &Migration, settings: &PairSettings) -> Option<String> {
    if settings.transfer.backend != ferry_store::Backend::Fs {
        return None;
    }
    for n in &mig.spec.namespaces {
        let there = mapping::target(&mig.spec.namespace_mapping, n);
        let origin = crate::trust::Origin::new(there, ctx.trust(there));
        if let Err(e) = ctx
            .policy
            .check_transfer("transfer store", &settings.transfer, origin)
        {
            return Some(format!(
                "the destination opens a folder transfer store for each namespace a migration \
                 lands in, and would refuse this one for namespace {there} ({e}); use an object \
                 store (s3, azblob, gcs) to land in {there}, or a folder under that namespace's \
                 part"
            ));
        }
    }
    None
}
