//! `ferryctl move` end to end, as root: two real node plugins over one store folder, a
//! volume staged (loop device, ext4 over FUSE) and published on node-a, files written there,
//! then the real `ferryctl` binary moving the Deployment to node-b through the API stand-in.
//!
//! No kubelet, scheduler or Deployment controller runs here, so the test plays them
//! (mocked, and said so): when the Deployment is scaled to zero it unpublishes and unstages
//! the volume on node-a over CSI and deletes the pod; when it is scaled up it stages and
//! publishes the volume on the node the pod template's required node affinity names and
//! creates a Ready pod there. Without root the test prints why and returns.

use ferry_e2e::Plugin;
use ferry_e2e::node_calls::*;
use ferry_kubefake::FakeApi;
use ferry_proto::v1::VolumeCapability;
use ferry_proto::v1::volume_capability::access_mode::Mode;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;
const NS: &str = "shop";

fn seed(api: &FakeApi, id: &str) {
    for n in ["node-a", "node-b"] {
        api.seed(json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": n, "labels": {"kubernetes.io/hostname": n}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}}));
        api.seed(json!({"apiVersion": "storage.k8s.io/v1", "kind": "CSINode",
            "metadata": {"name": n},
            "spec": {"drivers": [{"name": "ferry.csi.dev", "nodeID": n}]}}));
    }
    api.seed(json!({"apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": "pv-data"},
        "spec": {"capacity": {"storage": "128Mi"}, "accessModes": ["ReadWriteOnce"],
                 "claimRef": {"namespace": NS, "name": "data"},
                 "csi": {"driver": "ferry.csi.dev", "volumeHandle": id, "fsType": "ext4"}}}));
    api.seed(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data", "namespace": NS},
        "spec": {"accessModes": ["ReadWriteOnce"], "volumeName": "pv-data",
                 "resources": {"requests": {"storage": "128Mi"}}},
        "status": {"phase": "Bound"}}));
    api.seed(json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "db", "namespace": NS},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "db"}},
                 "template": {"metadata": {"labels": {"app": "db"}},
                              "spec": {"containers": [{"name": "db", "image": "postgres"}],
                                       "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]}}}}));
    pod(api, "db-1", "node-a");
}

fn pod(api: &FakeApi, name: &str, node: &str) {
    api.seed(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": {"app": "db"}},
        "spec": {"nodeName": node, "containers": [{"name": "db", "image": "postgres"}]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}));
}

/// The kubelets of node-a and node-b, the scheduler and the Deployment controller, one
/// pass (see the file's comment). Returns where the volume is published now, if anywhere.
async fn step(
    api: &FakeApi,
    nodes: &[(&str, &Plugin)],
    id: &str,
    cap: &VolumeCapability,
    published: Option<(String, PathBuf)>,
) -> Option<(String, PathBuf)> {
    let d = api
        .get("apps/deployments", Some(NS), "db")
        .expect("deployment");
    let want = d["spec"]["replicas"].as_i64().unwrap_or(1);
    let pods: Vec<Value> = api.all("/pods");
    let plugin = |n: &str| {
        nodes
            .iter()
            .find(|(name, _)| *name == n)
            .map(|(_, p)| *p)
            .unwrap_or_else(|| panic!("no node {n}"))
    };
    if want == 0 {
        for p in &pods {
            if let Some((on, _)) = &published {
                unpublish(plugin(on), id, 1).await;
                unstage(plugin(on), id).await;
            }
            let name = p["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            api.remove("/pods", Some(NS), &name);
        }
        return if pods.is_empty() { published } else { None };
    }
    if !pods.is_empty() {
        return published;
    }
    let on = d["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
        ["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]["matchFields"]
        [0]["values"][0]
        .as_str()
        .unwrap_or("node-a")
        .to_string();
    stage(plugin(&on), id, cap.clone()).await.expect("stage");
    let t = publish(plugin(&on), id, cap.clone(), 1, false).await;
    pod(api, "db-2", &on);
    Some((on, t))
}

fn skip_unless_root() -> bool {
    ferry_testkit::skip_unless_root("node_move (loop devices, FUSE, mount)")
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ferryctl_moves_a_deployment_to_another_node_with_its_data_verified() {
    if skip_unless_root() {
        return;
    }
    let store = tempfile::tempdir().expect("tmp");
    let a = node(store.path(), "node-a", "30").await;
    let b = node(store.path(), "node-b", "30").await;
    let id = create(&a, "move-db", 128 * MIB).await;
    let cap = mount_cap("ext4", Mode::SingleNodeWriter);
    stage(&a, &id, cap.clone()).await.expect("stage on node-a");
    let on_a = publish(&a, &id, cap.clone(), 1, false).await;
    let files = write_files(&on_a, 11, 10);
    // Written and never fsynced: only the clean unmount and unstage on node-a put it in the
    // store, so it shows that the move waited for them.
    std::fs::write(on_a.join("late"), b"written without fsync").expect("late");

    let api = FakeApi::new();
    seed(&api, &id);
    let addr = api.serve().await.expect("serve");
    let work = tempfile::tempdir().expect("tmp");
    let kc = work.path().join("kubeconfig");
    std::fs::write(&kc, FakeApi::kubeconfig(addr)).expect("kubeconfig");
    let out = work.path().join("out");
    let mut child = Command::new(ferry_e2e::ferryctl_bin())
        .args([
            "-n",
            NS,
            "move",
            "deployment/db",
            "--to-node",
            "node-b",
            "--verify-chunks",
        ])
        .arg("--store")
        .arg(store.path())
        .args(["--timeout", "120s"])
        .env("KUBECONFIG", &kc)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).expect("out"))
        .stderr(Stdio::inherit())
        .spawn()
        .expect("ferryctl");

    let nodes = [("node-a", &a), ("node-b", &b)];
    let mut published = Some(("node-a".to_string(), on_a));
    // A guard against a hang, not a measurement: the move itself bounds its waits.
    let guard = Instant::now() + Duration::from_secs(300);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < guard, "ferryctl move did not end");
        published = step(&api, &nodes, &id, &cap, published).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let text = String::from_utf8_lossy(&read(&out)).into_owned();
    assert!(status.success(), "ferryctl move failed: {text}");
    assert!(
        text.contains("deployment/db moved to node node-b"),
        "{text}"
    );
    assert!(
        text.contains("unstaged by node node-a (flushed, lease released)"),
        "{text}"
    );
    assert!(
        text.contains("data verified: staged on node node-b from that root"),
        "{text}"
    );

    // The pod runs on node-b with every byte written on node-a.
    let (on, target) = published.expect("published after the move");
    assert_eq!(on, "node-b");
    check_files(&target, &files);
    assert_eq!(read(&target.join("late")), b"written without fsync");
    let d = api
        .get("apps/deployments", Some(NS), "db")
        .expect("deployment");
    assert_eq!(d["spec"]["replicas"], 1);
    assert_eq!(
        d["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            ["nodeSelectorTerms"][0]["matchFields"][0]["values"],
        json!(["node-b"])
    );
    unpublish(&b, &id, 1).await;
    unstage(&b, &id).await;
}
