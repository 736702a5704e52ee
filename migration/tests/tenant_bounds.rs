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
    FieldChange, ImportPhase, ItemStatus, Operation, PairState, ResourcePath,
    ResourceTransformation, TransformSpec, ValueType, VolumeImport,
};
use ferry_migration::resources::transform::{TransformContext, transform_traced};
use ferry_migration::resources::transformations::{self, RuleSet};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;

/// The victim's namespace (the World's pairs and transfer folder part are `shop`'s).
const VICTIM: &str = "shop";
/// The attacker's namespace.
const EVIL: &str = "evil";

/// A world whose source controller is `ferry-migration` with manifests/rbac.yaml, and whose
/// tenants `alice` (in `shop`) and `mallory` (in `evil`) hold `edit` in their namespace.
fn tenants(w: &mut World) {
    for api in [&w.src, &w.dst] {
        api.install_ferry_rbac(FERRY_NS);
    }
    w.src_ctx.client = w
        .src
        .client_as(&Identity::service_account(FERRY_NS, "ferry-migration"));
    w.src.bind("alice-edit", "edit", &alice(), Some(VICTIM));
    w.src
        .seed(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": EVIL}}));
    w.src.bind("mallory-edit", "edit", &mallory(), Some(EVIL));
}

fn alice() -> Identity {
    Identity::user("alice")
}

fn mallory() -> Identity {
    Identity::user("mallory")
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
    let kc = w.pair_account(ns, name);
    create_as(
        &w.src,
        who,
        secret(
            ns,
            &format!("{name}-secret"),
            &[("kubeconfig", &kc), ("backend", "fs"), ("root", root)],
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

/// `obj` through the transform every object takes to a destination, with ResourceTransformation
/// `name` holding rule `r` (unchecked) and `shop` mapped to `shop-dr`.
fn transformed(
    name: &str,
    r: TransformSpec,
    obj: Value,
) -> Result<(Value, Vec<FieldChange>), String> {
    let bound = BTreeMap::new();
    let mapping = BTreeMap::from([("shop".to_string(), "shop-dr".to_string())]);
    let none = BTreeMap::new();
    let rules: RuleSet = vec![(name.to_string(), vec![r])];
    let cx = TransformContext {
        start_applications: false,
        bound_volumes: &bound,
        migration: "shop/m1",
        namespace_mapping: &mapping,
        storage_class_mapping: &none,
        rules: &rules,
    };
    transform_traced(obj, &cx)
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
        let obj = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "settings", "namespace": "shop", "uid": "u-1",
                         "ownerReferences": [{"kind": "Thing", "name": "t", "uid": "u-0"}]},
            "data": {"mode": "prod"}});
        match (transformed("to-system", r, obj), field) {
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
    let (out, changes) = transformed(
        "fine",
        ok,
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "settings", "namespace": "shop"}, "data": {"mode": "prod"}}),
    )
    .expect("transform");
    assert_eq!(out["metadata"]["namespace"], "shop-dr");
    assert_eq!(out["data"]["mode"], "dr");
    assert_eq!(changes.len(), 3, "{changes:?}");
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
    ferry_migration::runtime::pass::<ferry_migration::source::transformation::Transformations>(
        &w.src_ctx, &rt,
    )
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
                // (the victim's own namespace there is its admin's, made before)
                o["metadata"]["namespace"] == "kube-system"
                    || o["metadata"]["namespace"] == VICTIM
                    || (kind != "/namespaces" && o["metadata"]["name"] == VICTIM)
                    || (kind == "/namespaces" && o["metadata"]["name"] == "kube-system")
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

/// Every file under `dir` with its bytes, to compare before and after.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.display().to_string(),
                    std::fs::read(&p).unwrap_or_default(),
                );
            }
        }
    }
    out
}

