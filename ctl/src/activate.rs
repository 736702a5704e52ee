//! `ferryctl activate migration` / `deactivate migration`: start migrated workloads at their
//! source replica counts (from `ferry.dev/migrationReplicas`), or park them at zero.

use crate::Result;
use ferry_migration::api;
use ferry_migration::resources::{Kind, kinds, replicas};

fn workload_kinds() -> Vec<Kind> {
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

/// Activates (or deactivates) the migrated workloads of each namespace; one line per change.
pub async fn set(
    client: &kube::Client,
    namespaces: &[String],
    activate: bool,
) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for ns in namespaces {
        for k in workload_kinds() {
            let label = format!("{}=true", ferry_migration::resources::MIGRATED_LABEL);
            for o in api::list(client, &k, Some(ns), Some(&label)).await? {
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
                    _ => {
                        if activate {
                            "scheduled on nodes again".into()
                        } else {
                            "kept off every node".into()
                        }
                    }
                };
                out.push(format!("{} {ns}/{name}: {what}", k.kind.to_lowercase()));
            }
        }
    }
    Ok(out)
}
