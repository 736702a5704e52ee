//! The migration flow end to end over two in-memory API servers (standing in for real ones,
//! which cannot run here), with real chunk stores and a real transfer store between them.
//! Each test names the API behaviour it leans on.

mod common;

use common::{CHUNK, FERRY_NS, World, digest, fill};
use ferry_migration::crd::{ItemStatus, Stage};
use serde_json::json;

const NS: &str = "shop";

fn spec() -> serde_json::Value {
    json!({"clusterPair": "remote", "namespaces": [NS]})
}

/// Writes the source may see from a migration: its own status and finalizer, the
/// VolumeSnapshots it makes and deletes, and the status of the pair it checked. Nothing
/// else on the source changes.
fn assert_source_untouched(w: &World) {
    for write in w.source_writes() {
        let ok = write.starts_with("PATCH ") && write.contains("/migrations/")
            || write.contains("/volumesnapshots")
            || write.starts_with("PATCH ")
                && write.ends_with("/status")
                && write.contains("/clusterpairs/");
        assert!(ok, "the migration wrote to the source: {write}");
    }
}

#[tokio::test]
async fn a_namespace_moves_with_its_data_and_its_resources_parked() {
    let w = World::new().await;
    w.pair(NS, "remote", true);
    let vol = w.shop(NS, 24).await;
    w.migration(NS, "m1", spec());
    let st = w.drive(NS, "m1").await;

    // One ferry volume moved; the PVC of another driver skipped with its reason.
    assert_eq!(st.stage, Some(Stage::Final));
    assert_eq!(st.status, ItemStatus::PartialSuccess, "{st:?}");
    let data = st
        .volumes
        .iter()
        .find(|v| v.persistent_volume_claim == "data")
        .expect("data");
    assert_eq!(data.status, ItemStatus::Successful, "{data:?}");
    assert!(data.bytes_done > 0 && data.bytes_done == data.bytes_total);
    let cache = st
        .volumes
        .iter()
        .find(|v| v.persistent_volume_claim == "cache")
        .expect("cache");
    assert_eq!(cache.status, ItemStatus::Skipped);
    assert!(
        cache
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("ebs.csi.aws.com"),
        "{cache:?}"
    );
    let summary = st.summary.clone().expect("summary");
    assert_eq!(
        (
            summary.total_number_of_volumes,
            summary.number_of_migrated_volumes
        ),
        (2, 1)
    );
    assert!(summary.total_bytes_migrated > 0);
    assert!(st.finish_timestamp.is_some() && st.volume_migration_finish_timestamp.is_some());

    // The destination volume holds the snapshot's bytes; the PV is ferry's, pre-bound.
    let pv_name = data.destination_volume.clone().expect("pv");
    let pv = w
        .dst
        .get("/persistentvolumes", None, &pv_name)
        .expect("pv on destination");
    assert_eq!(pv["spec"]["claimRef"]["namespace"], NS);
    assert_eq!(pv["spec"]["claimRef"]["name"], "data");
    assert_eq!(pv["spec"]["csi"]["driver"], "ferry.csi.dev");
    assert_eq!(pv["spec"]["csi"]["fsType"], "ext4");
    assert_eq!(pv["spec"]["storageClassName"], "ferry");
    let dst_id = pv["spec"]["csi"]["volumeHandle"]
        .as_str()
        .expect("handle")
        .to_string();
    assert_eq!(
        digest(&w.dst_store, &dst_id).await,
        digest(&w.src_store, &vol).await
    );

    // Resources: applied in order, transformed, workloads parked.
    let pvc = w
        .dst
        .get("/persistentvolumeclaims", Some(NS), "data")
        .expect("pvc");
    assert_eq!(pvc["spec"]["volumeName"], pv_name.as_str());
    assert!(pvc["metadata"]["annotations"]["pv.kubernetes.io/bind-completed"].is_null());
    assert!(
        w.dst
            .get("/persistentvolumeclaims", Some(NS), "cache")
            .is_none(),
        "other driver's claim left out"
    );
    let dep = w
        .dst
        .get("apps/deployments", Some(NS), "web")
        .expect("deployment");
    assert_eq!(dep["spec"]["replicas"], 0);
    assert_eq!(
        dep["metadata"]["annotations"]["ferry.dev/migrationReplicas"],
        "3"
    );
    assert!(dep["status"].is_null() || dep["status"] == json!({}));
    assert!(
        w.dst
            .get("apps/replicasets", Some(NS), "web-5d4f")
            .is_none(),
        "owned ReplicaSet dropped"
    );
    let web = w.dst.get("/services", Some(NS), "web").expect("service");
    assert!(web["spec"]["clusterIP"].is_null() && web["spec"]["clusterIPs"].is_null());
    assert!(web["spec"]["ports"][0]["nodePort"].is_null());
    assert_eq!(
        w.dst.get("/services", Some(NS), "db").expect("db")["spec"]["clusterIP"],
        "None"
    );
    assert!(w.dst.get("/secrets", Some(NS), "web-token").is_none());
    assert!(w.dst.get("/secrets", Some(NS), "db-password").is_some());
    assert!(
        w.dst.get("/secrets", Some(NS), "remote-secret").is_none(),
        "pair credentials stay home"
    );
    assert!(w.dst.get("/serviceaccounts", Some(NS), "default").is_none());
    assert!(w.dst.get("/serviceaccounts", Some(NS), "web").expect("sa")["secrets"].is_null());
    assert!(
        w.dst
            .get("/configmaps", Some(NS), "kube-root-ca.crt")
            .is_none()
    );
    assert_eq!(
        w.dst
            .get("batch/cronjobs", Some(NS), "report")
            .expect("cronjob")["spec"]["suspend"],
        true
    );
    // The destination's admin made the namespace (and bound the pair's role there): it is
    // left as it is, its labels are the admin's.
    assert!(
        w.dst.get("/namespaces", None, NS).expect("namespace")["metadata"]["labels"]["team"]
            .is_null()
    );
    for r in &st.resources {
        let want = if r.name == "cache" {
            ItemStatus::Skipped
        } else {
            ItemStatus::Successful
        };
        assert_eq!(r.status, want, "{r:?}");
    }

    // The Namespace there is never written (it exists: the admin made it); the PVC is
    // applied first, then the rest (server-side apply).
    assert!(
        !w.dst.log().iter().any(|l| l.method != "GET"
            && (l.path == "/api/v1/namespaces" || l.path == format!("/api/v1/namespaces/{NS}"))),
        "the Namespace was written"
    );
    let applied: Vec<String> = w
        .dst
        .log()
        .into_iter()
        .filter(|l| {
            l.method == "PATCH"
                && l.content_type.starts_with("application/apply-patch")
                && !l.path.contains(FERRY_NS)
                && !l.path.contains("/secrets/ferry-transfer-")
                && !l.path.contains("/persistentvolumes/")
        })
        .map(|l| l.path)
        .collect();
    assert!(
        !applied
            .iter()
            .any(|p| p.ends_with(&format!("/namespaces/{NS}"))),
        "the Namespace is never patched: {applied:?}"
    );
    assert!(
        applied[0].contains("/persistentvolumeclaims/data"),
        "{applied:?}"
    );
    assert!(
        w.dst
            .log()
            .iter()
            .filter(|l| l.content_type.starts_with("application/apply-patch"))
            .all(|l| l.query.contains("fieldManager=ferry-migration"))
    );

    // The source: unchanged but for the migration's status and its own snapshots, now gone.
    assert_source_untouched(&w);
    assert!(
        w.src
            .all("snapshot.storage.k8s.io/volumesnapshots")
            .is_empty(),
        "snapshots cleaned up"
    );
    assert_eq!(
        w.src
            .get("apps/deployments", Some(NS), "web")
            .expect("source")["spec"]["replicas"],
        3
    );
}

