//! Flows that shape where and how a namespace lands: a mapped namespace and StorageClass
//! with the data verified, a class the destination lacks, a mapped and an unmapped run of
//! one volume side by side, ResourceTransformations, and dry runs that write nothing.
//! Two in-memory API servers stand in for real ones (which cannot run here); the chunk
//! stores and the transfer store are real.

mod common;

use common::{CHUNK, World, digest};
use ferry_migration::crd::{ItemStatus, PlannedAction, Stage};
use serde_json::json;
use std::collections::BTreeMap;

const NS: &str = "shop";

fn fast_class(w: &World) {
    w.dst.seed(
        json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": "ferry-fast"}, "provisioner": "ferry.csi.dev",
        "parameters": {"compression": "none", "chunkSize": "1Mi"},
        "reclaimPolicy": "Retain", "mountOptions": ["noatime"]}),
    );
}

/// A migration that maps namespaces lands its volumes in other namespaces than its own, and
/// the destination opens a folder transfer store for the namespace it lands in: these run
/// over moto's S3 server on loopback.
async fn mapped_pair(w: &World) -> Option<ferry_testkit::TestServer> {
    let s3 = ferry_testkit::TestServer::start(ferry_testkit::Kind::S3).await?;
    w.pair_over(NS, "remote", &s3.bucket("moves").await);
    Some(s3)
}

#[tokio::test]
async fn a_mapped_namespace_and_class_land_with_their_data() {
    let w = World::new().await;
    let Some(_s3) = mapped_pair(&w).await else {
        return;
    };
    w.let_pair_land(NS, "remote", "shop-copy");
    let vol = w.shop(NS, 12).await;
    fast_class(&w);
    w.src.seed(
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "web", "namespace": NS},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "web"},
        "subjects": [{"kind": "ServiceAccount", "name": "web", "namespace": NS}]}),
    );
    w.migration(
        NS,
        "m1",
        json!({"clusterPair": "remote", "namespaces": [NS],
               "namespaceMapping": {NS: "shop-copy"},
               "storageClassMapping": {"ferry": "ferry-fast"}}),
    );
    let st = w.drive(NS, "m1").await;
    assert_eq!(st.stage, Some(Stage::Final));
    assert_ne!(st.status, ItemStatus::Failed, "{st:?}");
    let data = st
        .volumes
        .iter()
        .find(|v| v.persistent_volume_claim == "data")
        .expect("data");
    assert_eq!(data.status, ItemStatus::Successful, "{data:?}");

    // Everything is in shop-copy on the destination; nothing in shop.
    assert!(w.dst.get("/namespaces", None, "shop-copy").is_some());
    for (c, name) in [
        ("/configmaps", "settings"),
        ("/services", "web"),
        ("apps/deployments", "web"),
    ] {
        assert!(
            w.dst.get(c, Some("shop-copy"), name).is_some(),
            "{c} {name}"
        );
        assert!(
            w.dst.get(c, Some(NS), name).is_none(),
            "{c} {name} unmapped"
        );
    }
    let rb = w
        .dst
        .get(
            "rbac.authorization.k8s.io/rolebindings",
            Some("shop-copy"),
            "web",
        )
        .expect("rolebinding");
    assert_eq!(rb["subjects"][0]["namespace"], "shop-copy");

    // The claim is bound to its imported PV, whose claimRef and class follow the mappings,
    // whose reclaim policy and mount options are the destination class's, and whose chunk
    // size is the source volume's.
    let pvc = w
        .dst
        .get("/persistentvolumeclaims", Some("shop-copy"), "data")
        .expect("pvc");
    assert_eq!(pvc["spec"]["storageClassName"], "ferry-fast");
    let pv_name = data.destination_volume.clone().expect("pv");
    assert_eq!(pvc["spec"]["volumeName"], pv_name.as_str());
    let pv = w.dst.get("/persistentvolumes", None, &pv_name).expect("pv");
    assert_eq!(pv["spec"]["claimRef"]["namespace"], "shop-copy");
    assert_eq!(pv["spec"]["storageClassName"], "ferry-fast");
    assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Retain");
    assert_eq!(pv["spec"]["mountOptions"], json!(["noatime"]));
    assert_eq!(
        pv["spec"]["csi"]["volumeAttributes"]["ferry.dev/chunkSize"],
        CHUNK.to_string()
    );
    let dst_id = w.destination_volume_id(data);
    assert_eq!(
        digest(&w.dst_store, &dst_id).await,
        digest(&w.src_store, &vol).await
    );
    let info = w.dst_store.get_volume(&dst_id).await.expect("volume");
    assert_eq!(info.record.spec.options.chunk_size as u64, CHUNK);
    assert_eq!(
        info.record.spec.options.compression,
        ferry_store::Codec::None,
        "codec from the destination class"
    );
}

