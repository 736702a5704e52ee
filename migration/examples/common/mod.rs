//! What the migration benchmarks seed into the API stand-ins.

use ferry_kubefake::{FakeApi, base64};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The objects every cluster with ferry has: its namespace, the CSIDriver, the `ferry`
/// StorageClass and VolumeSnapshotClass.
pub fn seed_cluster(api: &FakeApi, ferry_ns: &str) {
    api.seed(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ferry_ns}}));
    api.seed(json!({"apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver", "metadata": {"name": "ferry.csi.dev"}, "spec": {"attachRequired": false}}));
    api.seed(json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "ferry"}, "provisioner": "ferry.csi.dev", "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate"}));
    api.seed(json!({"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotClass", "metadata": {"name": "ferry"}, "driver": "ferry.csi.dev", "deletionPolicy": "Delete"}));
}

/// A Ready ClusterPair `remote` in `ns` whose Secret names the transfer store `transfer`.
pub fn seed_pair(src: &FakeApi, ns: &str, transfer: &BTreeMap<String, String>) {
    let mut secret: serde_json::Map<String, Value> = transfer
        .iter()
        .map(|(k, v)| (k.clone(), json!(base64(v.as_bytes()))))
        .collect();
    secret.insert(
        "kubeconfig".into(),
        json!(base64(b"apiVersion: v1\nkind: Config\n")),
    );
    src.seed(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "remote-pair", "namespace": ns}, "data": secret}));
    src.seed(json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "ClusterPair", "metadata": {"name": "remote", "namespace": ns},
        "spec": {"secretRef": {"name": "remote-pair"}}, "status": {"schedulerStatus": "Ready", "storageStatus": "Ready"}}));
}
