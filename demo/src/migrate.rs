//! The migration half of the walk-through: a namespace with an application and its volume
//! kept on standby in cluster B by a MigrationSchedule (two runs, the second moving about
//! the change), then a failover to B (A's application stopped, one last sync, B's started).
//!
//! Both clusters' API servers are the in-process stand-in (`ferry_kubefake`):
//! the demo needs no cluster. Everything else is real: the controller's reconcilers
//! (ClusterPair check, MigrationSchedule, Migration through Volumes, Application and Final,
//! the destination's VolumeImport, the failover Action), CreateSnapshot and DeleteSnapshot over the plugin's socket (the demo plays
//! csi-snapshotter), the encrypted transfer store (a folder), and chunk store B.

use super::{BoxError, digest};
use ferry_kubefake::{FakeApi, base64};
use ferry_migration::crd::{
    Action, ActionStatus, ClusterPair, Migration, MigrationSchedule, MigrationStatus, VolumeImport,
};
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
    // In the namespace's own part of the allowed folder, as a tenant's pair must be.
    let transfer_dir = dir.join(NS).join("transfer");
    std::fs::create_dir_all(&transfer_dir)?;

    let (src, dst) = (FakeApi::new(), FakeApi::new());
    for api in [&src, &dst] {
        api.seed(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": FERRY_NS}}));
        api.seed(json!({"apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver", "metadata": {"name": "ferry.csi.dev"}, "spec": {"attachRequired": false}}));
        api.seed(json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "ferry"}, "provisioner": "ferry.csi.dev", "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate"}));
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
    let src_api = src.clone();
    let mut src_ctx = Ctx::new(src.client(), a.clone(), FERRY_NS.into(), false);
    src_ctx.connect = Arc::new(move |_s: PairSettings| {
        let d = dst_api.clone();
        Box::pin(async move { Ok(d.client()) })
    });
    src_ctx.poll = Duration::from_millis(20);
    // The transfer folder is one the operator allows on both sides (--transfer-folder).
    src_ctx.policy.transfer_folders = vec![dir.to_path_buf()];
    let mut dst_ctx = Ctx::new(dst.client(), b.clone(), FERRY_NS.into(), false);
    dst_ctx.connect = Arc::new(move |_s: PairSettings| {
        let s = src_api.clone();
        Box::pin(async move { Ok(s.client()) })
    });
    dst_ctx.poll = Duration::from_millis(20);
    dst_ctx.policy.transfer_folders = vec![dir.to_path_buf()];

    let pair: ClusterPair = from(src.get("ferry.dev/clusterpairs", Some(NS), "remote"))?;
    ferry_migration::runtime::pass::<ferry_migration::source::cluster_pair::Pairs>(&src_ctx, &pair)
        .await?;
    let pair: ClusterPair = from(src.get("ferry.dev/clusterpairs", Some(NS), "remote"))?;
    let ps = pair.status.unwrap_or_default();
    println!(
        "clusterpair      remote: scheduler {}, storage {} (transfer store {}, encrypted)",
        ps.scheduler_status,
        ps.storage_status,
        transfer_dir.display()
    );

    // A schedule every minute; the demo moves the controller's clock by hand.
    let now = Arc::new(std::sync::Mutex::new(jiff::Timestamp::now()));
    let read = now.clone();
    src_ctx.clock = Arc::new(move || *read.lock().unwrap_or_else(|e| e.into_inner()));
    src.seed(json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "SchedulePolicy", "metadata": {"name": "every-minute"},
        "policy": {"interval": {"intervalMinutes": 1, "retain": 2}}}));
    src.seed(json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "MigrationSchedule", "metadata": {"name": "standby", "namespace": NS},
        "spec": {"schedulePolicyName": "every-minute", "template": {"spec": {"clusterPair": "remote", "namespaces": [NS]}}}}));
    let c = Clusters {
        src: &src,
        dst: &dst,
        src_ctx: &src_ctx,
        dst_ctx: &dst_ctx,
        csi: &csi,
    };
    let mut status = MigrationStatus::default();
    for run in 1..=2 {
        if run == 2 {
            // The application writes 64 KiB; a minute passes.
            let h = a.open_volume(app.id()).await?;
            h.write_at(4096, &vec![0x5a; 64 << 10]).await?;
            h.flush().await?;
            let mut t = now.lock().unwrap_or_else(|e| e.into_inner());
            *t = t.checked_add(jiff::SignedDuration::from_secs(61))?;
        }
        let sched: MigrationSchedule =
            from(src.get("ferry.dev/migrationschedules", Some(NS), "standby"))?;
        ferry_migration::runtime::pass::<ferry_migration::source::migration_schedule::Schedules>(
            &src_ctx, &sched,
        )
        .await?;
        let sched: MigrationSchedule =
            from(src.get("ferry.dev/migrationschedules", Some(NS), "standby"))?;
        let name = sched
            .status
            .unwrap_or_default()
            .items
            .get("interval")
            .and_then(|v| v.last())
            .map(|i| i.name.clone())
            .ok_or("the schedule made no run")?;
        status = c.migrate(&name).await?;
        let moved: u64 = status.volumes.iter().map(|v| v.bytes_transferred).sum();
        println!(
            "schedule run {run}   {name}: {} ({} KiB read, {} KiB moved)",
            status.status,
            status.volumes.iter().map(|v| v.bytes_done).sum::<u64>() >> 10,
            moved >> 10
        );
    }
    for v in &status.volumes {
        println!(
            "volume           {}/{}: {} -> PV {} on B",
            v.namespace,
            v.persistent_volume_claim,
            v.status,
            v.destination_volume.as_deref().unwrap_or("-")
        );
    }
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
    let standby_ok = whole(a, app.id()).await? == whole(&b, &b_id).await?;
    println!("standby on B     same bytes as A after run 2: {standby_ok}");

    // Failover to B: the controller on B reaches A through pair "back", same transfer store.
    let mut back = secret.clone();
    back.insert(
        "kubeconfig".into(),
        json!(base64(b"apiVersion: v1\nkind: Config\n")),
    );
    dst.seed(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "back-pair", "namespace": NS}, "data": back}));
    dst.seed(json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "ClusterPair", "metadata": {"name": "back", "namespace": NS},
        "spec": {"secretRef": {"name": "back-pair"}}, "status": {"schedulerStatus": "Ready", "storageStatus": "Ready"}}));
    dst.seed(json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "Action", "metadata": {"name": "failover-standby", "namespace": NS},
        "spec": {"actionType": "failover", "actionParameter": {"failoverParameter": {"migrationScheduleReference": "standby", "clusterPair": "back", "syncFirst": true}}}}));
    let action = c.failover("failover-standby").await?;
    for s in &action.steps {
        println!(
            "failover         {:<20} {:<10} {}",
            s.name,
            s.status,
            s.message.as_deref().unwrap_or("")
        );
    }
    let dep = dst
        .get("apps/deployments", Some(NS), "db")
        .unwrap_or_default();
    let src_dep = src
        .get("apps/deployments", Some(NS), "db")
        .unwrap_or_default();
    println!(
        "after failover   Deployment db: {} replicas on B, {} on A; schedule suspended: {}",
        dep["spec"]["replicas"],
        src_dep["spec"]["replicas"],
        src.get("ferry.dev/migrationschedules", Some(NS), "standby")
            .unwrap_or_default()["spec"]["suspend"]
    );
    let failed_over = action.status == ferry_migration::crd::ItemStatus::Successful
        && dep["spec"]["replicas"] == 2;
    let src_sum = whole(a, app.id()).await?;
    let dst_sum = whole(&b, &b_id).await?;
    println!("sha256 source      {src_sum}  (PVC shop/db on A)");
    println!(
        "sha256 destination {dst_sum}  (PV {} on B, store {})",
        pv["metadata"]["name"].as_str().unwrap_or(""),
        b_dir.display()
    );
    Ok(
        status.status == ferry_migration::crd::ItemStatus::Successful
            && standby_ok
            && failed_over
            && src_sum == dst_sum,
    )
}