#[tokio::test]
async fn start_applications_keeps_replicas() {
    let w = World::new().await;
    w.pair(NS, "remote", true);
    w.shop(NS, 4).await;
    w.migration(
        NS,
        "m1",
        json!({"clusterPair": "remote", "namespaces": [NS], "startApplications": true}),
    );
    w.drive(NS, "m1").await;
    let dep = w
        .dst
        .get("apps/deployments", Some(NS), "web")
        .expect("deployment");
    assert_eq!(dep["spec"]["replicas"], 3);
    assert!(dep["metadata"]["annotations"]["ferry.dev/migrationReplicas"].is_null());
    assert!(
        w.dst
            .get("batch/cronjobs", Some(NS), "report")
            .expect("cronjob")["spec"]["suspend"]
            .is_null()
    );
}

/// A re-run over objects an earlier run created: server-side apply updates them (no 409),
/// and the import lands in the same volume (the claim's landing), so only changed chunks
/// move; each run's VolumeImport (immutable) is removed once its outcome is recorded.
#[tokio::test]
async fn a_second_migration_moves_only_what_changed() {
    let w = World::new().await;
    w.pair(NS, "remote", true);
    let vol = w.shop(NS, 32).await;
    w.migration(NS, "m1", spec());
    let first = w.drive(NS, "m1").await;
    let first_done = first
        .volumes
        .iter()
        .find(|v| v.persistent_volume_claim == "data")
        .expect("v")
        .clone();
    // Change two chunks of the source volume.
    let h = w.src_store.open_volume(&vol).await.expect("open");
    h.write_at(0, &vec![9u8; 4096]).await.expect("write");
    h.write_at(5 * CHUNK, &vec![8u8; 4096])
        .await
        .expect("write");
    h.flush().await.expect("flush");
    w.migration(NS, "m2", spec());
    let second = w.drive(NS, "m2").await;
    let v = second
        .volumes
        .iter()
        .find(|v| v.persistent_volume_claim == "data")
        .expect("v");
    assert_eq!(v.status, ItemStatus::Successful);
    assert_ne!(
        v.volume_import, first_done.volume_import,
        "each snapshot has its own VolumeImport"
    );
    assert!(
        w.dst.all("ferry.dev/volumeimports").is_empty(),
        "ended imports are removed"
    );
    assert_eq!(
        v.destination_volume, first_done.destination_volume,
        "same PV"
    );
    let dst_id = w.destination_volume_id(v);
    assert_eq!(
        digest(&w.dst_store, &dst_id).await,
        digest(&w.src_store, &vol).await
    );
    assert!(
        v.bytes_total <= 2 * CHUNK,
        "second export planned {} bytes for 2 changed chunks",
        v.bytes_total
    );
    assert!(
        second
            .resources
            .iter()
            .all(|r| r.status == ItemStatus::Successful || r.name == "cache"),
        "{:?}",
        second.resources
    );
}

