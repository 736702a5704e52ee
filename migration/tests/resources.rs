//! Table tests of the pure rules, no server: what is collected, how each kind is
//! transformed, apply order, replica parking and restoring, and resume points.

use ferry_migration::crd::{MigrationStatus, Stage};
use ferry_migration::resources::transform::{TransformContext, transform};
use ferry_migration::resources::transformations::RuleSet;
use ferry_migration::resources::{kinds, order, replicas, select};
use ferry_migration::source::migrate::{Step, next_step};
use serde_json::{Value, json};
use std::collections::BTreeMap;

static NO_MAPPING: BTreeMap<String, String> = BTreeMap::new();
static NO_RULES: RuleSet = Vec::new();

fn cx<'a>(start: bool, bound: &'a BTreeMap<String, String>) -> TransformContext<'a> {
    TransformContext {
        start_applications: start,
        bound_volumes: bound,
        migration: "ops/m1",
        namespace_mapping: &NO_MAPPING,
        storage_class_mapping: &NO_MAPPING,
        rules: &NO_RULES,
    }
}

fn meta(kind: &str, name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": kind, "metadata": {
        "name": name, "namespace": "shop", "uid": "u-1", "resourceVersion": "42",
        "creationTimestamp": "2026-01-01T00:00:00Z", "generation": 3, "managedFields": [{}],
        "finalizers": ["kubernetes.io/pvc-protection"],
        "ownerReferences": [{"kind": "Thing", "name": "x", "uid": "elsewhere"}],
        "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}", "keep": "me"}}})
}

/// Stands for: the API server assigns uid, resourceVersion, creationTimestamp, generation and
/// managedFields, and rejects creates that carry a foreign resourceVersion.
#[test]
fn server_assigned_metadata_and_status_are_stripped_from_every_kind() {
    let bound = BTreeMap::new();
    for kind in [
        "ConfigMap",
        "Secret",
        "Role",
        "Ingress",
        "NetworkPolicy",
        "Widget",
    ] {
        let mut o = meta(kind, "a");
        o["status"] = json!({"x": 1});
        let t = transform(o, &cx(false, &bound)).expect("transform");
        let m = &t["metadata"];
        for gone in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "generation",
            "managedFields",
            "finalizers",
            "ownerReferences",
        ] {
            assert!(m[gone].is_null(), "{kind}: {gone} kept");
        }
        assert!(t["status"].is_null(), "{kind}: status kept");
        assert_eq!(m["annotations"]["keep"], "me");
        assert!(m["annotations"]["kubectl.kubernetes.io/last-applied-configuration"].is_null());
        assert_eq!(m["annotations"]["ferry.dev/migration"], "ops/m1");
        assert_eq!(m["labels"]["ferry.dev/migrated"], "true");
        assert_eq!(m["name"], "a");
        assert_eq!(m["namespace"], "shop");
    }
}

/// Stands for: spec.clusterIP(s) are allocated per cluster and immutable; nodePorts may
/// collide; a headless Service is one whose clusterIP is "None".
#[test]
fn services_lose_cluster_ips_and_node_ports_but_stay_headless() {
    let bound = BTreeMap::new();
    let table = [(json!("10.0.0.1"), true), (json!("None"), false)];
    for (ip, dropped) in table {
        let mut s = meta("Service", "s");
        s["spec"] = json!({"clusterIP": ip, "clusterIPs": [ip], "healthCheckNodePort": 31000,
                           "ports": [{"port": 80, "nodePort": 30001}]});
        let t = transform(s, &cx(true, &bound)).expect("transform");
        assert_eq!(t["spec"]["clusterIP"].is_null(), dropped, "{ip}");
        assert!(t["spec"]["clusterIPs"].is_null());
        assert!(t["spec"]["healthCheckNodePort"].is_null());
        assert!(t["spec"]["ports"][0]["nodePort"].is_null());
        assert_eq!(t["spec"]["ports"][0]["port"], 80);
    }
}

/// Stands for: a PVC's spec.volumeName pre-binds it to a PV; the binder's annotations and a
/// dataSource naming source-cluster objects do not belong on the destination.
#[test]
fn claims_are_bound_to_their_new_volumes() {
    let bound: BTreeMap<String, String> =
        [("shop/data".to_string(), "ferry-import-1".to_string())].into();
    let mut c = meta("PersistentVolumeClaim", "data");
    c["metadata"]["annotations"]["pv.kubernetes.io/bind-completed"] = json!("yes");
    c["metadata"]["annotations"]["volume.kubernetes.io/selected-node"] = json!("n1");
    c["spec"] = json!({"volumeName": "pvc-old", "dataSource": {"kind": "VolumeSnapshot", "name": "s"},
                       "dataSourceRef": {"kind": "VolumeSnapshot", "name": "s"}, "storageClassName": "ferry"});
    let t = transform(c, &cx(false, &bound)).expect("transform");
    assert_eq!(t["spec"]["volumeName"], "ferry-import-1");
    assert!(t["spec"]["dataSource"].is_null() && t["spec"]["dataSourceRef"].is_null());
    assert_eq!(t["spec"]["storageClassName"], "ferry");
    assert!(t["metadata"]["annotations"]["pv.kubernetes.io/bind-completed"].is_null());
    assert!(t["metadata"]["annotations"]["volume.kubernetes.io/selected-node"].is_null());
    let err =
        transform(meta("PersistentVolumeClaim", "other"), &cx(false, &bound)).expect_err("unbound");
    assert!(err.contains("shop/other has no imported volume"));
}