/// Both clusters and their controllers, for driving runs and Actions.
struct Clusters<'a> {
    src: &'a FakeApi,
    dst: &'a FakeApi,
    src_ctx: &'a Ctx,
    dst_ctx: &'a Ctx,
    csi: &'a ControllerClient<Channel>,
}

impl Clusters<'_> {
    /// One turn of A's Migrations, csi-snapshotter's part, and B's imports.
    async fn turn(&self) -> Result<(), BoxError> {
        for m in self.src.all("ferry.dev/migrations") {
            let m: Migration = serde_json::from_value(m)?;
            ferry_migration::runtime::pass::<ferry_migration::source::migrate::Migrations>(
                self.src_ctx,
                &m,
            )
            .await?;
        }
        snapshotter(self.src, self.csi).await?;
        for vi in self.dst.all("ferry.dev/volumeimports") {
            let vi: VolumeImport = serde_json::from_value(vi)?;
            ferry_migration::runtime::pass::<ferry_migration::destination::volume_import::Imports>(
                self.dst_ctx,
                &vi,
            )
            .await?;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        Ok(())
    }

    /// Runs Migration `name` on A to its end.
    async fn migrate(&self, name: &str) -> Result<MigrationStatus, BoxError> {
        for _ in 0..500 {
            self.turn().await?;
            let st: MigrationStatus = from(
                self.src
                    .get("ferry.dev/migrations", Some(NS), name)
                    .map(|m| m["status"].clone()),
            )?;
            if st.finish_timestamp.is_some() {
                return Ok(st);
            }
        }
        Err(format!("migration {name} did not end").into())
    }

    /// Runs Action `name` on B to its end, the other controllers in between.
    async fn failover(&self, name: &str) -> Result<ActionStatus, BoxError> {
        for _ in 0..500 {
            let act: Action = from(self.dst.get("ferry.dev/actions", Some(NS), name))?;
            ferry_migration::runtime::pass::<ferry_migration::destination::dr::Actions>(
                self.dst_ctx,
                &act,
            )
            .await?;
            let st: ActionStatus = from(
                self.dst
                    .get("ferry.dev/actions", Some(NS), name)
                    .map(|a| a["status"].clone()),
            )?;
            if st.status.is_final() {
                return Ok(st);
            }
            self.turn().await?;
        }
        Err(format!("action {name} did not end").into())
    }
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
