//! `Migration`: move namespaces, their resources and their volumes' data to a paired cluster.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

fn yes() -> bool {
    true
}

/// What to migrate and where. Field names and defaults are Stork's.
///
/// The spec cannot change once created: the API server enforces this on every update (a
/// validation rule), and the controller fails a migration whose spec differs from the one it
/// validated (`status.validatedSpec`).
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self == oldSelf",
    "message": "a Migration's spec is immutable: create a new Migration"
}]))]
#[kube(
    group = "ferry.dev",
    version = "v1alpha1",
    kind = "Migration",
    namespaced,
    status = "MigrationStatus",
    shortname = "mig",
    doc = "A migration of namespaces, their resources and volume data to a paired cluster",
    printcolumn(
        name = "ClusterPair",
        type_ = "string",
        json_path = ".spec.clusterPair"
    ),
    printcolumn(name = "Stage", type_ = "string", json_path = ".status.stage"),
    printcolumn(name = "Status", type_ = "string", json_path = ".status.status"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct MigrationSpec {
    /// The ClusterPair (in this Migration's namespace) naming the destination.
    pub cluster_pair: String,
    /// Accepted for Stork compatibility; ferry's sidecar uses its own service account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_cluster_pair: Option<String>,
    /// Namespaces to migrate.
    pub namespaces: Vec<String>,
    /// Copy the namespaces' resources (default true).
    #[serde(default = "yes")]
    pub include_resources: bool,
    /// Copy the data of ferry's volumes (default true).
    #[serde(default = "yes")]
    pub include_volumes: bool,
    /// Leave workloads at their source replica counts on the destination (default false:
    /// they arrive scaled to zero, the count kept in `ferry.dev/migrationReplicas`).
    #[serde(default)]
    pub start_applications: bool,
    /// Only objects carrying all these labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub selectors: BTreeMap<String, String>,
    /// Leave out objects carrying all these labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub exclude_selectors: BTreeMap<String, String>,
    /// Kinds to leave out, for example `["Secret", "Ingress"]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_resource_types: Vec<String>,
    /// Kinds migrated only on request; ferry knows `Job`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include_optional_resource_types: Vec<String>,
    /// Delete, on the destination, objects an earlier migration of these namespaces brought
    /// that are gone from the source.
    #[serde(default)]
    pub purge_deleted_resources: bool,
    /// Only these PVCs (by name): their data and the claims themselves move, with their
    /// Namespace; no other resources. Empty: every PVC in scope and all resources.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub persistent_volume_claims: Vec<String>,
    /// Land each source namespace (key) in another namespace (value) on the destination:
    /// objects, namespaced references inside them (RoleBinding subjects, PV claim refs,
    /// service-account user names, namespace selectors by name) and the volumes' claims.
    /// Keys must be in `namespaces`; two sources may not share a destination.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub namespace_mapping: BTreeMap<String, String>,
    /// Land claims of StorageClass `key` (on the source) in class `value` on the destination.
    /// The destination class must be ferry's; the volume keeps its source chunk size and
    /// takes the rest (compression, reclaim policy, mount options) from that class. A class
    /// without a mapping must exist on the destination under its own name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub storage_class_mapping: BTreeMap<String, String>,
    /// ResourceTransformations (in this Migration's namespace) applied, in order, to every
    /// object before it is applied on the destination.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transform_specs: Vec<String>,
    /// Snapshot all the claims of the run at one instant (one group snapshot in the chunk
    /// store) when there are two or more; `false` takes one VolumeSnapshot per claim.
    /// Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_snapshot: Option<bool>,
    /// Validate and plan only: `status.plan` says what a run would move and change, and
    /// nothing is written to either cluster or the transfer store (beside this status).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// A Rule (in this Migration's namespace) run in the application's pods just before the
    /// volumes are snapshotted; a failing action fails the migration before anything is
    /// snapshotted. Its background actions run until the snapshots are taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_exec_rule: Option<String>,
    /// A Rule run just after the snapshots are taken (before their export).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_exec_rule: Option<String>,
}

/// The stage a migration is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Stage {
    /// Snapshot, export and import volumes.
    Volumes,
    /// Copy the resources.
    Application,
    /// Clean up; the migration has ended.
    Final,
}

/// Outcome of a migration, a volume or a resource.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ItemStatus {
    /// Not started.
    #[default]
    Pending,
    /// Under way.
    InProgress,
    /// Done.
    Successful,
    /// Done, but some items failed or were skipped.
    PartialSuccess,
    /// Not done; the reason says why.
    Failed,
    /// Left out on purpose; the reason says why.
    Skipped,
}

impl ItemStatus {
    /// Successful, PartialSuccess, Failed and Skipped are final.
    pub fn is_final(self) -> bool {
        !matches!(self, ItemStatus::Pending | ItemStatus::InProgress)
    }
}

