//! Volumes outlive the node plugin, as root, with real processes, FUSE, loop devices and
//! mounts: the plugin runs as the init of its own PID namespace (as a container's runtime
//! runs it) beside a volume host started apart (as its own DaemonSet runs it); a writer
//! appends and fsyncs on two mounted volumes while the namespace is killed with SIGKILL and
//! a new plugin (of the same build, or of a newer one that then takes the volume servers over
//! too) is started. And a volume server killed alone is replaced when nothing it
//! acknowledged was lost, or reported (the node's volume condition, Events on the claim and
//! its pod, and the controller's ControllerGetVolume and ListVolumes), never silent. Without root these tests print why and
//! return.

use ferry_e2e::node_calls::*;
use ferry_e2e::{Plugin, VolumeHost};
use ferry_kubefake::FakeApi;
use ferry_proto::v1::volume_capability::access_mode::Mode;
use ferry_proto::v1::*;
use serde_json::json;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;

fn skip_unless_root(test: &str) -> bool {
    ferry_testkit::skip_unless_root(&format!("{test} (loop devices, FUSE, mount, unshare)"))
}

/// Appends a numbered line to each file and fsyncs it, over and over, until stopped.
struct Writer {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Written>,
}

/// What a writer saw.
#[derive(Debug)]
struct Written {
    /// Per file, lines whose fsync succeeded.
    synced: Vec<u64>,
    /// Errors from write or fsync.
    errors: Vec<String>,
    /// The longest write + fsync.
    longest: Duration,
    /// When the longest ended, since the writer started.
    longest_at: Duration,
}

fn line(file: usize, n: u64) -> String {
    format!("file {file} line {n:08}\n")
}

impl Writer {
    fn start(paths: Vec<PathBuf>) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut files: Vec<std::fs::File> = paths
                .iter()
                .map(|p| {
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(p)
                        .unwrap()
                })
                .collect();
            let mut w = Written {
                synced: vec![0; files.len()],
                errors: Vec::new(),
                longest: Duration::ZERO,
                longest_at: Duration::ZERO,
            };
            let began = Instant::now();
            while !flag.load(Ordering::SeqCst) && w.errors.len() < 10 {
                for (i, f) in files.iter_mut().enumerate() {
                    let t = Instant::now();
                    let r = f
                        .write_all(line(i, w.synced[i]).as_bytes())
                        .and_then(|_| f.sync_data());
                    match r {
                        Ok(()) => w.synced[i] += 1,
                        Err(e) => w.errors.push(format!("file {i}: {e}")),
                    }
                    if t.elapsed() > w.longest {
                        w.longest = t.elapsed();
                        w.longest_at = began.elapsed();
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            w
        });
        Writer { stop, thread }
    }

    fn finish(self) -> Written {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap()
    }
}

/// Every line the writer fsync'd is in the file, in order.
fn check_lines(path: &Path, file: usize, synced: u64) {
    let text = std::fs::read_to_string(path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines.len() as u64 >= synced,
        "{}: {} lines, {synced} were fsync'd",
        path.display(),
        lines.len()
    );
    for (n, l) in lines.iter().enumerate() {
        assert_eq!(
            format!("{l}\n"),
            line(file, n as u64),
            "{} line {n}",
            path.display()
        );
    }
}

/// The FUSE device numbers the loop devices of `ids` were attached over.
fn fuse_devs(p: &Plugin, ids: &[String]) -> Vec<String> {
    ids.iter()
        .filter_map(|id| {
            let f = p
                .dir
                .path()
                .join("state/volumes")
                .join(id)
                .join("device.json");
            let v: serde_json::Value = serde_json::from_slice(&std::fs::read(f).ok()?).ok()?;
            v["fuseDev"].as_str().map(str::to_string)
        })
        .collect()
}