#[tokio::test]
async fn a_mapped_and_an_unmapped_run_of_one_volume_land_apart() {
    let w = World::new().await;
    let Some(_s3) = mapped_pair(&w).await else {
        return;
    };
    w.let_pair_land(NS, "remote", "staging");
    let vol = w.shop(NS, 8).await;
    w.migration(
        NS,
        "plain",
        json!({"clusterPair": "remote", "namespaces": [NS]}),
    );
    let a = w.drive(NS, "plain").await;
    w.migration(
        NS,
        "copy",
        json!({"clusterPair": "remote", "namespaces": [NS], "namespaceMapping": {NS: "staging"}}),
    );
    let b = w.drive(NS, "copy").await;
    let pa = a
        .volumes
        .iter()
        .find(|v| v.persistent_volume_claim == "data");
    let pb = b
        .volumes
        .iter()
        .find(|v| v.persistent_volume_claim == "data");
    let (pa, pb) = (pa.expect("a"), pb.expect("b"));
    assert_eq!(pa.status, ItemStatus::Successful, "{pa:?}");
    assert_eq!(pb.status, ItemStatus::Successful, "{pb:?}");
    assert_ne!(pa.volume_import, pb.volume_import, "one import each");
    assert_ne!(pa.destination_volume, pb.destination_volume, "one PV each");
    let (ia, ib) = (w.destination_volume_id(pa), w.destination_volume_id(pb));
    assert_ne!(ia, ib, "one destination volume each");
    let src = digest(&w.src_store, &vol).await;
    assert_eq!(digest(&w.dst_store, &ia).await, src);
    assert_eq!(digest(&w.dst_store, &ib).await, src);
    // Each claim is bound to its own PV, in its own namespace.
    for (ns, v) in [(NS, pa), ("staging", pb)] {
        let pvc = w
            .dst
            .get("/persistentvolumeclaims", Some(ns), "data")
            .expect("pvc");
        assert_eq!(
            pvc["spec"]["volumeName"],
            v.destination_volume.clone().unwrap_or_default().as_str()
        );
        let pv = w
            .dst
            .get(
                "/persistentvolumes",
                None,
                v.destination_volume.as_deref().unwrap_or(""),
            )
            .expect("pv");
        assert_eq!(pv["spec"]["claimRef"]["namespace"], ns);
    }
}

#[tokio::test]
async fn a_class_the_destination_lacks_fails_validation_naming_it() {
    let w = World::new().await;
    w.pair(NS, "remote", true);
    w.shop(NS, 4).await;
    // Mapped to a class that is not there.
    w.migration(
        NS,
        "m1",
        json!({"clusterPair": "remote", "namespaces": [NS], "storageClassMapping": {"ferry": "gold"}}),
    );
    let st = w.drive(NS, "m1").await;
    assert_eq!(st.status, ItemStatus::Failed);
    let why = st.reason.clone().unwrap_or_default();
    assert!(
        why.contains("StorageClass gold") && why.contains("storageClassMapping"),
        "{why}"
    );
    // Not mapped, and no class of that name on the destination.
    assert!(w.dst.remove("storage.k8s.io/storageclasses", None, "ferry"));
    w.migration(
        NS,
        "m2",
        json!({"clusterPair": "remote", "namespaces": [NS]}),
    );
    let st = w.drive(NS, "m2").await;
    assert_eq!(st.status, ItemStatus::Failed);
    let why = st.reason.clone().unwrap_or_default();
    assert!(
        why.contains("StorageClass ferry") && why.contains("no storageClassMapping for ferry"),
        "{why}"
    );
    // Mapped to another driver's class.
    w.dst.seed(
        json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": "gp3"}, "provisioner": "ebs.csi.aws.com"}),
    );
    w.migration(
        NS,
        "m3",
        json!({"clusterPair": "remote", "namespaces": [NS], "storageClassMapping": {"ferry": "gp3"}}),
    );
    let st = w.drive(NS, "m3").await;
    assert_eq!(st.status, ItemStatus::Failed);
    let why = st.reason.clone().unwrap_or_default();
    assert!(why.contains("ebs.csi.aws.com"), "{why}");
    // Nothing was snapshotted or imported for any of them.
    assert!(
        w.src
            .all("snapshot.storage.k8s.io/volumesnapshots")
            .is_empty()
    );
    assert!(w.dst.all("ferry.dev/volumeimports").is_empty());
}

