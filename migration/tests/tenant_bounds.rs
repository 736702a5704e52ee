//! What a tenant's objects may reach, written as the attacks a tenant would try. Each request
//! a tenant sends goes to the API stand-in (a real API server cannot run here) as that
//! tenant, who holds only what docs/migration.md tells an admin to grant (`edit` in their
//! own namespace, which `ferry-tenant-edit` aggregates into); the controller acts as its own
//! service account, `ferry-migration`, with the roles of manifests/rbac.yaml. Each test
//! asserts the refusal, its reason, and that nothing was read, written or imported.

mod common;

use common::{FERRY_NS, World};
use ferry_kubefake::{FakeApi, Identity, Method, base64};
use ferry_migration::crd::{
    FieldChange, ItemStatus, Operation, ResourcePath, ResourceTransformation, TransformSpec,
    ValueType,
};
use ferry_migration::resources::transform::{TransformContext, transform_traced};
use ferry_migration::resources::transformations::{self, RuleSet};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The victim's namespace (the World's pairs and transfer folder part are `shop`'s).
const VICTIM: &str = "shop";

/// A world whose source controller is `ferry-migration` with manifests/rbac.yaml, and whose
/// tenant `alice` holds `edit` in `shop`.
fn tenants(w: &mut World) {
    for api in [&w.src, &w.dst] {
        api.install_ferry_rbac(FERRY_NS);
    }
    w.src_ctx.client = w
        .src
        .client_as(&Identity::service_account(FERRY_NS, "ferry-migration"));
    w.src.bind("alice-edit", "edit", &alice(), Some(VICTIM));
}

fn alice() -> Identity {
    Identity::user("alice")
}

/// Creates `obj` on `api` as `who`, as `kubectl create` would; the tenant's rights allow it.
fn create_as(api: &FakeApi, who: &Identity, obj: Value) {
    let (group, version) = match obj["apiVersion"]
        .as_str()
        .unwrap_or_default()
        .split_once('/')
    {
        Some((g, v)) => (format!("apis/{g}"), v.to_string()),
        None => (
            "api".to_string(),
            obj["apiVersion"].as_str().unwrap_or("v1").into(),
        ),
    };
    let plural = format!(
        "{}s",
        obj["kind"]
            .as_str()
            .unwrap_or_default()
            .to_ascii_lowercase()
    );
    let ns = obj["metadata"]["namespace"].as_str().unwrap_or_default();
    let path = format!("/{group}/{version}/namespaces/{ns}/{plural}");
    let (code, body) = api.serve_one_as(
        who,
        &Method::POST,
        &path,
        "",
        "application/json",
        obj.to_string().as_bytes(),
    );
    assert_eq!(code, 201, "{} may create this: {body}", who.user);
}

fn secret(ns: &str, name: &str, pairs: &[(&str, &str)]) -> Value {
    let data: serde_json::Map<String, Value> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), json!(base64(v.as_bytes()))))
        .collect();
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": ns}, "data": data})
}

/// A tenant's pair `name` in `ns` over the folder store at `root`, made by `who`.
fn folder_pair(w: &World, who: &Identity, ns: &str, name: &str, root: &str, extra: Value) {
    create_as(
        &w.src,
        who,
        secret(
            ns,
            &format!("{name}-secret"),
            &[
                ("kubeconfig", "apiVersion: v1\nkind: Config\n"),
                ("backend", "fs"),
                ("root", root),
            ],
        ),
    );
    let mut spec = json!({"secretRef": {"name": format!("{name}-secret")}});
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        s.extend(e.clone());
    }
    create_as(
        &w.src,
        who,
        json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "ClusterPair",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}),
    );
}

fn migration_as(w: &World, who: &Identity, ns: &str, name: &str, spec: Value) {
    create_as(
        &w.src,
        who,
        json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "Migration",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}),
    );
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

fn rule(resource: &str, paths: Vec<ResourcePath>) -> TransformSpec {
    TransformSpec {
        resource: resource.into(),
        selectors: BTreeMap::new(),
        paths,
    }
}

