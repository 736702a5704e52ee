//! The migration half of the walk-through: a namespace with an application and its volume
//! moved by the migration controller from cluster A to cluster B.
//!
//! Both clusters' API servers are the in-process stand-in (`ferry_kubefake`):
//! the demo needs no cluster. Everything else is real: the controller's reconcilers
//! (ClusterPair check, Migration through Volumes, Application and Final, the destination's
//! VolumeImport), CreateSnapshot and DeleteSnapshot over the plugin's socket (the demo plays
//! csi-snapshotter), the encrypted transfer store (a folder), and chunk store B.

use super::{BoxError, digest};
use ferry_kubefake::{FakeApi, base64};
use ferry_migration::crd::{ClusterPair, Migration, MigrationStatus, VolumeImport};
use ferry_migration::{Ctx, pair::PairSettings};
use ferry_proto::v1::controller_client::ControllerClient;
use ferry_proto::v1::{CreateSnapshotRequest, DeleteSnapshotRequest};
use ferry_store::{Source, Store, StoreConfig, StoreOptions, VolumeSpec};
use ferry_transfer::Key;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tonic::transport::Channel;

const NS: &str = "shop";
const FERRY_NS: &str = "ferry-system";

/// Migrates namespace `shop`, whose database volume holds `snapshot`'s bytes, from A to B;
/// returns whether B's volume holds the same bytes.
///
/// # Errors
/// A failed step.
pub async fn run(
    a: &Store,
    csi: ControllerClient<Channel>,
    snapshot: &str,
    dir: &Path,
) -> Result<bool, BoxError> {
    // The application's volume on A: a clone of the snapshot, so its bytes stay put.
    let snap = a.get_snapshot(snapshot).await?;
    let app = a
        .create_volume(VolumeSpec {
            name: "demo-shop-db".into(),
            capacity_bytes: snap.size_bytes,
            options: snap.options,
            parameters: Default::default(),
            source: Some(Source::Snapshot(snap.id.clone())),
        })
        .await?;
    let b_dir = dir.join("store-b");
    let b = Store::open(
        &StoreConfig::fs(b_dir.to_string_lossy()),
        StoreOptions::default(),
    )
    .await?;
    let transfer_dir = dir.join("transfer");
    std::fs::create_dir_all(&transfer_dir)?;

    let (src, dst) = (FakeApi::new(), FakeApi::new());
    for api in [&src, &dst] {
        api.seed(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": FERRY_NS}}));
        api.seed(json!({"apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver", "metadata": {"name": "ferry.csi.dev"}, "spec": {"attachRequired": false}}));
        api.seed(json!({"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotClass", "metadata": {"name": "ferry"}, "driver": "ferry.csi.dev", "deletionPolicy": "Delete"}));
    }
    seed_app(&src, app.id(), snap.size_bytes);
    let key = Key::generate_hex();
    let secret: serde_json::Map<String, Value> = [
        ("kubeconfig", "apiVersion: v1\nkind: Config\n".to_string()),
        ("backend", "fs".to_string()),
        ("root", transfer_dir.to_string_lossy().into_owned()),
        ("encryptionKey", key),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), json!(base64(v.as_bytes()))))
    .collect();
    src.seed(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "remote-pair", "namespace": NS}, "data": secret}));
    src.seed(json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "ClusterPair", "metadata": {"name": "remote", "namespace": NS}, "spec": {"secretRef": {"name": "remote-pair"}}}));

    let dst_api = dst.clone();
    let mut src_ctx = Ctx::new(src.client(), a.clone(), FERRY_NS.into(), false);
    src_ctx.connect = Arc::new(move |_s: PairSettings| {
        let d = dst_api.clone();
        Box::pin(async move { Ok(d.client()) })
    });
    src_ctx.poll = Duration::from_millis(20);
    // The transfer folder is one the operator allows on both sides (--transfer-folder).
    src_ctx.policy.transfer_folders = vec![dir.to_path_buf()];
    let mut dst_ctx = Ctx::new(dst.client(), b.clone(), FERRY_NS.into(), false);
    dst_ctx.poll = Duration::from_millis(20);
    dst_ctx.policy.transfer_folders = vec![dir.to_path_buf()];

    let pair: ClusterPair = from(src.get("ferry.dev/clusterpairs", Some(NS), "remote"))?;
    ferry_migration::cluster_pair::reconcile(&src_ctx, &pair).await?;
    let pair: ClusterPair = from(src.get("ferry.dev/clusterpairs", Some(NS), "remote"))?;
    let ps = pair.status.unwrap_or_default();
    println!(
        "clusterpair      remote: scheduler {}, storage {} (transfer store {}, encrypted)",
        ps.scheduler_status,
        ps.storage_status,
        transfer_dir.display()
    );

    src.seed(json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "Migration", "metadata": {"name": "shop-to-remote", "namespace": NS},
        "spec": {"clusterPair": "remote", "namespaces": [NS]}}));
    let mut last = String::new();
    let status = loop {
        let m: Migration = from(src.get("ferry.dev/migrations", Some(NS), "shop-to-remote"))?;
        let wait = ferry_migration::migrate::reconcile(&src_ctx, &m).await?;
        let st: MigrationStatus = from(
            src.get("ferry.dev/migrations", Some(NS), "shop-to-remote")
                .map(|m| m["status"].clone()),
        )?;
        let now = format!(
            "{} {}",
            st.stage.map(|s| s.to_string()).unwrap_or_default(),
            st.status
        );
        if now != last {
            println!("migration        stage {now}");
            last = now;
        }
        if wait.is_none() {
            break st;
        }
        // csi-snapshotter's part, then the destination sidecar's.
        snapshotter(&src, &csi).await?;
        for vi in dst.all("ferry.dev/volumeimports") {
            let vi: VolumeImport = serde_json::from_value(vi)?;
            ferry_migration::volume_import::reconcile(&dst_ctx, &vi).await?;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    for v in &status.volumes {
        println!(
            "volume           {}/{}: {} ({} KiB moved) -> PV {} on B",
            v.namespace,
            v.persistent_volume_claim,
            v.status,
            v.bytes_done >> 10,
            v.destination_volume.as_deref().unwrap_or("-")
        );
    }
    for r in &status.resources {
        println!("resource         {} {}: {}", r.kind, r.name, r.status);
    }
    let dep = dst
        .get("apps/deployments", Some(NS), "db")
        .unwrap_or_default();
    println!(
        "on B             Deployment db at {} replicas (source count {} kept in ferry.dev/migrationReplicas)",
        dep["spec"]["replicas"], dep["metadata"]["annotations"]["ferry.dev/migrationReplicas"]
    );
    // csi-snapshotter deletes the migration's snapshot once its VolumeSnapshot is gone.
    snapshotter(&src, &csi).await?;
    let pv = status
        .volumes
        .first()
        .and_then(|v| v.destination_volume.clone())
        .unwrap_or_default();
    let pv = dst.get("/persistentvolumes", None, &pv).unwrap_or_default();
    let b_id = pv["spec"]["csi"]["volumeHandle"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let src_sum = whole(a, app.id()).await?;
    let dst_sum = whole(&b, &b_id).await?;
    println!("sha256 source      {src_sum}  (PVC shop/db on A)");
    println!(
        "sha256 destination {dst_sum}  (PV {} on B, store {})",
        pv["metadata"]["name"].as_str().unwrap_or(""),
        b_dir.display()
    );
    Ok(status.status == ferry_migration::crd::ItemStatus::Successful && src_sum == dst_sum)
}

fn from<T: serde::de::DeserializeOwned>(v: Option<Value>) -> Result<T, BoxError> {
    Ok(serde_json::from_value(v.ok_or("object missing")?)?)
}

/// The namespace `shop`: a database Deployment on a ferry PVC, a Service, a ConfigMap.
fn seed_app(api: &FakeApi, volume: &str, size: u64) {
    api.seed(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}));
    api.seed(json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv-shop-db"},
        "spec": {"capacity": {"storage": format!("{}Ki", size >> 10)}, "accessModes": ["ReadWriteOnce"], "persistentVolumeReclaimPolicy": "Delete",
                 "storageClassName": "ferry", "claimRef": {"namespace": NS, "name": "db"},
                 "csi": {"driver": "ferry.csi.dev", "volumeHandle": volume, "fsType": "ext4"}}}));
    api.seed(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "db", "namespace": NS},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "ferry", "volumeName": "pv-shop-db", "resources": {"requests": {"storage": format!("{}Ki", size >> 10)}}},
        "status": {"phase": "Bound"}}));
    api.seed(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "db", "namespace": NS},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "db"}}, "template": {"metadata": {"labels": {"app": "db"}},
            "spec": {"containers": [{"name": "db", "image": "postgres:17"}], "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "db"}}]}}}}));
    api.seed(
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db", "namespace": NS},
        "spec": {"clusterIP": "10.96.0.10", "selector": {"app": "db"}, "ports": [{"port": 5432}]}}),
    );
    api.seed(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "db-settings", "namespace": NS}, "data": {"max_connections": "100"}}));
}