#[tokio::test]
async fn transformations_rewrite_what_lands_and_bad_ones_fail_before_anything_moves() {
    let w = World::new().await;
    w.pair(NS, "remote", true);
    w.shop(NS, 4).await;
    w.src.seed(json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "ResourceTransformation",
        "metadata": {"name": "to-dr", "namespace": NS},
        "spec": {"objects": [
            {"resource": "/v1/Service", "selectors": {}, "paths": [
                {"path": "spec.type", "value": "LoadBalancer", "type": "string", "operation": "modify"}]},
            {"resource": "apps/v1/Deployment", "paths": [
                {"path": "spec.template.spec.containers[*].image", "prefix": "nginx",
                 "value": "mirror.example.com/nginx", "type": "string", "operation": "modify"},
                {"path": "metadata.labels", "value": "site:dr", "type": "keypair", "operation": "add"}]}]}}));
    w.migration(
        NS,
        "m1",
        json!({"clusterPair": "remote", "namespaces": [NS], "transformSpecs": ["to-dr"]}),
    );
    let st = w.drive(NS, "m1").await;
    assert_ne!(st.status, ItemStatus::Failed, "{st:?}");
    let web = w.dst.get("/services", Some(NS), "web").expect("service");
    assert_eq!(web["spec"]["type"], "LoadBalancer");
    let db = w.dst.get("/services", Some(NS), "db").expect("service");
    assert_eq!(db["spec"]["clusterIP"], "None", "headless kept");
    let dep = w
        .dst
        .get("apps/deployments", Some(NS), "web")
        .expect("deployment");
    assert_eq!(
        dep["spec"]["template"]["spec"]["containers"][0]["image"],
        "mirror.example.com/nginx"
    );
    assert_eq!(dep["metadata"]["labels"]["site"], "dr");
    assert_eq!(dep["spec"]["replicas"], 0, "still parked");

    // A rule that does not parse, and a name that is not there: failed at validation.
    w.src.seed(
        json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "ResourceTransformation",
        "metadata": {"name": "broken", "namespace": NS},
        "spec": {"objects": [{"resource": "/v1/Service", "paths": [
            {"path": "spec.ports[x]", "value": "1", "type": "int", "operation": "modify"}]}]}}),
    );
    for (name, rt, want) in [
        ("m2", "broken", "ResourceTransformation shop/broken"),
        ("m3", "absent", "ResourceTransformation absent"),
    ] {
        w.migration(
            NS,
            name,
            json!({"clusterPair": "remote", "namespaces": [NS], "transformSpecs": [rt]}),
        );
        let st = w.drive(NS, name).await;
        assert_eq!(st.status, ItemStatus::Failed);
        let why = st.reason.clone().unwrap_or_default();
        assert!(why.contains(want), "{why}");
        assert!(st.volumes.iter().all(|v| v.snapshot.is_none()), "{st:?}");
    }
    // The controller's verdict in the rules' own status.
    for (name, want) in [("to-dr", "Ready"), ("broken", "Failed")] {
        let rt: ferry_migration::crd::ResourceTransformation = serde_json::from_value(
            w.src
                .get("ferry.dev/resourcetransformations", Some(NS), name)
                .expect("rt"),
        )
        .expect("parse");
        ferry_migration::runtime::pass::<ferry_migration::source::transformation::Transformations>(
            &w.src_ctx, &rt,
        )
        .await
        .expect("reconcile");
        let after = w
            .src
            .get("ferry.dev/resourcetransformations", Some(NS), name)
            .expect("rt");
        assert_eq!(after["status"]["status"], want, "{after}");
    }
}

/// Every file under `dir`, with its size and modification time.
fn tree(dir: &std::path::Path) -> BTreeMap<String, (u64, std::time::SystemTime)> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                todo.push(p);
            } else {
                out.insert(
                    p.to_string_lossy().to_string(),
                    (m.len(), m.modified().unwrap_or(std::time::UNIX_EPOCH)),
                );
            }
        }
    }
    out
}

