//! The custom resources of group `ferry.dev`, version `v1alpha1`, and their CRD manifests.
//!
//! Field names follow Stork's (`stork.libopenstorage.org/v1alpha1`) so a Stork spec moves
//! over by changing its `apiVersion`. `manifests/crds/` holds what [`crd_yaml`] prints; a
//! test keeps the two equal (`hack/gen-crds.sh` rewrites them).

// Several `printcolumn(...)` entries repeat the key `type_`, which the lint takes for a
// repeated attribute.
#![allow(clippy::duplicated_attributes)]

mod cluster_pair;
mod migration;
mod volume_import;

pub use cluster_pair::{ClusterPair, ClusterPairSpec, ClusterPairStatus, PairState, SecretRef};
pub use migration::{
    ItemStatus, Migration, MigrationSpec, MigrationStatus, ResourceInfo, Stage, Summary, VolumeInfo,
};
pub use volume_import::{
    ImportPhase, ImportSource, PersistentVolumeTemplate, VolumeImport, VolumeImportSpec,
    VolumeImportStatus,
};

use kube::CustomResourceExt;

/// API group of ferry's resources.
pub const GROUP: &str = "ferry.dev";
/// API version of ferry's resources.
pub const VERSION: &str = "v1alpha1";

/// Each CRD's file name under `manifests/crds/` and its YAML.
pub fn crd_yaml() -> Vec<(&'static str, String)> {
    let render = |crd: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition| {
        let body = serde_yaml::to_string(&crd).unwrap_or_default();
        format!("# Generated from the Rust types in migration/src/crd by hack/gen-crds.sh.\n---\n{body}")
    };
    vec![
        ("clusterpairs.ferry.dev.yaml", render(ClusterPair::crd())),
        ("migrations.ferry.dev.yaml", render(Migration::crd())),
        ("volumeimports.ferry.dev.yaml", render(VolumeImport::crd())),
    ]
}