/// A controller that dies between any two writes: each step's result is in the status, so
/// the next reconcile goes on. Every write a clean run makes, on either API, fails once in
/// turn (500), and the migration still ends with the same result.
#[tokio::test]
async fn a_failure_at_any_write_resumes_to_the_same_result() {
    let clean = World::new().await;
    clean.pair(NS, "remote", true);
    clean.shop(NS, 8).await;
    clean.migration(NS, "m1", spec());
    clean.drive(NS, "m1").await;
    let writes =
        |log: Vec<ferry_kubefake::Logged>| log.iter().filter(|l| l.method != "GET").count();
    let (src_writes, dst_writes) = (writes(clean.src.log()), writes(clean.dst.log()));
    assert!(
        src_writes >= 8 && dst_writes >= 8,
        "{src_writes} {dst_writes}"
    );
    let cases = (1..=src_writes)
        .map(|n| ("source", n))
        .chain((1..=dst_writes).map(|n| ("destination", n)));
    for (side, n) in cases {
        let w = World::new().await;
        w.pair(NS, "remote", true);
        let vol = w.shop(NS, 8).await;
        w.migration(NS, "m1", spec());
        match side {
            "source" => w.src.fail_write(n),
            _ => w.dst.fail_write(n),
        }
        let st = w.drive(NS, "m1").await;
        assert_eq!(
            st.status,
            ItemStatus::PartialSuccess,
            "{side} write {n}: {st:?}"
        );
        let v = st
            .volumes
            .iter()
            .find(|v| v.persistent_volume_claim == "data")
            .expect("v");
        assert_eq!(v.status, ItemStatus::Successful, "{side} write {n}");
        let dst_id = w.destination_volume_id(v);
        assert_eq!(
            digest(&w.dst_store, &dst_id).await,
            digest(&w.src_store, &vol).await,
            "{side} write {n}"
        );
        assert!(
            w.dst.get("apps/deployments", Some(NS), "web").is_some(),
            "{side} write {n}"
        );
        assert!(
            w.src
                .all("snapshot.storage.k8s.io/volumesnapshots")
                .is_empty(),
            "{side} write {n}"
        );
        assert_source_untouched(&w);
    }
}