#[tokio::test]
async fn a_dry_run_writes_nothing_and_estimates_what_the_run_then_moves() {
    let w = World::new().await;
    w.pair(NS, "remote", true);
    let vol = w.shop(NS, 32).await;
    fast_class(&w);
    w.migration(
        NS,
        "first",
        json!({"clusterPair": "remote", "namespaces": [NS]}),
    );
    let first = w.drive(NS, "first").await;
    assert_ne!(first.status, ItemStatus::Failed, "{first:?}");
    // Two chunks change on the source after the first run.
    let h = w.src_store.open_volume(&vol).await.expect("open");
    h.write_at(0, &vec![0xa5; CHUNK as usize]).await.expect("w");
    h.write_at(5 * CHUNK, &vec![0x5a; CHUNK as usize])
        .await
        .expect("w");
    h.flush().await.expect("flush");
    // An object that no migration brought is on the destination already.
    w.dst.seed(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "local-only", "namespace": "shop-copy"}, "data": {}}));
    w.src.seed(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "local-only", "namespace": NS}, "data": {"x": "1"}}));
    w.src.seed(json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "ResourceTransformation",
        "metadata": {"name": "lb", "namespace": NS},
        "spec": {"objects": [{"resource": "/v1/Service", "paths": [
            {"path": "spec.type", "value": "LoadBalancer", "type": "string", "operation": "modify"}]}]}}));

    let src_before = w.src.log().len();
    let dst_before = w.dst.log().len();
    let transfer_before = tree(w.transfer_dir.path());
    let store_before = w
        .src_store
        .list_volumes(None, 1000)
        .await
        .expect("volumes")
        .0
        .len();
    w.migration(
        NS,
        "plan",
        json!({"clusterPair": "remote", "namespaces": [NS], "dryRun": true,
               "transformSpecs": ["lb"]}),
    );
    let seeded = w.src.log().len();
    let st = w.drive(NS, "plan").await;

    // Nothing written anywhere but the Migration's own status.
    let src_writes: Vec<String> = w.src.log()[seeded.max(src_before)..]
        .iter()
        .filter(|l| l.method != "GET")
        .map(|l| format!("{} {}", l.method, l.path))
        .collect();
    for write in &src_writes {
        assert!(
            write.starts_with("PATCH ") && write.ends_with("/migrations/plan/status"),
            "a dry run wrote to the source: {write}"
        );
    }
    assert!(!src_writes.is_empty(), "the plan is written to the status");
    // A dry run asks the destination what the pair may do (access reviews, which store
    // nothing) and writes nothing there.
    let dst_writes: Vec<String> = w.dst.log()[dst_before..]
        .iter()
        .filter(|l| l.method != "GET" && !l.path.ends_with("/selfsubjectaccessreviews"))
        .map(|l| format!("{} {}", l.method, l.path))
        .collect();
    assert!(
        dst_writes.is_empty(),
        "a dry run wrote to the destination: {dst_writes:?}"
    );
    assert_eq!(
        tree(w.transfer_dir.path()),
        transfer_before,
        "transfer store"
    );
    assert_eq!(
        w.src_store
            .list_volumes(None, 1000)
            .await
            .expect("volumes")
            .0
            .len(),
        store_before
    );
    let m = w
        .src
        .get("ferry.dev/migrations", Some(NS), "plan")
        .expect("migration");
    assert!(m["metadata"]["finalizers"].is_null(), "no finalizer: {m}");

    // The plan.
    assert_eq!(st.stage, Some(Stage::Final));
    let plan = st.plan.clone().expect("plan");
    assert!(st.volumes.is_empty() && st.resources.is_empty());
    let data = plan
        .volumes
        .iter()
        .find(|v| v.persistent_volume_claim == "data")
        .expect("data");
    assert!(data.moves);
    assert_eq!(data.size_bytes, 32 * CHUNK);
    assert!(data.base_commit.is_some(), "builds on the first run");
    let cache = plan
        .volumes
        .iter()
        .find(|v| v.persistent_volume_claim == "cache")
        .expect("cache");
    assert!(!cache.moves && cache.reason.is_some());
    let find = |kind: &str, name: &str| {
        plan.resources
            .iter()
            .find(|r| r.kind == kind && r.name == name)
            .unwrap_or_else(|| panic!("{kind} {name} in {plan:?}"))
            .clone()
    };
    assert_eq!(find("ConfigMap", "settings").action, PlannedAction::Update);
    assert_eq!(
        find("ConfigMap", "local-only").action,
        PlannedAction::Create
    );
    let web = find("Service", "web");
    assert_eq!(web.action, PlannedAction::Update);
    assert_eq!(web.changes.len(), 1, "{web:?}");
    assert_eq!(web.changes[0].path, "spec.type");
    assert_eq!(web.changes[0].before.as_deref(), Some("\"NodePort\""));
    assert_eq!(web.changes[0].after.as_deref(), Some("\"LoadBalancer\""));
    assert_eq!(
        find("PersistentVolumeClaim", "data").action,
        PlannedAction::Update
    );
    assert_eq!(
        find("PersistentVolumeClaim", "cache").action,
        PlannedAction::Skip
    );
    assert_eq!(plan.transformations, vec!["lb".to_string()]);

    // Over the folder store, a mapped dry run is refused as the run would be: the
    // destination would open the folder for shop-copy, which is not shop's part.
    w.migration(
        NS,
        "plan-folder",
        json!({"clusterPair": "remote", "namespaces": [NS], "dryRun": true,
               "namespaceMapping": {NS: "shop-copy"}}),
    );
    let refused = w.drive(NS, "plan-folder").await;
    assert_eq!(refused.status, ItemStatus::Failed);
    assert!(
        refused
            .reason
            .as_deref()
            .unwrap_or_default()
            .contains("use an object store"),
        "{refused:?}"
    );
    // Over an object store, a mapped dry run finds the object no migration brought: a
    // conflict.
    let Some(s3) = ferry_testkit::TestServer::start(ferry_testkit::Kind::S3).await else {
        return;
    };
    w.pair_over(NS, "remote-s3", &s3.bucket("plans").await);
    w.let_pair_land(NS, "remote-s3", "shop-copy");
    w.migration(
        NS,
        "plan2",
        json!({"clusterPair": "remote-s3", "namespaces": [NS], "dryRun": true,
               "namespaceMapping": {NS: "shop-copy"}}),
    );
    let st2 = w.drive(NS, "plan2").await;
    let p2 = st2.plan.expect("plan");
    let c = p2
        .resources
        .iter()
        .find(|r| r.kind == "ConfigMap" && r.name == "local-only")
        .expect("local-only");
    assert_eq!(c.action, PlannedAction::Conflict, "{c:?}");
    assert_eq!(c.destination_namespace, "shop-copy");
    assert_eq!(st2.status, ItemStatus::PartialSuccess);

    // The real run moves what the plan said, within 10 %.
    w.migration(
        NS,
        "real",
        json!({"clusterPair": "remote", "namespaces": [NS]}),
    );
    let real = w.drive(NS, "real").await;
    let moved = real
        .volumes
        .iter()
        .find(|v| v.persistent_volume_claim == "data")
        .expect("data")
        .bytes_total;
    assert!(moved > 0);
    let est = data.bytes_to_move;
    assert!(
        est.abs_diff(moved) * 10 <= moved,
        "estimated {est}, moved {moved}"
    );
    assert!(moved < 8 * CHUNK, "incremental: {moved}");
}

