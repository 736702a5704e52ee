//! What each run of a MigrationSchedule moves and how long it takes: a 1 GiB volume of
//! random (incompressible) data in a folder chunk store, a one-minute schedule (the
//! controller's clock moved by hand), then three more runs each after 1 % of the volume
//! (ten 1 MiB blocks at random places) was rewritten. The transfer store is moto's S3
//! server on loopback when the test servers are installed (`hack/install-test-servers.sh`),
//! else a local folder; the destination is a second folder chunk store.
//!
//! The API servers are the in-process stand-in and the csi-snapshotter's part is played
//! by calling the chunk store's CreateSnapshot, as in the flow tests; everything else is
//! the controller's own code. Run by `hack/bench.sh schedule`; `FERRY_SCHEDULE_BENCH_MIB`
//! changes the volume size.

mod common;

use ferry_kubefake::FakeApi;
use ferry_migration::crd::{Migration, MigrationSchedule, MigrationStatus, VolumeImport};
use ferry_migration::{Ctx, pair::PairSettings};
use ferry_store::{Store, StoreConfig, StoreOptions, VolumeOptions, VolumeSpec};
use rand::{Rng, RngCore, SeedableRng, rngs::StdRng};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type BoxError = Box<dyn std::error::Error>;
const NS: &str = "shop";
const FERRY_NS: &str = "ferry-system";
const MIB: u64 = 1 << 20;