/// What csi-snapshotter does, once: CreateSnapshot for new VolumeSnapshots, DeleteSnapshot
/// for contents whose VolumeSnapshot is gone.
async fn snapshotter(api: &FakeApi, csi: &ControllerClient<Channel>) -> Result<(), BoxError> {
    api.play_snapshotter(
        |volume, name| {
            let mut c = csi.clone();
            async move {
                let req = CreateSnapshotRequest {
                    source_volume_id: volume.clone(),
                    name,
                    ..Default::default()
                };
                let snap = c
                    .create_snapshot(req)
                    .await?
                    .into_inner()
                    .snapshot
                    .ok_or("CreateSnapshot returned no snapshot")?;
                println!("CreateSnapshot   {} of volume {volume}", snap.snapshot_id);
                Ok::<_, BoxError>(snap.snapshot_id)
            }
        },
        |snapshot_id| {
            let mut c = csi.clone();
            async move {
                c.delete_snapshot(DeleteSnapshotRequest {
                    snapshot_id,
                    ..Default::default()
                })
                .await?;
                Ok::<(), BoxError>(())
            }
        },
    )
    .await?;
    Ok(())
}

async fn whole(store: &Store, id: &str) -> Result<String, BoxError> {
    let h = store.open_volume(id).await?;
    let size = h.size().await;
    Ok(digest(&h.read_at(0, size as usize).await?))
}
