//! The CustomResourceDefinitions a migration's custom resources need on the destination:
//! created there when absent (then waited for until Established), used when identical,
//! and reported as a conflict, never overwritten, when they differ.

use crate::crd::{ItemStatus, ResourceInfo};
use crate::error::Result;
use crate::{api, kinds_used};
use serde_json::{Value, json};

/// How a source CRD stands on the destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Standing {
    /// Not there: to be created.
    Absent,
    /// There, with the same definition.
    Identical,
    /// There, not Established yet.
    Pending,
    /// There and different: the reason names the difference.
    Differs(String),
}

/// What of a CRD decides whether two clusters serve the same kind the same way: group,
/// scope, names, and per version its name, served and storage flags, schema, subresources
/// and columns. Fields the API server defaults (conversion, preserveUnknownFields) and
/// status do not count.
fn essence(crd: &Value) -> Value {
    let spec = &crd["spec"];
    let mut versions: Vec<Value> = spec["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| {
            json!({
                "name": v["name"],
                "served": v["served"],
                "storage": v["storage"],
                "schema": v["schema"],
                "subresources": v["subresources"],
                "additionalPrinterColumns": v["additionalPrinterColumns"],
            })
        })
        .collect();
    versions.sort_by_key(|v| v["name"].as_str().unwrap_or_default().to_string());
    json!({
        "group": spec["group"],
        "scope": spec["scope"],
        "names": {"kind": spec["names"]["kind"], "plural": spec["names"]["plural"],
                  "singular": spec["names"]["singular"], "shortNames": spec["names"]["shortNames"]},
        "versions": versions,
    })
}

/// The first part of the definitions that differs, for a person.
fn difference(a: &Value, b: &Value) -> Option<String> {
    let (ea, eb) = (essence(a), essence(b));
    if ea == eb {
        return None;
    }
    for key in ["group", "scope", "names"] {
        if ea[key] != eb[key] {
            return Some(format!("spec.{key} differs"));
        }
    }
    let names = |e: &Value| -> Vec<String> {
        e["versions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v["name"].as_str().map(str::to_string))
            .collect()
    };
    if names(&ea) != names(&eb) {
        return Some(format!(
            "versions differ (source {:?}, destination {:?})",
            names(&ea),
            names(&eb)
        ));
    }
    for (va, vb) in ea["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .zip(eb["versions"].as_array().into_iter().flatten())
    {
        for key in [
            "served",
            "storage",
            "schema",
            "subresources",
            "additionalPrinterColumns",
        ] {
            if va[key] != vb[key] {
                return Some(format!(
                    "version {}: {key} differs",
                    va["name"].as_str().unwrap_or_default()
                ));
            }
        }
    }
    Some("the definitions differ".into())
}

/// Is a CRD Established?
pub fn established(crd: &Value) -> bool {
    crd["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Established" && c["status"] == "True")
    })
}

/// How `source` stands on the destination (read only).
///
/// # Errors
/// API errors (a 403 is the caller's to report).
pub async fn standing(dest: &kube::Client, source: &Value) -> Result<Standing> {
    let name = source["metadata"]["name"].as_str().unwrap_or_default();
    let Some(there) = api::get(dest, &kinds_used::crd(), None, name).await? else {
        return Ok(Standing::Absent);
    };
    if let Some(d) = difference(source, &there) {
        return Ok(Standing::Differs(d));
    }
    Ok(if established(&there) {
        Standing::Identical
    } else {
        Standing::Pending
    })
}

/// The source CRD as it is created on the destination: its spec and labels, nothing the
/// source's server set.
pub fn prepared(source: &Value) -> Value {
    let mut labels = source["metadata"]["labels"].clone();
    if !labels.is_object() {
        labels = json!({});
    }
    labels[crate::resources::MIGRATED_LABEL] = json!("true");
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": source["metadata"]["name"],
            "labels": labels,
            "annotations": source["metadata"]["annotations"]
                .as_object()
                .map(|a| {
                    let mut a = a.clone();
                    a.remove("kubectl.kubernetes.io/last-applied-configuration");
                    Value::Object(a)
                })
                .unwrap_or_else(|| json!({})),
        },
        "spec": source["spec"],
    })
}

/// A status entry for a CRD.
pub fn entry(source: &Value, status: ItemStatus, reason: String) -> ResourceInfo {
    ResourceInfo {
        group: "apiextensions.k8s.io".into(),
        version: "v1".into(),
        kind: "CustomResourceDefinition".into(),
        namespace: String::new(),
        name: source["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        status,
        reason: Some(reason),
    }
}
