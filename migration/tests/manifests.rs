//! manifests/ deploys what the code needs: every file kustomize names exists and parses, the
//! controller runs the standard sidecars beside ferry and its migration sidecar, and RBAC
//! grants the migration sidecar each verb its code uses.

use ferry_migration::resources::kinds;
use serde_yaml::Value;
use std::path::PathBuf;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../manifests")
}

fn docs(file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(dir().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{file}: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

use serde::Deserialize;

fn all_docs() -> Vec<Value> {
    let k = &docs("kustomization.yaml")[0];
    k["resources"]
        .as_sequence()
        .expect("resources")
        .iter()
        .flat_map(|r| docs(r.as_str().expect("path")))
        .collect()
}

fn find<'a>(all: &'a [Value], kind: &str, name: &str) -> &'a Value {
    all.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("{kind} {name} missing"))
}

#[test]
fn kustomization_names_files_that_parse() {
    let all = all_docs();
    assert!(all.len() >= 15, "{} documents", all.len());
    for d in &all {
        assert!(
            d["apiVersion"].is_string() && d["kind"].is_string(),
            "{d:?}"
        );
    }
    let driver = find(&all, "CSIDriver", "ferry.csi.dev");
    assert_eq!(driver["spec"]["attachRequired"], false);
}

#[test]
fn the_controller_runs_the_standard_sidecars_and_the_migration_sidecar() {
    let all = all_docs();
    let dep = find(&all, "Deployment", "ferry-controller");
    let containers = dep["spec"]["template"]["spec"]["containers"]
        .as_sequence()
        .expect("containers");
    let images: Vec<&str> = containers
        .iter()
        .filter_map(|c| c["image"].as_str())
        .collect();
    for want in [
        "csi-provisioner",
        "csi-snapshotter",
        "csi-resizer",
        "livenessprobe",
    ] {
        assert!(
            images.iter().any(|i| i.contains(want)),
            "{want} missing: {images:?}"
        );
    }
    let args = |c: &Value| c["args"][0].as_str().unwrap_or_default().to_string();
    let ferry: Vec<String> = containers
        .iter()
        .filter(|c| c["image"] == "ferry")
        .map(args)
        .collect();
    assert_eq!(ferry, ["plugin", "migration"]);
    for c in containers {
        assert!(
            c["livenessProbe"].is_mapping()
                || c["image"]
                    .as_str()
                    .is_some_and(|i| i.contains("sig-storage")),
            "{:?}",
            c["name"]
        );
    }
    let ds = find(&all, "DaemonSet", "ferry-node");
    let node = &ds["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(node["securityContext"]["privileged"], true);
    assert_eq!(args(node), "plugin");
    assert!(
        ds["spec"]["template"]["spec"]["containers"]
            .as_sequence()
            .expect("c")
            .iter()
            .any(|c| c["image"]
                .as_str()
                .is_some_and(|i| i.contains("node-driver-registrar")))
    );
}

/// Every (group, resource, verb) the migration sidecar's code calls is granted.
#[test]
fn rbac_grants_what_the_migration_sidecar_uses() {
    let all = all_docs();
    let role = find(&all, "ClusterRole", "ferry-migration");
    let grants = |group: &str, resource: &str, verb: &str| {
        role["rules"].as_sequence().expect("rules").iter().any(|r| {
            let has = |k: &str, v: &str| {
                r[k].as_sequence()
                    .is_some_and(|s| s.iter().any(|x| x == v || x == "*"))
            };
            has("apiGroups", group) && has("resources", resource) && has("verbs", verb)
        })
    };
    for k in kinds::default_kinds()
        .iter()
        .chain(kinds::optional_kinds().iter())
    {
        for verb in ["get", "list"] {
            assert!(
                grants(&k.group, &k.plural, verb),
                "{verb} {}/{}",
                k.group,
                k.plural
            );
        }
    }
    let needed = [
        ("", "namespaces", "watch"),
        ("", "persistentvolumeclaims", "watch"),
        ("", "persistentvolumes", "get"),
        ("", "secrets", "get"),
        ("snapshot.storage.k8s.io", "volumesnapshots", "create"),
        ("snapshot.storage.k8s.io", "volumesnapshots", "patch"),
        ("snapshot.storage.k8s.io", "volumesnapshots", "delete"),
        ("snapshot.storage.k8s.io", "volumesnapshotcontents", "get"),
        ("snapshot.storage.k8s.io", "volumesnapshotclasses", "list"),
        ("ferry.dev", "migrations", "watch"),
        ("ferry.dev", "migrations", "create"),
        ("ferry.dev", "migrations/status", "patch"),
        ("ferry.dev", "clusterpairs/status", "patch"),
        ("ferry.dev", "volumeimports/status", "patch"),
        ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
        ("storage.k8s.io", "csidrivers", "get"),
        ("events.k8s.io", "events", "create"),
    ];
    for (g, r, v) in needed {
        assert!(grants(g, r, v), "{v} {g}/{r}");
    }
    // Never a write to what it migrates on the source.
    for k in kinds::default_kinds() {
        for verb in ["create", "update", "patch", "delete"] {
            assert!(
                !grants(&k.group, &k.plural, verb) || k.plural == "persistentvolumes",
                "{verb} {}/{}",
                k.group,
                k.plural
            );
        }
    }
}