/// The trigger annotation never travels: on the destination its controller would start a
/// migration of the object back to a pair of that name.
#[test]
fn the_trigger_annotation_is_stripped_from_every_copied_object() {
    let bound: BTreeMap<String, String> =
        [("shop/data".to_string(), "ferry-import-1".to_string())].into();
    for kind in [
        "PersistentVolumeClaim",
        "Namespace",
        "ConfigMap",
        "Deployment",
    ] {
        let mut o = meta(kind, "data");
        o["metadata"]["annotations"]["ferry.dev/migrate-to"] = json!("remote");
        o["spec"] = json!({});
        let t = transform(o, &cx(true, &bound)).expect("transform");
        assert!(
            t["metadata"]["annotations"]["ferry.dev/migrate-to"].is_null(),
            "{kind}: {t}"
        );
        assert_eq!(t["metadata"]["annotations"]["keep"], "me", "{kind}");
    }
}

/// Stands for: a Job's selector and pod labels carry its uid (controller-uid), which the API
/// server generates and rejects when copied.
#[test]
fn jobs_lose_their_generated_selector() {
    let bound = BTreeMap::new();
    let mut j = meta("Job", "j");
    j["spec"] = json!({"selector": {"matchLabels": {"controller-uid": "u"}},
        "template": {"metadata": {"labels": {"controller-uid": "u", "batch.kubernetes.io/job-name": "j", "app": "x"}}}});
    let t = transform(j, &cx(true, &bound)).expect("transform");
    assert!(t["spec"]["selector"].is_null());
    let labels = &t["spec"]["template"]["metadata"]["labels"];
    assert!(labels["controller-uid"].is_null() && labels["batch.kubernetes.io/job-name"].is_null());
    assert_eq!(labels["app"], "x");
}

#[test]
fn workloads_are_parked_unless_started() {
    let bound = BTreeMap::new();
    // (kind, spec, started: field to check and value; parked: same)
    let table: [(&str, Value, &str, Value, Value); 5] = [
        (
            "Deployment",
            json!({"replicas": 3}),
            "replicas",
            json!(3),
            json!(0),
        ),
        (
            "StatefulSet",
            json!({"replicas": 2}),
            "replicas",
            json!(2),
            json!(0),
        ),
        ("ReplicaSet", json!({}), "replicas", Value::Null, json!(0)),
        (
            "CronJob",
            json!({"schedule": "* * * * *"}),
            "suspend",
            Value::Null,
            json!(true),
        ),
        ("ConfigMap", json!({}), "replicas", Value::Null, Value::Null),
    ];
    for (kind, spec, field, started, parked) in table {
        let mut o = meta(kind, "w");
        o["spec"] = spec;
        let s = transform(o.clone(), &cx(true, &bound)).expect("transform");
        assert_eq!(s["spec"][field], started, "{kind} started");
        let p = transform(o, &cx(false, &bound)).expect("transform");
        assert_eq!(p["spec"][field], parked, "{kind} parked");
    }
    let mut d = meta("Deployment", "d");
    d["spec"] = json!({});
    let p = transform(d, &cx(false, &bound)).expect("transform");
    assert_eq!(
        p["metadata"]["annotations"]["ferry.dev/migrationReplicas"], "1",
        "absent replicas means 1"
    );
    let mut ds = meta("DaemonSet", "ds");
    ds["spec"] = json!({"template": {"spec": {"nodeSelector": {"disk": "ssd"}}}});
    let p = transform(ds, &cx(false, &bound)).expect("transform");
    assert_eq!(
        p["spec"]["template"]["spec"]["nodeSelector"]["ferry.dev/migration-paused"],
        "true"
    );
    assert_eq!(p["spec"]["template"]["spec"]["nodeSelector"]["disk"], "ssd");
}

