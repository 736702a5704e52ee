//! `VolumeImport`: made by a source cluster in the destination; the destination's sidecar
//! imports the exported snapshot into its own chunk store and creates a pre-bound PV.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Import one exported snapshot and expose it as a PV bound to a claim.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
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
    /// Secret (in this object's namespace) with the transfer store settings.
    pub transfer_secret: String,
    /// The PV to create once the data is in.
    pub persistent_volume: PersistentVolumeTemplate,
    /// A volume of this cluster to bring up to date in place instead of making a new one:
    /// the volume the source volume was itself migrated from (a failback). Used only while
    /// that volume exists and its PV is bound to the claim in `persistentVolume`; its PV is
    /// kept as it is.
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

/// The PV to create: pre-bound to a claim by namespace and name.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PersistentVolumeTemplate {
    /// PV name.
    pub name: String,
    /// Namespace of the claim it binds to.
    pub claim_namespace: String,
    /// Name of the claim it binds to.
    pub claim_name: String,
    /// Capacity, as a quantity (for example `10Gi`).
    pub capacity: String,
    /// Access modes, as on the source PV.
    #[serde(default)]
    pub access_modes: Vec<String>,
    /// `Filesystem` or `Block`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_mode: Option<String>,
    /// StorageClass name, as on the source PVC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// `Retain` or `Delete`, as on the source PV.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reclaim_policy: Option<String>,
    /// Mount options, as on the source PV.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mount_options: Vec<String>,
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
}
