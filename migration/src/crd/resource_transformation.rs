//! `ResourceTransformation`: rules that change objects on their way to the destination
//! (Stork's CR of the same name and shape), named by a Migration's `transformSpecs`.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Rules that rewrite fields of the objects a migration applies on the destination.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "ferry.dev",
    version = "v1alpha1",
    kind = "ResourceTransformation",
    namespaced,
    status = "ResourceTransformationStatus",
    shortname = "rt",
    doc = "Rules that rewrite fields of migrated objects for their destination",
    printcolumn(name = "Status", type_ = "string", json_path = ".status.status"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ResourceTransformationSpec {
    /// Each rule: which objects, which fields.
    #[serde(default)]
    pub objects: Vec<TransformSpec>,
}

/// The objects of one kind a rule applies to, and what it does to them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TransformSpec {
    /// `group/version/Kind` (`/v1/Service` for the core group), or a bare `Kind`.
    pub resource: String,
    /// Only objects carrying all these labels (all objects of the kind when empty).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub selectors: BTreeMap<String, String>,
    /// The field operations, applied in order.
    #[serde(default)]
    pub paths: Vec<ResourcePath>,
}

/// One operation on one field.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourcePath {
    /// Dot-separated field path: `spec.type`, `spec.containers[0].image`,
    /// `spec.template.spec.containers[*].image` (every element), `metadata.labels['app.kubernetes.io/name']`.
    pub path: String,
    /// The value, read according to `type`: a string, an integer, `true`/`false`, a list
    /// `a,b` (or `[a,b]`), or key-value pairs `k1:v1,k2:v2`.
    #[serde(default)]
    pub value: String,
    /// How `value` is read.
    #[serde(default, rename = "type")]
    pub value_type: ValueType,
    /// What to do.
    pub operation: Operation,
    /// With `modify` of a string: change only values that start with this, replacing it by
    /// `value` (an image registry rewrite: `prefix: docker.io/`, `value: mirror.example/`).
    /// A ferry extension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

/// How a path's `value` is read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ValueType {
    /// A string.
    #[default]
    String,
    /// A 64-bit integer.
    Int,
    /// `true` or `false`.
    Bool,
    /// A list of strings, comma-separated.
    Slice,
    /// A map of strings, `key:value` pairs comma-separated.
    Keypair,
}

/// What a path operation does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    /// Set the field where it is absent; append to a list; merge into a map.
    Add,
    /// Replace the field's value (only where it exists).
    #[default]
    Modify,
    /// Remove the field, or with a keypair value the named keys of a map, or with a slice
    /// value those elements of a list.
    Delete,
}

/// Whether the rules are usable, as the controller last checked.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceTransformationStatus {
    /// `Ready` or `Failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// What is wrong, when Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
