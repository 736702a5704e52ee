//! `ApplicationClone`: a copy of a namespace, resources and volumes, inside one cluster
//! (Stork's CR of that name). The volumes are metadata-only clones in the shared chunk
//! store, taken at one instant; no transfer store is involved.

use super::{ItemStatus, ResourceInfo};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Copy one namespace into another within this cluster.
///
/// Honoured only in the controller's own namespace (cluster admins'), because it reads one
/// namespace and writes another.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self == oldSelf",
    "message": "an ApplicationClone's spec is immutable: create a new one"
}]))]
#[kube(
    group = "ferry.dev",
    version = "v1alpha1",
    kind = "ApplicationClone",
    namespaced,
    status = "ApplicationCloneStatus",
    shortname = "appclone",
    doc = "A copy of a namespace (resources and volumes) within this cluster",
    printcolumn(name = "Source", type_ = "string", json_path = ".spec.sourceNamespace"),
    printcolumn(
        name = "Destination",
        type_ = "string",
        json_path = ".spec.destinationNamespace"
    ),
    printcolumn(name = "Status", type_ = "string", json_path = ".status.status"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationCloneSpec {
    /// The namespace copied.
    pub source_namespace: String,
    /// The namespace the copy lands in (made when absent).
    pub destination_namespace: String,
    /// Only objects (and claims) carrying all these labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub selectors: BTreeMap<String, String>,
    /// Leave workloads at their source replica counts (default false: parked at zero).
    #[serde(default)]
    pub start_applications: bool,
    /// What to do with an object of the same name already in the destination: `Retain`
    /// (default: left as it is, reported) or `Delete` (replaced by the copy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace_policy: Option<String>,
}

/// Progress and outcome of a clone.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationCloneStatus {
    /// `Volumes`, `Application` or `Final`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// Overall status.
    #[serde(default)]
    pub status: ItemStatus,
    /// Why it failed, or what to know.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// One entry per claim of the source namespace.
    #[serde(default)]
    pub volumes: Vec<ClonedVolume>,
    /// One entry per object copied.
    #[serde(default)]
    pub resources: Vec<ResourceInfo>,
    /// When it started and ended (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_timestamp: Option<String>,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_timestamp: Option<String>,
    /// The current step failed for a reason a later try may cure: tried again at
    /// `nextAttempt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<super::RetryStatus>,
}

/// One claim's copy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClonedVolume {
    /// The claim's name (the same in both namespaces).
    pub persistent_volume_claim: String,
    /// The source chunk-store volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_volume: Option<String>,
    /// The copy's chunk-store volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clone_volume: Option<String>,
    /// The copy's PV, bound to the claim in the destination namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume: Option<String>,
    /// This claim's status.
    #[serde(default)]
    pub status: ItemStatus,
    /// Why it was skipped or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
