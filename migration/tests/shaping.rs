//! Table tests of how a migration shapes what lands, no server: namespace mapping,
//! StorageClass mapping of claims, and ResourceTransformation rules (objects in, objects
//! out, and the changes a dry run shows).

use ferry_migration::crd::{Operation, ResourcePath, TransformSpec, ValueType};
use ferry_migration::resources::transform::{TransformContext, transform_traced};
use ferry_migration::resources::{mapping, transformations};
use serde_json::{Value, json};
use std::collections::BTreeMap;

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

fn mapped(obj: Value, m: &[(&str, &str)]) -> Value {
    let mut o = obj;
    mapping::apply(&mut o, &map(m));
    o
}

#[test]
fn every_namespaced_reference_follows_the_mapping() {
    let m = [("shop", "shop-copy"), ("pay", "pay2")];
    // (what, object in, pointer, value out)
    let cases: Vec<(&str, Value, &str, &str)> = vec![
        (
            "metadata.namespace",
            json!({"kind": "ConfigMap", "metadata": {"name": "a", "namespace": "shop"}}),
            "/metadata/namespace",
            "shop-copy",
        ),
        (
            "a Namespace's own name",
            json!({"kind": "Namespace", "metadata": {"name": "shop", "labels": {"kubernetes.io/metadata.name": "shop", "team": "shop"}}}),
            "/metadata/name",
            "shop-copy",
        ),
        (
            "a Namespace's name label",
            json!({"kind": "Namespace", "metadata": {"name": "shop", "labels": {"kubernetes.io/metadata.name": "shop", "team": "shop"}}}),
            "/metadata/labels/kubernetes.io~1metadata.name",
            "shop-copy",
        ),
        (
            "other labels are the user's text",
            json!({"kind": "Namespace", "metadata": {"name": "shop", "labels": {"team": "shop"}}}),
            "/metadata/labels/team",
            "shop",
        ),
        (
            "RoleBinding subject namespace",
            json!({"kind": "RoleBinding", "metadata": {"name": "rb", "namespace": "shop"},
                   "subjects": [{"kind": "ServiceAccount", "name": "web", "namespace": "shop"}],
                   "roleRef": {"kind": "Role", "name": "r"}}),
            "/subjects/0/namespace",
            "shop-copy",
        ),
        (
            "a subject in another mapped namespace",
            json!({"kind": "RoleBinding", "metadata": {"name": "rb", "namespace": "shop"},
                   "subjects": [{"kind": "ServiceAccount", "name": "x", "namespace": "pay"}]}),
            "/subjects/0/namespace",
            "pay2",
        ),
        (
            "a subject in an unmapped namespace stays",
            json!({"kind": "RoleBinding", "metadata": {"name": "rb", "namespace": "shop"},
                   "subjects": [{"kind": "ServiceAccount", "name": "x", "namespace": "kube-system"}]}),
            "/subjects/0/namespace",
            "kube-system",
        ),
        (
            "service-account user name",
            json!({"kind": "RoleBinding", "metadata": {"name": "rb", "namespace": "shop"},
                   "subjects": [{"kind": "User", "name": "system:serviceaccount:shop:web"}]}),
            "/subjects/0/name",
            "system:serviceaccount:shop-copy:web",
        ),
        (
            "service-account group name",
            json!({"kind": "RoleBinding", "metadata": {"name": "rb", "namespace": "shop"},
                   "subjects": [{"kind": "Group", "name": "system:serviceaccounts:pay"}]}),
            "/subjects/0/name",
            "system:serviceaccounts:pay2",
        ),
        (
            "PV claimRef",
            json!({"kind": "PersistentVolume", "metadata": {"name": "pv"},
                   "spec": {"claimRef": {"namespace": "shop", "name": "data"}}}),
            "/spec/claimRef/namespace",
            "shop-copy",
        ),
        (
            "NetworkPolicy namespaceSelector by name",
            json!({"kind": "NetworkPolicy", "metadata": {"name": "np", "namespace": "shop"},
                   "spec": {"ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "pay"}}}]}]}}),
            "/spec/ingress/0/from/0/namespaceSelector/matchLabels/kubernetes.io~1metadata.name",
            "pay2",
        ),
        (
            "namespaceSelector expression",
            json!({"kind": "NetworkPolicy", "metadata": {"name": "np", "namespace": "shop"},
                   "spec": {"egress": [{"to": [{"namespaceSelector": {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["shop", "other"]}]}}]}]}}),
            "/spec/egress/0/to/0/namespaceSelector/matchExpressions/0/values/0",
            "shop-copy",
        ),
        (
            "pod affinity namespaces",
            json!({"kind": "Deployment", "metadata": {"name": "d", "namespace": "shop"},
                   "spec": {"template": {"spec": {"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"namespaces": ["pay"], "topologyKey": "k"}]}}}}}}),
            "/spec/template/spec/affinity/podAffinity/requiredDuringSchedulingIgnoredDuringExecution/0/namespaces/0",
            "pay2",
        ),
        (
            "a custom resource's namespace reference",
            json!({"kind": "Certificate", "metadata": {"name": "c", "namespace": "shop"},
                   "spec": {"issuerRef": {"name": "ca", "namespace": "shop"}}}),
            "/spec/issuerRef/namespace",
            "shop-copy",
        ),
        (
            "ConfigMap data is free text and stays",
            json!({"kind": "ConfigMap", "metadata": {"name": "a", "namespace": "shop"},
                   "data": {"namespace": "shop"}}),
            "/data/namespace",
            "shop",
        ),
        (
            "pod template labels stay",
            json!({"kind": "Deployment", "metadata": {"name": "d", "namespace": "shop"},
                   "spec": {"template": {"metadata": {"labels": {"namespace": "shop"}}}}}),
            "/spec/template/metadata/labels/namespace",
            "shop",
        ),
    ];
    for (what, obj, ptr, want) in cases {
        let out = mapped(obj, &m);
        assert_eq!(out.pointer(ptr), Some(&json!(want)), "{what}: {out}");
    }
}

#[test]
fn an_empty_mapping_changes_nothing() {
    let o = json!({"kind": "RoleBinding", "metadata": {"name": "rb", "namespace": "shop"},
                   "subjects": [{"kind": "ServiceAccount", "name": "web", "namespace": "shop"}]});
    assert_eq!(mapped(o.clone(), &[]), o);
}

#[test]
fn a_mapping_is_checked_against_the_namespaces_migrated() {
    let ns = vec!["shop".to_string(), "pay".to_string()];
    assert!(mapping::check(&map(&[("shop", "shop2")]), &ns).is_ok());
    let cases = [
        (vec![("web", "web2")], "does not migrate"),
        (vec![("shop", "pay")], "both land in pay"),
        (vec![("shop", "x"), ("pay", "x")], "both land in x"),
        (vec![("shop", "Shop_2")], "not a namespace name"),
        (vec![("shop", "")], "not a namespace name"),
    ];
    for (m, want) in cases {
        let e = mapping::check(&map(&m), &ns).expect_err(want);
        assert!(e.contains(want), "{m:?}: {e}");
    }
}

fn path(p: &str, value: &str, t: ValueType, op: Operation) -> ResourcePath {
    ResourcePath {
        path: p.into(),
        value: value.into(),
        value_type: t,
        operation: op,
        prefix: None,
    }
}

fn rule(resource: &str, selectors: &[(&str, &str)], paths: Vec<ResourcePath>) -> TransformSpec {
    TransformSpec {
        resource: resource.into(),
        selectors: map(selectors),
        paths,
    }
}

fn service() -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}},
           "spec": {"type": "NodePort", "ports": [{"port": 80}], "selector": {"app": "web"}}})
}

fn deployment() -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}},
           "spec": {"replicas": 3, "template": {"spec": {"containers": [
               {"name": "web", "image": "docker.io/library/nginx:1.27"},
               {"name": "sidecar", "image": "quay.io/envoy:1"}]}}}})
}