/// Loop devices still attached over any of `devs`.
fn loops_over(devs: &[String]) -> Vec<String> {
    let out = Command::new("losetup")
        .args(["--list", "--json", "-O", "NAME,BACK-MAJ:MIN"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    if text.trim().is_empty() {
        return Vec::new();
    }
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["loopdevices"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|d| {
            d["back-maj:min"]
                .as_str()
                .is_some_and(|m| devs.iter().any(|x| x == m.trim()))
        })
        .map(|d| d["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Mounts under `dir`.
fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = dir.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|t| t.starts_with(&prefix) && *t != prefix)
        .collect()
}

/// Unpublishes and unstages `ids`, then checks that no loop device, mount or state folder
/// of theirs is left.
async fn unstage_all_and_check_nothing_left(p: &Plugin, ids: &[String]) {
    let devs = fuse_devs(p, ids);
    assert_eq!(
        devs.len(),
        ids.len(),
        "each volume recorded its loop device"
    );
    for id in ids {
        unpublish(p, id, 1).await;
        unstage(p, id).await;
    }
    assert_eq!(loops_over(&devs), Vec::<String>::new(), "loop devices left");
    assert_eq!(
        mounts_under(p.dir.path()),
        Vec::<String>::new(),
        "mounts left"
    );
    for id in ids {
        let d = p.dir.path().join("state/volumes").join(id);
        assert!(!d.exists(), "{} left", d.display());
    }
}

async fn stats(p: &Plugin, id: &str, path: &Path) -> VolumeCondition {
    volume_stats(p, id, path).await.volume_condition.unwrap()
}

/// The binaries the volume servers of `p` run, as the kernel names them.
fn server_exes(p: &Plugin) -> Vec<String> {
    ferry_e2e::server_pids(p.dir.path())
        .into_iter()
        .map(|pid| {
            std::fs::read_link(format!("/proc/{pid}/exe"))
                .map(|l| l.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
        .collect()
}

/// Two volumes staged and written while the plugin's namespace is killed and a new plugin
/// started; with `upgrade`, the binary is replaced by a newer build between the kill and the
/// restart, and a volume host of the newer build then takes the volume servers over.
async fn plugin_namespace_killed(upgrade: bool) {
    let store = tempfile::tempdir().unwrap();
    let bins = tempfile::tempdir().unwrap();
    let bin = ferry_e2e::ferry_copy(bins.path(), "ferry", b"");
    let dir = tempfile::tempdir().unwrap();
    let store_root = store.path().to_string_lossy().into_owned();
    let env = [
        ("FERRY_STORE_BACKEND", "fs"),
        ("FERRY_STORE_ROOT", store_root.as_str()),
        ("FERRY_LEASE_TTL_SECS", "30"),
    ];
    let host = VolumeHost::start(&bin, dir.path()).await;
    let a = Plugin::start_in_pid_namespace(dir, &bin, &env).await;
    let cap = mount_cap("ext4", Mode::SingleNodeWriter);
    let mut ids = Vec::new();
    let mut logs = Vec::new();
    for name in ["survive-1", "survive-2"] {
        let id = create(&a, name, 64 * MIB).await;
        stage(&a, &id, cap.clone()).await.unwrap();
        let t = publish(&a, &id, cap.clone(), 1, false).await;
        logs.push(t.join("app.log"));
        ids.push(id);
    }
    let writer = Writer::start(logs.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;

    let (dir, _) = a.kill_namespace();
    // The container is gone; the volumes are still served and written.
    tokio::time::sleep(Duration::from_millis(500)).await;
    if upgrade {
        ferry_e2e::ferry_copy(bins.path(), "ferry", b"\0ferry next build\0");
    }
    let a = Plugin::start_in_pid_namespace(dir, &bin, &env).await;
    // The kubelet's calls after a plugin restart find the volumes as they were.
    for (id, log) in ids.iter().zip(&logs) {
        stage(&a, id, cap.clone()).await.unwrap();
        publish(&a, id, cap.clone(), 1, false).await;
        let c = stats(&a, id, log.parent().unwrap()).await;
        assert!(!c.abnormal, "{}", c.message);
    }
    let mut old_host = Some(host);
    if upgrade {
        let old_exes = server_exes(&a);
        assert!(
            old_exes.iter().all(|e| e.ends_with("(deleted)")),
            "the servers still run the replaced build: {old_exes:?}"
        );
        let new_host = VolumeHost::start(&bin, a.dir.path()).await;
        let new_exes = server_exes(&a);
        assert_eq!(
            new_exes,
            vec![bin.to_string_lossy().into_owned(); ids.len()],
            "the new host's servers run the new build"
        );
        // The old host's pod is deleted once the new one runs: it ends, the volumes stay.
        let mut old = old_host.take().unwrap();
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(old.pid().to_string())
            .status();
        let status = old.child.wait().unwrap();
        assert!(status.success(), "the old host ends cleanly: {status}");
        old_host = Some(new_host);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let w = writer.finish();
    assert!(w.errors.is_empty(), "the writer saw errors: {:?}", w.errors);
    eprintln!(
        "writer: {:?} lines fsync'd, longest write+fsync {:?} at {:?}",
        w.synced, w.longest, w.longest_at
    );
    for (i, log) in logs.iter().enumerate() {
        assert!(w.synced[i] > 20, "the writer kept writing: {:?}", w.synced);
        check_lines(log, i, w.synced[i]);
    }

    // The new plugin unstages and stages both again: the data is there, nothing leaks.
    unstage_all_and_check_nothing_left(&a, &ids).await;
    for id in &ids {
        stage(&a, id, cap.clone()).await.unwrap();
        publish(&a, id, cap.clone(), 1, false).await;
    }
    for (i, log) in logs.iter().enumerate() {
        check_lines(log, i, w.synced[i]);
    }
    unstage_all_and_check_nothing_left(&a, &ids).await;
    drop(old_host);
}

#[tokio::test(flavor = "multi_thread")]
async fn volumes_outlive_a_killed_plugin_namespace() {
    if skip_unless_root("plugin namespace killed") {
        return;
    }
    plugin_namespace_killed(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn volumes_outlive_a_killed_plugin_namespace_and_move_to_a_newer_build() {
    if skip_unless_root("plugin namespace killed, binary upgraded") {
        return;
    }
    plugin_namespace_killed(true).await;
}

fn durability(p: &Plugin, id: &str) -> String {
    std::fs::read_to_string(
        p.dir
            .path()
            .join("state/volumes")
            .join(id)
            .join("durability"),
    )
    .unwrap_or_default()
}

fn signal(pid: u32, sig: &str) {
    Command::new("kill")
        .arg(sig)
        .arg(pid.to_string())
        .status()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_volume_server_killed_with_nothing_unflushed_is_replaced_unnoticed() {
    if skip_unless_root("volume server killed, clean") {
        return;
    }
    let store = tempfile::tempdir().unwrap();
    let a = node(store.path(), "node-a", "30").await;
    let id = create(&a, "killed-clean", 64 * MIB).await;
    let cap = mount_cap("ext4", Mode::SingleNodeWriter);
    stage(&a, &id, cap.clone()).await.unwrap();
    let t = publish(&a, &id, cap.clone(), 1, false).await;
    let log = t.join("app.log");
    let writer = Writer::start(vec![log.clone()]);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Stopped, the server acknowledges nothing more: kill it at a moment its marker says
    // every write it acknowledged is durable, with the writer's requests queued behind it.
    let pid = ferry_e2e::server_pids(a.dir.path())[0];
    let marker = a
        .dir
        .path()
        .join("state/volumes")
        .join(&id)
        .join("durability");
    let killed = ferry_e2e::kill_when_clean(pid, &marker, 200);
    assert!(killed, "the server never showed every write durable");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let w = writer.finish();
    assert!(w.errors.is_empty(), "the writer saw errors: {:?}", w.errors);
    check_lines(&log, 0, w.synced[0]);
    let now = ferry_e2e::server_pids(a.dir.path());
    assert!(
        now.len() == 1 && now[0] != pid,
        "a new server serves the volume"
    );
    let c = stats(&a, &id, &t).await;
    assert!(!c.abnormal, "{}", c.message);
    assert!(c.message.contains("took the volume up"), "{}", c.message);
    unstage_all_and_check_nothing_left(&a, std::slice::from_ref(&id)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_volume_server_killed_holding_unflushed_writes_is_reported_not_hidden() {
    if skip_unless_root("volume server killed, dirty") {
        return;
    }
    let store = tempfile::tempdir().unwrap();
    // The cluster, for the Events the plugin posts: an API stand-in on 127.0.0.1.
    let api = FakeApi::new();
    let addr = api.serve().await.unwrap();
    let kubeconfig = store.path().join("kubeconfig");
    std::fs::write(&kubeconfig, FakeApi::kubeconfig(addr)).unwrap();
    let kc = kubeconfig.to_string_lossy().into_owned();
    let a = node_with(store.path(), "node-a", "30", &[("KUBECONFIG", kc.as_str())]).await;
    let id = create(&a, "killed-dirty", 64 * MIB).await;
    seed_claim(&api, &id);
    stage(&a, &id, block_cap()).await.unwrap();
    let dev = publish(&a, &id, block_cap(), 1, false).await;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(&dev)
        .unwrap();
    let block = vec![7u8; 4096];
    write_at(&f, &block, 0).unwrap();
    f.sync_all().unwrap();
    // Acknowledged by the server, not flushed.
    write_at(&f, &[9u8; 4096], 8192).unwrap();
    assert_eq!(durability(&a, &id), "dirty");
    for pid in ferry_e2e::server_pids(a.dir.path()) {
        signal(pid, "-KILL");
    }
    // The host aborts the connection: the device fails instead of serving older data.
    let mut failed = false;
    for _ in 0..100 {
        if read_at(&f, 8192).is_err() {
            failed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        failed,
        "reads keep succeeding on a volume that lost acknowledged writes"
    );
    let c = stats(&a, &id, &dev).await;
    assert!(c.abnormal, "the lost volume is reported: {}", c.message);
    assert!(c.message.contains("not yet made durable"), "{}", c.message);
    // And where Kubernetes users look: an Event on the claim and on its pod.
    let mut regarding = Vec::new();
    for _ in 0..100 {
        regarding = api
            .all("events.k8s.io/events")
            .into_iter()
            .filter(|e| e["reason"] == "VolumeAbnormal" && e["type"] == "Warning")
            .map(|e| {
                let r = &e["regarding"];
                format!(
                    "{}/{}",
                    r["kind"].as_str().unwrap_or(""),
                    r["name"].as_str().unwrap_or("")
                )
            })
            .collect();
        if regarding.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    regarding.sort();
    assert_eq!(regarding, ["PersistentVolumeClaim/data", "Pod/app-0"]);
    // And the controller's view of the volume, the external-health-monitor's path: the
    // node's report is in the store, so ControllerGetVolume and ListVolumes say abnormal.
    let c = controller_condition(&a, &id, true).await;
    assert!(
        c.message.contains("on node node-a") && c.message.contains("not yet made durable"),
        "{}",
        c.message
    );
    let listed = a
        .controller()
        .await
        .list_volumes(ListVolumesRequest::default())
        .await
        .unwrap()
        .into_inner();
    let entry = listed
        .entries
        .iter()
        .find(|e| e.volume.as_ref().is_some_and(|v| v.volume_id == id))
        .expect("the volume is listed");
    let listed_condition = entry
        .status
        .as_ref()
        .and_then(|s| s.volume_condition.clone())
        .expect("ListVolumes carries the condition");
    assert!(listed_condition.abnormal, "{}", listed_condition.message);
    drop(f);

    // Staging again (the pod restarted) brings back everything fsync'd.
    unpublish(&a, &id, 1).await;
    stage(&a, &id, block_cap()).await.unwrap();
    let dev = publish(&a, &id, block_cap(), 1, false).await;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(&dev)
        .unwrap();
    assert_eq!(read_at(&f, 0).unwrap(), block);
    drop(f);
    let c = stats(&a, &id, &dev).await;
    assert!(!c.abnormal, "{}", c.message);
    // Served again: the node withdraws its report.
    let c = controller_condition(&a, &id, false).await;
    assert!(!c.abnormal, "{}", c.message);
    unstage_all_and_check_nothing_left(&a, std::slice::from_ref(&id)).await;
}

/// ControllerGetVolume's condition of `id`, once it is `abnormal` (the node reports every
/// few seconds); fails when it never gets there.
async fn controller_condition(p: &Plugin, id: &str, abnormal: bool) -> VolumeCondition {
    let mut last = None;
    for _ in 0..150 {
        let c = p
            .controller()
            .await
            .controller_get_volume(ControllerGetVolumeRequest {
                volume_id: id.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status
            .and_then(|s| s.volume_condition)
            .expect("ControllerGetVolume carries the condition");
        if c.abnormal == abnormal {
            return c;
        }
        last = Some(c);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the controller never said abnormal = {abnormal}: {last:?}");
}

fn write_at(f: &std::fs::File, data: &[u8], at: u64) -> std::io::Result<()> {
    let buf = AlignedBuf::from(data);
    std::os::unix::fs::FileExt::write_all_at(f, buf.as_slice(), at)
}

fn read_at(f: &std::fs::File, at: u64) -> std::io::Result<Vec<u8>> {
    let mut buf = AlignedBuf::zeroed(4096);
    std::os::unix::fs::FileExt::read_exact_at(f, buf.as_mut_slice(), at)?;
    Ok(buf.as_slice().to_vec())
}

/// A claim `app/data` bound to volume `id`, and pod `app/app-0` on node-a using it.
fn seed_claim(api: &FakeApi, id: &str) {
    api.seed(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "app"}}));
    api.seed(json!({"apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": format!("pv-{id}")},
        "spec": {"csi": {"driver": "ferry.csi.dev", "volumeHandle": id},
                 "claimRef": {"namespace": "app", "name": "data", "uid": "u-data"}}}));
    api.seed(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data", "namespace": "app"},
        "spec": {"volumeName": format!("pv-{id}")}}));
    api.seed(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "app-0", "namespace": "app"},
        "spec": {"nodeName": "node-a", "containers": [{"name": "c", "image": "x"}],
                 "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]}}));
    // Another node's pod of the same claim is not told.
    api.seed(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "app-1", "namespace": "app"},
        "spec": {"nodeName": "node-b", "containers": [{"name": "c", "image": "x"}],
                 "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]}}));
}

/// Memory aligned to 4 KiB, for O_DIRECT.
struct AlignedBuf {
    raw: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    fn zeroed(len: usize) -> AlignedBuf {
        let raw = vec![0u8; len + 4096];
        let start = raw.as_ptr().align_offset(4096);
        AlignedBuf { raw, start, len }
    }

    fn from(data: &[u8]) -> AlignedBuf {
        let mut b = AlignedBuf::zeroed(data.len());
        b.as_mut_slice().copy_from_slice(data);
        b
    }

    fn as_slice(&self) -> &[u8] {
        &self.raw[self.start..self.start + self.len]
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.raw[self.start..self.start + self.len]
    }
}
