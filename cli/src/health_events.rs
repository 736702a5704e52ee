//! Events where Kubernetes users look, for a volume whose server failed on this node: the
//! node plugin watches its state folder for what the volume host recorded
//! (`<state>/volumes/<id>/health.json`) and posts an Event (events.k8s.io/v1) on the
//! volume's PersistentVolumeClaim and on each pod of this node that uses the claim:
//! `VolumeAbnormal` (Warning) when the host aborted the volume's connection, or
//! `VolumeServerReplaced` (Normal) when it took it up again with a new server. Each record
//! is reported once (`health.reported` holds its time), also across plugin restarts.
//!
//! It needs, through the node's service account: get and list of PersistentVolumes (to find
//! the claim of a volume handle), list of Pods (the claim's pods on this node) and create of
//! Events (`manifests/rbac.yaml`, `ferry-node-health`). Without API credentials it is off.

use ferry_node::state::{Health, VolumeDir};
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, PostParams};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How often the state folder is looked at.
const EVERY: Duration = Duration::from_secs(5);

/// A client of the cluster's API (in a pod, its service account; or `KUBECONFIG`), if any.
pub async fn client() -> Option<Client> {
    match kube::Config::infer().await.map(Client::try_from) {
        Ok(Ok(c)) => Some(c),
        Ok(Err(e)) => {
            tracing::info!(error = %e, "no Kubernetes API client: volume health Events are off");
            None
        }
        Err(e) => {
            tracing::info!(error = %e, "no Kubernetes API: volume health Events are off");
            None
        }
    }
}

/// Posts Events for recorded volume failures until the process ends.
pub async fn run(client: Client, state_dir: PathBuf, node_id: String) {
    loop {
        for (dir, health) in unreported(&state_dir) {
            let id = dir
                .root()
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            match report(&client, &id, &node_id, &health).await {
                Ok(n) => {
                    tracing::info!(volume.id = %id, events = n, "volume health reported");
                    let _ = std::fs::write(reported_file(&dir), health.at_ms.to_string());
                }
                Err(e) => {
                    tracing::warn!(volume.id = %id, error = %e, "cannot report the volume's health; retrying")
                }
            }
        }
        tokio::time::sleep(EVERY).await;
    }
}

fn reported_file(dir: &VolumeDir) -> PathBuf {
    dir.root().join("health.reported")
}

/// Health records not reported yet.
fn unreported(state_dir: &Path) -> Vec<(VolumeDir, Health)> {
    ferry_node::state::volume_dirs(state_dir)
        .into_iter()
        .filter_map(|(_, dir)| {
            let h = dir.load_health()?;
            let done = std::fs::read_to_string(reported_file(&dir))
                .ok()
                .and_then(|t| t.trim().parse::<u64>().ok());
            (done != Some(h.at_ms)).then_some((dir, h))
        })
        .collect()
}

fn resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: if group.is_empty() {
            version.into()
        } else {
            format!("{group}/{version}")
        },
        kind: kind.into(),
        plural: plural.into(),
    }
}

/// Posts the Events of one record; how many.
async fn report(
    client: &Client,
    volume_id: &str,
    node_id: &str,
    h: &Health,
) -> Result<usize, kube::Error> {
    let pvs: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &resource("", "v1", "PersistentVolume", "persistentvolumes"),
    );
    let pv = pvs
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .find(|pv| {
            pv.data["spec"]["csi"]["driver"] == "ferry.csi.dev"
                && pv.data["spec"]["csi"]["volumeHandle"] == volume_id
        });
    let Some(claim) = pv.map(|pv| pv.data["spec"]["claimRef"].clone()) else {
        // A volume staged outside Kubernetes (or its PV is gone): nobody to tell.
        return Ok(0);
    };
    let (Some(ns), Some(name)) = (claim["namespace"].as_str(), claim["name"].as_str()) else {
        return Ok(0);
    };
    let (reason, kind) = if h.abnormal {
        ("VolumeAbnormal", "Warning")
    } else {
        ("VolumeServerReplaced", "Normal")
    };
    let mut regarding = vec![json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": ns, "name": name,
        "uid": claim["uid"],
    })];
    let pods: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), ns, &resource("", "v1", "Pod", "pods"));
    let on_node = ListParams::default().fields(&format!("spec.nodeName={node_id}"));
    for p in pods.list(&on_node).await?.items {
        let uses = p.data["spec"]["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|v| v["persistentVolumeClaim"]["claimName"] == name);
        if uses && p.data["spec"]["nodeName"] == node_id {
            regarding.push(json!({
                "apiVersion": "v1", "kind": "Pod", "namespace": ns,
                "name": p.metadata.name, "uid": p.metadata.uid,
            }));
        }
    }
    let events: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        ns,
        &resource("events.k8s.io", "v1", "Event", "events"),
    );
    let note: String = h.message.chars().take(1000).collect();
    for r in &regarding {
        let obj = r["name"].as_str().unwrap_or("volume");
        let ev: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"name": format!("{obj}.ferry.{:x}", h.at_ms), "namespace": ns},
            "eventTime": micro_time(h.at_ms),
            "reportingController": "ferry.csi.dev/node",
            "reportingInstance": node_id,
            "action": "ServeVolume",
            "reason": reason,
            "type": kind,
            "regarding": r,
            "note": format!("volume {volume_id} on node {node_id}: {note}"),
        }))
        .map_err(kube::Error::SerdeError)?;
        match events.create(&PostParams::default(), &ev).await {
            Ok(_) => {}
            // Posted before a restart of this plugin.
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(regarding.len())
}

/// `at_ms` (milliseconds since the epoch) as the API's MicroTime
/// (`2026-12-06T01:02:03.456000Z`).
fn micro_time(at_ms: u64) -> String {
    let secs = at_ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}000Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        at_ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micro_time_is_rfc3339_utc() {
        assert_eq!(micro_time(0), "1970-01-01T00:00:00.000000Z");
        // 2024-02-29T12:34:56.789Z
        assert_eq!(micro_time(1_709_210_096_789), "2024-02-29T12:34:56.789000Z");
    }
}