/// Every spelling of a path that reaches an object's identity (its namespace, name,
/// generateName, uid, owners, managed fields, apiVersion or kind, or a map above them) is
/// refused when the rule is checked, naming the rule and the path; and if such a rule ever
/// reached the transform, where every object on its way to a destination passes (a
/// Migration's Application stage, its dry run, an ApplicationClone), the object fails there
/// with the rule named instead of landing elsewhere.
#[test]
fn no_transformation_changes_what_an_object_is_or_where_it_lands() {
    use Operation::*;
    use ValueType::*;
    let cases = [
        // (path, value, type, operation, the field the object would lose)
        (
            "metadata",
            "namespace:kube-system,name:x",
            Keypair,
            Add,
            Some("metadata.name"),
        ),
        (
            "metadata",
            "namespace:kube-system",
            Keypair,
            Modify,
            Some("metadata.name"),
        ),
        (
            "metadata",
            "namespace:any",
            Keypair,
            Delete,
            Some("metadata.namespace"),
        ),
        (
            "['metadata']['namespace']",
            "kube-system",
            String,
            Modify,
            Some("metadata.namespace"),
        ),
        (
            "metadata[\"namespace\"]",
            "kube-system",
            String,
            Modify,
            Some("metadata.namespace"),
        ),
        ("metadata.name", "x", String, Modify, Some("metadata.name")),
        (
            "metadata.generateName",
            "x-",
            String,
            Add,
            Some("metadata.generateName"),
        ),
        ("metadata.uid", "1234", String, Add, Some("metadata.uid")),
        (
            "metadata.ownerReferences",
            "kind:Secret,name:other,uid:1",
            Keypair,
            Add,
            Some("metadata.ownerReferences"),
        ),
        ("metadata.ownerReferences[*].uid", "1", String, Modify, None),
        (
            "metadata.managedFields",
            "a,b",
            Slice,
            Add,
            Some("metadata.managedFields"),
        ),
        ("kind", "Pod", String, Modify, Some("kind")),
        ("apiVersion", "v2", String, Modify, Some("apiVersion")),
        // A list step where a key goes changes nothing on an object, and is refused too.
        ("[*].namespace", "kube-system", String, Modify, None),
        ("[0]", "x", String, Modify, None),
    ];
    let bound = BTreeMap::new();
    let mapping = BTreeMap::from([("shop".to_string(), "shop-dr".to_string())]);
    let none = BTreeMap::new();
    for (p, value, t, op, field) in cases {
        let r = rule("/v1/ConfigMap", vec![path(p, value, t, op)]);
        // The check, as the ResourceTransformation's status and a Migration's validation see it.
        let e = transformations::check(std::slice::from_ref(&r)).expect_err(p);
        assert!(
            e.contains(&format!("path {p:?}")) && e.contains("objects[0] (/v1/ConfigMap)"),
            "{p}: names the rule and the path: {e}"
        );
        assert!(e.contains("are not transformed"), "{p}: says why: {e}");
        // The transform, given the rule without the check.
        let rules: RuleSet = vec![("to-system".to_string(), vec![r])];
        let cx = TransformContext {
            start_applications: false,
            bound_volumes: &bound,
            migration: "shop/m1",
            namespace_mapping: &mapping,
            storage_class_mapping: &none,
            rules: &rules,
        };
        let obj = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "settings", "namespace": "shop", "uid": "u-1",
                         "ownerReferences": [{"kind": "Thing", "name": "t", "uid": "u-0"}]},
            "data": {"mode": "prod"}});
        match (transform_traced(obj, &cx), field) {
            (Err(why), Some(f)) => {
                assert!(
                    why.contains("ResourceTransformation to-system")
                        && why.contains(&format!("path {p:?}"))
                        && why.contains(&format!("would change {f} of ConfigMap shop/settings")),
                    "{p}: names the rule, the path and the field: {why}"
                );
            }
            (Ok((out, _)), None) => {
                assert_eq!(out["metadata"]["namespace"], "shop-dr", "{p}: {out}");
                assert_eq!(out["metadata"]["name"], "settings", "{p}: {out}");
                assert_eq!(out["kind"], "ConfigMap", "{p}: {out}");
            }
            (got, _) => panic!("{p}: {got:?}"),
        }
    }
    // What a transformation may do is unchanged: labels, annotations, the spec.
    let ok = rule(
        "/v1/ConfigMap",
        vec![
            path("metadata.labels", "site:dr", Keypair, Add),
            path("metadata.annotations['a.b/c']", "x", String, Add),
            path("data.mode", "dr", String, Modify),
        ],
    );
    transformations::check(std::slice::from_ref(&ok)).expect("labels and data");
    let rules: RuleSet = vec![("fine".to_string(), vec![ok])];
    let cx = TransformContext {
        start_applications: false,
        bound_volumes: &bound,
        migration: "shop/m1",
        namespace_mapping: &mapping,
        storage_class_mapping: &none,
        rules: &rules,
    };
    let (out, changes) = transform_traced(
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "settings", "namespace": "shop"}, "data": {"mode": "prod"}}),
        &cx,
    )
    .expect("transform");
    assert_eq!(out["metadata"]["namespace"], "shop-dr");
    assert_eq!(out["data"]["mode"], "dr");
    assert_eq!(changes.len(), 3, "{changes:?}");
    let _: &[FieldChange] = &changes;
}