fn crd(group: &str, kind: &str, plural: &str, schema: serde_json::Value) -> serde_json::Value {
    json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.{group}")},
        "spec": {"group": group, "scope": "Namespaced",
                 "names": {"kind": kind, "plural": plural, "singular": kind.to_lowercase()},
                 "versions": [{"name": "v1", "served": true, "storage": true,
                               "schema": {"openAPIV3Schema": schema}}]}})
}

/// Modelled on the real server: a custom resource is served only once its CRD exists and
/// is Established, which a created CRD becomes a moment after the create (here, at the next
/// read of it).
#[tokio::test]
async fn custom_resources_bring_their_definitions_and_a_differing_one_is_a_conflict() {
    let w = World::new().await;
    w.pair(NS, "remote", true);
    // Opt-in, as the docs say: this pair may add CRDs to the destination; the source's
    // controller may read the custom kinds and the pair may write them there (a ClusterRole
    // of each, the destination's aggregated into ferry-migration-destination).
    w.grant_pair(NS, "remote", "ferry-migration-destination-crds");
    let rules = json!([{"apiGroups": ["db.example.com", "mq.example.com"], "resources": ["clusters", "brokers"],
                        "verbs": ["get", "list", "create", "patch", "delete"]}]);
    w.src.seed(
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "read-custom"}, "rules": rules}),
    );
    w.src.bind(
        "read-custom",
        "read-custom",
        &ferry_kubefake::Identity::service_account(common::FERRY_NS, "ferry-migration"),
        None,
    );
    w.dst.seed(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "migrate-custom", "labels": {"ferry.dev/aggregate-to-migration-destination": "true"}},
        "rules": rules}));
    w.dst.aggregate_now();
    w.shop(NS, 4).await;
    let schema = json!({"type": "object", "properties": {"spec": {"type": "object",
        "properties": {"replicas": {"type": "integer"}}}}});
    w.src
        .seed(crd("db.example.com", "Cluster", "clusters", schema.clone()));
    w.src
        .seed(json!({"apiVersion": "db.example.com/v1", "kind": "Cluster",
        "metadata": {"name": "pg", "namespace": NS}, "spec": {"replicas": 3}}));
    // Another operator's CRD, defined differently on the destination.
    let mq = json!({"type": "object", "properties": {"spec": {"type": "object",
        "properties": {"size": {"type": "integer"}}}}});
    w.src.seed(crd("mq.example.com", "Broker", "brokers", mq));
    w.src
        .seed(json!({"apiVersion": "mq.example.com/v1", "kind": "Broker",
        "metadata": {"name": "q", "namespace": NS}, "spec": {"size": 1}}));
    let theirs = json!({"type": "object", "properties": {"spec": {"type": "object",
        "properties": {"size": {"type": "string"}}}}});
    w.dst
        .seed(crd("mq.example.com", "Broker", "brokers", theirs.clone()));

    // The plan says so first, writing nothing.
    w.migration(
        NS,
        "plan",
        json!({"clusterPair": "remote", "namespaces": [NS], "dryRun": true}),
    );
    let plan = w.drive(NS, "plan").await.plan.expect("plan");
    let action = |kind: &str, name: &str| {
        plan.resources
            .iter()
            .find(|r| r.kind == kind && r.name == name)
            .unwrap_or_else(|| panic!("{kind} {name}: {plan:?}"))
            .action
    };
    assert_eq!(
        action("CustomResourceDefinition", "clusters.db.example.com"),
        PlannedAction::Create
    );
    assert_eq!(action("Cluster", "pg"), PlannedAction::Create);
    assert_eq!(
        action("CustomResourceDefinition", "brokers.mq.example.com"),
        PlannedAction::Conflict
    );
    assert_eq!(action("Broker", "q"), PlannedAction::Conflict);
    assert!(
        w.dst
            .get(
                "apiextensions.k8s.io/customresourcedefinitions",
                None,
                "clusters.db.example.com"
            )
            .is_none(),
        "the dry run created nothing"
    );

    w.migration(
        NS,
        "m1",
        json!({"clusterPair": "remote", "namespaces": [NS]}),
    );
    let st = w.drive(NS, "m1").await;
    let made = w
        .dst
        .get(
            "apiextensions.k8s.io/customresourcedefinitions",
            None,
            "clusters.db.example.com",
        )
        .expect("CRD created on the destination");
    assert_eq!(
        made["spec"]["versions"][0]["schema"]["openAPIV3Schema"],
        schema
    );
    assert_eq!(
        made["status"]["conditions"][1]["type"], "Established",
        "{made}"
    );
    let pg = w
        .dst
        .get("db.example.com/clusters", Some(NS), "pg")
        .expect("custom resource applied after its CRD");
    assert_eq!(pg["spec"]["replicas"], 3);
    let find = |kind: &str, name: &str| {
        st.resources
            .iter()
            .find(|r| r.kind == kind && r.name == name)
            .unwrap_or_else(|| panic!("{kind} {name}: {st:?}"))
            .clone()
    };
    assert_eq!(
        find("CustomResourceDefinition", "clusters.db.example.com").status,
        ItemStatus::Successful
    );
    assert_eq!(find("Cluster", "pg").status, ItemStatus::Successful);
    // The differing one is a reported conflict and stays as the destination had it.
    let c = find("CustomResourceDefinition", "brokers.mq.example.com");
    assert_eq!(c.status, ItemStatus::Failed);
    assert!(
        c.reason.as_deref().unwrap_or("").contains("differs"),
        "{c:?}"
    );
    let q = find("Broker", "q");
    assert_eq!(q.status, ItemStatus::Failed);
    assert!(
        q.reason
            .as_deref()
            .unwrap_or("")
            .contains("not overwritten"),
        "{q:?}"
    );
    let kept = w
        .dst
        .get(
            "apiextensions.k8s.io/customresourcedefinitions",
            None,
            "brokers.mq.example.com",
        )
        .expect("crd");
    assert_eq!(
        kept["spec"]["versions"][0]["schema"]["openAPIV3Schema"],
        theirs
    );
    assert!(w.dst.get("mq.example.com/brokers", Some(NS), "q").is_none());
    assert_eq!(st.status, ItemStatus::PartialSuccess);

    // A second run finds its own CRD identical and goes on.
    w.migration(
        NS,
        "m2",
        json!({"clusterPair": "remote", "namespaces": [NS]}),
    );
    let st2 = w.drive(NS, "m2").await;
    let again = st2
        .resources
        .iter()
        .find(|r| r.name == "clusters.db.example.com")
        .expect("crd entry");
    assert_eq!(again.status, ItemStatus::Successful);
    assert!(again.reason.as_deref().unwrap_or("").contains("identical"));
}

