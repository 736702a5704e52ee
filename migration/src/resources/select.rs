//! Which collected objects a migration keeps, and why it leaves the others.

use serde_json::Value;
use std::collections::{BTreeMap, HashSet};

/// Why an object is left out, when it is.
pub fn skip_reason(
    obj: &Value,
    selectors: &BTreeMap<String, String>,
    exclude_selectors: &BTreeMap<String, String>,
) -> Option<String> {
    let kind = obj["kind"].as_str().unwrap_or_default();
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    let labels = &obj["metadata"]["labels"];
    let has_all = |want: &BTreeMap<String, String>| {
        want.iter()
            .all(|(k, v)| labels[k.as_str()].as_str() == Some(v.as_str()))
    };
    if !selectors.is_empty() && !has_all(selectors) {
        return Some("labels do not match the migration's selectors".into());
    }
    if !exclude_selectors.is_empty() && has_all(exclude_selectors) {
        return Some("labels match the migration's excludeSelectors".into());
    }
    match kind {
        "Secret" if obj["type"].as_str() == Some("kubernetes.io/service-account-token") => {
            Some("service-account token; the destination issues its own".into())
        }
        "ServiceAccount" if name == "default" => {
            Some("the default service account exists in every namespace".into())
        }
        "ConfigMap" if name == "kube-root-ca.crt" => {
            Some("cluster-managed CA bundle; the destination publishes its own".into())
        }
        _ if obj["metadata"]["deletionTimestamp"].is_string() => {
            Some("being deleted on the source".into())
        }
        _ => None,
    }
}

/// Drops objects owned by another collected object (a Deployment's ReplicaSets, a
/// CronJob's Jobs): their owner recreates them. Returns what was kept and, for each dropped
/// object's index, the owner's kind and name.
pub fn drop_owned(objects: Vec<Value>) -> (Vec<Value>, Vec<(Value, String)>) {
    let uids: HashSet<String> = objects
        .iter()
        .filter_map(|o| o["metadata"]["uid"].as_str().map(str::to_string))
        .collect();
    let mut kept = Vec::new();
    let mut dropped = Vec::new();
    for o in objects {
        let owner = o["metadata"]["ownerReferences"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["uid"].as_str().is_some_and(|u| uids.contains(u)))
            .map(|r| {
                format!(
                    "owned by {} {}; its owner recreates it",
                    r["kind"].as_str().unwrap_or_default(),
                    r["name"].as_str().unwrap_or_default()
                )
            });
        match owner {
            Some(reason) => dropped.push((o, reason)),
            None => kept.push(o),
        }
    }
    (kept, dropped)
}

/// Why the data of the PV a claim names may not be taken for it, if it may not: the claim
/// must be Bound to that PV, and the PV's `claimRef` must name the claim back (namespace,
/// name and, when the binder recorded it, uid). A claim's `volumeName` is its author's
/// word; the PV's `claimRef` is the cluster's binder's.
pub fn claim_binding_problem(pvc: &Value, pv: &Value) -> Option<String> {
    let ns = pvc["metadata"]["namespace"].as_str().unwrap_or_default();
    let name = pvc["metadata"]["name"].as_str().unwrap_or_default();
    let pv_name = pv["metadata"]["name"].as_str().unwrap_or_default();
    if pvc["status"]["phase"].as_str() != Some("Bound")
        || pvc["spec"]["volumeName"].as_str() != Some(pv_name)
    {
        return Some(format!(
            "claim {ns}/{name} is not bound to volume {pv_name}; bind it or leave it out"
        ));
    }
    let r = &pv["spec"]["claimRef"];
    let names_it = r["namespace"].as_str() == Some(ns)
        && r["name"].as_str() == Some(name)
        && (r["uid"].is_null() || r["uid"] == pvc["metadata"]["uid"]);
    if !names_it {
        return Some(format!(
            "volume {pv_name} is bound to claim {}/{}, not to {ns}/{name}: its data is not \
             taken for this claim",
            r["namespace"].as_str().unwrap_or("-"),
            r["name"].as_str().unwrap_or("-")
        ));
    }
    None
}