impl std::fmt::Display for ItemStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// Progress and outcome of a Migration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MigrationStatus {
    /// Current stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<Stage>,
    /// Overall status.
    #[serde(default)]
    pub status: ItemStatus,
    /// Why the migration failed or is waiting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// One entry per PVC in scope.
    #[serde(default)]
    pub volumes: Vec<VolumeInfo>,
    /// One entry per resource in scope.
    #[serde(default)]
    pub resources: Vec<ResourceInfo>,
    /// Counts, bytes and times.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<Summary>,
    /// SHA-256 of the spec as validated: every later step checks the spec still hashes to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validated_spec: Option<String>,
    /// When the migration started (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_timestamp: Option<String>,
    /// When the Volumes stage ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_migration_finish_timestamp: Option<String>,
    /// When the Application stage ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_migration_finish_timestamp: Option<String>,
    /// When the migration ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_timestamp: Option<String>,
    /// The chunk-store group snapshot the volumes were taken in, when they were taken
    /// together (deleted when the migration ends).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_snapshot: Option<String>,
    /// What a dry run found it would do (`spec.dryRun` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<super::plan::Plan>,
    /// The current step failed for a reason a later try may cure: tried again at
    /// `nextAttempt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<super::RetryStatus>,
    /// What a person should know that is no item's outcome: kinds the controller may not
    /// list (their objects, if any, were not looked for).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// One PVC's progress.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeInfo {
    /// The PVC's namespace.
    pub namespace: String,
    /// The PVC's name.
    pub persistent_volume_claim: String,
    /// The source PV's name.
    #[serde(default)]
    pub volume: String,
    /// This volume's status.
    #[serde(default)]
    pub status: ItemStatus,
    /// Why it failed or was skipped, or what it waits for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Bytes of the volume's data this migration moves, uncompressed: its chunks that the
    /// transfer store's last commit of the volume does not hold (all of them the first time;
    /// holes never count).
    #[serde(default)]
    pub bytes_total: u64,
    /// Of those, bytes done so far.
    #[serde(default)]
    pub bytes_done: u64,
    /// Bytes the export wrote to the transfer store (only what the store lacked, compressed),
    /// over every try.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub bytes_transferred: u64,
    /// Bytes of the volume's data the export copied to the transfer store, uncompressed:
    /// chunks the store lacked (already there from an earlier run, or from the volume this
    /// one was migrated from, they are not copied), over every try.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub bytes_copied: u64,
    /// Bytes of the volume's data the destination fetched from the transfer store into its
    /// chunk store, uncompressed (chunks it lacked).
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub bytes_imported: u64,
    /// The source chunk-store volume id (the PV's volume handle).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_handle: Option<String>,
    /// The VolumeSnapshot ferry made for this migration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// The chunk-store snapshot id behind it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_handle: Option<String>,
    /// True once the snapshot is in the transfer store.
    #[serde(default)]
    pub exported: bool,
    /// The VolumeImport on the destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_import: Option<String>,
    /// The destination PV, once imported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_volume: Option<String>,
    /// This volume's current step failed for a reason a later try may cure: tried again at
    /// `nextAttempt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<super::RetryStatus>,
}

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

/// One resource's outcome.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceInfo {
    /// API group, empty for the core group.
    #[serde(default)]
    pub group: String,
    /// API version.
    pub version: String,
    /// Kind.
    pub kind: String,
    /// Namespace; empty for cluster-scoped objects.
    #[serde(default)]
    pub namespace: String,
    /// Name.
    pub name: String,
    /// This resource's status.
    #[serde(default)]
    pub status: ItemStatus,
    /// Why it failed or was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Counts, bytes and times of a migration (Stork's summary fields).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// Volumes in scope.
    pub total_number_of_volumes: u64,
    /// Volumes imported on the destination.
    pub number_of_migrated_volumes: u64,
    /// Resources in scope.
    pub total_number_of_resources: u64,
    /// Resources applied on the destination.
    pub number_of_migrated_resources: u64,
    /// Bytes of the volumes' data migrated, uncompressed (changed chunks only on an
    /// incremental run; Stork's field).
    pub total_bytes_migrated: u64,
    /// Bytes actually sent to the transfer store for them (changed chunks only, compressed).
    #[serde(default)]
    pub total_bytes_transferred: u64,
    /// Bytes of volume data the destination fetched into its chunk store, uncompressed.
    #[serde(default)]
    pub total_bytes_imported: u64,
    /// Objects deleted on the destination because the source no longer has them.
    #[serde(default)]
    pub number_of_purged_resources: u64,
    /// Time the Volumes stage took, for example `12.3s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elapsed_time_for_volume_migration: Option<String>,
    /// Time the Application stage took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elapsed_time_for_resource_migration: Option<String>,
}
