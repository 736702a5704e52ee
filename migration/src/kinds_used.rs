//! The kinds the controller itself reads and writes, beyond the ones it migrates.

use crate::resources::Kind;

fn k(group: &str, version: &str, kind: &str, plural: &str) -> Kind {
    Kind {
        group: group.into(),
        version: version.into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}

/// core/v1 Namespace.
pub fn namespace() -> Kind {
    k("", "v1", "Namespace", "namespaces")
}
/// core/v1 Secret.
pub fn secret() -> Kind {
    k("", "v1", "Secret", "secrets")
}
/// core/v1 PersistentVolumeClaim.
pub fn pvc() -> Kind {
    k("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims")
}
/// core/v1 Pod.
pub fn pod() -> Kind {
    k("", "v1", "Pod", "pods")
}
/// core/v1 PersistentVolume.
pub fn pv() -> Kind {
    k("", "v1", "PersistentVolume", "persistentvolumes")
}
/// snapshot.storage.k8s.io/v1 VolumeSnapshot.
pub fn volume_snapshot() -> Kind {
    k(
        "snapshot.storage.k8s.io",
        "v1",
        "VolumeSnapshot",
        "volumesnapshots",
    )
}
/// snapshot.storage.k8s.io/v1 VolumeSnapshotContent.
pub fn volume_snapshot_content() -> Kind {
    k(
        "snapshot.storage.k8s.io",
        "v1",
        "VolumeSnapshotContent",
        "volumesnapshotcontents",
    )
}
/// snapshot.storage.k8s.io/v1 VolumeSnapshotClass.
pub fn volume_snapshot_class() -> Kind {
    k(
        "snapshot.storage.k8s.io",
        "v1",
        "VolumeSnapshotClass",
        "volumesnapshotclasses",
    )
}
/// storage.k8s.io/v1 CSIDriver.
pub fn csi_driver() -> Kind {
    k("storage.k8s.io", "v1", "CSIDriver", "csidrivers")
}
/// storage.k8s.io/v1 StorageClass.
pub fn storage_class() -> Kind {
    k("storage.k8s.io", "v1", "StorageClass", "storageclasses")
}
/// apiextensions.k8s.io/v1 CustomResourceDefinition.
pub fn crd() -> Kind {
    k(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
    )
}
/// ferry.dev/v1alpha1 Migration.
pub fn migration() -> Kind {
    k("ferry.dev", "v1alpha1", "Migration", "migrations")
}
/// ferry.dev/v1alpha1 ClusterPair.
pub fn cluster_pair() -> Kind {
    k("ferry.dev", "v1alpha1", "ClusterPair", "clusterpairs")
}
/// ferry.dev/v1alpha1 VolumeImport.
pub fn volume_import() -> Kind {
    k("ferry.dev", "v1alpha1", "VolumeImport", "volumeimports")
}
/// ferry.dev/v1alpha1 MigrationSchedule.
pub fn migration_schedule() -> Kind {
    k(
        "ferry.dev",
        "v1alpha1",
        "MigrationSchedule",
        "migrationschedules",
    )
}
/// ferry.dev/v1alpha1 Action.
pub fn action() -> Kind {
    k("ferry.dev", "v1alpha1", "Action", "actions")
}
