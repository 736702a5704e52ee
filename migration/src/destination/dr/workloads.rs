//! Starting and stopping a namespace's workloads (storkctl's `activate` and `deactivate`),
//! and waiting for their pods to go.

use crate::error::Result;
use crate::resources::{Kind, MIGRATED_LABEL, REPLICAS_ANNOTATION, kinds, replicas};
use crate::{api, kinds_used};
use serde_json::Value;

/// The kinds that run pods and can be parked.
pub fn workload_kinds() -> Vec<Kind> {
    kinds::default_kinds()
        .into_iter()
        .filter(|k| {
            matches!(
                k.kind.as_str(),
                "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "CronJob"
            )
        })
        .collect()
}

/// Which workloads of a namespace to act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Only the ones a migration brought (label `ferry.dev/migrated`).
    Migrated,
    /// All of them (the source's own).
    All,
}

/// Owned by another workload (a Deployment's ReplicaSet): its owner is the one to scale.
fn owned(o: &Value) -> bool {
    o["metadata"]["ownerReferences"]
        .as_array()
        .is_some_and(|refs| refs.iter().any(|r| r["controller"].as_bool() == Some(true)))
}

/// Activates (starts at the parked count) or deactivates (parks, keeping the count) the
/// workloads of `ns` on `client`; one line per object changed.
///
/// # Errors
/// API errors.
pub async fn set(
    client: &kube::Client,
    ns: &str,
    activate: bool,
    scope: Scope,
) -> Result<Vec<String>> {
    let label = format!("{MIGRATED_LABEL}=true");
    let label = (scope == Scope::Migrated).then_some(label.as_str());
    let mut out = Vec::new();
    for k in workload_kinds() {
        for o in api::list(client, &k, Some(ns), label).await? {
            if owned(&o) {
                continue;
            }
            let patch = if activate {
                replicas::activate(&o)
            } else {
                replicas::deactivate(&o)
            };
            let Some(patch) = patch else { continue };
            let name = o["metadata"]["name"].as_str().unwrap_or_default();
            api::merge(client, &k, Some(ns), name, &patch).await?;
            let what = match (&patch["spec"]["replicas"], &patch["spec"]["suspend"]) {
                (r, _) if r.is_number() => format!("replicas {r}"),
                (_, s) if s.is_boolean() => format!("suspend {s}"),
                _ if activate => "scheduled on nodes again".into(),
                _ => "kept off every node".into(),
            };
            out.push(format!("{} {ns}/{name}: {what}", k.kind.to_lowercase()));
        }
    }
    Ok(out)
}

/// Whether every label of `selector` (a `matchLabels` map) is on `labels`.
fn matches(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .is_some_and(|m| !m.is_empty() && m.iter().all(|(k, v)| labels[k] == *v))
}

/// The pods of `ns` that still run: those that mount a claim (their writes must be in before
/// a last migration) and those a parked workload selects. Finished pods do not count.
///
/// # Errors
/// API errors.
pub async fn running_pods(client: &kube::Client, ns: &str) -> Result<Vec<String>> {
    let mut selectors = Vec::new();
    for k in workload_kinds() {
        for o in api::list(client, &k, Some(ns), None).await? {
            if o["metadata"]["annotations"][REPLICAS_ANNOTATION].is_string() {
                selectors.push(o["spec"]["selector"]["matchLabels"].clone());
            }
        }
    }
    let pods = api::list(client, &kinds_used::pod(), Some(ns), None).await?;
    Ok(pods
        .iter()
        .filter(|p| !matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed")))
        .filter(|p| {
            let claims = p["spec"]["volumes"].as_array().is_some_and(|vs| {
                vs.iter()
                    .any(|v| v["persistentVolumeClaim"]["claimName"].is_string())
            });
            let labels = &p["metadata"]["labels"];
            claims || selectors.iter().any(|s| matches(s, labels))
        })
        .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string))
        .collect())
}
