//! A namespace of several volumes migrated through one S3 server (moto on loopback): its
//! wall time against the wall time of its largest volume migrated alone, with the volumes
//! one at a time (`--parallel-volumes 1`) and at the controller's widths.
//!
//! Volumes live in folder chunk stores (source and destination), hold half random and half
//! text-like data, and are migrated by the controller's own reconcilers. The API servers are
//! the in-process stand-in and the csi-snapshotter's part is played by calling the chunk
//! store's CreateSnapshot, as in the flow tests. The source's Migration reconciler, the
//! snapshotter and each destination VolumeImport reconciler run side by side, as a
//! controller's reconcilers do. Each step is timed from the Migration's status (sampled
//! every 20 ms): snapshots taken, every volume exported, every volume imported, finished.
//! Every destination volume's root is checked equal to its source snapshot's.
//!
//! Run by `hack/bench-migration.sh`; `FERRY_MIGRATION_BENCH_VOLUMES` (8) and
//! `FERRY_MIGRATION_BENCH_MIB` (256) set the shape, `FERRY_MIGRATION_BENCH_WIDTHS` ("1,2,4,8")
//! the widths tried.

mod common;

use ferry_kubefake::FakeApi;
use ferry_migration::crd::{Migration, MigrationStatus, VolumeImport};
use ferry_migration::transfers::Transfers;
use ferry_migration::{Ctx, pair::PairSettings};
use ferry_store::{Store, StoreConfig, StoreOptions, VolumeOptions, VolumeSpec};
use rand::{RngCore, SeedableRng, rngs::StdRng};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
const FERRY_NS: &str = "ferry-system";
const MIB: u64 = 1 << 20;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn from<T: serde::de::DeserializeOwned>(v: Option<Value>) -> Result<T, BoxError> {
    Ok(serde_json::from_value(v.ok_or("object missing")?)?)
}

/// Writes `mib` MiB into a new volume `name` of `store`: 4 MiB pieces alternately random
/// and text-like rows.
async fn fill(store: &Store, name: &str, mib: u64, seed: u64) -> Result<String, BoxError> {
    let v = store
        .create_volume(VolumeSpec {
            name: name.into(),
            capacity_bytes: mib * MIB,
            options: VolumeOptions::default(),
            parameters: Default::default(),
            source: None,
        })
        .await?;
    let h = store.open_volume(v.id()).await?;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut buf = vec![0u8; (4 * MIB) as usize];
    for i in 0..mib / 4 {
        if i % 2 == 0 {
            rng.fill_bytes(&mut buf);
        } else {
            let mut row = 0u64;
            let mut at = 0;
            while at < buf.len() {
                let line = format!(
                    "{seed},{i},{row},customer-{},{}\n",
                    rng.next_u32() % 9973,
                    row * 7
                );
                let n = line.len().min(buf.len() - at);
                buf[at..at + n].copy_from_slice(&line.as_bytes()[..n]);
                at += n;
                row += 1;
            }
        }
        h.write_at(i * 4 * MIB, &buf).await?;
    }
    h.flush().await?;
    Ok(v.id().to_string())
}

/// The two clusters' API stand-ins with what every run needs.
fn clusters(transfer: &BTreeMap<String, String>) -> (FakeApi, FakeApi) {
    let (src, dst) = (FakeApi::new(), FakeApi::new());
    common::seed_cluster(&src, FERRY_NS);
    common::seed_cluster(&dst, FERRY_NS);
    common::seed_pair(&src, FERRY_NS, transfer);
    (src, dst)
}

/// Claim `claim` in namespace `ns` bound to the ferry volume `id`.
fn claim(api: &FakeApi, ns: &str, claim: &str, id: &str, mib: u64) {
    let pv = format!("pv-{ns}-{claim}");
    api.seed(json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv},
        "spec": {"capacity": {"storage": format!("{mib}Mi")}, "accessModes": ["ReadWriteOnce"], "storageClassName": "ferry",
                 "persistentVolumeReclaimPolicy": "Delete", "claimRef": {"namespace": ns, "name": claim},
                 "csi": {"driver": "ferry.csi.dev", "volumeHandle": id, "fsType": "ext4"}}}));
    api.seed(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": claim, "namespace": ns},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "ferry", "volumeName": pv, "resources": {"requests": {"storage": format!("{mib}Mi")}}},
        "status": {"phase": "Bound"}}));
}

/// Seconds from the start until each step: snapshots, exported, imported, finished.
#[derive(Default, Debug)]
struct Steps {
    snapshots: Option<f64>,
    exported: Option<f64>,
    imported: Option<f64>,
    finished: Option<f64>,
}

