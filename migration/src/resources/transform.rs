//! How each object is rewritten so the destination API accepts it: cluster-assigned fields
//! go, PVCs point at their new PVs, workloads are parked unless the migration starts them.

use super::mapping;
use super::transformations::{self, RuleSet};
use super::{
    MIGRATED_LABEL, MIGRATION_ANNOTATION, PAUSED_NODE_SELECTOR, REPLICAS_ANNOTATION,
    SUSPEND_ANNOTATION, TRIGGER_ANNOTATION,
};
use crate::crd::FieldChange;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// What a transform needs besides the object.
pub struct TransformContext<'a> {
    /// Leave workloads at their source replica counts.
    pub start_applications: bool,
    /// Destination PV name for each PVC, keyed `namespace/name`.
    pub bound_volumes: &'a BTreeMap<String, String>,
    /// The migration, `namespace/name`, recorded on every object.
    pub migration: &'a str,
    /// `spec.namespaceMapping`.
    pub namespace_mapping: &'a BTreeMap<String, String>,
    /// `spec.storageClassMapping`.
    pub storage_class_mapping: &'a BTreeMap<String, String>,
    /// The ResourceTransformations of `spec.transformSpecs`, in order.
    pub rules: &'a RuleSet,
}

/// Metadata the API server assigns; never sent.
const SERVER_METADATA: [&str; 9] = [
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "managedFields",
    "generation",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "ownerReferences",
];

/// Annotations that describe the source cluster's state, not the object, and ferry's
/// trigger, which would make the destination migrate the object back.
fn is_cluster_annotation(key: &str) -> bool {
    key == TRIGGER_ANNOTATION
        || key == "kubectl.kubernetes.io/last-applied-configuration"
        || key == "deployment.kubernetes.io/revision"
        || key.starts_with("pv.kubernetes.io/")
        || key.starts_with("volume.kubernetes.io/")
        || key.starts_with("volume.beta.kubernetes.io/")
        || key == "control-plane.alpha.kubernetes.io/leader"
}

/// Rewrites one collected object for the destination.
///
/// # Errors
/// A sentence saying why the object cannot go over (for example a PVC without a new PV).
pub fn transform(obj: Value, cx: &TransformContext<'_>) -> Result<Value, String> {
    transform_traced(obj, cx).map(|(o, _)| o)
}

/// Like [`transform`], also returning the fields the ResourceTransformations changed.
///
/// Order: ferry's own rewrites (cluster-assigned fields, claims bound to their new
/// volumes), then the ResourceTransformations (which see the object as the destination
/// would get it, before parking), then parking, then the namespace mapping.
///
/// Every way objects reach a destination (a Migration's Application stage, its dry run, an
/// ApplicationClone) passes here, so this is where an object is held to where it may land:
/// no transformation changes its identity (checked after each operation, naming the rule),
/// and once mapped it lands in the namespace its own namespace maps to.
///
/// # Errors
/// As [`transform`]; a transformation that changed the object's identity, or an object
/// that would land outside the migration's target for its namespace.
pub fn transform_traced(
    mut obj: Value,
    cx: &TransformContext<'_>,
) -> Result<(Value, Vec<FieldChange>), String> {
    let kind = obj["kind"].as_str().unwrap_or_default().to_string();
    let source = Landing::of(&obj);
    strip_metadata(&mut obj, cx.migration);
    if let Some(o) = obj.as_object_mut() {
        o.remove("status");
    }
    match kind.as_str() {
        "Service" => service(&mut obj),
        "PersistentVolumeClaim" => claim(&mut obj, cx.bound_volumes, cx.storage_class_mapping)?,
        "ServiceAccount" => {
            if let Some(o) = obj.as_object_mut() {
                o.remove("secrets");
            }
        }
        "Job" => job(&mut obj),
        _ => {}
    }
    let changes = transformations::apply_all(cx.rules, &mut obj)?;
    if !cx.start_applications {
        park(&mut obj);
    }
    mapping::apply(&mut obj, cx.namespace_mapping);
    let want = source.mapped(&kind, cx.namespace_mapping);
    let got = Landing::of(&obj);
    if got != want {
        return Err(format!(
            "{kind} {} would land as {}, not {} where the migration takes it: refused (only \
             namespaceMapping moves an object)",
            source.show(),
            got.show(),
            want.show()
        ));
    }
    Ok((obj, changes))
}

/// Where an object is: its namespace and name (a Namespace's name is its namespace).
#[derive(Debug, PartialEq, Eq)]
struct Landing {
    namespace: Option<String>,
    name: Option<String>,
}

impl Landing {
    fn of(obj: &Value) -> Landing {
        let m = &obj["metadata"];
        Landing {
            namespace: m["namespace"].as_str().map(str::to_string),
            name: m["name"].as_str().map(str::to_string),
        }
    }

    /// Where the namespace mapping sends an object of `kind` from here: a namespaced
    /// object into its namespace's target, a Namespace to its target's name.
    fn mapped(&self, kind: &str, map: &BTreeMap<String, String>) -> Landing {
        let to = |ns: &Option<String>| ns.as_deref().map(|n| mapping::target(map, n).to_string());
        if kind == "Namespace" {
            return Landing {
                namespace: self.namespace.clone(),
                name: to(&self.name),
            };
        }
        Landing {
            namespace: to(&self.namespace),
            name: self.name.clone(),
        }
    }