/// The attack of a tenant with `edit` in `shop`: a ResourceTransformation whose keypair on
/// `metadata` moves every ConfigMap into `kube-system` under another name, named by a
/// Migration and by a dry run. The rule is Failed in its status with the rule and path; both
/// Migrations fail at validation naming it; nothing is snapshotted, exported, imported or
/// applied anywhere.
#[tokio::test]
async fn a_transformation_that_moves_objects_is_refused_before_anything_moves() {
    let mut w = World::new().await;
    tenants(&mut w);
    let vol = w.shop(VICTIM, 2).await;
    let root = w.transfer_root();
    folder_pair(&w, &alice(), VICTIM, "remote", &root, json!({}));
    create_as(
        &w.src,
        &alice(),
        json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "ResourceTransformation",
            "metadata": {"name": "to-system", "namespace": VICTIM},
            "spec": {"objects": [{"resource": "/v1/ConfigMap", "paths": [
                {"path": "metadata", "type": "keypair", "operation": "add",
                 "value": "namespace:kube-system,name:x"}]}]}}),
    );
    let rt: ResourceTransformation = serde_json::from_value(
        w.src
            .get(
                "ferry.dev/resourcetransformations",
                Some(VICTIM),
                "to-system",
            )
            .expect("rt"),
    )
    .expect("parse");
    ferry_migration::source::transformation::reconcile(&w.src_ctx, &rt)
        .await
        .expect("reconcile");
    let status = w
        .src
        .get(
            "ferry.dev/resourcetransformations",
            Some(VICTIM),
            "to-system",
        )
        .expect("rt")["status"]
        .clone();
    assert_eq!(status["status"], "Failed", "{status}");
    let why = status["reason"].as_str().unwrap_or_default();
    assert!(
        why.contains("objects[0] (/v1/ConfigMap)")
            && why.contains("path \"metadata\"")
            && why.contains("are not transformed"),
        "{why}"
    );

    for (name, dry) in [("m1", false), ("plan", true)] {
        migration_as(
            &w,
            &alice(),
            VICTIM,
            name,
            json!({"clusterPair": "remote", "namespaces": [VICTIM],
                   "transformSpecs": ["to-system"], "dryRun": dry}),
        );
        let st = w.drive(VICTIM, name).await;
        assert_eq!(st.status, ItemStatus::Failed, "{name}: {st:?}");
        let reason = st.reason.unwrap_or_default();
        assert!(
            reason.contains("ResourceTransformation shop/to-system")
                && reason.contains("path \"metadata\""),
            "{name}: {reason}"
        );
    }
    assert!(
        w.src
            .all("snapshot.storage.k8s.io/volumesnapshots")
            .is_empty(),
        "nothing snapshotted"
    );
    assert!(
        w.dst.all("ferry.dev/volumeimports").is_empty()
            && w.dst.all("/persistentvolumes").is_empty(),
        "nothing imported"
    );
    for kind in ["/configmaps", "/namespaces", "/secrets", "apps/deployments"] {
        let written: Vec<Value> = w
            .dst
            .all(kind)
            .into_iter()
            .filter(|o| {
                o["metadata"]["namespace"] == "kube-system"
                    || o["metadata"]["namespace"] == VICTIM
                    || o["metadata"]["name"] == VICTIM
            })
            .collect();
        assert!(written.is_empty(), "nothing applied: {written:?}");
    }
    let writes: Vec<String> = w
        .dst
        .log()
        .into_iter()
        .filter(|l| l.method != "GET")
        .map(|l| format!("{} {}", l.method, l.path))
        .collect();
    assert!(writes.is_empty(), "no write on the destination: {writes:?}");
    let t =
        ferry_transfer::TransferStore::open_existing(&ferry_store::StoreConfig::fs(&root), None)
            .await
            .expect("transfer store");
    if let Some(t) = t {
        assert!(
            t.commits_of(&vol).await.expect("commits").is_empty(),
            "nothing exported"
        );
    }
}