/// Tenant `evil` names `shop`'s folder store (inside the folder the operator allows) in its
/// own pair, with a retention that keeps one commit and no grace, and migrates through it:
/// the pair is not Ready and the migration fails at validation, naming `<allowed>/evil/`;
/// `shop`'s store keeps every file byte for byte (nothing read into `evil`'s migration,
/// nothing written, no commit collected). On the destination, `evil`'s pair account names
/// that store from an import in `evil`: refused the same way, nothing imported. `evil`'s
/// own part of the folder works.
#[tokio::test]
async fn a_tenant_cannot_reach_another_namespaces_folder_store() {
    let mut w = World::new().await;
    tenants(&mut w);
    // `shop` migrates twice through its own part: two commits of its volume.
    let victim_root = w.transfer_root();
    folder_pair(&w, &alice(), VICTIM, "remote", &victim_root, json!({}));
    let victim_vol = w.shop(VICTIM, 8).await;
    for round in 0..2u64 {
        if round > 0 {
            common::fill(&w.src_store, &victim_vol, 8, 99).await;
        }
        let name = format!("shop-{round}");
        migration_as(
            &w,
            &alice(),
            VICTIM,
            &name,
            json!({"clusterPair": "remote", "namespaces": [VICTIM]}),
        );
        let st = w.drive(VICTIM, &name).await;
        // PartialSuccess: the claim of another driver is skipped.
        assert_eq!(st.status, ItemStatus::PartialSuccess, "{st:?}");
        assert!(
            st.volumes
                .iter()
                .any(|v| v.persistent_volume_claim == "data" && v.status == ItemStatus::Successful),
            "{st:?}"
        );
    }
    let store = ferry_store::StoreConfig::fs(&victim_root);
    let victim_store = ferry_transfer::TransferStore::open(&store, None)
        .await
        .expect("shop's store");
    let victim_commits = victim_store.commits_of(&victim_vol).await.expect("commits");
    assert_eq!(victim_commits.len(), 2, "{victim_commits:?}");
    let before = tree(Path::new(&victim_root));

    // `evil` names it, with a retention that would collect all but one commit at once.
    let evil_vol = w.ferry_claim(EVIL, "loot", 4, 5).await;
    folder_pair(
        &w,
        &mallory(),
        EVIL,
        "steal",
        &victim_root,
        json!({"transferRetention": {"keepCommits": 1, "graceSeconds": 0}}),
    );
    let pair = serde_json::from_value(
        w.src
            .get("ferry.dev/clusterpairs", Some(EVIL), "steal")
            .expect("pair"),
    )
    .expect("parse");
    let pst = ferry_migration::source::cluster_pair::check(&w.src_ctx, &pair).await;
    assert_eq!(pst.storage_status, PairState::Error, "{pst:?}");
    let allowed_part = format!("{}/", w.transfer_dir.path().join(EVIL).display());
    let why = pst.storage_reason.unwrap_or_default();
    assert!(
        why.contains("<allowed>/evil/") && why.contains(&allowed_part),
        "names the part evil may use: {why}"
    );
    migration_as(
        &w,
        &mallory(),
        EVIL,
        "grab",
        json!({"clusterPair": "steal", "namespaces": [EVIL]}),
    );
    let st = w.drive(EVIL, "grab").await;
    assert_eq!(st.status, ItemStatus::Failed, "{st:?}");
    assert!(
        st.reason.unwrap_or_default().contains("<allowed>/evil/"),
        "the migration says why"
    );
    assert_eq!(
        tree(Path::new(&victim_root)),
        before,
        "shop's store is untouched"
    );
    assert_eq!(
        victim_store
            .commits_of(&victim_vol)
            .await
            .expect("commits")
            .len(),
        2,
        "no commit of shop's was collected"
    );
    assert!(
        victim_store
            .commits_of(&evil_vol)
            .await
            .expect("commits")
            .is_empty(),
        "nothing of evil's was written there"
    );

    // On the destination: evil's pair account, bound as the docs say in evil, makes an
    // import there of shop's newest commit from shop's folder.
    let pair_account = Identity::service_account(EVIL, "ferry-pair");
    w.dst
        .seed(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": EVIL}}));
    w.dst.bind(
        "evil-pair",
        "ferry-migration-destination",
        &pair_account,
        Some(EVIL),
    );
    w.dst.aggregate_now();
    create_as(
        &w.dst,
        &pair_account,
        secret(EVIL, "t", &[("backend", "fs"), ("root", &victim_root)]),
    );
    let newest = &victim_commits[victim_commits.len() - 1];
    create_as(
        &w.dst,
        &pair_account,
        json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "VolumeImport",
            "metadata": {"name": "grab", "namespace": EVIL},
            "spec": {"source": {"volumeId": victim_vol, "snapshotId": newest.snapshot_id},
                     "transferSecret": "t",
                     "persistentVolume": {"claimName": "loot", "capacity": "1Mi"}}}),
    );
    let vi: VolumeImport = serde_json::from_value(
        w.dst
            .get("ferry.dev/volumeimports", Some(EVIL), "grab")
            .expect("vi"),
    )
    .expect("parse");
    ferry_migration::runtime::pass::<ferry_migration::destination::volume_import::Imports>(
        &w.dst_ctx, &vi,
    )
    .await
    .expect("reconcile");
    let vi: VolumeImport = serde_json::from_value(
        w.dst
            .get("ferry.dev/volumeimports", Some(EVIL), "grab")
            .expect("vi"),
    )
    .expect("parse");
    let st = vi.status.unwrap_or_default();
    assert_eq!(st.phase, ImportPhase::Failed, "{st:?}");
    assert!(
        st.reason.unwrap_or_default().contains("<allowed>/evil/"),
        "the import says why"
    );
    assert!(
        !w.dst
            .all("/persistentvolumes")
            .iter()
            .any(|pv| pv["spec"]["claimRef"]["namespace"] == EVIL),
        "no PV for a claim of {EVIL}"
    );
    assert!(
        w.dst_store
            .volume_by_name(&ferry_migration::names::landing(EVIL, "loot"))
            .await
            .expect("lookup")
            .is_none(),
        "nothing imported into the destination's chunk store"
    );
    assert_eq!(tree(Path::new(&victim_root)), before, "still untouched");

    // evil's own part works.
    let own = w
        .transfer_dir
        .path()
        .join(EVIL)
        .join("store")
        .display()
        .to_string();
    folder_pair(&w, &mallory(), EVIL, "own", &own, json!({}));
    migration_as(
        &w,
        &mallory(),
        EVIL,
        "mine",
        // The RoleBinding that gives mallory `edit` here grants more than the pair's account
        // holds there, so the destination would refuse it (escalation): left out.
        json!({"clusterPair": "own", "namespaces": [EVIL], "excludeResourceTypes": ["RoleBinding"]}),
    );
    let st = w.drive(EVIL, "mine").await;
    assert_eq!(st.status, ItemStatus::Successful, "{st:?}");
    let mine = ferry_transfer::TransferStore::open(&ferry_store::StoreConfig::fs(&own), None)
        .await
        .expect("evil's store");
    assert_eq!(mine.commits_of(&evil_vol).await.expect("commits").len(), 1);
    assert_eq!(tree(Path::new(&victim_root)), before, "still untouched");
}