#[test]
fn activate_and_deactivate_round_trip() {
    let bound = BTreeMap::new();
    let mut d = meta("Deployment", "d");
    d["spec"] = json!({"replicas": 4});
    let mut parked = transform(d, &cx(false, &bound)).expect("transform");
    let patch = replicas::activate(&parked).expect("activate patch");
    assert_eq!(patch, json!({"spec": {"replicas": 4}}));
    parked["spec"]["replicas"] = json!(4);
    assert!(
        replicas::activate(&parked).is_none(),
        "already active: no patch"
    );
    let patch = replicas::deactivate(&parked).expect("deactivate patch");
    assert_eq!(patch["spec"]["replicas"], 0);
    assert_eq!(
        patch["metadata"]["annotations"]["ferry.dev/migrationReplicas"],
        "4"
    );

    let mut cj = meta("CronJob", "c");
    cj["spec"] = json!({"suspend": false});
    let mut parked = transform(cj, &cx(false, &bound)).expect("transform");
    assert_eq!(
        replicas::activate(&parked),
        Some(json!({"spec": {"suspend": false}}))
    );
    parked["spec"]["suspend"] = json!(false);
    assert!(replicas::activate(&parked).is_none());

    let mut ds = meta("DaemonSet", "ds");
    ds["spec"] = json!({"template": {"spec": {}}});
    let parked = transform(ds, &cx(false, &bound)).expect("transform");
    let patch = replicas::activate(&parked).expect("patch");
    assert!(
        patch["spec"]["template"]["spec"]["nodeSelector"]["ferry.dev/migration-paused"].is_null()
    );
    assert!(
        patch["spec"]["template"]["spec"]["nodeSelector"]
            .as_object()
            .expect("obj")
            .contains_key("ferry.dev/migration-paused")
    );
    assert!(replicas::activate(&meta("Service", "s")).is_none());
}