#[tokio::test]
async fn a_missing_cluster_pair_fails_with_what_to_fix() {
    let w = World::new().await;
    w.shop(NS, 2).await;
    w.migration(NS, "m1", json!({"clusterPair": "nope", "namespaces": [NS]}));
    let st = w.drive(NS, "m1").await;
    assert_eq!(st.status, ItemStatus::Failed);
    let reason = st.reason.unwrap_or_default();
    assert!(
        reason.contains("ClusterPair nope not found") && reason.contains("spec.clusterPair"),
        "{reason}"
    );
    assert_source_untouched(&w);
    assert!(w.dst.log().is_empty(), "nothing sent to the destination");
}

#[tokio::test]
async fn a_missing_namespace_fails_with_what_to_fix() {
    let w = World::new().await;
    w.pair(FERRY_NS, "remote", true);
    w.migration(
        FERRY_NS,
        "m1",
        json!({"clusterPair": "remote", "namespaces": ["ghost"]}),
    );
    let st = w.drive(FERRY_NS, "m1").await;
    assert_eq!(st.status, ItemStatus::Failed);
    assert!(
        st.reason
            .unwrap_or_default()
            .contains("namespace ghost not found on the source")
    );
    assert_source_untouched(&w);
}

#[tokio::test]
async fn a_migration_may_not_reach_into_another_namespace() {
    let w = World::new().await;
    w.pair(NS, "remote", true);
    w.shop(NS, 2).await;
    w.migration(
        NS,
        "m1",
        json!({"clusterPair": "remote", "namespaces": [NS, "kube-system"]}),
    );
    let st = w.drive(NS, "m1").await;
    assert_eq!(st.status, ItemStatus::Failed);
    assert!(
        st.reason
            .unwrap_or_default()
            .contains("may only migrate shop")
    );
}

/// The pair is checked when a migration starts: a destination that stopped answering since
/// its last check fails the migration with the pair's reason, before anything is made.
#[tokio::test]
async fn an_unreachable_destination_fails_the_migration_with_the_reason() {
    let w = World::new().await;
    w.shop(NS, 2).await;
    w.pair(NS, "remote", true);
    w.dst.set_unreachable(true);
    w.migration(NS, "m1", spec());
    let st = w.drive(NS, "m1").await;
    assert_eq!(st.status, ItemStatus::Failed);
    let reason = st.reason.unwrap_or_default();
    assert!(
        reason.contains("ClusterPair remote is not ready")
            && reason.contains("destination API did not answer"),
        "{reason}"
    );
    assert!(
        w.src
            .all("snapshot.storage.k8s.io/volumesnapshots")
            .is_empty()
    );
    assert_source_untouched(&w);
}

/// A transfer store nothing answers for (an S3 endpoint on a closed port) fails the
/// migration with the storage reason.
#[tokio::test]
async fn an_unreachable_bucket_fails_the_migration_with_the_reason() {
    let w = World::new().await;
    w.shop(NS, 2).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    w.src.seed(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s3-secret", "namespace": NS}, "data": {
        "kubeconfig": base64("apiVersion: v1\nkind: Config\n"), "backend": "czM=", "bucket": "YnVja2V0", "endpoint": base64(&format!("http://127.0.0.1:{port}")),
        "accessKeyId": "YQ==", "secretAccessKey": "Yg==", "region": "dXMtZWFzdC0x"}}));
    w.src.seed(json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "ClusterPair", "metadata": {"name": "s3", "namespace": NS},
        "spec": {"secretRef": {"name": "s3-secret"}}, "status": {"schedulerStatus": "Ready", "storageStatus": "Ready"}}));
    w.migration(NS, "m1", json!({"clusterPair": "s3", "namespaces": [NS]}));
    let st = w.drive(NS, "m1").await;
    assert_eq!(st.status, ItemStatus::Failed);
    let reason = st.reason.unwrap_or_default();
    assert!(
        reason.contains("ClusterPair s3 is not ready") && reason.contains("transfer store"),
        "{reason}"
    );
    assert_source_untouched(&w);
}

