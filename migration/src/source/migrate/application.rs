//! Stage Application: collect the namespaces' resources, transform them, apply them on the
//! destination in order (Namespaces, PVCs bound to their new PVs, then the rest), and purge
//! what earlier migrations brought that the source no longer has, when asked.

use super::crds::{self, Standing};
use crate::crd::FieldChange;
use crate::crd::{ClusterPair, ItemStatus, Migration, MigrationStatus, ResourceInfo, Stage};
use crate::error::{Error, Result};
use crate::pair::PairSettings;
use crate::resources::kinds::{self, Kind};
use crate::resources::transform::{TransformContext, transform_traced};
use crate::resources::transformations::RuleSet;
use crate::resources::{MIGRATED_LABEL, mapping, order, select};
use crate::{Ctx, api, kinds_used};
use kube::ResourceExt;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

pub use crate::resources::TRIGGER_ANNOTATION;

/// How the reason of a resource entry that records a purge starts.
pub const PURGED: &str = "purge: ";

/// One object to apply, or the reason it is not.
pub struct Planned {
    /// Where it goes.
    pub kind: Kind,
    /// The transformed object, or why it cannot go.
    pub object: std::result::Result<Value, String>,
    /// Its identity for the status.
    pub info: ResourceInfo,
    /// Fields the ResourceTransformations changed.
    pub changes: Vec<FieldChange>,
}