#[test]
fn each_operation_does_what_it_says() {
    use Operation::*;
    use ValueType::*;
    // (what, object, rule, pointer, value after or None for gone)
    let cases: Vec<(&str, Value, TransformSpec, &str, Option<Value>)> = vec![
        (
            "Service type change",
            service(),
            rule(
                "/v1/Service",
                &[],
                vec![path("spec.type", "LoadBalancer", String, Modify)],
            ),
            "/spec/type",
            Some(json!("LoadBalancer")),
        ),
        (
            "modify leaves an absent field absent",
            service(),
            rule(
                "/v1/Service",
                &[],
                vec![path("spec.externalName", "x", String, Modify)],
            ),
            "/spec/externalName",
            None,
        ),
        (
            "add makes an absent field and its parents",
            service(),
            rule(
                "Service",
                &[],
                vec![path(
                    "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                    "60",
                    Int,
                    Add,
                )],
            ),
            "/spec/sessionAffinityConfig/clientIP/timeoutSeconds",
            Some(json!(60)),
        ),
        (
            "keypair add merges labels",
            service(),
            rule(
                "/v1/Service",
                &[],
                vec![path("metadata.labels", "tier:front,zone:b", Keypair, Add)],
            ),
            "/metadata/labels",
            Some(json!({"app": "web", "tier": "front", "zone": "b"})),
        ),
        (
            "keypair delete removes keys",
            service(),
            rule(
                "/v1/Service",
                &[],
                vec![path("metadata.labels", "app:", Keypair, Delete)],
            ),
            "/metadata/labels",
            Some(json!({})),
        ),
        (
            "delete removes the field",
            service(),
            rule(
                "/v1/Service",
                &[],
                vec![path("spec.selector", "", String, Delete)],
            ),
            "/spec/selector",
            None,
        ),
        (
            "int modify",
            deployment(),
            rule(
                "apps/v1/Deployment",
                &[],
                vec![path("spec.replicas", "1", Int, Modify)],
            ),
            "/spec/replicas",
            Some(json!(1)),
        ),
        (
            "indexed path",
            deployment(),
            rule(
                "apps/v1/Deployment",
                &[],
                vec![path(
                    "spec.template.spec.containers[1].image",
                    "quay.io/envoy:2",
                    String,
                    Modify,
                )],
            ),
            "/spec/template/spec/containers/1/image",
            Some(json!("quay.io/envoy:2")),
        ),
        (
            "registry rewrite over every container: a match",
            deployment(),
            rule(
                "apps/v1/Deployment",
                &[],
                vec![ResourcePath {
                    prefix: Some("docker.io/".into()),
                    ..path(
                        "spec.template.spec.containers[*].image",
                        "mirror.example.com/hub/",
                        String,
                        Modify,
                    )
                }],
            ),
            "/spec/template/spec/containers/0/image",
            Some(json!("mirror.example.com/hub/library/nginx:1.27")),
        ),
        (
            "registry rewrite over every container: no match stays",
            deployment(),
            rule(
                "apps/v1/Deployment",
                &[],
                vec![ResourcePath {
                    prefix: Some("docker.io/".into()),
                    ..path(
                        "spec.template.spec.containers[*].image",
                        "mirror.example.com/hub/",
                        String,
                        Modify,
                    )
                }],
            ),
            "/spec/template/spec/containers/1/image",
            Some(json!("quay.io/envoy:1")),
        ),
        (
            "slice add appends what is missing",
            deployment(),
            rule(
                "Deployment",
                &[],
                vec![path(
                    "spec.template.spec.containers[0].args",
                    "[-v,-q]",
                    Slice,
                    Add,
                )],
            ),
            "/spec/template/spec/containers/0/args",
            Some(json!(["-v", "-q"])),
        ),
        (
            "bool add",
            deployment(),
            rule(
                "Deployment",
                &[],
                vec![path("spec.paused", "true", Bool, Add)],
            ),
            "/spec/paused",
            Some(json!(true)),
        ),
        (
            "quoted key",
            service(),
            rule(
                "/v1/Service",
                &[],
                vec![path(
                    "metadata.annotations['example.com/owner']",
                    "team-a",
                    String,
                    Add,
                )],
            ),
            "/metadata/annotations/example.com~1owner",
            Some(json!("team-a")),
        ),
        (
            "a selector that does not match leaves the object alone",
            service(),
            rule(
                "/v1/Service",
                &[("app", "db")],
                vec![path("spec.type", "LoadBalancer", String, Modify)],
            ),
            "/spec/type",
            Some(json!("NodePort")),
        ),
        (
            "another kind is left alone",
            service(),
            rule(
                "apps/v1/Deployment",
                &[],
                vec![path("spec.type", "LoadBalancer", String, Modify)],
            ),
            "/spec/type",
            Some(json!("NodePort")),
        ),
        (
            "another apiVersion is left alone",
            deployment(),
            rule(
                "apps/v1beta2/Deployment",
                &[],
                vec![path("spec.replicas", "1", Int, Modify)],
            ),
            "/spec/replicas",
            Some(json!(3)),
        ),
    ];
    for (what, obj, r, ptr, want) in cases {
        transformations::check(std::slice::from_ref(&r)).unwrap_or_else(|e| panic!("{what}: {e}"));
        let mut o = obj;
        transformations::apply("t", &[r], &mut o).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(o.pointer(ptr).cloned(), want, "{what}: {o}");
    }
}

