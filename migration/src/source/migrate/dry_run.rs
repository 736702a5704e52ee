//! Dry run (`spec.dryRun`): after validation, plan what a run would do and write the plan
//! to the status. Only reads: the source and destination APIs (GET and LIST), the source
//! chunk store's trees and the transfer store's commits and index. No snapshot, no import,
//! no probe, no event, no finalizer.

use super::application::{Collected, collect, crd_key};
use super::crds::{Standing, standing as crd_standing};
use crate::crd::{
    ItemStatus, Migration, MigrationStatus, Plan, PlannedAction, PlannedResource, PlannedVolume,
    Stage,
};
use crate::error::Result;
use crate::pair::PairSettings;
use crate::resources::transformations::RuleSet;
use crate::resources::{MIGRATED_LABEL, mapping};
use crate::{Ctx, api, names};
use std::collections::BTreeMap;

/// The plan of `mig` as validated into `st` (its volumes in scope).
///
/// # Errors
/// API errors a retry may cure.
pub async fn plan(
    ctx: &Ctx,
    mig: &Migration,
    st: &MigrationStatus,
    settings: &PairSettings,
    dest: &kube::Client,
    rules: &RuleSet,
    classes: &BTreeMap<String, (String, String)>,
) -> Result<Plan> {
    let spec = &mig.spec;
    let transfer = settings.open_transfer_read_only().await?;
    let mut out = Plan {
        transformations: spec.transform_specs.clone(),
        ..Default::default()
    };
    for (field, rule) in [
        ("preExecRule", &spec.pre_exec_rule),
        ("postExecRule", &spec.post_exec_rule),
    ] {
        let Some(rule) = rule else { continue };
        for line in crate::source::exec_rules::describe(ctx, mig, rule)
            .await?
            .unwrap_or_default()
        {
            out.rules.push(format!("{field} {rule}: {line}"));
        }
    }
    // The volumes as a run would leave them: each moved one bound to the PV its import
    // would make, so the claims plan as they would be applied.
    let mut landed = st.clone();
    for v in &mut landed.volumes {
        let key = format!("{}/{}", v.namespace, v.persistent_volume_claim);
        let (class, to) = classes
            .get(&key)
            .map_or((None, None), |(a, b)| (Some(a.clone()), Some(b.clone())));
        let there = mapping::target(&spec.namespace_mapping, &v.namespace).to_string();
        let mut pv = PlannedVolume {
            namespace: v.namespace.clone(),
            persistent_volume_claim: v.persistent_volume_claim.clone(),
            destination_namespace: there.clone(),
            storage_class: class,
            destination_storage_class: to,
            moves: v.status != ItemStatus::Skipped,
            reason: v.reason.clone(),
            ..Default::default()
        };
        if pv.moves {
            let id = v.volume_handle.clone().unwrap_or_default();
            match ferry_transfer::estimate(&ctx.store, &id, transfer.as_ref()).await {
                Ok(e) => {
                    pv.size_bytes = e.size_bytes;
                    pv.bytes_to_move = e.bytes;
                    pv.base_commit = e.base;
                }
                Err(e) => {
                    pv.reason = Some(format!("the bytes to move could not be estimated: {e}"));
                }
            }
            v.destination_volume = Some(names::landing(&there, &v.persistent_volume_claim));
        }
        out.bytes_to_move += pv.bytes_to_move;
        out.volumes.push(pv);
    }
    if spec.include_resources {
        let Collected {
            plan,
            crds,
            warnings,
            ..
        } = collect(ctx, mig, &landed, rules).await?;
        out.warnings.extend(warnings);
        // The CRDs the custom resources need, as a run would find them.
        let mut standing: BTreeMap<String, Standing> = BTreeMap::new();
        for p in plan.iter().filter(|p| p.object.is_ok()) {
            let key = crd_key(&p.kind);
            let Some(crd) = crds.get(&key) else { continue };
            if standing.contains_key(&key) {
                continue;
            }
            let s = match crd_standing(dest, crd).await {
                Ok(s) => s,
                Err(e) if e.api_code() == Some(403) => {
                    Standing::Differs(format!("the destination account may not read it: {e}"))
                }
                Err(e) => return Err(e),
            };
            let name = crd["metadata"]["name"].as_str().unwrap_or_default();
            let (action, reason) = match &s {
                Standing::Absent => (
                    PlannedAction::Create,
                    "absent on the destination: created first, then waited for until \
                     established"
                        .to_string(),
                ),
                Standing::Identical | Standing::Pending => (
                    PlannedAction::Update,
                    "on the destination, identical: used as it is".to_string(),
                ),
                Standing::Differs(d) => (
                    PlannedAction::Conflict,
                    format!("differs on the destination ({d}): not overwritten"),
                ),
            };
            match action {
                PlannedAction::Create => out.creates += 1,
                PlannedAction::Update => out.updates += 1,
                _ => out.conflicts += 1,
            }
            out.resources.push(PlannedResource {
                group: "apiextensions.k8s.io".into(),
                version: "v1".into(),
                kind: "CustomResourceDefinition".into(),
                name: name.to_string(),
                action,
                reason: Some(reason),
                ..Default::default()
            });
            standing.insert(key, s);
        }
        for p in plan {
            let i = p.info;
            let there = mapping::target(&spec.namespace_mapping, &i.namespace).to_string();
            let mut r = PlannedResource {
                group: i.group,
                version: i.version,
                kind: i.kind,
                destination_namespace: if i.namespace.is_empty() {
                    String::new()
                } else {
                    there.clone()
                },
                namespace: i.namespace,
                name: i.name,
                changes: p.changes,
                ..Default::default()
            };
            match p.object {
                Err(why) if i.status == ItemStatus::Skipped => {
                    r.action = PlannedAction::Skip;
                    r.reason = i.reason.or(Some(why).filter(|w| !w.is_empty()));
                }
                Err(why) => {
                    r.action = PlannedAction::Conflict;
                    r.reason = Some(why);
                }
                Ok(_) if matches!(standing.get(&crd_key(&p.kind)), Some(Standing::Absent)) => {
                    r.action = PlannedAction::Create;
                    r.reason = Some("after its CustomResourceDefinition is created".into());
                }
                Ok(_) if matches!(standing.get(&crd_key(&p.kind)), Some(Standing::Differs(_))) => {
                    r.action = PlannedAction::Conflict;
                    r.reason = Some(
                        "its CustomResourceDefinition differs on the destination: not applied"
                            .into(),
                    );
                }
                Ok(obj) => {
                    let ns = obj["metadata"]["namespace"].as_str();
                    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
                    // Namespaces land under their mapped name.
                    r.name = name.to_string();
                    let (action, reason) = match api::get(dest, &p.kind, ns, name).await {
                        Ok(None) => (PlannedAction::Create, None),
                        Ok(Some(there)) => judge(&obj, &there),
                        Err(e) => match e.api_code() {
                            Some(403) => (
                                PlannedAction::Conflict,
                                Some(format!(
                                    "the destination account may not read {}: the run would \
                                     most likely be refused writing it too",
                                    p.kind.plural
                                )),
                            ),
                            Some(404) => (
                                PlannedAction::Conflict,
                                Some(format!(
                                    "the destination does not serve {}/{}: install its \
                                     CustomResourceDefinition there first",
                                    p.kind.api_version(),
                                    p.kind.kind
                                )),
                            ),
                            _ => return Err(e),
                        },
                    };
                    r.action = action;
                    r.reason = reason;
                }
            }
            match r.action {
                PlannedAction::Create => out.creates += 1,
                PlannedAction::Update => out.updates += 1,
                PlannedAction::Conflict => out.conflicts += 1,
                PlannedAction::Skip => {}
            }
            out.resources.push(r);
        }
    }
    Ok(out)
}

