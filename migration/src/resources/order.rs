//! The order objects are applied on the destination: what others refer to goes first.

/// Rank of a kind in apply order; lower goes first. Namespaces, then PVs, then PVCs, then
/// identities and configuration, then services, then workloads, then what watches
/// workloads, then custom resources.
pub fn rank(kind: &str) -> u8 {
    match kind {
        "Namespace" => 0,
        "PersistentVolume" => 1,
        "PersistentVolumeClaim" => 2,
        "ServiceAccount" => 3,
        "Secret" => 4,
        "ConfigMap" => 5,
        "Role" => 6,
        "RoleBinding" => 7,
        "ResourceQuota" | "LimitRange" => 8,
        "NetworkPolicy" => 9,
        "Service" => 10,
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" => 11,
        "CronJob" | "Job" => 12,
        "HorizontalPodAutoscaler" | "PodDisruptionBudget" => 13,
        "Ingress" => 14,
        _ => 15,
    }
}

/// Sorts objects into apply order, stable within a rank, then by namespace and name.
pub fn sort(objects: &mut [serde_json::Value]) {
    objects.sort_by(|a, b| {
        let key = |o: &serde_json::Value| {
            (
                rank(o["kind"].as_str().unwrap_or_default()),
                o["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                o["kind"].as_str().unwrap_or_default().to_string(),
                o["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        };
        key(a).cmp(&key(b))
    });
}