/// `tenants`, with the source served over HTTP (exec needs a connection upgrade) and the
/// controller reaching it with its own service account's token, and a running pod `db-0`
/// in `shop` whose commands `on_exec` answers.
async fn served(w: &mut World) {
    tenants(w);
    let addr = w.src.serve().await.expect("serve");
    let controller = Identity::service_account(FERRY_NS, "ferry-migration");
    let kc = kube::config::Kubeconfig::from_yaml(&w.src.kubeconfig_as(addr, &controller))
        .expect("kubeconfig");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("config");
    w.src_ctx.client = kube::Client::try_from(cfg).expect("client");
    w.src.seed(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "db-0", "namespace": VICTIM, "labels": {"app": "db"}},
        "spec": {"containers": [{"name": "db", "image": "postgres"}]},
        "status": {"phase": "Running"}}));
}

/// Alice's Migration of `shop` (its pair, its volume) with pre rule `rule`, driven to its
/// end, which must be Failed; its reason.
async fn failed_with_pre_rule(w: &World, rule: &str) -> String {
    w.pair(VICTIM, "remote", true);
    w.shop(VICTIM, 2).await;
    migration_as(
        w,
        &alice(),
        VICTIM,
        "m1",
        json!({"clusterPair": "remote", "namespaces": [VICTIM], "preExecRule": rule}),
    );
    let st = w.drive(VICTIM, "m1").await;
    assert_eq!(st.status, ItemStatus::Failed, "{st:?}");
    st.reason.unwrap_or_default()
}

