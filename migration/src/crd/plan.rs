//! A dry run's plan: what a Migration would move and change, written to its status.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What a run of this Migration would do now.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// One entry per PVC in scope.
    #[serde(default)]
    pub volumes: Vec<PlannedVolume>,
    /// One entry per object in scope.
    #[serde(default)]
    pub resources: Vec<PlannedResource>,
    /// The ResourceTransformations the run would apply, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transformations: Vec<String>,
    /// Kinds the controller may not list: their objects, if any, would not be looked for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The exec rules a run would run, each with the pods and actions it would take, for
    /// example `preExecRule quiesce: rules[0] podSelector app=db: 2 action(s) in pods db-0`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<String>,
    /// Sum of the volumes' `bytesToMove`.
    #[serde(default)]
    pub bytes_to_move: u64,
    /// Objects by what would happen to them.
    #[serde(default)]
    pub creates: u64,
    /// Objects that exist on the destination from an earlier migration and would be updated.
    #[serde(default)]
    pub updates: u64,
    /// Objects that would overwrite something on the destination that no migration brought,
    /// or that cannot go over.
    #[serde(default)]
    pub conflicts: u64,
}

/// One PVC's volume in a plan.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlannedVolume {
    /// The PVC's namespace on the source.
    pub namespace: String,
    /// The PVC's name.
    pub persistent_volume_claim: String,
    /// Where the claim lands on the destination.
    pub destination_namespace: String,
    /// The claim's StorageClass on the source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    /// The StorageClass it lands in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_storage_class: Option<String>,
    /// The volume's logical size.
    #[serde(default)]
    pub size_bytes: u64,
    /// Uncompressed bytes an export now would move: chunks the transfer store's last commit
    /// of this volume lacks (all allocated ones the first time).
    #[serde(default)]
    pub bytes_to_move: u64,
    /// That last commit, `<volume>/<snapshot>`; absent on a first run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_commit: Option<String>,
    /// Would it move? `false` with the reason for a claim a run would skip or fail.
    pub moves: bool,
    /// Why not, or what to know.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What a run would do with one object on the destination.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PlannedAction {
    /// Absent on the destination: created.
    #[default]
    Create,
    /// There from an earlier migration: updated.
    Update,
    /// There and not brought by a migration, or refused: see the reason.
    Conflict,
    /// Left out: see the reason.
    Skip,
}

/// One object in a plan.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlannedResource {
    /// API group, empty for the core group.
    #[serde(default)]
    pub group: String,
    /// API version.
    pub version: String,
    /// Kind.
    pub kind: String,
    /// Namespace on the source; empty for cluster-scoped objects.
    #[serde(default)]
    pub namespace: String,
    /// Namespace on the destination.
    #[serde(default)]
    pub destination_namespace: String,
    /// Name.
    pub name: String,
    /// What would happen.
    pub action: PlannedAction,
    /// Why (for a conflict or a skip).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Fields the ResourceTransformations change, before and after.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<FieldChange>,
}

/// A field a transformation changed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FieldChange {
    /// `<ResourceTransformation>`: the rule that made the change.
    pub transformation: String,
    /// The concrete path (wildcards resolved), for example `spec.containers[0].image`.
    pub path: String,
    /// The value before, as JSON; absent when the field was not there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    /// The value after, as JSON; absent when the field was deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}
