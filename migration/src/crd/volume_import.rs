//! `VolumeImport`: made by a source cluster in the destination, in the namespace of the claim
//! it is for; the destination's sidecar imports the exported snapshot into its own chunk
//! store and creates a PV pre-bound to that claim. Nothing in it reaches another namespace:
//! the claim, the transfer Secret and the volume it lands in are all its own namespace's, and
//! the names of the PV and the chunk-store volume are the controller's, derived from that
//! namespace and claim. Its spec is frozen once made.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Import one exported snapshot and expose it as a PV bound to a claim of this namespace.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self == oldSelf",
    "message": "a VolumeImport's spec is immutable: create a new one"
}]))]
#[kube(
    group = "ferry.dev",
    version = "v1alpha1",
    kind = "VolumeImport",
    namespaced,
    status = "VolumeImportStatus",
    shortname = "vi",
    doc = "An exported snapshot to import into this cluster's chunk store as a PV",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Volume",
        type_ = "string",
        json_path = ".status.persistentVolume"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct VolumeImportSpec {
    /// The commit to import from the transfer store.
    pub source: ImportSource,
    /// Secret in this namespace with the transfer store settings.
    pub transfer_secret: String,
    /// The PV to create once the data is in, for a claim of this namespace.
    pub persistent_volume: PersistentVolumeTemplate,
    /// A volume of this cluster to bring up to date in place instead of the claim's landing
    /// volume: the volume the source volume was itself migrated from (a failback). Used only
    /// while that volume's PV is bound to the claim of this namespace named in
    /// `persistentVolume` and that claim is bound to it; its PV is kept as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub existing_volume: Option<String>,
}

/// Which exported snapshot.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImportSource {
    /// The source chunk-store volume id.
    pub volume_id: String,
    /// The source chunk-store snapshot id.
    pub snapshot_id: String,
    /// The Migration that asked, as `namespace/name`, for people reading the object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration: Option<String>,
}

/// The PV to create: pre-bound to a claim of the VolumeImport's namespace. Its name, reclaim
/// policy and mount options are the controller's (from the StorageClass), never the
/// VolumeImport's.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PersistentVolumeTemplate {
    /// Name of the claim (in the VolumeImport's namespace) it binds to.
    pub claim_name: String,
    /// Capacity, as a quantity (for example `10Gi`).
    pub capacity: String,
    /// Access modes, as on the source PV.
    #[serde(default)]
    pub access_modes: Vec<String>,
    /// `Filesystem` or `Block`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_mode: Option<String>,
    /// StorageClass name (mapped): a ferry class of this cluster, which gives the PV its
    /// reclaim policy and mount options and the volume its codec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// `fsType` of the source PV's CSI source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fs_type: Option<String>,
}

/// Phases of an import.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ImportPhase {
    /// Not started.
    #[default]
    Pending,
    /// Copying data.
    InProgress,
    /// Data in, PV created.
    Ready,
    /// Not done; the reason says why.
    Failed,
}

/// Progress and result of an import.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeImportStatus {
    /// Phase.
    #[serde(default)]
    pub phase: ImportPhase,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The snapshot id this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<String>,
    /// The PV created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume: Option<String>,
    /// The destination chunk-store volume id (the PV's volume handle).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_handle: Option<String>,
    /// Bytes to fetch.
    #[serde(default)]
    pub bytes_total: u64,
    /// Bytes fetched.
    #[serde(default)]
    pub bytes_done: u64,
    /// Of the data, bytes this chunk store lacked and fetched, uncompressed.
    #[serde(default)]
    pub bytes_fetched: u64,
    /// SHA-256 of the spec the controller accepted: a spec that no longer hashes to it is
    /// refused (specs are immutable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_spec: Option<String>,
    /// The import failed for a reason a later try may cure: tried again at `nextAttempt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<super::RetryStatus>,
}