#[tokio::test]
async fn several_claims_are_snapshotted_at_one_instant_unless_switched_off() {
    let w = World::new().await;
    w.pair(NS, "remote", true);
    w.src
        .seed(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}));
    let mut vols = Vec::new();
    for (n, claim) in ["db-0", "db-1", "db-2"].iter().enumerate() {
        vols.push(w.ferry_claim(NS, claim, 4, n as u64).await);
    }
    w.migration(
        NS,
        "m1",
        json!({"clusterPair": "remote", "namespaces": [NS]}),
    );
    let st = w.drive(NS, "m1").await;
    assert_eq!(st.status, ItemStatus::Successful, "{st:?}");
    let group = st.group_snapshot.clone().expect("one group snapshot");
    // No VolumeSnapshot on the source: the group was taken in the chunk store.
    assert!(
        !w.source_writes()
            .iter()
            .any(|x| x.contains("/volumesnapshots")),
        "{:?}",
        w.source_writes()
    );
    let handles: Vec<String> = st
        .volumes
        .iter()
        .map(|v| v.snapshot_handle.clone().expect("handle"))
        .collect();
    assert_eq!(handles.len(), 3);
    for (v, vol) in st.volumes.iter().zip(&vols) {
        assert_eq!(v.status, ItemStatus::Successful);
        assert_eq!(
            digest(&w.dst_store, &w.destination_volume_id(v)).await,
            digest(&w.src_store, vol).await
        );
    }
    // The group and its members are gone once the migration ended.
    assert!(matches!(
        w.src_store.get_group_snapshot(&group).await,
        Err(ferry_store::Error::NotFound(_))
    ));
    for h in &handles {
        assert!(w.src_store.get_snapshot(h).await.is_err(), "{h} deleted");
    }

    // Switched off: one VolumeSnapshot per claim.
    w.migration(
        NS,
        "m2",
        json!({"clusterPair": "remote", "namespaces": [NS], "groupSnapshot": false}),
    );
    let st = w.drive(NS, "m2").await;
    assert_eq!(st.status, ItemStatus::Successful, "{st:?}");
    assert!(st.group_snapshot.is_none());
    assert!(st.volumes.iter().all(|v| v.snapshot.is_some()), "{st:?}");
}

