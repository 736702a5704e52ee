//! Disaster recovery with the real binaries: a MigrationSchedule runs twice (the second run
//! moves about the change), `ferryctl perform failover --sync-first` starts the standby, the
//! application writes there, `ferryctl perform failback` (with the destination's sidecar
//! killed mid-way and restarted) brings the data back into the source's own volumes. Two
//! volumes, each compared byte for byte at every step.
//!
//! Below the Kubernetes API everything is real: a `ferry plugin` per cluster serving CSI on
//! a unix socket over its own chunk store, a `ferry migration` sidecar per cluster, moto's
//! S3 server on loopback as the transfer store (encrypted). The API servers are ferry's
//! stand-in served over HTTP (no real one can be installed here); the test plays
//! csi-snapshotter over CSI, the PV controller (it marks imported claims Bound) and the
//! kubelet (it deletes the pod a scale-down would stop).

mod common;

use common::{csi_volume, digest, log_text, seed_cluster, sidecar, snapshotter};
use ferry_kubefake::{FakeApi, Method, base64};
use ferry_proto::v1::controller_client::ControllerClient;
use ferry_store::{Store, StoreConfig, StoreOptions};
use ferry_testkit::{Kind, TestServer};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const NS: &str = "shop";
const MIB: usize = 1 << 20;
const CLAIMS: [(&str, usize); 2] = [("data", 8), ("logs", 4)];

/// Writes `len` bytes of a pattern seeded by `seed` at `offset`.
async fn write(store: &Store, id: &str, offset: usize, len: usize, seed: usize) {
    let h = store.open_volume(id).await.expect("open");
    let data: Vec<u8> = (0..len)
        .map(|i| ((i + seed).wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    h.write_at(offset as u64, &data).await.expect("write");
    h.flush().await.expect("flush");
}

/// A ClusterPair `name` in `shop` on `api` reaching the cluster at `other`.
fn pair(
    api: &FakeApi,
    name: &str,
    other: std::net::SocketAddr,
    transfer: &BTreeMap<String, String>,
) {
    let mut secret: serde_json::Map<String, Value> = transfer
        .iter()
        .map(|(k, v)| (k.clone(), json!(base64(v.as_bytes()))))
        .collect();
    secret.insert(
        "kubeconfig".into(),
        json!(base64(FakeApi::kubeconfig(other).as_bytes())),
    );
    // One transfer store and key both ways: a failback finds the chunks already there.
    secret.insert(
        "encryptionKey".into(),
        json!(base64("5a".repeat(32).as_bytes())),
    );
    api.seed(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": format!("{name}-pair"), "namespace": NS}, "data": secret}));
    api.seed(json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "ClusterPair", "metadata": {"name": name, "namespace": NS},
        "spec": {"secretRef": {"name": format!("{name}-pair")}}}));
}

fn ferryctl(kubeconfig: &Path, args: &[&str], out: &Path) -> Child {
    Command::new(ferry_e2e::ferryctl_bin())
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(out).expect("out"))
        .stderr(Stdio::inherit())
        .spawn()
        .expect("ferryctl")
}