fn info(kind: &Kind, obj: &Value) -> ResourceInfo {
    ResourceInfo {
        group: kind.group.clone(),
        version: kind.version.clone(),
        kind: kind.kind.clone(),
        namespace: obj["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        name: obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        status: ItemStatus::Pending,
        reason: None,
    }
}

/// Reads what the migration copies from the source and plans each object, in apply order.
///
/// # Errors
/// API errors listing the source.
pub async fn collect(
    ctx: &Ctx,
    mig: &Migration,
    st: &MigrationStatus,
    rules: &RuleSet,
) -> Result<Collected> {
    let spec = &mig.spec;
    let mut plan = Vec::new();
    let mut present = BTreeSet::new();
    let mut warnings = Vec::new();
    let (custom, crd_list) = match api::list(&ctx.client, &kinds_used::crd(), None, None).await {
        Ok(list) => (
            kinds::custom_kinds(&serde_json::json!({ "items": list.clone() })),
            list,
        ),
        // Without the right to list CRDs, custom resources are left out: said in the status.
        Err(e) if matches!(e.api_code(), Some(403 | 404)) => {
            tracing::warn!(error = %e, "custom resources left out");
            warnings.push(not_listed(&kinds_used::crd(), "", &e));
            (Vec::new(), Vec::new())
        }
        Err(e) => return Err(e),
    };
    let crds: BTreeMap<String, Value> = crd_list
        .into_iter()
        .filter_map(|c| {
            let key = format!(
                "{}/{}",
                c["spec"]["group"].as_str()?,
                c["spec"]["names"]["plural"].as_str()?
            );
            custom
                .iter()
                .any(|k| format!("{}/{}", k.group, k.plural) == key)
                .then_some((key, c))
        })
        .collect();
    let scope = kinds::kinds_in_scope(
        custom,
        &spec.include_optional_resource_types,
        &spec.exclude_resource_types,
    );
    let bound: BTreeMap<String, String> = st
        .volumes
        .iter()
        .filter_map(|v| {
            v.destination_volume.as_ref().map(|pv| {
                (
                    format!("{}/{}", v.namespace, v.persistent_volume_claim),
                    pv.clone(),
                )
            })
        })
        .collect();
    let volume_reason: BTreeMap<String, String> = st
        .volumes
        .iter()
        .filter(|v| v.destination_volume.is_none())
        .map(|v| {
            (
                format!("{}/{}", v.namespace, v.persistent_volume_claim),
                v.reason
                    .clone()
                    .unwrap_or_else(|| "its volume was not migrated".into()),
            )
        })
        .collect();
    let migration = format!("{}/{}", mig.namespace().unwrap_or_default(), mig.name_any());
    let cx = TransformContext {
        start_applications: spec.start_applications,
        bound_volumes: &bound,
        migration: &migration,
        namespace_mapping: &spec.namespace_mapping,
        storage_class_mapping: &spec.storage_class_mapping,
        rules,
    };
    let planned = |kind: Kind, info: ResourceInfo, o: Value| match transform_traced(o, &cx) {
        Ok((obj, changes)) => Planned {
            kind,
            object: Ok(obj),
            info,
            changes,
        },
        Err(why) => Planned {
            kind,
            object: Err(why),
            info,
            changes: Vec::new(),
        },
    };
    for ns in &spec.namespaces {
        if let Some(mut n) = api::get(&ctx.client, &kinds_used::namespace(), None, ns).await? {
            n["apiVersion"] = "v1".into();
            n["kind"] = "Namespace".into();
            if let Some(s) = n.as_object_mut() {
                s.remove("spec");
            }
            let k = kinds_used::namespace();
            plan.push(planned(k.clone(), info(&k, &n), n));
        }
        // The Secrets of ClusterPairs here hold another cluster's credentials: never copied.
        let pairs: kube::Api<ClusterPair> = kube::Api::namespaced(ctx.client.clone(), ns);
        let pair_secrets: BTreeSet<String> = pairs
            .list(&Default::default())
            .await?
            .items
            .into_iter()
            .map(|p| p.spec.secret_ref)
            .filter(|r| {
                r.namespace
                    .as_deref()
                    .is_none_or(|n| n.is_empty() || n == ns)
            })
            .map(|r| r.name)
            .collect();
        let mut objects = Vec::new();
        let mut kind_of = BTreeMap::new();
        for k in &scope {
            let items = match api::list(&ctx.client, k, Some(ns), None).await {
                Ok(items) => items,
                // A kind this cluster does not serve has nothing to copy.
                Err(e) if e.api_code() == Some(404) => continue,
                // Custom kinds the controller may not read are left out, said in the status.
                Err(e) if e.api_code() == Some(403) && !kinds::default_kinds().contains(k) => {
                    tracing::warn!(kind = %k.kind, group = %k.group, error = %e, "not permitted to list; left out");
                    warnings.push(not_listed(k, ns, &e));
                    continue;
                }
                Err(e) => return Err(e),
            };
            for o in items {
                present.insert(identity(k, ns, &o));
                if select::skip_reason(&o, &spec.selectors, &spec.exclude_selectors).is_some() {
                    continue;
                }
                kind_of.insert(
                    format!(
                        "{}/{}",
                        o["apiVersion"].as_str().unwrap_or_default(),
                        o["kind"].as_str().unwrap_or_default()
                    ),
                    k.clone(),
                );
                objects.push(o);
            }
        }
        let (kept, _owned) = select::drop_owned(objects);
        for o in kept {
            let key = format!(
                "{}/{}",
                o["apiVersion"].as_str().unwrap_or_default(),
                o["kind"].as_str().unwrap_or_default()
            );
            let Some(k) = kind_of.get(&key).cloned() else {
                continue;
            };
            let mut i = info(&k, &o);
            let only = &spec.persistent_volume_claims;
            if !only.is_empty() && (k.kind != "PersistentVolumeClaim" || !only.contains(&i.name)) {
                continue;
            }
            let pvc_key = format!("{}/{}", i.namespace, i.name);
            if k.kind == "PersistentVolumeClaim" && !spec.include_volumes {
                i.status = ItemStatus::Skipped;
                i.reason = Some("includeVolumes is false: the claim's data does not go, so neither does the claim".into());
                plan.push(Planned {
                    kind: k,
                    object: Err(String::new()),
                    info: i,
                    changes: Vec::new(),
                });
                continue;
            }
            if k.kind == "PersistentVolumeClaim" && !bound.contains_key(&pvc_key) {
                i.status = ItemStatus::Skipped;
                i.reason = volume_reason
                    .get(&pvc_key)
                    .cloned()
                    .or(Some("its volume was not migrated".into()));
                plan.push(Planned {
                    kind: k,
                    object: Err(String::new()),
                    info: i,
                    changes: Vec::new(),
                });
                continue;
            }
            if k.kind == "Secret" && pair_secrets.contains(&i.name) {
                tracing::debug!(name = %i.name, "ClusterPair credentials left out");
                continue;
            }
            if k.kind == "RoleBinding" && binds_pair_role(&o) {
                // A pair's access to this cluster is this cluster's admin's to grant; on the
                // other cluster it means nothing (and would be refused as an escalation).
                tracing::debug!(name = %i.name, "RoleBinding of a pair's role left out");
                continue;
            }
            if let Some(why) = select::skip_reason(&o, &BTreeMap::new(), &BTreeMap::new()) {
                tracing::debug!(name = %i.name, kind = %k.kind, why, "left out");
                continue;
            }
            plan.push(planned(k, i, o));
        }
    }
    plan.sort_by_key(|p| {
        (
            order::rank(&p.kind.kind),
            p.info.namespace.clone(),
            p.kind.kind.clone(),
            p.info.name.clone(),
        )
    });
    Ok(Collected {
        plan,
        present,
        crds,
        warnings,
    })
}

/// The roles ferry's manifests give pairs' accounts (docs/migration.md, "Security model").
pub const PAIR_ROLES: [&str; 4] = [
    "ferry-migration-destination",
    "ferry-migration-pair",
    "ferry-migration-destination-crds",
    "ferry-dr-source",
];

/// Does this RoleBinding bind one of [`PAIR_ROLES`]?
fn binds_pair_role(o: &Value) -> bool {
    o["roleRef"]["kind"] == "ClusterRole"
        && o["roleRef"]["name"]
            .as_str()
            .is_some_and(|n| PAIR_ROLES.contains(&n))
}

/// The `group/plural` a CRD map is keyed by.
pub fn crd_key(k: &Kind) -> String {
    format!("{}/{}", k.group, k.plural)
}

/// What [`collect`] read: the plan, and every object the source has in the kinds and
/// namespaces in scope (selected or not), which purging compares against.
pub struct Collected {
    /// The objects to apply, in apply order, and those left out with their reason.
    pub plan: Vec<Planned>,
    /// `(apiVersion/kind, namespace, name)` of every object the source has.
    pub present: BTreeSet<(String, String, String)>,
    /// The source's CRD of each custom kind in scope, by `group/plural`.
    pub crds: BTreeMap<String, Value>,
    /// Kinds that could not be looked at (the controller may not list them), for a person:
    /// whether the namespaces have objects of them is not known, so they are neither
    /// copied nor counted as skipped.
    pub warnings: Vec<String>,
}

/// An object's identity for purging.
fn identity(k: &Kind, ns: &str, o: &Value) -> (String, String, String) {
    (
        k.api_version() + "/" + &k.kind,
        ns.to_string(),
        o["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

/// What to say of a kind the controller may not list.
fn not_listed(k: &Kind, ns: &str, e: &Error) -> String {
    let kind = if k.group.is_empty() {
        k.plural.clone()
    } else {
        format!("{}.{}", k.plural, k.group)
    };
    let place = if ns.is_empty() {
        String::new()
    } else {
        format!(" in namespace {ns}")
    };
    format!(
        "the migration controller may not list {kind}{place} ({e}): any objects of it there \
         were not looked for; grant list on {}/{} to the ferry-migration service account to \
         migrate them",
        if k.group.is_empty() { "core" } else { &k.group },
        k.plural
    )
}

/// Applies the plan on the destination and records each object's outcome.
pub async fn run(ctx: &Ctx, mig: &Migration, st: &mut MigrationStatus) -> Result<Option<Duration>> {
    let ns = mig.namespace().unwrap_or_default();
    let pairs: kube::Api<ClusterPair> = kube::Api::namespaced(ctx.client.clone(), &ns);
    let Some(pair) = pairs.get_opt(&mig.spec.cluster_pair).await? else {
        super::fail(
            st,
            format!(
                "ClusterPair {} was deleted during the migration",
                mig.spec.cluster_pair
            ),
        );
        return Ok(None);
    };
    let settings = PairSettings::load(ctx, &pair).await?;
    let dest = settings.connect(ctx).await?;
    let started = std::time::Instant::now();
    let rules = match super::shape::load_rules(ctx, mig).await? {
        Ok(r) => r,
        Err(why) => {
            super::fail(st, why);
            return Ok(None);
        }
    };
    let Collected {
        mut plan,
        present,
        crds,
        warnings,
    } = collect(ctx, mig, st, &rules).await?;
    if !warnings.is_empty() && warnings != st.warnings {
        ctx.event(mig, true, "ResourcesNotListed", warnings.join("; "))
            .await;
    }
    st.warnings = warnings;
    let mut results = Vec::new();
    match definitions(ctx, mig, &dest, &plan, &crds, &mut results).await? {
        Definitions::Ready(blocked) => {
            if st
                .reason
                .as_deref()
                .is_some_and(|r| r.starts_with(WAITING_FOR_CRD))
            {
                st.reason = None;
            }
            for p in &mut plan {
                if let (Ok(_), Some(why)) = (&p.object, blocked.get(&crd_key(&p.kind))) {
                    p.object = Err(why.clone());
                }
            }
        }
        Definitions::Waiting(why) => {
            st.reason = Some(why);
            return Ok(Some(ctx.poll));
        }
    }
    for p in plan {
        let mut i = p.info;
        match p.object {
            Err(_) if i.status == ItemStatus::Skipped => {}
            Err(why) => {
                i.status = ItemStatus::Failed;
                i.reason = Some(why);
            }
            Ok(obj) if p.kind.kind == "Namespace" => {
                let tenant = ctx.trust(&ns) == crate::trust::Trust::Tenant;
                match land_namespace(&dest, obj, tenant).await {
                    Ok(note) => {
                        i.status = ItemStatus::Successful;
                        i.reason = note;
                    }
                    Err(e) if e.is_permanent() => {
                        e.count();
                        i.status = ItemStatus::Failed;
                        i.reason = Some(e.to_string());
                    }
                    Err(e) => return Err(e),
                }
            }
            Ok(obj) => match api::apply(&dest, &p.kind, &obj).await {
                Ok(_) => i.status = ItemStatus::Successful,
                // The API refused this object: it stays refused on a retry, so say why.
                // Temporary trouble (5xx, 429, network) fails the reconcile; the stage runs
                // again.
                Err(e) if e.is_permanent() => {
                    e.count();
                    i.status = ItemStatus::Failed;
                    i.reason = Some(match &e {
                        Error::Kube(kube::Error::Api(s)) => format!(
                            "destination refused it ({} {}): {}",
                            s.code, s.reason, s.message
                        ),
                        other => other.to_string(),
                    });
                }
                Err(e) => return Err(e),
            },
        }
        results.push(i);
    }
    if mig.spec.purge_deleted_resources {
        purge(&dest, mig, &present, &mut results).await?;
    }
    st.resources = results;
    st.resource_migration_finish_timestamp = Some(ctx.stamp());
    let ok = st
        .resources
        .iter()
        .filter(|r| r.status == ItemStatus::Successful)
        .count();
    let failed = st
        .resources
        .iter()
        .filter(|r| r.status == ItemStatus::Failed)
        .count();
    ferry_csi::metrics::observe(
        "ferry_migration_resources_seconds",
        "Time to apply a migration's resources.",
        &[],
        started.elapsed(),
    );
    ctx.event(
        mig,
        failed > 0,
        if failed > 0 {
            "ResourcesPartlyMigrated"
        } else {
            "ResourcesMigrated"
        },
        format!("{ok} resource(s) applied on the destination, {failed} failed"),
    )
    .await;
    st.stage = Some(Stage::Final);
    Ok(None)
}

/// Label keys of Pod Security admission: a namespace's security level, which a tenant's
/// migration never sets on the destination.
pub const POD_SECURITY_PREFIX: &str = "pod-security.kubernetes.io/";

/// Source namespace `ns` as the migration lands it on the destination (transformed and
/// mapped as every object is), or `None` when the source has no such namespace.
///
/// # Errors
/// API errors; a transformation that refuses it (as its reason).
pub async fn namespace_object(ctx: &Ctx, mig: &Migration, ns: &str) -> Result<Option<Value>> {
    let Some(mut n) = api::get(&ctx.client, &kinds_used::namespace(), None, ns).await? else {
        return Ok(None);
    };
    let rules = match super::shape::load_rules(ctx, mig).await? {
        Ok(r) => r,
        Err(why) => return Err(Error::Invalid(why)),
    };
    n["apiVersion"] = "v1".into();
    n["kind"] = "Namespace".into();
    if let Some(s) = n.as_object_mut() {
        s.remove("spec");
    }
    let migration = format!("{}/{}", mig.namespace().unwrap_or_default(), mig.name_any());
    let bound = BTreeMap::new();
    let cx = TransformContext {
        start_applications: mig.spec.start_applications,
        bound_volumes: &bound,
        migration: &migration,
        namespace_mapping: &mig.spec.namespace_mapping,
        storage_class_mapping: &mig.spec.storage_class_mapping,
        rules: &rules,
    };
    transform_traced(n, &cx)
        .map(|(o, _)| Some(o))
        .map_err(Error::Invalid)
}

/// Creates a migrated Namespace on the destination when it is absent (without Pod Security
/// labels for a tenant's migration); one that exists is never changed (its labels decide
/// what runs there, and they are the destination admin's). Returns a note for the status.
///
/// # Errors
/// API errors.
pub async fn land_namespace(
    dest: &kube::Client,
    mut obj: Value,
    tenant: bool,
) -> Result<Option<String>> {
    let name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if let Some(there) = api::get(dest, &kinds_used::namespace(), None, &name).await? {
        if !there["metadata"]["deletionTimestamp"].is_null() {
            // Whatever landed there now would go with it.
            return Err(Error::Waiting(format!(
                "namespace {name} is being deleted on the destination: the migration goes on \
                 once it is gone (then it is made again)"
            )));
        }
        return Ok(Some("exists on the destination: left as it is".into()));
    }
    let mut dropped = Vec::new();
    if tenant && let Some(labels) = obj["metadata"]["labels"].as_object_mut() {
        dropped = labels
            .keys()
            .filter(|k| k.starts_with(POD_SECURITY_PREFIX))
            .cloned()
            .collect();
        labels.retain(|k, _| !k.starts_with(POD_SECURITY_PREFIX));
    }
    api::create(dest, &kinds_used::namespace(), &obj).await?;
    Ok((!dropped.is_empty()).then(|| {
        format!(
            "created without its Pod Security labels ({}): a namespace's security level is \
             the destination admin's to set",
            dropped.join(", ")
        )
    }))
}

/// How the reason starts while the stage waits for a CRD on the destination.
const WAITING_FOR_CRD: &str = "waiting for CustomResourceDefinition ";

/// What the CRDs of the custom resources to apply allow.
enum Definitions {
    /// All there (or refused): the reason each blocked kind's objects fail, by `group/plural`.
    Ready(BTreeMap<String, String>),
    /// One was created or is not Established yet: wait, then run the stage again.
    Waiting(String),
}

/// Brings the CRDs that the plan's custom resources need onto the destination first:
/// created when absent, used when identical, a conflict when different (never
/// overwritten); a kind whose CRD cannot be there has its objects fail with the reason.
async fn definitions(
    ctx: &Ctx,
    mig: &Migration,
    dest: &kube::Client,
    plan: &[Planned],
    crds: &BTreeMap<String, Value>,
    results: &mut Vec<ResourceInfo>,
) -> Result<Definitions> {
    let needed: BTreeSet<String> = plan
        .iter()
        .filter(|p| p.object.is_ok())
        .map(|p| crd_key(&p.kind))
        .filter(|k| crds.contains_key(k))
        .collect();
    let mut blocked = BTreeMap::new();
    let mut waiting = Vec::new();
    for key in needed {
        let Some(crd) = crds.get(&key) else { continue };
        let name = crd["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let refuse = |blocked: &mut BTreeMap<String, String>,
                      results: &mut Vec<ResourceInfo>,
                      why: String| {
            results.push(crds::entry(crd, ItemStatus::Failed, why.clone()));
            blocked.insert(key.clone(), why);
        };
        match crds::standing(dest, crd).await {
            Ok(Standing::Absent) => {
                // A plain create: an existing CRD is never written (a patch would let the
                // pair's account rewrite any CRD of the cluster).
                match api::create(dest, &kinds_used::crd(), &crds::prepared(crd)).await {
                    Ok(_) => {
                        ctx.event(
                            mig,
                            false,
                            "CustomResourceDefinitionCreated",
                            format!("CustomResourceDefinition {name} created on the destination"),
                        )
                        .await;
                        results.push(crds::entry(
                            crd,
                            ItemStatus::Successful,
                            "created on the destination".into(),
                        ));
                        waiting.push(name);
                    }
                    Err(e) if e.is_permanent() => refuse(
                        &mut blocked,
                        results,
                        format!(
                            "CustomResourceDefinition {name} is not on the destination and \
                             could not be created there ({e}); its objects need it: bind \
                             ferry-migration-destination-crds to the pair's account, or \
                             install the CRD there"
                        ),
                    ),
                    Err(e) => return Err(e),
                }
            }
            Ok(Standing::Pending) => {
                results.push(crds::entry(
                    crd,
                    ItemStatus::Successful,
                    "on the destination, identical".into(),
                ));
                waiting.push(name);
            }
            Ok(Standing::Identical) => results.push(crds::entry(
                crd,
                ItemStatus::Successful,
                "on the destination, identical".into(),
            )),
            Ok(Standing::Differs(d)) => refuse(
                &mut blocked,
                results,
                format!(
                    "CustomResourceDefinition {name} differs on the destination ({d}); it is \
                     not overwritten, so its objects were not applied: make the two equal, or \
                     leave the kind out with excludeResourceTypes"
                ),
            ),
            Err(e) if e.api_code() == Some(403) => refuse(
                &mut blocked,
                results,
                format!(
                    "the destination account may not read CustomResourceDefinition {name} \
                     ({e}): apply manifests/rbac.yaml there"
                ),
            ),
            Err(e) => return Err(e),
        }
    }
    for name in &waiting {
        let there = api::get(dest, &kinds_used::crd(), None, name).await?;
        if !there.as_ref().is_some_and(crds::established) {
            return Ok(Definitions::Waiting(format!(
                "{WAITING_FOR_CRD}{name} to be established on the destination"
            )));
        }
    }
    Ok(Definitions::Ready(blocked))
}

/// Deletes, in the migrated namespaces on the destination, objects that an earlier migration
/// brought (they carry the migrated label) and that the source no longer has. An object the
/// source still has stays, even when it was left out, skipped or failed this time.
async fn purge(
    dest: &kube::Client,
    mig: &Migration,
    present: &BTreeSet<(String, String, String)>,
    results: &mut Vec<ResourceInfo>,
) -> Result<()> {
    let scope = kinds::kinds_in_scope(
        Vec::new(),
        &mig.spec.include_optional_resource_types,
        &mig.spec.exclude_resource_types,
    );
    for ns in &mig.spec.namespaces {
        let there = mapping::target(&mig.spec.namespace_mapping, ns);
        for k in &scope {
            let found = match api::list(
                dest,
                k,
                Some(there),
                Some(&format!("{MIGRATED_LABEL}=true")),
            )
            .await
            {
                Ok(f) => f,
                Err(e) if e.api_code() == Some(404) => continue,
                Err(e) => return Err(e),
            };
            for o in found {
                let name = o["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                if present.contains(&identity(k, ns, &o)) {
                    continue;
                }
                let mut i = info(k, &o);
                match api::delete(dest, k, Some(there), &name).await {
                    Ok(()) => {
                        i.status = ItemStatus::Successful;
                        i.reason = Some(format!("{PURGED}deleted, gone from the source"));
                    }
                    Err(e) if e.is_permanent() => {
                        e.count();
                        i.status = ItemStatus::Failed;
                        i.reason = Some(format!("{PURGED}delete failed: {e}"));
                    }
                    Err(e) => return Err(e),
                }
                results.push(i);
            }
        }
    }
    Ok(())
}