/// Modelled: the stand-in serves the source cluster, where the controller's account has the
/// opt-in ferry-clone role (the stand-in does not check RBAC; manifests.rs checks the role).
#[tokio::test]
async fn a_namespace_is_cloned_within_the_cluster_with_metadata_only_volumes() {
    let w = World::new().await;
    // The opt-in binding the docs give for clones.
    w.src.bind(
        "ferry-clone",
        "ferry-clone",
        &ferry_kubefake::Identity::service_account(common::FERRY_NS, "ferry-migration"),
        None,
    );
    // A 100 GiB sparse volume beside the shop's own.
    let vol = w.shop(NS, 6).await;
    let big = w
        .src_store
        .create_volume(ferry_store::VolumeSpec {
            name: "pvc-shop-big".into(),
            capacity_bytes: 100 << 30,
            options: Default::default(),
            parameters: Default::default(),
            source: None,
        })
        .await
        .expect("big volume");
    let h = w.src_store.open_volume(big.id()).await.expect("open");
    h.write_at(99 << 30, &vec![7u8; CHUNK as usize])
        .await
        .expect("write");
    h.flush().await.expect("flush");
    drop(h);
    w.src.seed(json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv-big"},
        "spec": {"capacity": {"storage": "100Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "ferry",
                 "claimRef": {"namespace": NS, "name": "big"},
                 "csi": {"driver": "ferry.csi.dev", "volumeHandle": big.id(), "fsType": "ext4"}}}));
    w.src.seed(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "big", "namespace": NS},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "ferry", "volumeName": "pv-big", "resources": {"requests": {"storage": "100Gi"}}},
        "status": {"phase": "Bound"}}));
    w.src.seed(
        json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "ApplicationClone",
        "metadata": {"name": "staging", "namespace": common::FERRY_NS},
        "spec": {"sourceNamespace": NS, "destinationNamespace": "shop-staging"}}),
    );
    let before = w.src.log().len();
    let ac: ferry_migration::crd::ApplicationClone = serde_json::from_value(
        w.src
            .get(
                "ferry.dev/applicationclones",
                Some(common::FERRY_NS),
                "staging",
            )
            .expect("clone"),
    )
    .expect("parse");
    ferry_migration::runtime::pass::<ferry_migration::source::application_clone::Clones>(
        &w.src_ctx, &ac,
    )
    .await
    .expect("clone");
    let st: ferry_migration::crd::ApplicationCloneStatus = serde_json::from_value(
        w.src
            .get(
                "ferry.dev/applicationclones",
                Some(common::FERRY_NS),
                "staging",
            )
            .expect("clone")["status"]
            .clone(),
    )
    .expect("status");
    assert_eq!(st.stage.as_deref(), Some("Final"));
    assert_eq!(
        st.status,
        ItemStatus::PartialSuccess,
        "the ebs claim is skipped: {st:?}"
    );
    for (claim, src_id) in [("data", vol.as_str()), ("big", big.id())] {
        let v = st
            .volumes
            .iter()
            .find(|v| v.persistent_volume_claim == claim)
            .expect("volume");
        assert_eq!(v.status, ItemStatus::Successful, "{v:?}");
        let copy = v.clone_volume.clone().expect("copy");
        assert_ne!(copy, src_id);
        // Metadata only: the copy is the source's tree (same root, same size), no chunk
        // copied, whatever the size.
        let (a, b) = (
            w.src_store.get_volume(&copy).await.expect("copy"),
            w.src_store.get_volume(src_id).await.expect("source"),
        );
        assert_eq!(a.head.root, b.head.root);
        assert_eq!(a.size_bytes(), b.size_bytes());
        let pv = w
            .src
            .get(
                "/persistentvolumes",
                None,
                v.persistent_volume.as_deref().unwrap_or(""),
            )
            .expect("pv");
        assert_eq!(pv["spec"]["claimRef"]["namespace"], "shop-staging");
        assert_eq!(pv["spec"]["csi"]["volumeHandle"], copy.as_str());
        let pvc = w
            .src
            .get("/persistentvolumeclaims", Some("shop-staging"), claim)
            .expect("claim copied");
        assert_eq!(pvc["spec"]["volumeName"], pv["metadata"]["name"]);
    }
    let cache = st
        .volumes
        .iter()
        .find(|v| v.persistent_volume_claim == "cache")
        .expect("cache");
    assert_eq!(cache.status, ItemStatus::Skipped);
    assert_eq!(
        digest(
            &w.src_store,
            &st.volumes
                .iter()
                .find(|v| v.persistent_volume_claim == "data")
                .and_then(|v| v.clone_volume.clone())
                .expect("copy")
        )
        .await,
        digest(&w.src_store, &vol).await
    );
    // The copy's workloads are parked; the source is untouched.
    let dep = w
        .src
        .get("apps/deployments", Some("shop-staging"), "web")
        .expect("deployment copied");
    assert_eq!(dep["spec"]["replicas"], 0);
    for l in &w.src.log()[before..] {
        if l.method != "GET" {
            assert!(
                !l.path.contains(&format!("/namespaces/{NS}/")),
                "the clone wrote to the source namespace: {} {}",
                l.method,
                l.path
            );
        }
    }
    // The group snapshot that gave the instant is gone.
    let (snaps, _) = w
        .src_store
        .list_snapshots(&Default::default(), None, 0)
        .await
        .expect("list");
    assert!(snaps.is_empty(), "{snaps:?}");

    // A clone asked for in a tenant namespace is refused.
    w.src.seed(
        json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "ApplicationClone",
        "metadata": {"name": "steal", "namespace": NS},
        "spec": {"sourceNamespace": "payroll", "destinationNamespace": NS}}),
    );
    let ac: ferry_migration::crd::ApplicationClone = serde_json::from_value(
        w.src
            .get("ferry.dev/applicationclones", Some(NS), "steal")
            .expect("clone"),
    )
    .expect("parse");
    ferry_migration::runtime::pass::<ferry_migration::source::application_clone::Clones>(
        &w.src_ctx, &ac,
    )
    .await
    .expect("reconcile");
    let refused = w
        .src
        .get("ferry.dev/applicationclones", Some(NS), "steal")
        .expect("clone");
    assert_eq!(refused["status"]["status"], "Failed");
    assert!(
        refused["status"]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("honoured only in"),
        "{refused}"
    );
}