#[test]
fn changes_say_which_field_went_from_what_to_what() {
    let r = rule(
        "apps/v1/Deployment",
        &[("app", "web")],
        vec![ResourcePath {
            prefix: Some("docker.io/".into()),
            ..path(
                "spec.template.spec.containers[*].image",
                "mirror.example.com/",
                ValueType::String,
                Operation::Modify,
            )
        }],
    );
    let mut o = deployment();
    let changes = transformations::apply("registry", &[r], &mut o).expect("apply");
    assert_eq!(
        changes.len(),
        1,
        "only the matching image changed: {changes:?}"
    );
    let c = &changes[0];
    assert_eq!(c.transformation, "registry");
    assert_eq!(c.path, "spec.template.spec.containers[0].image");
    assert_eq!(
        c.before.as_deref(),
        Some("\"docker.io/library/nginx:1.27\"")
    );
    assert_eq!(
        c.after.as_deref(),
        Some("\"mirror.example.com/library/nginx:1.27\"")
    );
}

#[test]
fn rules_that_cannot_work_are_refused_with_what_to_fix() {
    use Operation::*;
    use ValueType::*;
    let cases = [
        (
            rule(
                "v1/Service",
                &[],
                vec![path("spec.type", "x", String, Modify)],
            ),
            "group/version/Kind",
        ),
        (rule("/v1/Service", &[], vec![]), "no paths"),
        (
            rule(
                "/v1/Service",
                &[],
                vec![path("spec..type", "x", String, Modify)],
            ),
            "empty field name",
        ),
        (
            rule(
                "/v1/Service",
                &[],
                vec![path("spec.ports[x].port", "1", Int, Modify)],
            ),
            "an index is a number",
        ),
        (
            rule(
                "/v1/Service",
                &[],
                vec![path("spec.ports[0", "1", Int, Modify)],
            ),
            "must be closed",
        ),
        (
            rule(
                "/v1/Service",
                &[],
                vec![path("spec.replicas", "three", Int, Modify)],
            ),
            "not an integer",
        ),
        (
            rule(
                "/v1/Service",
                &[],
                vec![path("spec.paused", "yes", Bool, Modify)],
            ),
            "not true or false",
        ),
        (
            rule(
                "/v1/Service",
                &[],
                vec![path("metadata.labels", "novalue", Keypair, Add)],
            ),
            "not key:value",
        ),
        (
            rule(
                "/v1/Service",
                &[],
                vec![path("metadata.namespace", "other", String, Modify)],
            ),
            "namespaceMapping",
        ),
        (
            rule(
                "/v1/Service",
                &[],
                vec![path("kind", "Pod", String, Modify)],
            ),
            "not transformed",
        ),
        (
            rule(
                "/v1/Service",
                &[],
                vec![ResourcePath {
                    prefix: Some("a".into()),
                    ..path("spec.type", "b", String, Add)
                }],
            ),
            "prefix goes with operation modify",
        ),
    ];
    for (r, want) in cases {
        let e = transformations::check(std::slice::from_ref(&r)).expect_err(want);
        assert!(e.contains(want), "{r:?}: {e}");
    }
}