/// A second migration of a namespace while one is InProgress is refused.
#[tokio::test]
async fn one_migration_per_namespace_at_a_time() {
    let w = World::new().await;
    w.pair(NS, "remote", true);
    w.shop(NS, 2).await;
    w.migration(NS, "m1", spec());
    w.src.set_status(
        "ferry.dev/migrations",
        Some(NS),
        "m1",
        json!({"stage": "Volumes", "status": "InProgress"}),
    );
    w.migration(NS, "m2", spec());
    let st = w.drive(NS, "m2").await;
    assert_eq!(st.status, ItemStatus::Failed);
    assert!(
        st.reason
            .unwrap_or_default()
            .contains("Migration shop/m1 is already migrating namespace shop")
    );
}

#[tokio::test]
async fn include_volumes_false_moves_no_data_and_no_claims() {
    let w = World::new().await;
    w.pair(NS, "remote", true);
    w.shop(NS, 2).await;
    w.migration(
        NS,
        "m1",
        json!({"clusterPair": "remote", "namespaces": [NS], "includeVolumes": false}),
    );
    let st = w.drive(NS, "m1").await;
    assert!(st.volumes.is_empty());
    assert!(
        w.src
            .all("snapshot.storage.k8s.io/volumesnapshots")
            .is_empty()
    );
    assert!(w.dst.all("ferry.dev/volumeimports").is_empty());
    assert!(
        w.dst
            .get("/persistentvolumeclaims", Some(NS), "data")
            .is_none()
    );
    assert!(w.dst.get("apps/deployments", Some(NS), "web").is_some());
}

/// ClusterPair checks: a destination API that does not answer, and a transfer store that
/// cannot be reached, each give Error with a reason; a working pair is Ready.
#[tokio::test]
async fn cluster_pair_status_names_what_is_wrong() {
    use ferry_migration::crd::{ClusterPair, PairState};
    let w = World::new().await;
    w.pair(NS, "remote", false);
    let get = |w: &World| -> ClusterPair {
        serde_json::from_value(
            w.src
                .get("ferry.dev/clusterpairs", Some(NS), "remote")
                .expect("pair"),
        )
        .expect("parse")
    };
    ferry_migration::runtime::pass::<ferry_migration::source::cluster_pair::Pairs>(
        &w.src_ctx,
        &get(&w),
    )
    .await
    .expect("reconcile");
    let st = get(&w).status.expect("status");
    assert_eq!(
        (st.scheduler_status, st.storage_status),
        (PairState::Ready, PairState::Ready),
        "{st:?}"
    );

    w.dst.set_unreachable(true);
    let st = ferry_migration::source::cluster_pair::check(&w.src_ctx, &get(&w)).await;
    assert_eq!(st.scheduler_status, PairState::Error);
    assert!(
        st.scheduler_reason
            .unwrap_or_default()
            .contains("destination API did not answer")
    );
    w.dst.set_unreachable(false);

    // A transfer store whose endpoint nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    w.src.seed(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s3-secret", "namespace": NS},
        "stringData": {}, "data": {
            "kubeconfig": base64(&w.pair_account(NS, "s3")), "backend": "czM=", "bucket": "YnVja2V0",
            "endpoint": base64(&format!("http://127.0.0.1:{port}")), "accessKeyId": "YQ==", "secretAccessKey": "Yg==", "region": "dXMtZWFzdC0x"}}));
    w.src.seed(json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "ClusterPair", "metadata": {"name": "s3", "namespace": NS},
        "spec": {"secretRef": {"name": "s3-secret"}}}));
    let p: ClusterPair = serde_json::from_value(
        w.src
            .get("ferry.dev/clusterpairs", Some(NS), "s3")
            .expect("pair"),
    )
    .expect("parse");
    let st = ferry_migration::source::cluster_pair::check(&w.src_ctx, &p).await;
    assert_eq!(st.scheduler_status, PairState::Ready);
    assert_eq!(st.storage_status, PairState::Error);
    assert!(
        st.storage_reason
            .unwrap_or_default()
            .contains("transfer store")
    );

    // No Secret at all.
    w.src.seed(json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "ClusterPair", "metadata": {"name": "lost", "namespace": NS},
        "spec": {"secretRef": {"name": "missing"}}}));
    let p: ClusterPair = serde_json::from_value(
        w.src
            .get("ferry.dev/clusterpairs", Some(NS), "lost")
            .expect("pair"),
    )
    .expect("parse");
    let st = ferry_migration::source::cluster_pair::check(&w.src_ctx, &p).await;
    assert!(
        st.scheduler_reason
            .unwrap_or_default()
            .contains("Secret shop/missing named by ClusterPair lost not found")
    );
}