fn from<T: serde::de::DeserializeOwned>(v: Option<Value>) -> Result<T, BoxError> {
    Ok(serde_json::from_value(v.ok_or("object missing")?)?)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mib: u64 = std::env::var("FERRY_SCHEDULE_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let dir = tempfile::tempdir()?;
    let open = |name: &str| {
        let c = StoreConfig::fs(dir.path().join(name).to_string_lossy());
        async move { Store::open(&c, StoreOptions::default()).await }
    };
    let (a, b) = (open("a").await?, open("b").await?);
    let s3 = ferry_testkit::TestServer::start(ferry_testkit::Kind::S3).await;
    let mut transfer: BTreeMap<String, String> = match &s3 {
        Some(s) => s.bucket("standby").await,
        None => [
            ("backend".to_string(), "fs".to_string()),
            (
                "root".to_string(),
                dir.path()
                    .join(NS)
                    .join("transfer")
                    .to_string_lossy()
                    .into_owned(),
            ),
        ]
        .into(),
    };
    transfer.insert("encryptionKey".into(), ferry_transfer::Key::generate_hex());
    let kind = if s3.is_some() {
        "moto S3 on loopback"
    } else {
        "a local folder"
    };

    // The volume: random data, written in 4 MiB pieces.
    let vol = a
        .create_volume(VolumeSpec {
            name: "pvc-bench".into(),
            capacity_bytes: mib * MIB,
            options: VolumeOptions::default(),
            parameters: Default::default(),
            source: None,
        })
        .await?;
    let id = vol.id().to_string();
    let mut rng = StdRng::seed_from_u64(1);
    {
        let h = a.open_volume(&id).await?;
        let mut buf = vec![0u8; (4 * MIB) as usize];
        for i in 0..mib / 4 {
            rng.fill_bytes(&mut buf);
            h.write_at(i * 4 * MIB, &buf).await?;
        }
        h.flush().await?;
    }

    let (src, dst) = (FakeApi::new(), FakeApi::new());
    common::seed_cluster(&src, FERRY_NS);
    common::seed_cluster(&dst, FERRY_NS);
    src.seed(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}));
    src.seed(json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv-bench"},
        "spec": {"capacity": {"storage": format!("{mib}Mi")}, "accessModes": ["ReadWriteOnce"], "storageClassName": "ferry",
                 "claimRef": {"namespace": NS, "name": "data"}, "csi": {"driver": "ferry.csi.dev", "volumeHandle": id}}}));
    src.seed(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data", "namespace": NS},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "ferry", "volumeName": "pv-bench", "resources": {"requests": {"storage": format!("{mib}Mi")}}},
        "status": {"phase": "Bound"}}));
    common::seed_pair(&src, NS, &transfer);
    src.seed(json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "SchedulePolicy", "metadata": {"name": "every-minute"},
        "policy": {"interval": {"intervalMinutes": 1, "retain": 2}}}));
    src.seed(json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "MigrationSchedule", "metadata": {"name": "standby", "namespace": NS},
        "spec": {"schedulePolicyName": "every-minute", "template": {"spec": {"clusterPair": "remote", "namespaces": [NS]}}}}));

    let d = dst.clone();
    let mut src_ctx = Ctx::new(src.client(), a.clone(), FERRY_NS.into(), false);
    src_ctx.connect = Arc::new(move |_s: PairSettings| {
        let d = d.clone();
        Box::pin(async move { Ok(d.client()) })
    });
    src_ctx.poll = Duration::from_millis(5);
    src_ctx.policy.transfer_folders = vec![dir.path().to_path_buf()];
    let now = Arc::new(Mutex::new(jiff::Timestamp::now()));
    let read = now.clone();
    src_ctx.clock = Arc::new(move || *read.lock().unwrap_or_else(|e| e.into_inner()));
    let mut dst_ctx = Ctx::new(dst.client(), b.clone(), FERRY_NS.into(), false);
    dst_ctx.poll = Duration::from_millis(5);
    dst_ctx.policy.transfer_folders = vec![dir.path().to_path_buf()];

    println!(
        "volume {mib} MiB of random data, chunk {} KiB; transfer store: {kind} (encrypted)",
        VolumeOptions::default().chunk_size >> 10
    );
    println!("run  changed      moved        wall");
    for run in 0..4u64 {
        let changed = if run == 0 {
            mib * MIB
        } else {
            // 1 %: ten 1 MiB blocks (of a 1 GiB volume) at random places.
            let blocks = (mib / 100).max(1);
            let h = a.open_volume(&id).await?;
            let mut buf = vec![0u8; MIB as usize];
            for _ in 0..blocks {
                rng.fill_bytes(&mut buf);
                let at = rng.random_range(0..mib) * MIB;
                h.write_at(at, &buf).await?;
            }
            h.flush().await?;
            let mut t = now.lock().unwrap_or_else(|e| e.into_inner());
            *t = t.checked_add(jiff::SignedDuration::from_secs(61))?;
            blocks * MIB
        };
        let started = Instant::now();
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
        let st = loop {
            let m: Migration = from(src.get("ferry.dev/migrations", Some(NS), &name))?;
            let wait =
                ferry_migration::runtime::pass::<ferry_migration::source::migrate::Migrations>(
                    &src_ctx, &m,
                )
                .await?;
            if wait.is_none() {
                break from::<MigrationStatus>(
                    src.get("ferry.dev/migrations", Some(NS), &name)
                        .map(|m| m["status"].clone()),
                )?;
            }
            let store = &a;
            src.play_snapshotter(
                |volume, content| async move {
                    store
                        .create_snapshot(&content, &volume, Default::default())
                        .await
                        .map(|s| s.id)
                        .map_err(|e| e.to_string())
                },
                |sid| async move { store.delete_snapshot(&sid).await.map_err(|e| e.to_string()) },
            )
            .await?;
            for vi in dst.all("ferry.dev/volumeimports") {
                let vi: VolumeImport = serde_json::from_value(vi)?;
                ferry_migration::runtime::pass::<
                    ferry_migration::destination::volume_import::Imports,
                >(&dst_ctx, &vi)
                .await?;
            }
        };
        let wall = started.elapsed().as_secs_f64();
        if st.status != ferry_migration::crd::ItemStatus::Successful {
            return Err(format!("run {name}: {:?} {:?}", st.status, st.reason).into());
        }
        let moved: u64 = st.volumes.iter().map(|v| v.bytes_transferred).sum();
        println!(
            "{:<4} {:>7.1} MiB  {:>8.2} MiB  {:>7.2} s",
            run + 1,
            changed as f64 / MIB as f64,
            moved as f64 / MIB as f64,
            wall
        );
    }
    drop(s3);
    Ok(())
}
