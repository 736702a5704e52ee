//! The kinds a migration collects by default (Stork's list) and how to address them.

use serde_json::Value;

/// A namespaced kind to collect.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Kind {
    /// API group; empty for the core group.
    pub group: String,
    /// Version served.
    pub version: String,
    /// Kind.
    pub kind: String,
    /// Plural resource name in URLs.
    pub plural: String,
}

impl Kind {
    fn new(group: &str, version: &str, kind: &str, plural: &str) -> Kind {
        Kind {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
            plural: plural.into(),
        }
    }

    /// `group/version`, or `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The kube-rs address of this kind.
    pub fn api_resource(&self) -> kube::core::ApiResource {
        kube::core::ApiResource {
            group: self.group.clone(),
            version: self.version.clone(),
            api_version: self.api_version(),
            kind: self.kind.clone(),
            plural: self.plural.clone(),
        }
    }
}

/// Kinds migrated by default, in Stork's list.
pub fn default_kinds() -> Vec<Kind> {
    vec![
        Kind::new("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims"),
        Kind::new("", "v1", "ServiceAccount", "serviceaccounts"),
        Kind::new("", "v1", "Secret", "secrets"),
        Kind::new("", "v1", "ConfigMap", "configmaps"),
        Kind::new("", "v1", "Service", "services"),
        Kind::new("", "v1", "ResourceQuota", "resourcequotas"),
        Kind::new("", "v1", "LimitRange", "limitranges"),
        Kind::new("rbac.authorization.k8s.io", "v1", "Role", "roles"),
        Kind::new(
            "rbac.authorization.k8s.io",
            "v1",
            "RoleBinding",
            "rolebindings",
        ),
        Kind::new(
            "networking.k8s.io",
            "v1",
            "NetworkPolicy",
            "networkpolicies",
        ),
        Kind::new("networking.k8s.io", "v1", "Ingress", "ingresses"),
        Kind::new("apps", "v1", "Deployment", "deployments"),
        Kind::new("apps", "v1", "StatefulSet", "statefulsets"),
        Kind::new("apps", "v1", "DaemonSet", "daemonsets"),
        Kind::new("apps", "v1", "ReplicaSet", "replicasets"),
        Kind::new("batch", "v1", "CronJob", "cronjobs"),
        Kind::new(
            "policy",
            "v1",
            "PodDisruptionBudget",
            "poddisruptionbudgets",
        ),
        Kind::new(
            "autoscaling",
            "v2",
            "HorizontalPodAutoscaler",
            "horizontalpodautoscalers",
        ),
    ]
}

/// Kinds migrated only when `includeOptionalResourceTypes` names them.
pub fn optional_kinds() -> Vec<Kind> {
    vec![Kind::new("batch", "v1", "Job", "jobs")]
}

/// API groups whose custom resources are never copied: ferry's own, and snapshots and group
/// snapshots, which point at cluster-local content.
pub const SKIPPED_CUSTOM_GROUPS: [&str; 3] = [
    "ferry.dev",
    "snapshot.storage.k8s.io",
    "groupsnapshot.storage.k8s.io",
];

/// The namespaced custom kinds a CustomResourceDefinition list offers, at each CRD's storage
/// version.
pub fn custom_kinds(crd_list: &Value) -> Vec<Kind> {
    let mut out = Vec::new();
    for crd in crd_list["items"].as_array().into_iter().flatten() {
        let spec = &crd["spec"];
        let group = spec["group"].as_str().unwrap_or_default();
        if spec["scope"].as_str() != Some("Namespaced")
            || group.is_empty()
            || SKIPPED_CUSTOM_GROUPS.contains(&group)
        {
            continue;
        }
        let storage =
            spec["versions"].as_array().into_iter().flatten().find(|v| {
                v["storage"].as_bool() == Some(true) && v["served"].as_bool() != Some(false)
            });
        let (Some(version), Some(kind), Some(plural)) = (
            storage.and_then(|v| v["name"].as_str()),
            spec["names"]["kind"].as_str(),
            spec["names"]["plural"].as_str(),
        ) else {
            continue;
        };
        out.push(Kind::new(group, version, kind, plural));
    }
    out
}

/// The kinds a migration collects: defaults, the optional ones asked for, custom kinds;
/// minus `excludeResourceTypes` (matched by kind, case-insensitive).
pub fn kinds_in_scope(
    custom: Vec<Kind>,
    include_optional: &[String],
    exclude: &[String],
) -> Vec<Kind> {
    let named = |list: &[String], k: &Kind| list.iter().any(|n| n.eq_ignore_ascii_case(&k.kind));
    default_kinds()
        .into_iter()
        .chain(
            optional_kinds()
                .into_iter()
                .filter(|k| named(include_optional, k)),
        )
        .chain(custom)
        .filter(|k| !named(exclude, k))
        .collect()
}