fn scheduled_runs(src: &FakeApi) -> Vec<Value> {
    let s = src
        .get("ferry.dev/migrationschedules", Some(NS), "nightly")
        .expect("schedule");
    s["status"]["items"]["interval"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn moved(api: &FakeApi, name: &str) -> u64 {
    let m = api
        .get("ferry.dev/migrations", Some(NS), name)
        .expect("migration");
    m["status"]["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["bytesTransferred"].as_u64())
        .sum()
}

fn replicas(api: &FakeApi) -> i64 {
    api.get("apps/deployments", Some(NS), "db").expect("dep")["spec"]["replicas"]
        .as_i64()
        .unwrap_or(-1)
}

/// The destination volume behind the destination's claim.
fn dst_volume(dst: &FakeApi, claim: &str) -> String {
    let pvc = dst
        .get("/persistentvolumeclaims", Some(NS), claim)
        .expect("claim");
    let pv = dst
        .get(
            "/persistentvolumes",
            None,
            pvc["spec"]["volumeName"].as_str().expect("volumeName"),
        )
        .expect("pv");
    pv["spec"]["csi"]["volumeHandle"]
        .as_str()
        .expect("handle")
        .to_string()
}

struct Clusters {
    src: FakeApi,
    dst: FakeApi,
    src_csi: ControllerClient<tonic::transport::Channel>,
    dst_csi: ControllerClient<tonic::transport::Channel>,
    src_store: Store,
    dst_store: Store,
    vols: BTreeMap<&'static str, String>,
}

impl Clusters {
    /// Plays the snapshotter on both clusters and binds the destination's claims.
    async fn turn(&mut self) {
        let mut made = Vec::new();
        snapshotter(&self.src, &self.src_csi, &mut made).await;
        snapshotter(&self.dst, &self.dst_csi, &mut made).await;
        for (claim, _) in CLAIMS {
            if let Some(pvc) = self.dst.get("/persistentvolumeclaims", Some(NS), claim)
                && pvc["status"]["phase"].is_null()
            {
                self.dst.set_status(
                    "/persistentvolumeclaims",
                    Some(NS),
                    claim,
                    json!({"phase": "Bound"}),
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    async fn same_data(&self, what: &str) {
        for (claim, _) in CLAIMS {
            assert_eq!(
                digest(&self.src_store, &self.vols[claim]).await,
                digest(&self.dst_store, &dst_volume(&self.dst, claim)).await,
                "{what}: claim {claim}"
            );
        }
    }
}

fn action_status(dst: &FakeApi, name: &str) -> Value {
    dst.get("ferry.dev/actions", Some(NS), name)
        .map(|a| a["status"].clone())
        .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_fails_over_and_back_with_the_real_binaries() {
    let Some(s3) = TestServer::start(Kind::S3).await else {
        return;
    };
    let transfer = s3.bucket("standby").await;
    let tmp = tempfile::tempdir().expect("tmp");
    let src_plugin = ferry_e2e::Plugin::start_fs().await;
    let dst_plugin = ferry_e2e::Plugin::start_fs().await;
    let src_store_dir = src_plugin.dir.path().join("store");
    let dst_store_dir = dst_plugin.dir.path().join("store");
    let open = |d: &Path| {
        let c = StoreConfig::fs(d.to_string_lossy());
        async move {
            Store::open(&c, StoreOptions::default())
                .await
                .expect("store")
        }
    };
    let mut src_csi = src_plugin.controller().await;
    let mut vols = BTreeMap::new();
    for (claim, mib) in CLAIMS {
        vols.insert(
            claim,
            csi_volume(&mut src_csi, &format!("pvc-{claim}"), (mib * MIB) as i64).await,
        );
    }
    let src_store = open(&src_store_dir).await;
    for (i, (claim, mib)) in CLAIMS.iter().enumerate() {
        write(&src_store, &vols[claim], 0, mib * MIB * 5 / 8, i).await;
    }

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
    src.seed(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}));
    for (claim, mib) in CLAIMS {
        src.seed(json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": format!("pv-{claim}")},
            "spec": {"capacity": {"storage": format!("{mib}Mi")}, "accessModes": ["ReadWriteOnce"], "persistentVolumeReclaimPolicy": "Delete", "storageClassName": "ferry",
                     "claimRef": {"namespace": NS, "name": claim}, "csi": {"driver": "ferry.csi.dev", "volumeHandle": vols[claim], "fsType": "ext4"}}}));
        src.seed(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": claim, "namespace": NS},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "ferry", "volumeName": format!("pv-{claim}"), "resources": {"requests": {"storage": format!("{mib}Mi")}}},
            "status": {"phase": "Bound"}}));
    }
    src.seed(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "db", "namespace": NS},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "db"}}, "template": {"metadata": {"labels": {"app": "db"}},
            "spec": {"containers": [{"name": "db", "image": "postgres"}],
                     "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}, {"name": "l", "persistentVolumeClaim": {"claimName": "logs"}}]}}}}));
    pair(&src, "remote", dst_addr, &transfer);
    pair(&dst, "back", src_addr, &transfer);
    src.seed(json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "SchedulePolicy", "metadata": {"name": "every-minute"},
        "policy": {"interval": {"intervalMinutes": 1, "retain": 2}}}));
    src.seed(json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "MigrationSchedule", "metadata": {"name": "nightly", "namespace": NS},
        "spec": {"schedulePolicyName": "every-minute", "template": {"spec": {"clusterPair": "remote", "namespaces": [NS]}}}}));

    let (m1, m2) = (ferry_testkit::free_port(), ferry_testkit::free_port());
    let src_log = tmp.path().join("src-sidecar.log");
    let dst_log = tmp.path().join("dst-sidecar.log");
    let _src_sidecar = sidecar(
        &src_kc,
        &src_store_dir,
        Some(&src_plugin.socket),
        m1,
        &src_log,
    );
    let mut dst_sidecar = sidecar(
        &dst_kc,
        &dst_store_dir,
        Some(&dst_plugin.socket),
        m2,
        &dst_log,
    );
    let dst_csi = dst_plugin.controller().await;
    let dst_store = open(&dst_store_dir).await;
    let mut c = Clusters {
        src,
        dst,
        src_csi,
        dst_csi,
        src_store,
        dst_store,
        vols,
    };
    let logs = || {
        format!(
            "source sidecar:\n{}\ndestination sidecar:\n{}",
            log_text(&src_log),
            log_text(&dst_log)
        )
    };

    // Two scheduled runs, one minute apart; 64 KiB of the data volume change in between.
    let mut bytes = Vec::new();
    let started = Instant::now();
    while bytes.len() < 2 {
        c.turn().await;
        let runs = scheduled_runs(&c.src);
        let ok: Vec<&Value> = runs
            .iter()
            .filter(|r| r["status"] == "Successful")
            .collect();
        if ok.len() > bytes.len() {
            let name = ok[bytes.len()]["name"].as_str().expect("name").to_string();
            bytes.push(moved(&c.src, &name));
            c.same_data(&format!("after run {name}")).await;
            if bytes.len() == 1 {
                write(&c.src_store, &c.vols["data"], 3 * MIB, 64 << 10, 77).await;
            }
        }
        assert!(
            runs.iter().all(|r| r["status"] != "Failed"),
            "{runs:?}\n{}",
            logs()
        );
        assert!(
            started.elapsed() < Duration::from_secs(200),
            "two runs did not end: {runs:?}\n{}",
            logs()
        );
    }
    assert!(
        bytes[1] * 8 < bytes[0],
        "the second run moves about the change: {bytes:?}"
    );

    // Failover, the source reachable: its pod must go before the last sync.
    c.src.seed(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "db-0", "namespace": NS, "labels": {"app": "db"}},
        "spec": {"containers": [{"name": "db", "image": "postgres"}], "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]},
        "status": {"phase": "Running"}}));
    let out = tmp.path().join("failover.out");
    let mut fo = ferryctl(
        &dst_kc,
        &[
            "perform",
            "failover",
            "-n",
            NS,
            "-m",
            "nightly",
            "--cluster-pair",
            "back",
            "--sync-first",
            "--name",
            "fo",
        ],
        &out,
    );
    let started = Instant::now();
    let code = loop {
        c.turn().await;
        let st = action_status(&c.dst, "fo");
        let waits_for_pod = st["steps"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| s["message"].as_str().unwrap_or("").contains("db-0"));
        if waits_for_pod && c.src.get("/pods", Some(NS), "db-0").is_some() {
            assert_eq!(replicas(&c.src), 0, "parked before its pod goes");
            c.src.serve_one(
                &Method::DELETE,
                &format!("/api/v1/namespaces/{NS}/pods/db-0"),
                "",
                "",
                b"",
            );
        }
        if let Some(code) = fo.try_wait().expect("wait") {
            break code;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "failover did not end: {st:#}\n{}",
            logs()
        );
    };
    let printed = std::fs::read_to_string(&out).expect("ferryctl output");
    assert!(code.success(), "{printed}\n{}", logs());
    for step in [
        "SuspendSchedule",
        "DeactivateSource",
        "SyncFirst",
        "ActivateDestination",
    ] {
        assert!(printed.contains(step), "{printed}");
    }
    assert_eq!(replicas(&c.dst), 2);
    assert_eq!(replicas(&c.src), 0);
    assert_eq!(
        c.src
            .get("ferry.dev/migrationschedules", Some(NS), "nightly")
            .expect("schedule")["spec"]["suspend"],
        true
    );
    c.same_data("after the failover").await;

    // The application writes 128 KiB on the destination; then the failback, with the
    // destination's sidecar killed once its first migration back has started.
    write(&c.dst_store, &dst_volume(&c.dst, "data"), MIB, 128 << 10, 5).await;
    let out = tmp.path().join("failback.out");
    let mut fb = ferryctl(
        &dst_kc,
        &[
            "perform",
            "failback",
            "-n",
            NS,
            "-m",
            "nightly",
            "--cluster-pair",
            "back",
            "--name",
            "fb",
        ],
        &out,
    );
    let started = Instant::now();
    let mut killed = false;
    let code = loop {
        c.turn().await;
        let st = action_status(&c.dst, "fb");
        let migrating = st["steps"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| s["name"] == "Migrate" && s["migration"].is_string());
        if migrating && !killed {
            drop(dst_sidecar);
            dst_sidecar = sidecar(
                &dst_kc,
                &dst_store_dir,
                Some(&dst_plugin.socket),
                m2,
                &dst_log,
            );
            killed = true;
        }
        if let Some(code) = fb.try_wait().expect("wait") {
            break code;
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "failback did not end: {st:#}\n{}",
            logs()
        );
    };
    let printed = std::fs::read_to_string(&out).expect("ferryctl output");
    assert!(code.success(), "{printed}\n{}", logs());
    assert!(killed);
    c.same_data("after the failback").await;
    assert_eq!(replicas(&c.src), 2);
    assert_eq!(replicas(&c.dst), 0);
    assert_eq!(
        c.src
            .get("ferry.dev/migrationschedules", Some(NS), "nightly")
            .expect("schedule")["spec"]["suspend"],
        false
    );
    // The source's claims keep their own PVs.
    for (claim, _) in CLAIMS {
        assert_eq!(
            c.src
                .get("/persistentvolumeclaims", Some(NS), claim)
                .expect("claim")["spec"]["volumeName"],
            format!("pv-{claim}")
        );
    }
    let st = action_status(&c.dst, "fb");
    let back: u64 = st["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["migration"].as_str())
        .map(|m| moved(&c.dst, m))
        .sum();
    assert!(
        back > 0 && back < MIB as u64,
        "the failback moves about the 128 KiB written, not the 12 MiB of volumes: {back}"
    );
    eprintln!("scheduled runs moved {bytes:?} bytes; the failback moved {back}");
    drop(dst_sidecar);
    drop(s3);
}