fn base64(s: &str) -> String {
    ferry_kubefake::base64(s.as_bytes())
}

/// The destination refuses to re-root a volume its node is writing (the lease), and says
/// what to do.
#[tokio::test]
async fn an_import_over_a_volume_in_use_waits_for_it() {
    let w = World::new().await;
    w.pair(NS, "remote", true);
    let vol = w.shop(NS, 4).await;
    w.migration(NS, "m1", spec());
    let st = w.drive(NS, "m1").await;
    let v = st
        .volumes
        .iter()
        .find(|v| v.persistent_volume_claim == "data")
        .expect("v")
        .clone();
    let dst_id = w.destination_volume_id(&v);
    w.dst_store
        .acquire_lease(&dst_id, "node-b", std::time::Duration::from_secs(600))
        .await
        .expect("lease");
    fill(&w.src_store, &vol, 4, 99).await;
    w.migration(NS, "m2", spec());
    let st = w.drive(NS, "m2").await;
    assert_eq!(st.status, ItemStatus::Failed, "{st:?}");
    let v = st
        .volumes
        .iter()
        .find(|v| v.persistent_volume_claim == "data")
        .expect("v");
    assert!(
        v.reason
            .as_deref()
            .unwrap_or("")
            .contains("in use on the destination"),
        "{v:?}"
    );
    assert!(
        st.resources.is_empty(),
        "no resources copied after a volume failed"
    );
}

/// The ClusterPair's transfer retention is applied after each successful migration: with
/// keepCommits 1 and no grace, three migrations of a changing volume leave its newest commit
/// only, and exactly the packs that commit reaches; that commit still verifies.
#[tokio::test]
async fn the_pairs_transfer_retention_is_applied_after_each_success() {
    let w = World::new().await;
    w.pair_with(
        NS,
        "remote",
        true,
        json!({"transferRetention": {"keepCommits": 1, "graceSeconds": 0}}),
    );
    let vol = w.shop(NS, 16).await;
    for round in 0..3u8 {
        if round > 0 {
            let h = w.src_store.open_volume(&vol).await.expect("open");
            h.write_at(round as u64 * CHUNK, &vec![round; 4096])
                .await
                .expect("write");
            h.flush().await.expect("flush");
        }
        let name = format!("m{round}");
        w.migration(NS, &name, spec());
        let st = w.drive(NS, &name).await;
        let data = st
            .volumes
            .iter()
            .find(|v| v.persistent_volume_claim == "data");
        assert_eq!(
            data.map(|v| v.status),
            Some(ItemStatus::Successful),
            "{st:?}"
        );
    }
    let t =
        ferry_transfer::TransferStore::open(&ferry_store::StoreConfig::fs(w.transfer_root()), None)
            .await
            .expect("transfer store");
    let commits = t.commits_of(&vol).await.expect("commits");
    assert_eq!(
        commits.len(),
        1,
        "keepCommits 1 leaves the newest: {commits:?}"
    );
    ferry_transfer::verify(
        &t,
        &commits[0],
        std::sync::Arc::new(ferry_transfer::Progress::default()),
        ferry_transfer::Tuning::default(),
    )
    .await
    .expect("the kept commit is whole");
    let report = ferry_transfer::gc(
        &t,
        ferry_transfer::GcOptions {
            keep: 1,
            grace: std::time::Duration::ZERO,
            dry_run: true,
        },
    )
    .await
    .expect("dry run");
    assert_eq!(
        report.packs_removed, 0,
        "the controller already removed every pack no kept commit reaches: {report:?}"
    );
}
