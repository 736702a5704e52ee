//! A migration with everything below the Kubernetes API real: `ferry plugin` serving CSI on
//! a unix socket over the source chunk store, a `ferry migration` sidecar for each cluster,
//! the transfer through moto's S3 server on loopback (encrypted), the import into the
//! destination's own chunk store, and the data compared byte for byte.
//!
//! The two API servers are ferry's in-memory stand-in served over HTTP on 127.0.0.1 (no
//! real API server can be installed here); the sidecars reach them with kubeconfigs, list
//! and watch like against a real one. The test plays csi-snapshotter: for each
//! VolumeSnapshot it calls CreateSnapshot on the plugin's socket and fills in the status.

mod common;

use common::{csi_volume, digest, http_get, seed_cluster, sidecar, snapshotter};
use ferry_kubefake::{FakeApi, base64};
use ferry_store::{Store, StoreConfig, StoreOptions};
use ferry_testkit::{Kind, TestServer};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const NS: &str = "shop";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_migrates_through_s3_with_the_real_binaries() {
    let Some(s3) = TestServer::start(Kind::S3).await else {
        return;
    };
    let transfer = s3.bucket("moves").await;
    let tmp = tempfile::tempdir().expect("tmp");
    let plugin = ferry_e2e::Plugin::start_fs().await;
    let src_store_dir = plugin.dir.path().join("store");
    let dst_store_dir = tmp.path().join("dst-store");
    std::fs::create_dir_all(&dst_store_dir).expect("mkdir");

    // The source volume: made through CSI, filled through the store.
    let mut csi = plugin.controller().await;
    let vol_id = csi_volume(&mut csi, "pvc-data", 8 << 20).await;
    let src_store = Store::open(
        &StoreConfig::fs(src_store_dir.to_string_lossy()),
        StoreOptions::default(),
    )
    .await
    .expect("store");
    {
        let h = src_store.open_volume(&vol_id).await.expect("open");
        let mut data = vec![0u8; 8 << 20];
        for (i, b) in data.iter_mut().enumerate() {
            *b = (i.wrapping_mul(2654435761) >> 13) as u8;
        }
        h.write_at(0, &data[..5 << 20]).await.expect("write");
        h.flush().await.expect("flush");
    }

    // Two API servers on loopback.
    let src = FakeApi::new();
    let dst = FakeApi::new();
    let src_addr = src.serve().await.expect("serve");
    let dst_addr = dst.serve().await.expect("serve");
    let src_kc = tmp.path().join("src.kubeconfig");
    let dst_kc = tmp.path().join("dst.kubeconfig");
    std::fs::write(&src_kc, FakeApi::kubeconfig(src_addr)).expect("write");
    std::fs::write(&dst_kc, FakeApi::kubeconfig(dst_addr)).expect("write");
    seed_cluster(&src);
    seed_cluster(&dst);

    // The source namespace: a PVC bound to the ferry volume, a Deployment using it.
    src.seed(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}));
    src.seed(json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv-data"},
        "spec": {"capacity": {"storage": "8Mi"}, "accessModes": ["ReadWriteOnce"], "persistentVolumeReclaimPolicy": "Delete", "storageClassName": "ferry",
                 "claimRef": {"namespace": NS, "name": "data"}, "csi": {"driver": "ferry.csi.dev", "volumeHandle": vol_id, "fsType": "ext4"}}}));
    src.seed(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data", "namespace": NS},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "ferry", "volumeName": "pv-data", "resources": {"requests": {"storage": "8Mi"}}},
        "status": {"phase": "Bound"}}));
    src.seed(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "db", "namespace": NS},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "db"}}, "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "db", "image": "postgres"}]}}}}));

    // The pair: destination kubeconfig, moto bucket, an encryption key.
    let key = "5a".repeat(32);
    let mut secret: serde_json::Map<String, Value> = transfer
        .iter()
        .map(|(k, v)| (k.clone(), json!(base64(v.as_bytes()))))
        .collect();
    secret.insert(
        "kubeconfig".into(),
        json!(base64(FakeApi::kubeconfig(dst_addr).as_bytes())),
    );
    secret.insert("encryptionKey".into(), json!(base64(key.as_bytes())));
    src.seed(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "remote-pair", "namespace": NS}, "data": secret}));
    src.seed(json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "ClusterPair", "metadata": {"name": "remote", "namespace": NS},
        "spec": {"secretRef": {"name": "remote-pair"}}}));

    let (m1, m2) = (ferry_testkit::free_port(), ferry_testkit::free_port());
    let src_log = tmp.path().join("src-sidecar.log");
    let dst_log = tmp.path().join("dst-sidecar.log");
    let _src_sidecar = sidecar(&src_kc, &src_store_dir, Some(&plugin.socket), m1, &src_log);
    let _dst_sidecar = sidecar(&dst_kc, &dst_store_dir, None, m2, &dst_log);

    // The annotation asks for the migration; the sidecar makes the Migration object.
    src.set_status("/namespaces", None, NS, json!({"phase": "Active"}));
    src.serve_one(
        &ferry_kubefake::Method::PATCH,
        &format!("/api/v1/namespaces/{NS}"),
        "",
        "application/merge-patch+json",
        &serde_json::to_vec(
            &json!({"metadata": {"annotations": {"ferry.dev/migrate-to": "remote"}}}),
        )
        .expect("json"),
    );

    let started = Instant::now();
    let mut made = Vec::new();
    let status = loop {
        snapshotter(&src, &csi, &mut made).await;
        let migs = src.all("ferry.dev/migrations");
        if let Some(m) = migs.first()
            && m["status"]["finishTimestamp"].is_string()
        {
            break m["status"].clone();
        }
        if started.elapsed() > Duration::from_secs(240) {
            panic!(
                "migration did not end; pair {:?}\nmigrations {migs:?}\nsource sidecar:\n{}\ndestination sidecar:\n{}",
                src.get("ferry.dev/clusterpairs", Some(NS), "remote"),
                common::log_text(&src_log),
                common::log_text(&dst_log)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        src.all("ferry.dev/migrations").len(),
        1,
        "one annotation, one migration"
    );
    assert_eq!(status["status"], "Successful", "{status:#}");
    let pair = src
        .get("ferry.dev/clusterpairs", Some(NS), "remote")
        .expect("pair");
    assert_eq!(pair["status"]["schedulerStatus"], "Ready");
    assert_eq!(pair["status"]["storageStatus"], "Ready");

    // The data: the destination's own chunk store holds the snapshot's bytes.
    let pv_name = status["volumes"][0]["destinationVolume"]
        .as_str()
        .expect("pv")
        .to_string();
    let pv = dst.get("/persistentvolumes", None, &pv_name).expect("pv");
    let dst_id = pv["spec"]["csi"]["volumeHandle"].as_str().expect("handle");
    let dst_store = Store::open(
        &StoreConfig::fs(dst_store_dir.to_string_lossy()),
        StoreOptions::default(),
    )
    .await
    .expect("store");
    assert_eq!(
        digest(&dst_store, dst_id).await,
        digest(&src_store, &vol_id).await
    );
    assert_eq!(
        dst.get("/persistentvolumeclaims", Some(NS), "data")
            .expect("pvc")["spec"]["volumeName"],
        pv_name.as_str()
    );
    assert_eq!(
        dst.get("apps/deployments", Some(NS), "db").expect("dep")["spec"]["replicas"],
        0
    );

    // The migration's VolumeSnapshot is gone, and with it (csi-snapshotter's DeleteSnapshot)
    // the chunk-store snapshot.
    snapshotter(&src, &csi, &mut made).await;
    assert_eq!(made.len(), 1);
    assert!(
        src.all("snapshot.storage.k8s.io/volumesnapshots")
            .is_empty()
    );
    assert!(
        src_store.get_snapshot(&made[0]).await.is_err(),
        "snapshot {} still there",
        made[0]
    );

    // Metrics of the sidecars and the plugin.
    let metrics = http_get(m1, "/metrics").await;
    assert!(
        metrics.contains("ferry_bytes_moved_total{direction=\"export\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ferry_migrations_total{status=\"Successful\"} 1"),
        "{metrics}"
    );
    let metrics = http_get(m2, "/metrics").await;
    assert!(
        metrics.contains("ferry_operations_total{operation=\"volume_import\"} 1"),
        "{metrics}"
    );
    drop(s3);
}
