//! Activation and deactivation of migrated workloads (storkctl's `activate`/`deactivate`):
//! each returns the merge patch to send, or `None` when the object needs none.

use super::{PAUSED_NODE_SELECTOR, REPLICAS_ANNOTATION, SUSPEND_ANNOTATION};
use serde_json::{Value, json};

/// The patch that starts a parked workload at its source replica count. The annotation stays
/// so a later deactivate and activate work again.
pub fn activate(obj: &Value) -> Option<Value> {
    let kind = obj["kind"].as_str()?;
    let annotations = &obj["metadata"]["annotations"];
    match kind {
        "Deployment" | "StatefulSet" | "ReplicaSet" => {
            let n: i64 = annotations[REPLICAS_ANNOTATION].as_str()?.parse().ok()?;
            (obj["spec"]["replicas"].as_i64() != Some(n)).then(|| json!({"spec": {"replicas": n}}))
        }
        "CronJob" => {
            let was = annotations[SUSPEND_ANNOTATION].as_str()? == "true";
            (obj["spec"]["suspend"].as_bool() != Some(was)).then(|| json!({"spec": {"suspend": was}}))
        }
        "DaemonSet" => obj["spec"]["template"]["spec"]["nodeSelector"][PAUSED_NODE_SELECTOR]
            .is_string()
            .then(|| {
                json!({"spec": {"template": {"spec": {"nodeSelector": {PAUSED_NODE_SELECTOR: null}}}}})
            }),
        _ => None,
    }
}

/// The patch that parks a workload, keeping its count (or suspend flag) in an annotation.
pub fn deactivate(obj: &Value) -> Option<Value> {
    let kind = obj["kind"].as_str()?;
    let annotations = &obj["metadata"]["annotations"];
    match kind {
        "Deployment" | "StatefulSet" | "ReplicaSet" => {
            let now = obj["spec"]["replicas"].as_i64().unwrap_or(1);
            if now == 0 {
                return None;
            }
            Some(json!({
                "metadata": {"annotations": {REPLICAS_ANNOTATION: now.to_string()}},
                "spec": {"replicas": 0}
            }))
        }
        "CronJob" => {
            let now = obj["spec"]["suspend"].as_bool().unwrap_or(false);
            if now && annotations[SUSPEND_ANNOTATION].is_string() {
                return None;
            }
            Some(json!({
                "metadata": {"annotations": {SUSPEND_ANNOTATION: now.to_string()}},
                "spec": {"suspend": true}
            }))
        }
        "DaemonSet" => (!obj["spec"]["template"]["spec"]["nodeSelector"][PAUSED_NODE_SELECTOR]
            .is_string())
        .then(|| {
            json!({
                "metadata": {"annotations": {REPLICAS_ANNOTATION: "daemonset"}},
                "spec": {"template": {"spec": {"nodeSelector": {PAUSED_NODE_SELECTOR: "true"}}}}
            })
        }),
        _ => None,
    }
}