/// Migrates namespace `ns` (its claims already on `src`) with `width` volumes at once, and
/// returns the steps' times and the final status.
#[allow(clippy::too_many_arguments)]
async fn migrate(
    src: &FakeApi,
    dst: &FakeApi,
    a: &Store,
    b: &Store,
    ns: &str,
    name: &str,
    width: usize,
) -> Result<(Steps, MigrationStatus), BoxError> {
    let d = dst.clone();
    let mut src_ctx = Ctx::new(src.client(), a.clone(), FERRY_NS.into(), false);
    src_ctx.connect = Arc::new(move |_s: PairSettings| {
        let d = d.clone();
        Box::pin(async move { Ok(d.client()) })
    });
    src_ctx.poll = Duration::from_millis(20);
    src_ctx.transfers = Arc::new(Transfers::new(width));
    src_ctx.volume_width = width;
    let mut dst_ctx = Ctx::new(dst.client(), b.clone(), FERRY_NS.into(), false);
    dst_ctx.poll = Duration::from_millis(20);
    dst_ctx.transfers = Arc::new(Transfers::new(width));
    src.seed(json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "Migration", "metadata": {"name": name, "namespace": FERRY_NS},
        "spec": {"clusterPair": "remote", "namespaces": [ns], "includeResources": false}}));
    let done = Arc::new(AtomicBool::new(false));
    let started = Instant::now();

    let migration = {
        let (src, ctx, done, name) = (src.clone(), src_ctx, done.clone(), name.to_string());
        tokio::spawn(async move {
            while !done.load(Ordering::SeqCst) {
                let m: Migration =
                    match from(src.get("ferry.dev/migrations", Some(FERRY_NS), &name)) {
                        Ok(m) => m,
                        Err(_) => break,
                    };
                match ferry_migration::runtime::pass::<ferry_migration::source::migrate::Migrations>(&ctx, &m).await {
                    Ok(None) => break,
                    Ok(Some(wait)) => tokio::time::sleep(wait.max(Duration::from_millis(5))).await,
                    Err(e) => {
                        eprintln!("migration reconcile (retried): {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        })
    };
    let snapshotter = {
        let (src, a, done) = (src.clone(), a.clone(), done.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::SeqCst) {
                let store = &a;
                let played = src
                    .play_snapshotter(
                        |volume, content| async move {
                            store
                                .create_snapshot(&content, &volume, Default::default())
                                .await
                                .map(|s| s.id)
                                .map_err(|e| e.to_string())
                        },
                        |sid| async move {
                            store.delete_snapshot(&sid).await.map_err(|e| e.to_string())
                        },
                    )
                    .await;
                if let Err(e) = played {
                    eprintln!("snapshotter: {e}");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    // One task per VolumeImport, as kube-runtime runs reconciles of different objects.
    let imports = {
        let (dst, ctx, done) = (dst.clone(), Arc::new(dst_ctx), done.clone());
        tokio::spawn(async move {
            let mut running: BTreeMap<String, tokio::task::JoinHandle<()>> = BTreeMap::new();
            while !done.load(Ordering::SeqCst) {
                for vi in dst.all("ferry.dev/volumeimports") {
                    let Ok(vi) = serde_json::from_value::<VolumeImport>(vi) else {
                        continue;
                    };
                    let key = vi.metadata.name.clone().unwrap_or_default();
                    if running.get(&key).is_some_and(|t| !t.is_finished()) {
                        continue;
                    }
                    let ctx = ctx.clone();
                    running.insert(
                        key,
                        tokio::spawn(async move {
                            loop {
                                match ferry_migration::runtime::pass::<
                                    ferry_migration::destination::volume_import::Imports,
                                >(&ctx, &vi)
                                .await
                                {
                                    Ok(Some(wait)) => {
                                        tokio::time::sleep(wait.max(Duration::from_millis(5))).await
                                    }
                                    Ok(None) => break,
                                    Err(e) => {
                                        eprintln!("import reconcile (retried): {e}");
                                        tokio::time::sleep(Duration::from_millis(50)).await;
                                    }
                                }
                            }
                        }),
                    );
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    let mut steps = Steps::default();
    let status = loop {
        let st: MigrationStatus = src
            .get("ferry.dev/migrations", Some(FERRY_NS), name)
            .map(|m| serde_json::from_value(m["status"].clone()).unwrap_or_default())
            .unwrap_or_default();
        let t = started.elapsed().as_secs_f64();
        let all = |f: &dyn Fn(&ferry_migration::crd::VolumeInfo) -> bool| {
            !st.volumes.is_empty() && st.volumes.iter().all(f)
        };
        if steps.snapshots.is_none() && all(&|v| v.snapshot_handle.is_some()) {
            steps.snapshots = Some(t);
        }
        if steps.exported.is_none() && all(&|v| v.exported) {
            steps.exported = Some(t);
        }
        if steps.imported.is_none() && all(&|v| v.destination_volume.is_some()) {
            steps.imported = Some(t);
        }
        if st.finish_timestamp.is_some() {
            steps.finished = Some(t);
            break st;
        }
        if started.elapsed() > Duration::from_secs(1800) {
            return Err(format!("migration {name} did not end: {st:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    done.store(true, Ordering::SeqCst);
    let _ = migration.await;
    let _ = snapshotter.await;
    let _ = imports.await;
    Ok((steps, status))
}

/// Checks every migrated volume's destination root against its source snapshot's.
async fn check(dst: &FakeApi, a: &Store, b: &Store, st: &MigrationStatus) -> Result<(), BoxError> {
    if st.status != ferry_migration::crd::ItemStatus::Successful {
        return Err(format!("migration ended {:?}: {:?}", st.status, st.reason).into());
    }
    for v in &st.volumes {
        let pv = dst
            .get(
                "/persistentvolumes",
                None,
                v.destination_volume.as_deref().unwrap_or(""),
            )
            .ok_or("destination PV missing")?;
        let id = pv["spec"]["csi"]["volumeHandle"]
            .as_str()
            .ok_or("no handle")?;
        let got = b.get_volume(id).await?.head.root;
        let want = a
            .get_volume(v.volume_handle.as_deref().unwrap_or(""))
            .await?
            .head
            .root;
        if got != want {
            return Err(format!("{}: destination root differs", v.persistent_volume_claim).into());
        }
    }
    Ok(())
}

/// CPU seconds (user + system) this process used so far.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

fn secs(t: Option<f64>) -> String {
    t.map_or("-".into(), |t| format!("{t:.1}"))
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let volumes: u64 = env_or("FERRY_MIGRATION_BENCH_VOLUMES", 8);
    let mib: u64 = env_or("FERRY_MIGRATION_BENCH_MIB", 256);
    let widths: Vec<usize> = std::env::var("FERRY_MIGRATION_BENCH_WIDTHS")
        .unwrap_or_else(|_| "1,2,4,8".into())
        .split(',')
        .filter_map(|w| w.trim().parse().ok())
        .collect();
    let base = std::path::PathBuf::from(
        std::env::var("FERRY_BENCH_DIR").unwrap_or_else(|_| ".cache/bench-migration".into()),
    );
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base)?;
    // FERRY_BENCH_S3_ENDPOINT: an S3 server the caller runs (bucket `bench`), behind the
    // benchmark link of hack/bench-wan.sh; else moto on loopback.
    let external = std::env::var("FERRY_BENCH_S3_ENDPOINT").ok();
    let server = match external {
        Some(_) => None,
        None => Some(
            ferry_testkit::TestServer::start(ferry_testkit::Kind::S3)
                .await
                .ok_or("moto is not installed: run hack/install-test-servers.sh")?,
        ),
    };
    println!(
        "{volumes} volumes of {mib} MiB (half random, half text), chunk {} KiB, folder chunk \
         stores, transfer store moto S3 on loopback; {} cores",
        VolumeOptions::default().chunk_size >> 10,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "| run | width | snapshots s | exported s | imported s | wall s | ferry CPU s (cores) | \
         wall / largest alone |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");

    // Each run gets fresh stores and its own bucket prefix, so nothing is found already
    // there.
    let mut run = 0;
    let mut alone = None;
    for width in std::iter::once(1).chain(widths.iter().copied()) {
        run += 1;
        let dir = base.join(format!("run-{run}"));
        let open = |name: &str| {
            let c = StoreConfig::fs(dir.join(name).to_string_lossy());
            async move { Store::open(&c, StoreOptions::default()).await }
        };
        let (a, b) = (open("a").await?, open("b").await?);
        let mut transfer = match (&server, &external) {
            (Some(server), _) => server.bucket(&format!("migration-{run}")).await,
            (None, Some(e)) => [
                ("backend", "s3"),
                ("bucket", "bench"),
                ("endpoint", e.as_str()),
                ("region", "us-east-1"),
                ("accessKeyId", "test"),
                ("secretAccessKey", "test"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            (None, None) => return Err("no S3 server".into()),
        };
        transfer.insert("root".into(), format!("/run-{run}/"));
        let (src, dst) = clusters(&transfer);
        let (ns, count) = if alone.is_none() {
            ("solo", 1)
        } else {
            ("shop", volumes)
        };
        src.seed(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}));
        for i in 0..count {
            let id = fill(&a, &format!("pvc-{ns}-{i}"), mib, i + 1).await?;
            claim(&src, ns, &format!("data-{i}"), &id, mib);
        }
        let cpu = cpu_seconds();
        let (steps, st) = migrate(&src, &dst, &a, &b, ns, &format!("m{run}"), width).await?;
        let cpu = cpu_seconds() - cpu;
        check(&dst, &a, &b, &st).await?;
        let wall = steps.finished.unwrap_or_default();
        let label = if alone.is_none() {
            alone = Some(wall);
            "largest volume alone".to_string()
        } else {
            format!("{count} volumes")
        };
        println!(
            "| {label} | {width} | {} | {} | {} | {wall:.1} | {cpu:.1} ({:.2}) | {:.2} |",
            secs(steps.snapshots),
            secs(steps.exported),
            secs(steps.imported),
            cpu / wall.max(0.001),
            wall / alone.unwrap_or(wall)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
    drop(server);
    Ok(())
}