/// Runs the clone `name` in the controller's namespace once and returns its status.
async fn clone_once(w: &World, name: &str) -> serde_json::Value {
    let ac: ferry_migration::crd::ApplicationClone = serde_json::from_value(
        w.src
            .get("ferry.dev/applicationclones", Some(common::FERRY_NS), name)
            .expect("clone"),
    )
    .expect("parse");
    ferry_migration::runtime::pass::<ferry_migration::source::application_clone::Clones>(
        &w.src_ctx, &ac,
    )
    .await
    .expect("clone");
    w.src
        .get("ferry.dev/applicationclones", Some(common::FERRY_NS), name)
        .expect("clone")["status"]
        .clone()
}

/// A clone asked for before the admin bound the opt-in ferry-clone role fails at once,
/// saying what to bind, and makes nothing (no volume, no PV, no namespace); once bound, a
/// RoleBinding that grants more than the controller's account holds is refused as an
/// escalation and said so, not as a missing ferry-clone binding.
#[tokio::test]
async fn a_clone_says_what_it_lacks_and_makes_nothing_without_its_role() {
    let w = World::new().await;
    w.shop(NS, 2).await;
    w.src.seed(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "owners", "namespace": NS},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"},
        "subjects": [{"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"}]}));
    w.src.seed(
        json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "ApplicationClone",
        "metadata": {"name": "early", "namespace": common::FERRY_NS},
        "spec": {"sourceNamespace": NS, "destinationNamespace": "shop-copy"}}),
    );
    let pvs = w.src.all("/persistentvolumes").len();
    let st = clone_once(&w, "early").await;
    assert_eq!(st["status"], "Failed", "{st}");
    let reason = st["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("kubectl create clusterrolebinding ferry-clone"),
        "{reason}"
    );
    assert_eq!(w.src.all("/persistentvolumes").len(), pvs, "no PV made");
    assert!(w.src.get("/namespaces", None, "shop-copy").is_none());
    assert!(
        w.src_store
            .list_volumes(None, 1000)
            .await
            .expect("volumes")
            .0
            .iter()
            .all(|v| !v.record.spec.name.starts_with("ferry-clone-")),
        "no clone volume"
    );

    w.src.bind(
        "ferry-clone",
        "ferry-clone",
        &ferry_kubefake::Identity::service_account(common::FERRY_NS, "ferry-migration"),
        None,
    );
    w.src.seed(
        json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "ApplicationClone",
        "metadata": {"name": "bound", "namespace": common::FERRY_NS},
        "spec": {"sourceNamespace": NS, "destinationNamespace": "shop-copy"}}),
    );
    let st = clone_once(&w, "bound").await;
    let owners = st["resources"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["name"] == "owners"))
        .cloned()
        .expect("owners");
    assert_eq!(owners["status"], "Failed", "{owners}");
    let reason = owners["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("escalation") && !reason.contains("bind the ferry-clone"),
        "{reason}"
    );
}
