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
    // Every CRD ferry defines is installed.
    for crd in ferry_migration::crd::crds() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        find(&all, "CustomResourceDefinition", &name);
    }
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
    assert_eq!(ferry, ["plugin"]);
    // The migration controller is its own Deployment, with its own service account.
    let mig = find(&all, "Deployment", "ferry-migration");
    let pod = &mig["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "ferry-migration");
    assert_eq!(args(&pod["containers"][0]), "migration");
    assert_eq!(
        dep["spec"]["template"]["spec"]["serviceAccountName"],
        "ferry-controller"
    );
    find(&all, "ServiceAccount", "ferry-migration");
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

/// The (group, resource, verb) triples a role grants, `*` expanded only as itself.
fn grants_of(role: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let strs = |v: &Value| -> Vec<String> {
        v.as_sequence()
            .map(|s| {
                s.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    for r in role["rules"].as_sequence().into_iter().flatten() {
        for g in strs(&r["apiGroups"]) {
            for res in strs(&r["resources"]) {
                for v in strs(&r["verbs"]) {
                    out.push((g.clone(), res.clone(), v));
                }
            }
        }
    }
    out
}

/// A ClusterRole's rules, with those of the roles it aggregates when it has an
/// aggregationRule (as the API server's aggregation controller fills them in).
fn effective_grants(all: &[Value], name: &str) -> Vec<(String, String, String)> {
    let role = find(all, "ClusterRole", name);
    let mut out = grants_of(role);
    for sel in role["aggregationRule"]["clusterRoleSelectors"]
        .as_sequence()
        .into_iter()
        .flatten()
    {
        let labels = sel["matchLabels"].as_mapping().expect("matchLabels");
        for other in all.iter().filter(|d| d["kind"] == "ClusterRole") {
            let has_all = labels
                .iter()
                .all(|(k, v)| other["metadata"]["labels"][k.as_str().expect("key")] == *v);
            if has_all {
                out.extend(grants_of(other));
            }
        }
    }
    out
}

fn grants(list: &[(String, String, String)], group: &str, resource: &str, verb: &str) -> bool {
    list.iter().any(|(g, r, v)| {
        (g == group || g == "*") && (r == resource || r == "*") && (v == verb || v == "*")
    })
}

/// Every (group, resource, verb) the migration controller's code calls is granted to its
/// own account, and nothing on the source lets it write what it migrates.
#[test]
fn rbac_grants_what_the_migration_controller_uses() {
    let all = all_docs();
    let binding = find(&all, "ClusterRoleBinding", "ferry-migration");
    assert_eq!(binding["subjects"][0]["name"], "ferry-migration");
    let g = effective_grants(&all, "ferry-migration");
    for k in kinds::default_kinds()
        .iter()
        .chain(kinds::optional_kinds().iter())
    {
        for verb in ["get", "list"] {
            assert!(
                grants(&g, &k.group, &k.plural, verb),
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
        ("", "persistentvolumes", "create"),
        ("", "persistentvolumes", "patch"),
        ("", "secrets", "get"),
        ("", "configmaps", "get"),
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
        ("storage.k8s.io", "storageclasses", "get"),
        ("ferry.dev", "resourcetransformations", "get"),
        ("ferry.dev", "resourcetransformations", "watch"),
        ("ferry.dev", "resourcetransformations/status", "patch"),
        ("ferry.dev", "applicationclones", "watch"),
        ("ferry.dev", "rules", "get"),
        ("", "pods/exec", "create"),
        ("ferry.dev", "applicationclones/status", "patch"),
        ("events.k8s.io", "events", "create"),
        ("ferry.dev", "actions", "watch"),
        ("ferry.dev", "actions/status", "patch"),
        ("", "pods", "list"),
        ("apps", "deployments", "patch"),
        ("apps", "statefulsets", "patch"),
        ("apps", "daemonsets", "patch"),
        ("apps", "replicasets", "patch"),
        ("batch", "cronjobs", "patch"),
    ];
    for (gr, r, v) in needed {
        assert!(grants(&g, gr, r, v), "{v} {gr}/{r}");
    }
    let local = grants_of(find(&all, "Role", "ferry-migration-local"));
    for v in ["create", "patch"] {
        assert!(grants(&local, "", "configmaps", v), "{v} configmaps");
    }
    for v in ["get", "create", "update"] {
        assert!(
            grants(&local, "coordination.k8s.io", "leases", v),
            "{v} leases"
        );
    }
    // Never a write to what it migrates on the source, but the scaling of workloads a
    // failover or failback does (patch only).
    let workloads = ferry_migration::destination::dr::workloads::workload_kinds();
    for k in kinds::default_kinds() {
        for verb in ["create", "update", "patch", "delete"] {
            let scaling = verb == "patch" && workloads.iter().any(|w| w.plural == k.plural);
            assert!(
                !grants(&g, &k.group, &k.plural, verb)
                    || k.plural == "persistentvolumes"
                    || scaling,
                "{verb} {}/{}",
                k.group,
                k.plural
            );
        }
    }
    assert!(
        !g.iter().any(|(gr, r, v)| gr == "*" || r == "*" || v == "*"),
        "{g:?}"
    );
}

/// The destination role grants exactly what a migration writes in a namespace it lands in
/// (the Application stage's kinds, VolumeImports and their Secrets, the Namespace created
/// when absent, never patched) and nothing that grants privileges; the cluster-scoped reads
/// a pair needs are a role of their own (`ferry-migration-pair`), reads only.
#[test]
fn the_destination_role_is_exactly_what_a_migration_writes() {
    let all = all_docs();
    let role = find(&all, "ClusterRole", "ferry-migration-destination");
    assert!(
        role.get("rules").is_none(),
        "the aggregated role ships without rules, so an apply never empties it: {role:?}"
    );
    let g = effective_grants(&all, "ferry-migration-destination");
    let mut needed: Vec<(String, String, String)> = Vec::new();
    let mut need = |gr: &str, r: &str, v: &str| needed.push((gr.into(), r.into(), v.into()));
    for k in kinds::default_kinds()
        .iter()
        .chain(kinds::optional_kinds().iter())
    {
        // apply = create or patch; get and list for the plan and purge; delete for purge.
        for v in ["get", "list", "create", "patch", "delete"] {
            need(&k.group, &k.plural, v);
        }
    }
    for v in ["get", "create"] {
        need("", "namespaces", v);
    }
    for v in ["get", "list", "create", "delete"] {
        need("ferry.dev", "volumeimports", v);
    }
    for (gr, r, v) in &needed {
        assert!(grants(&g, gr, r, v), "missing {v} {gr}/{r}");
    }
    for t in &g {
        assert!(needed.contains(t), "granted but never used: {t:?}");
    }
    for (gr, r, v) in &g {
        assert!(
            !matches!(v.as_str(), "bind" | "escalate" | "impersonate" | "*"),
            "{v} {gr}/{r}"
        );
        assert!(
            !matches!(r.as_str(), "clusterroles" | "clusterrolebindings" | "*"),
            "{v} {gr}/{r}"
        );
    }
    let mut pair = grants_of(find(&all, "ClusterRole", "ferry-migration-pair"));
    pair.sort();
    let want: Vec<(String, String, String)> = [
        ("apiextensions.k8s.io", "customresourcedefinitions", "get"),
        ("storage.k8s.io", "csidrivers", "get"),
        ("storage.k8s.io", "storageclasses", "get"),
    ]
    .iter()
    .map(|(g, r, v)| (g.to_string(), r.to_string(), v.to_string()))
    .collect();
    assert_eq!(pair, want);
}

/// In-cluster clones are opt-in: ferry-clone is not bound by default, and grants apply
/// (get, create, patch) of exactly the kinds a migration copies and Namespaces, no delete.
#[test]
fn the_clone_role_is_apply_of_the_copied_kinds_and_not_bound() {
    let all = all_docs();
    let role = find(&all, "ClusterRole", "ferry-clone");
    let g = grants_of(role);
    let mut want = Vec::new();
    for k in kinds::default_kinds()
        .iter()
        .chain(kinds::optional_kinds().iter())
    {
        for v in ["get", "create", "patch"] {
            want.push((k.group.clone(), k.plural.clone(), v.to_string()));
        }
    }
    for v in ["get", "create", "patch"] {
        want.push((String::new(), "namespaces".to_string(), v.to_string()));
    }
    for t in &want {
        assert!(g.contains(t), "missing {t:?}");
    }
    for t in &g {
        assert!(want.contains(t), "granted but never used: {t:?}");
    }
    let bound = all.iter().any(|d| {
        d["kind"].as_str().is_some_and(|k| k.ends_with("Binding"))
            && d["roleRef"]["name"].as_str() == Some("ferry-clone")
    });
    assert!(
        !bound,
        "ferry-clone is bound by the admin, not by the manifests"
    );
}

/// Creating CRDs on the destination is opt-in: its own role, not aggregated into the
/// destination role, and only CRDs, created and never patched (a patch would let the pair's
/// account rewrite any CRD of the cluster).
#[test]
fn creating_crds_on_the_destination_is_a_role_of_its_own() {
    let all = all_docs();
    let role = find(&all, "ClusterRole", "ferry-migration-destination-crds");
    assert!(
        role["metadata"]["labels"].is_null(),
        "not aggregated by default: {role:?}"
    );
    let mut g = grants_of(role);
    g.sort();
    let want: Vec<(String, String, String)> = ["create", "get"]
        .iter()
        .map(|v| {
            (
                "apiextensions.k8s.io".to_string(),
                "customresourcedefinitions".to_string(),
                v.to_string(),
            )
        })
        .collect();
    assert_eq!(g, want);
    let dest = effective_grants(&all, "ferry-migration-destination");
    assert!(!grants(
        &dest,
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        "create"
    ));
}

/// The role a pair reaching back to the source binds there grants exactly what the
/// failover and failback steps do on the source, and nothing that grants privileges.
#[test]
fn the_dr_source_role_is_exactly_what_failover_and_failback_do() {
    let all = all_docs();
    let g = grants_of(find(&all, "ClusterRole", "ferry-dr-source"));
    let mut needed: Vec<(String, String, String)> = Vec::new();
    let mut need = |gr: &str, r: &str, v: &str| needed.push((gr.into(), r.into(), v.into()));
    for v in ["get", "patch"] {
        need("ferry.dev", "migrationschedules", v);
    }
    for v in ["get", "create"] {
        need("ferry.dev", "migrations", v);
    }
    for k in ferry_migration::destination::dr::workloads::workload_kinds() {
        for v in ["list", "patch"] {
            need(&k.group, &k.plural, v);
        }
    }
    need("", "pods", "list");
    for (gr, r, v) in &needed {
        assert!(grants(&g, gr, r, v), "missing {v} {gr}/{r}");
    }
    for t in &g {
        assert!(needed.contains(t), "granted but never used: {t:?}");
    }
}

/// Every container that mounts nothing runs unprivileged: non-root, read-only root
/// filesystem, no capabilities, no privilege escalation, seccomp RuntimeDefault. Only the
/// node plugin is privileged (it attaches loop devices and mounts).
#[test]
fn containers_run_with_least_privilege() {
    let all = all_docs();
    let mut checked = 0;
    for d in all
        .iter()
        .filter(|d| d["kind"] == "Deployment" || d["kind"] == "DaemonSet")
    {
        let pod = &d["spec"]["template"]["spec"];
        for c in pod["containers"].as_sequence().expect("containers") {
            let name = format!(
                "{}/{}",
                d["metadata"]["name"].as_str().unwrap_or_default(),
                c["name"].as_str().unwrap_or_default()
            );
            let sc = &c["securityContext"];
            if d["kind"] == "DaemonSet" && c["image"] == "ferry" {
                assert_eq!(sc["privileged"], true, "{name}");
                continue;
            }
            checked += 1;
            assert_ne!(sc["privileged"], true, "{name}");
            assert_eq!(sc["allowPrivilegeEscalation"], false, "{name}");
            assert_eq!(sc["readOnlyRootFilesystem"], true, "{name}");
            assert_eq!(sc["capabilities"]["drop"][0], "ALL", "{name}");
            let seccomp = if sc["seccompProfile"].is_mapping() {
                &sc["seccompProfile"]
            } else {
                &pod["securityContext"]["seccompProfile"]
            };
            assert_eq!(seccomp["type"], "RuntimeDefault", "{name}");
            if d["kind"] == "Deployment" {
                assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
            }
        }
    }
    assert!(checked >= 8, "{checked} containers checked");
}

/// The API stand-in is test support: the crates that ship in the `ferry` and `ferryctl`
/// binaries never depend on it (only their tests do, and the demo binary).
#[test]
fn no_shipped_crate_links_the_api_stand_in() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    for krate in [
        "cli",
        "ctl",
        "migration",
        "csi",
        "node",
        "controller",
        "store",
        "transfer",
    ] {
        let text =
            std::fs::read_to_string(root.join(krate).join("Cargo.toml")).expect("Cargo.toml");
        let normal = text.split("[dev-dependencies]").next().unwrap_or_default();
        for banned in ["ferry-kubefake", "tower-test", "kube-cel", "fake-api"] {
            assert!(!normal.contains(banned), "{krate} depends on {banned}");
        }
    }
}

/// Defect 4: the standard sidecars' rules match the upstream roles of the pinned versions:
/// csi-provisioner adds its finalizer to VolumeSnapshots (update), csi-resizer and
/// csi-provisioner read VolumeAttributesClasses, and all three elect a leader with Leases.
#[test]
fn the_sidecars_get_what_their_upstream_roles_grant() {
    let all = all_docs();
    let g = effective_grants(&all, "ferry-csi-sidecars");
    for (gr, r, v) in [
        ("snapshot.storage.k8s.io", "volumesnapshots", "update"),
        ("snapshot.storage.k8s.io", "volumesnapshotcontents", "patch"),
        (
            "groupsnapshot.storage.k8s.io",
            "volumegroupsnapshotclasses",
            "watch",
        ),
        (
            "groupsnapshot.storage.k8s.io",
            "volumegroupsnapshotcontents",
            "update",
        ),
        (
            "groupsnapshot.storage.k8s.io",
            "volumegroupsnapshotcontents/status",
            "patch",
        ),
        ("storage.k8s.io", "volumeattributesclasses", "get"),
        ("storage.k8s.io", "volumeattributesclasses", "list"),
        ("storage.k8s.io", "volumeattributesclasses", "watch"),
        ("", "persistentvolumeclaims", "patch"),
        ("", "persistentvolumeclaims/status", "patch"),
    ] {
        assert!(grants(&g, gr, r, v), "{v} {gr}/{r}");
    }
    let leases = grants_of(find(&all, "Role", "ferry-csi-sidecars-leases"));
    for v in ["get", "create", "update"] {
        assert!(
            grants(&leases, "coordination.k8s.io", "leases", v),
            "{v} leases"
        );
    }
    let binding = find(&all, "RoleBinding", "ferry-csi-sidecars-leases");
    assert_eq!(binding["subjects"][0]["name"], "ferry-controller");
}

/// A quantity as Kubernetes writes it (`500m`, `2`, `64Mi`, `1Gi`), in its base unit.
fn quantity(q: &Value) -> f64 {
    let s = match q {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => panic!("not a quantity: {other:?}"),
    };
    let (digits, scale) = [
        ("Ki", 1024f64),
        ("Mi", 1024f64.powi(2)),
        ("Gi", 1024f64.powi(3)),
        ("m", 0.001),
    ]
    .iter()
    .find_map(|(suffix, f)| s.strip_suffix(suffix).map(|d| (d.to_string(), *f)))
    .unwrap_or((s.clone(), 1.0));
    digits
        .parse::<f64>()
        .unwrap_or_else(|_| panic!("quantity {s}"))
        * scale
}

/// Every container of the cluster-wide controllers (the CSI controller and its sidecars,
/// the migration controller) asks for CPU and memory and is capped, limits at or above
/// requests: one tenant's work (a command flooding its output, many transfers) cannot grow
/// the controller that serves every tenant until the node runs short.
#[test]
fn controller_containers_have_requests_and_limits() {
    let all = all_docs();
    let mut checked = 0;
    for d in all.iter().filter(|d| d["kind"] == "Deployment") {
        for c in d["spec"]["template"]["spec"]["containers"]
            .as_sequence()
            .expect("containers")
        {
            let name = format!(
                "{}/{}",
                d["metadata"]["name"].as_str().unwrap_or_default(),
                c["name"].as_str().unwrap_or_default()
            );
            let r = &c["resources"];
            for what in ["cpu", "memory"] {
                let (req, lim) = (&r["requests"][what], &r["limits"][what]);
                assert!(
                    !req.is_null() && !lim.is_null(),
                    "{name}: resources.requests.{what} and resources.limits.{what}"
                );
                assert!(
                    quantity(req) > 0.0 && quantity(req) <= quantity(lim),
                    "{name}: {what} request {req:?} within its limit {lim:?}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 6, "{checked} containers checked");
    let migration = find(&all, "Deployment", "ferry-migration");
    assert!(
        migration["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"]
            .is_string(),
        "the migration controller has a memory limit"
    );
}

/// The VolumeGroupSnapshotClass is written in the API version the group snapshot CRDs of
/// external-snapshotter v8.4 and later store (`v1beta2`), not the deprecated `v1beta1`
/// that Kubernetes 1.34 distributions no longer serve; and names ferry's driver.
#[test]
fn the_group_snapshot_class_uses_the_current_api() {
    let class = &docs("groupsnapshotclass.yaml")[0];
    assert_eq!(class["kind"], "VolumeGroupSnapshotClass");
    assert_eq!(class["apiVersion"], "groupsnapshot.storage.k8s.io/v1beta2");
    assert_eq!(class["driver"], "ferry.csi.dev");
    assert_eq!(class["deletionPolicy"], "Delete");
}