    fn show(&self) -> String {
        let name = self.name.as_deref().unwrap_or("<no name>");
        match &self.namespace {
            Some(ns) => format!("{ns}/{name}"),
            None => name.to_string(),
        }
    }
}

fn strip_metadata(obj: &mut Value, migration: &str) {
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    for key in SERVER_METADATA {
        meta.remove(key);
    }
    meta.remove("finalizers");
    let annotations = meta
        .entry("annotations")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(a) = annotations.as_object_mut() {
        a.retain(|k, _| !is_cluster_annotation(k));
        a.insert(MIGRATION_ANNOTATION.into(), json!(migration));
    }
    let labels = meta
        .entry("labels")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(l) = labels.as_object_mut() {
        l.insert(MIGRATED_LABEL.into(), json!("true"));
    }
}

/// Cluster IPs and node ports are the source cluster's; the destination assigns its own.
/// A headless Service (`clusterIP: None`) stays headless.
fn service(obj: &mut Value) {
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let headless = spec.get("clusterIP").and_then(Value::as_str) == Some("None");
    spec.remove("clusterIPs");
    spec.remove("healthCheckNodePort");
    if !headless {
        spec.remove("clusterIP");
    }
    if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports {
            if let Some(p) = p.as_object_mut() {
                p.remove("nodePort");
            }
        }
    }
}

/// A PVC is bound to the PV its import created; what provisioned it on the source no
/// longer applies.
fn claim(
    obj: &mut Value,
    bound: &BTreeMap<String, String>,
    classes: &BTreeMap<String, String>,
) -> Result<(), String> {
    let key = format!(
        "{}/{}",
        obj["metadata"]["namespace"].as_str().unwrap_or_default(),
        obj["metadata"]["name"].as_str().unwrap_or_default()
    );
    let pv = bound
        .get(&key)
        .ok_or_else(|| format!("PVC {key} has no imported volume on the destination"))?;
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return Err(format!("PVC {key} has no spec"));
    };
    spec.insert("volumeName".into(), json!(pv));
    if let Some(Value::String(class)) = spec.get_mut("storageClassName")
        && let Some(to) = classes.get(class.as_str())
    {
        *class = to.clone();
    }
    spec.remove("dataSource");
    spec.remove("dataSourceRef");
    Ok(())
}

/// A Job's selector and pod labels carry the source Job's uid; the API server sets new ones.
fn job(obj: &mut Value) {
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    if spec.get("manualSelector").and_then(Value::as_bool) != Some(true) {
        spec.remove("selector");
        if let Some(labels) = spec
            .get_mut("template")
            .and_then(|t| t.get_mut("metadata"))
            .and_then(|m| m.get_mut("labels"))
            .and_then(Value::as_object_mut)
        {
            for key in [
                "controller-uid",
                "batch.kubernetes.io/controller-uid",
                "job-name",
                "batch.kubernetes.io/job-name",
            ] {
                labels.remove(key);
            }
        }
    }
}

/// Parks a workload: scaled to zero (count kept in an annotation), CronJobs suspended,
/// DaemonSets kept off every node. Other kinds are left alone.
pub fn park(obj: &mut Value) {
    let kind = obj["kind"].as_str().unwrap_or_default().to_string();
    // An object parked already (a source scaled down for a failover, a destination before
    // its failback) keeps the count it was parked with.
    if obj["metadata"]["annotations"][REPLICAS_ANNOTATION].is_string()
        && obj["spec"]["replicas"].as_i64() == Some(0)
        || obj["metadata"]["annotations"][SUSPEND_ANNOTATION].is_string()
            && obj["spec"]["suspend"].as_bool() == Some(true)
        || obj["spec"]["template"]["spec"]["nodeSelector"][PAUSED_NODE_SELECTOR].is_string()
    {
        return;
    }
    match kind.as_str() {
        "Deployment" | "StatefulSet" | "ReplicaSet" => {
            let replicas = obj["spec"]["replicas"].as_i64().unwrap_or(1);
            set_annotation(obj, REPLICAS_ANNOTATION, replicas.to_string());
            obj["spec"]["replicas"] = json!(0);
        }
        "CronJob" => {
            let suspended = obj["spec"]["suspend"].as_bool().unwrap_or(false);
            set_annotation(obj, SUSPEND_ANNOTATION, suspended.to_string());
            obj["spec"]["suspend"] = json!(true);
        }
        "DaemonSet" => {
            set_annotation(obj, REPLICAS_ANNOTATION, "daemonset".into());
            let pod = &mut obj["spec"]["template"]["spec"];
            if !pod["nodeSelector"].is_object() {
                pod["nodeSelector"] = json!({});
            }
            pod["nodeSelector"][PAUSED_NODE_SELECTOR] = json!("true");
        }
        _ => {}
    }
}

fn set_annotation(obj: &mut Value, key: &str, value: String) {
    if !obj["metadata"]["annotations"].is_object() {
        obj["metadata"]["annotations"] = json!({});
    }
    obj["metadata"]["annotations"][key] = json!(value);
}