/// The whole object path: ferry's rewrites, the rules, parking, then the mapping (a claim
/// lands in the mapped namespace, on the mapped class, bound to its new volume).
#[test]
fn a_claim_lands_mapped_and_transformed() {
    let bound = map(&[("shop/data", "ferry-import-1")]);
    let namespaces = map(&[("shop", "shop-copy")]);
    let classes = map(&[("ferry", "ferry-fast")]);
    let rules = vec![(
        "label".to_string(),
        vec![rule(
            "/v1/PersistentVolumeClaim",
            &[],
            vec![path(
                "metadata.labels",
                "moved:yes",
                ValueType::Keypair,
                Operation::Add,
            )],
        )],
    )];
    let cx = TransformContext {
        start_applications: false,
        bound_volumes: &bound,
        migration: "shop/m1",
        namespace_mapping: &namespaces,
        storage_class_mapping: &classes,
        rules: &rules,
    };
    let pvc = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data", "namespace": "shop"},
        "spec": {"storageClassName": "ferry", "volumeName": "pv-old", "accessModes": ["ReadWriteOnce"]}});
    let (out, changes) = transform_traced(pvc, &cx).expect("transform");
    assert_eq!(out["metadata"]["namespace"], "shop-copy");
    assert_eq!(out["spec"]["storageClassName"], "ferry-fast");
    assert_eq!(out["spec"]["volumeName"], "ferry-import-1");
    assert_eq!(out["metadata"]["labels"]["moved"], "yes");
    assert_eq!(changes.len(), 1);
    // A claim of an unmapped class keeps it.
    let other = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data", "namespace": "shop"},
        "spec": {"storageClassName": "slow", "volumeName": "pv-old"}});
    let (out, _) = transform_traced(other, &cx).expect("transform");
    assert_eq!(out["spec"]["storageClassName"], "slow");
}