#[test]
fn what_is_left_out_and_why() {
    let none = BTreeMap::new();
    let app: BTreeMap<String, String> = [("app".to_string(), "web".to_string())].into();
    let mut token = meta("Secret", "t");
    token["type"] = json!("kubernetes.io/service-account-token");
    let mut labelled = meta("ConfigMap", "c");
    labelled["metadata"]["labels"] = json!({"app": "web"});
    let mut deleting = meta("ConfigMap", "d");
    deleting["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    type Labels = BTreeMap<String, String>;
    let table: Vec<(Value, &Labels, &Labels, Option<&str>)> = vec![
        (token, &none, &none, Some("service-account token")),
        (
            meta("ServiceAccount", "default"),
            &none,
            &none,
            Some("default service account"),
        ),
        (meta("ServiceAccount", "builder"), &none, &none, None),
        (
            meta("ConfigMap", "kube-root-ca.crt"),
            &none,
            &none,
            Some("CA bundle"),
        ),
        (meta("ConfigMap", "c"), &app, &none, Some("selectors")),
        (labelled.clone(), &app, &none, None),
        (labelled, &none, &app, Some("excludeSelectors")),
        (deleting, &none, &none, Some("being deleted")),
    ];
    for (o, sel, excl, want) in table {
        let got = select::skip_reason(&o, sel, excl);
        match want {
            Some(w) => assert!(
                got.as_deref().unwrap_or("").contains(w),
                "{}: {got:?}",
                o["metadata"]["name"]
            ),
            None => assert!(got.is_none(), "{}: {got:?}", o["metadata"]["name"]),
        }
    }
}

/// Stands for: ownerReferences point by uid; the garbage collector and the owning controller
/// recreate owned objects (a Deployment's ReplicaSets, a CronJob's Jobs).
#[test]
fn owned_objects_are_dropped_when_their_owner_goes() {
    let dep = json!({"kind": "Deployment", "metadata": {"name": "web", "uid": "d1"}});
    let rs = json!({"kind": "ReplicaSet", "metadata": {"name": "web-1", "uid": "r1", "ownerReferences": [{"kind": "Deployment", "name": "web", "uid": "d1"}]}});
    let orphan = json!({"kind": "ReplicaSet", "metadata": {"name": "solo", "uid": "r2", "ownerReferences": [{"kind": "Operator", "name": "x", "uid": "not-collected"}]}});
    let (kept, dropped) = select::drop_owned(vec![dep, rs, orphan]);
    let names: Vec<&str> = kept
        .iter()
        .map(|o| o["metadata"]["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(names, ["web", "solo"]);
    assert_eq!(dropped.len(), 1);
    assert!(dropped[0].1.contains("owned by Deployment web"));
}

#[test]
fn apply_order_puts_what_others_need_first() {
    let mut objs: Vec<Value> = [
        "Ingress",
        "Deployment",
        "Widget",
        "Service",
        "PersistentVolumeClaim",
        "Namespace",
        "Secret",
        "ServiceAccount",
        "HorizontalPodAutoscaler",
        "PersistentVolume",
        "RoleBinding",
        "Role",
    ]
    .iter()
    .map(|k| json!({"kind": k, "metadata": {"name": "x", "namespace": "a"}}))
    .collect();
    order::sort(&mut objs);
    let kinds: Vec<&str> = objs
        .iter()
        .map(|o| o["kind"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        kinds,
        [
            "Namespace",
            "PersistentVolume",
            "PersistentVolumeClaim",
            "ServiceAccount",
            "Secret",
            "Role",
            "RoleBinding",
            "Service",
            "Deployment",
            "HorizontalPodAutoscaler",
            "Ingress",
            "Widget"
        ]
    );
}

#[test]
fn kinds_in_scope_follow_stork_defaults_options_and_exclusions() {
    let crds = json!({"items": [
        {"spec": {"group": "db.example.com", "scope": "Namespaced", "names": {"kind": "Cluster", "plural": "clusters"},
                  "versions": [{"name": "v1beta1", "served": true, "storage": false}, {"name": "v1", "served": true, "storage": true}]}},
        {"spec": {"group": "infra.example.com", "scope": "Cluster", "names": {"kind": "Pool", "plural": "pools"}, "versions": [{"name": "v1", "served": true, "storage": true}]}},
        {"spec": {"group": "ferry.dev", "scope": "Namespaced", "names": {"kind": "Migration", "plural": "migrations"}, "versions": [{"name": "v1alpha1", "served": true, "storage": true}]}},
        {"spec": {"group": "snapshot.storage.k8s.io", "scope": "Namespaced", "names": {"kind": "VolumeSnapshot", "plural": "volumesnapshots"}, "versions": [{"name": "v1", "served": true, "storage": true}]}},
        {"spec": {"group": "groupsnapshot.storage.k8s.io", "scope": "Namespaced", "names": {"kind": "VolumeGroupSnapshot", "plural": "volumegroupsnapshots"}, "versions": [{"name": "v1beta1", "served": true, "storage": true}]}},
    ]});
    let custom = kinds::custom_kinds(&crds);
    assert_eq!(custom.len(), 1);
    assert_eq!(
        (custom[0].kind.as_str(), custom[0].version.as_str()),
        ("Cluster", "v1")
    );
    let scope = kinds::kinds_in_scope(custom, &[], &["secret".to_string()]);
    let names: Vec<&str> = scope.iter().map(|k| k.kind.as_str()).collect();
    for want in [
        "PersistentVolumeClaim",
        "Deployment",
        "StatefulSet",
        "DaemonSet",
        "ReplicaSet",
        "ConfigMap",
        "Service",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "Ingress",
        "CronJob",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "ResourceQuota",
        "LimitRange",
        "HorizontalPodAutoscaler",
        "Cluster",
    ] {
        assert!(names.contains(&want), "{want} missing");
    }
    assert!(!names.contains(&"Secret"), "excluded");
    assert!(!names.contains(&"Job"), "Job only on request");
    let with_jobs = kinds::kinds_in_scope(Vec::new(), &["Job".to_string()], &[]);
    assert!(
        with_jobs
            .iter()
            .any(|k| k.kind == "Job" && k.group == "batch")
    );
}

/// Resume points: the status alone says where a restarted controller goes on.
#[test]
fn next_step_is_read_off_the_status() {
    let at = |stage: Option<Stage>, finished: bool| MigrationStatus {
        stage,
        finish_timestamp: finished.then(|| "2026-01-01T00:00:00Z".to_string()),
        ..Default::default()
    };
    assert_eq!(next_step(None), Step::Validate);
    assert_eq!(next_step(Some(&at(None, false))), Step::Validate);
    assert_eq!(
        next_step(Some(&at(Some(Stage::Volumes), false))),
        Step::Volumes
    );
    assert_eq!(
        next_step(Some(&at(Some(Stage::Application), false))),
        Step::Application
    );
    assert_eq!(
        next_step(Some(&at(Some(Stage::Final), false))),
        Step::Finish
    );
    assert_eq!(next_step(Some(&at(Some(Stage::Final), true))), Step::Done);
}

#[test]
fn generated_names_are_stable_and_valid() {
    use ferry_migration::names;
    let a = names::snapshot(
        "ns",
        "a-very-long-migration-name-that-goes-on-and-on",
        "claim-with-a-long-name-too",
    );
    assert_eq!(
        a,
        names::snapshot(
            "ns",
            "a-very-long-migration-name-that-goes-on-and-on",
            "claim-with-a-long-name-too"
        )
    );
    assert_ne!(names::import("vol-1"), names::import("vol-2"));
    for n in [
        a,
        names::import("v"),
        names::transfer_secret("ns", "p", "uid"),
        names::triggered_migration("ns", Some("pvc"), "pair"),
    ] {
        assert!(n.len() <= 63, "{n}");
        assert!(
            n.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
            "{n}"
        );
        assert!(!n.starts_with('-') && !n.ends_with('-'), "{n}");
    }
}