/// Update or conflict, for an object the destination has already.
fn judge(
    planned: &serde_json::Value,
    there: &serde_json::Value,
) -> (PlannedAction, Option<String>) {
    let kind = planned["kind"].as_str().unwrap_or_default();
    if kind == "PersistentVolumeClaim" {
        let want = planned["spec"]["volumeName"].as_str().unwrap_or_default();
        let has = there["spec"]["volumeName"].as_str().unwrap_or_default();
        if !has.is_empty() && has != want {
            return (
                PlannedAction::Conflict,
                Some(format!(
                    "the claim exists on the destination bound to PV {has}; the migrated \
                     claim is bound to {want} and cannot replace it"
                )),
            );
        }
    }
    if there["metadata"]["labels"][MIGRATED_LABEL].as_str() == Some("true") {
        let by = there["metadata"]["annotations"][crate::resources::MIGRATION_ANNOTATION]
            .as_str()
            .unwrap_or("an earlier migration");
        return (
            PlannedAction::Update,
            Some(format!("brought by {by}; updated")),
        );
    }
    if kind == "Namespace" {
        return (
            PlannedAction::Update,
            Some("the namespace exists on the destination; objects are added to it".into()),
        );
    }
    (
        PlannedAction::Conflict,
        Some(
            "exists on the destination and no migration brought it: a run would take it over \
             (server-side apply, forced)"
                .into(),
        ),
    )
}

/// Ends a dry run with its plan: Successful when the plan has no conflict, PartialSuccess
/// otherwise; nothing moved.
pub fn finish(st: &mut MigrationStatus, plan: Plan, now: String) {
    st.status = if plan.conflicts == 0 {
        ItemStatus::Successful
    } else {
        ItemStatus::PartialSuccess
    };
    st.reason = Some(format!(
        "dry run, nothing written: {} volume(s), {} bytes to move; {} object(s) to create, {} \
         to update, {} conflict(s); see status.plan",
        plan.volumes.iter().filter(|v| v.moves).count(),
        plan.bytes_to_move,
        plan.creates,
        plan.updates,
        plan.conflicts
    ));
    st.volumes.clear();
    st.resources.clear();
    st.plan = Some(plan);
    st.stage = Some(Stage::Final);
    st.finish_timestamp = Some(now);
}