fn exec_rule(name: &str, action: Value) -> Value {
    json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "Rule",
        "metadata": {"name": name, "namespace": VICTIM},
        "spec": {"rules": [{"podSelector": {"app": "db"}, "actions": [action]}]}})
}

/// A tenant's pre rule runs `yes`: 8 MiB on stdout and on stderr, streamed, then exit 1.
/// The controller reads it all (the command is not blocked) but keeps only the last 2 KiB
/// of each stream as it arrives, never the whole: what it held of a stream at once stays
/// within 2 KiB, and the reason shows each stream's end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exec_rule_that_floods_its_output_is_held_to_its_last_bytes() {
    use ferry_kubefake::exec::{ExecCall, ExecReply, ExecStream};
    let mut w = World::new().await;
    served(&mut w).await;
    // 8 KiB of numbered lines, so the kept end is known.
    let chunk: String = (0..819).map(|i| format!("yes {i:05}\n")).collect();
    const TIMES: usize = 1024;
    let streamed = chunk.clone();
    w.src.on_exec(move |_c: &ExecCall| ExecReply {
        stream: Some(ExecStream {
            chunk: streamed.clone(),
            times: TIMES,
            every: std::time::Duration::ZERO,
            stderr: true,
        }),
        exit_code: 1,
        ..Default::default()
    });
    create_as(
        &w.src,
        &alice(),
        exec_rule("flood", json!({"type": "command", "value": "yes"})),
    );
    let reason = failed_with_pre_rule(&w, "flood").await;
    let execs = w.src.execs();
    assert_eq!(execs.len(), 1, "{execs:?}");
    let sent = execs[0].streamed;
    assert_eq!(
        sent,
        2 * (TIMES * chunk.len()) as u64,
        "the command printed all it had (16 MiB over both streams)"
    );
    let held = ferry_migration::source::exec_rules::output_held_peak();
    assert!(
        held <= 2048,
        "the controller held {held} bytes of a stream at once; at most its last 2 KiB"
    );
    let tail = chunk[chunk.len() - 2048..].trim();
    assert!(
        reason.contains("exit code 1")
            && reason
                .matches(&format!("{tail:?}").trim_matches('"').to_string())
                .count()
                == 2,
        "each stream's last 2 KiB in the reason: {}",
        &reason[..reason.len().min(600)]
    );
    assert!(
        reason.len() < 3 * 2048,
        "the reason is bounded: {}",
        reason.len()
    );
    assert!(
        w.src
            .all("snapshot.storage.k8s.io/volumesnapshots")
            .is_empty()
    );
}

/// A tenant's Rule asking for an hour: the API server refuses it at create (the CRD's rule,
/// the field named); where the CRD was installed without it, the Migration naming the Rule
/// fails at validation, the field named, and no command runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exec_rule_timeout_above_the_cap_is_refused() {
    let mut w = World::new().await;
    served(&mut w).await;
    let long = exec_rule(
        "slow",
        json!({"type": "command", "value": "sleep 3600", "timeoutSeconds": 3600}),
    );
    let (code, body) = w.src.serve_one_as(
        &alice(),
        &Method::POST,
        &format!("/apis/ferry.dev/v1alpha1/namespaces/{VICTIM}/rules"),
        "",
        "application/json",
        long.to_string().as_bytes(),
    );
    assert_eq!(code, 422, "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("timeoutSeconds") && message.contains("600"),
        "{message}"
    );
    // A Rule made before the CRD carried the rule (seeded as it would be stored).
    w.src.seed(long);
    let reason = failed_with_pre_rule(&w, "slow").await;
    assert!(
        reason.contains("spec.rules[0].actions[0].timeoutSeconds") && reason.contains("600"),
        "{reason}"
    );
    assert!(w.src.execs().is_empty(), "no command ran");
    assert!(
        w.src
            .all("snapshot.storage.k8s.io/volumesnapshots")
            .is_empty()
    );
}
