//! `ferryctl move` against the in-memory API server and a real local-folder chunk store.
//!
//! No Deployment controller, scheduler or kubelet runs here, so a stand-in plays their part
//! (mocked, and said so): when the workload is scaled to zero it unstages each volume on the
//! node its pod ran on (flush, lease released) and deletes the pod; when it is scaled up it
//! stages the volumes on the node the pod template's required node affinity names (lease
//! taken, fencing generation committed, as ferry's node plugin does at NodeStageVolume) and
//! creates a Ready pod there. The end-to-end test (e2e/tests/node_move.rs) does the same
//! through real node plugins and mounts.

use ferry_kubefake::FakeApi;
use ferry_store::{Store, StoreConfig, StoreOptions, VolumeHandle, VolumeOptions, VolumeSpec};
use ferryctl::moves::volumes::{self, LetGo, TakenUp};
use ferryctl::moves::{self, MoveArgs};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const NS: &str = "shop";
const CHUNK: u32 = 4096;
const LEASE: Duration = Duration::from_secs(60);

async fn store(dir: &std::path::Path) -> Store {
    Store::open(
        &StoreConfig::fs(dir.to_string_lossy()),
        StoreOptions::default(),
    )
    .await
    .expect("store")
}

async fn volume(s: &Store, name: &str) -> String {
    s.create_volume(VolumeSpec {
        name: name.into(),
        capacity_bytes: 64 * CHUNK as u64,
        options: VolumeOptions {
            chunk_size: CHUNK,
            ..Default::default()
        },
        parameters: Default::default(),
        source: None,
    })
    .await
    .expect("volume")
    .id()
    .to_string()
}

fn node(api: &FakeApi, name: &str, extra: Value) {
    let mut n = json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": {},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
    merge(&mut n, &extra);
    api.seed(n);
}

fn csinode(api: &FakeApi, name: &str) {
    api.seed(json!({"apiVersion": "storage.k8s.io/v1", "kind": "CSINode",
        "metadata": {"name": name},
        "spec": {"drivers": [{"name": "ferry.csi.dev", "nodeID": name}]}}));
}

fn claim(api: &FakeApi, claim: &str, volume_id: &str) {
    let pv = format!("pv-{claim}");
    api.seed(json!({"apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": pv},
        "spec": {"capacity": {"storage": "256Ki"}, "accessModes": ["ReadWriteOnce"],
                 "claimRef": {"namespace": NS, "name": claim},
                 "csi": {"driver": "ferry.csi.dev", "volumeHandle": volume_id}}}));
    api.seed(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": claim, "namespace": NS},
        "spec": {"accessModes": ["ReadWriteOnce"], "volumeName": pv,
                 "resources": {"requests": {"storage": "256Ki"}}},
        "status": {"phase": "Bound"}}));
}

fn deployment(api: &FakeApi, claims: &[&str]) {
    let volumes: Vec<Value> = claims
        .iter()
        .map(|c| json!({"name": c, "persistentVolumeClaim": {"claimName": c}}))
        .collect();
    api.seed(json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "db", "namespace": NS},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "db"}},
                 "template": {"metadata": {"labels": {"app": "db"}},
                              "spec": {"nodeSelector": {"kubernetes.io/hostname": "node-a"},
                                       "containers": [{"name": "db", "image": "postgres"}],
                                       "volumes": volumes}}}}));
}

fn merge(into: &mut Value, patch: &Value) {
    match (into, patch) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (slot, v) => *slot = v.clone(),
    }
}

/// The Deployment controller, scheduler and kubelets of nodes node-a, node-b and node-c,
/// played over the store (see the file's comment).
struct Cluster {
    api: FakeApi,
    store: Store,
    /// Volumes staged for writing, per node: the handle a node plugin would hold.
    staged: Mutex<BTreeMap<(String, String), Arc<VolumeHandle>>>,
    /// A node whose plugin does not answer: its volumes are never unstaged.
    stuck: AtomicBool,
    stop: AtomicBool,
    pods: Mutex<u32>,
    /// Unstages due once their count of passes runs out: as on a real node, the pod object
    /// goes before the kubelet has unstaged its volumes.
    pending: Mutex<Vec<(u32, String, String)>>,
}

impl Cluster {
    fn new(api: FakeApi, store: Store) -> Arc<Cluster> {
        Arc::new(Cluster {
            api,
            store,
            staged: Mutex::new(BTreeMap::new()),
            stuck: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            pods: Mutex::new(0),
            pending: Mutex::new(Vec::new()),
        })
    }

    async fn stage(&self, node: &str, id: &str) -> Arc<VolumeHandle> {
        let lease = self
            .store
            .acquire_lease(id, node, LEASE)
            .await
            .expect("lease");
        let h = self
            .store
            .open_volume_as(id, Some(lease.writer()))
            .await
            .expect("open");
        let fenced = h.fence().await.expect("fence");
        self.store
            .record_lease_start(&lease, &fenced, LEASE)
            .await
            .expect("start");
        self.staged
            .lock()
            .unwrap()
            .insert((node.into(), id.into()), h.clone());
        h
    }

    async fn unstage(&self, node: &str, id: &str) {
        let h = self
            .staged
            .lock()
            .unwrap()
            .remove(&(node.to_string(), id.to_string()));
        if let Some(h) = h {
            // As the volume server does on unmount.
            h.checkpoint().await.expect("checkpoint");
            self.store.release_lease(id, node).await.expect("release");
        }
    }

    fn handle(&self, node: &str, id: &str) -> Option<Arc<VolumeHandle>> {
        self.staged
            .lock()
            .unwrap()
            .get(&(node.to_string(), id.to_string()))
            .cloned()
    }

    fn volume_ids(&self, template: &Value) -> Vec<String> {
        template["spec"]["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v["persistentVolumeClaim"]["claimName"].as_str())
            .filter_map(|c| self.api.get("/persistentvolumeclaims", Some(NS), c))
            .filter_map(|pvc| {
                let pv = pvc["spec"]["volumeName"].as_str()?.to_string();
                self.api.get("/persistentvolumes", None, &pv)
            })
            .filter_map(|pv| {
                pv["spec"]["csi"]["volumeHandle"]
                    .as_str()
                    .map(str::to_string)
            })
            .collect()
    }

    /// One pass of the control loops.
    async fn step(&self) {
        let due: Vec<(String, String)> = {
            let mut p = self.pending.lock().unwrap();
            p.iter_mut().for_each(|(n, _, _)| *n = n.saturating_sub(1));
            let (due, later) = p.drain(..).partition(|(n, _, _)| *n == 0);
            *p = later;
            due.into_iter()
                .map(|(_, node, id): (u32, String, String)| (node, id))
                .collect()
        };
        for (node, id) in due {
            self.unstage(&node, &id).await;
        }
        let Some(d) = self.api.get("apps/deployments", Some(NS), "db") else {
            return;
        };
        let want = d["spec"]["replicas"].as_i64().unwrap_or(1);
        let pods: Vec<Value> = self
            .api
            .all("/pods")
            .into_iter()
            .filter(|p| p["metadata"]["labels"]["app"] == "db")
            .collect();
        let template = &d["spec"]["template"];
        if want == 0 {
            for p in pods {
                let on = p["spec"]["nodeName"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                // The pod goes first; the node unstages five passes later, or never when
                // its plugin is stuck.
                if !self.stuck.load(Ordering::SeqCst) {
                    let mut p = self.pending.lock().unwrap();
                    for id in self.volume_ids(template) {
                        p.push((5, on.clone(), id));
                    }
                }
                let name = p["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                self.api.remove("/pods", Some(NS), &name);
            }
        } else if pods.is_empty() {
            let affinity = &template["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
                ["nodeSelectorTerms"][0]["matchFields"][0]["values"][0];
            let on = affinity
                .as_str()
                .or_else(|| template["spec"]["nodeSelector"]["kubernetes.io/hostname"].as_str())
                .unwrap_or("node-a")
                .to_string();
            for id in self.volume_ids(template) {
                self.stage(&on, &id).await;
            }
            let n = {
                let mut c = self.pods.lock().unwrap();
                *c += 1;
                *c
            };
            self.api.seed(json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("db-{n}"), "namespace": NS, "labels": {"app": "db"}},
                "spec": {"nodeName": on, "containers": [{"name": "db", "image": "postgres"}]},
                "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}));
        }
    }

    fn run(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            while !me.stop.load(Ordering::SeqCst) {
                me.step().await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    cluster: Arc<Cluster>,
    ids: Vec<String>,
}

/// Nodes a, b and c, a Deployment `db` on node-a with ferry claims `data` and `wal` holding
/// bytes written (and flushed) there.
async fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("tmp");
    let api = FakeApi::new();
    let s = store(dir.path()).await;
    for n in ["node-a", "node-b", "node-c"] {
        node(&api, n, json!({}));
        csinode(&api, n);
    }
    let mut ids = Vec::new();
    for c in ["data", "wal"] {
        let id = volume(&s, c).await;
        claim(&api, c, &id);
        ids.push(id);
    }
    deployment(&api, &["data", "wal"]);
    let cluster = Cluster::new(api, s);
    cluster.step().await; // the pod starts on node-a
    for (i, id) in ids.iter().enumerate() {
        let h = cluster.handle("node-a", id).expect("staged on node-a");
        h.write_at(CHUNK as u64 * 3, &pattern(i))
            .await
            .expect("write");
        h.flush().await.expect("flush");
        // Written after the last flush: the unstage flushes it.
        h.write_at(0, b"unflushed until unstage")
            .await
            .expect("write");
    }
    Setup {
        _dir: dir,
        cluster,
        ids,
    }
}

/// Three chunks of bytes, each chunk different, for volume `i`.
fn pattern(i: usize) -> Vec<u8> {
    (0..3 * CHUNK as usize)
        .map(|j| (j / CHUNK as usize * 7 + i + 1) as u8)
        .collect()
}

fn args(node: &str) -> MoveArgs {
    MoveArgs {
        namespace: NS.into(),
        workload: "deployment/db".into(),
        node: node.into(),
        verify_chunks: true,
        timeout: Duration::from_secs(20),
        every: Duration::from_millis(20),
    }
}

async fn run(s: &Setup, a: &MoveArgs) -> ferryctl::Result<moves::MoveReport> {
    let client = s.cluster.api.client();
    moves::run(&client, &s.cluster.store, a, &mut |_| {}).await
}

fn patches(api: &FakeApi) -> usize {
    api.log()
        .iter()
        .filter(|l| l.method == "PATCH" && l.path.contains("/deployments/"))
        .count()
}

#[tokio::test]
async fn a_deployment_moves_to_another_node_and_its_volumes_are_taken_up_from_their_committed_roots()
 {
    let s = setup().await;
    let loops = s.cluster.run();
    let report = run(&s, &args("node-b")).await.expect("move");
    s.cluster.stop.store(true, Ordering::SeqCst);
    loops.await.expect("loops");

    assert!(!report.already_there);
    assert_eq!(report.replicas, 1);
    assert_eq!(report.volumes.len(), 2);
    for v in &report.volumes {
        assert!(
            matches!(&v.let_go, Some(LetGo::Released { node, .. }) if node == "node-a"),
            "{v:?}"
        );
        // Every chunk of the committed root was read back and checked (3 data chunks and
        // chunk 0).
        assert_eq!(v.committed.check.chunks_read, 4, "{v:?}");
        match &v.taken_up {
            Some(TakenUp::FromRoot { generation, writer }) => {
                assert_eq!(*generation, v.committed.head.generation + 1);
                assert!(writer.starts_with("node-b#"), "{writer}");
            }
            other => panic!("volume {} taken up as {other:?}", v.claim),
        }
        // The head the new node started from is the root the old one committed.
        let h = s.cluster.handle("node-b", &v.volume_id).expect("on node-b");
        assert_eq!(h.head().await.root, v.committed.head.root);
    }
    // The bytes, including those flushed only by the unstage, are on node-b.
    for (i, id) in s.ids.iter().enumerate() {
        let h = s.cluster.handle("node-b", id).expect("staged on node-b");
        assert_eq!(
            h.read_at(CHUNK as u64 * 3, 3 * CHUNK as usize)
                .await
                .expect("read"),
            pattern(i)
        );
        assert_eq!(
            &h.read_at(0, 23).await.expect("read")[..],
            b"unflushed until unstage"
        );
    }
    let d = s
        .cluster
        .api
        .get("apps/deployments", Some(NS), "db")
        .expect("deployment");
    assert_eq!(d["spec"]["replicas"], 1);
    assert_eq!(
        d["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"],
        json!({"nodeSelectorTerms": [{"matchFields": [
            {"key": "metadata.name", "operator": "In", "values": ["node-b"]}]}]})
    );
    // The old host-name selector would keep the pod off node-b: it is gone.
    assert!(
        d["spec"]["template"]["spec"]["nodeSelector"]
            .get("kubernetes.io/hostname")
            .is_none(),
        "{d}"
    );
    assert!(
        d["metadata"]["annotations"]
            .get("ferry.dev/moveReplicas")
            .is_none()
    );
    let text = moves::describe(&report);
    assert!(
        text.starts_with("deployment/db moved to node node-b (1 replica(s))"),
        "{text}"
    );
    assert!(
        text.contains("data verified: staged on node node-b from that root"),
        "{text}"
    );

    // Again: it runs there already, nothing is scaled.
    let before = patches(&s.cluster.api);
    let again = run(&s, &args("node-b")).await.expect("again");
    assert!(again.already_there);
    assert_eq!(patches(&s.cluster.api), before);
}

#[tokio::test]
async fn a_move_that_cannot_succeed_is_refused_before_anything_is_scaled() {
    let s = setup().await;
    let api = &s.cluster.api;
    node(api, "cordoned", json!({"spec": {"unschedulable": true}}));
    csinode(api, "cordoned");
    node(
        api,
        "down",
        json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}),
    );
    csinode(api, "down");
    node(api, "bare", json!({}));
    node(
        api,
        "tainted",
        json!({"spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}}),
    );
    csinode(api, "tainted");
    let cases = [
        ("nowhere", "node nowhere not found"),
        ("cordoned", "node cordoned is cordoned"),
        ("down", "node down is not Ready"),
        ("bare", "has no ferry node plugin registered"),
        (
            "tainted",
            "taint dedicated=gpu:NoSchedule that the workload does not tolerate",
        ),
    ];
    for (n, want) in cases {
        let err = run(&s, &args(n)).await.expect_err(n).to_string();
        assert!(err.contains(want), "{n}: {err}");
    }
    // A label the nodeSelector asks for, missing on the target.
    let mut d = api.get("apps/deployments", Some(NS), "db").expect("d");
    d["spec"]["template"]["spec"]["nodeSelector"]["disk"] = json!("ssd");
    api.remove("apps/deployments", Some(NS), "db");
    api.seed(d);
    let err = run(&s, &args("node-b"))
        .await
        .expect_err("label")
        .to_string();
    assert!(err.contains("lacks the label disk=ssd"), "{err}");
    // A PV that may only be used on node-a (a local volume) cannot follow.
    let mut d = api.get("apps/deployments", Some(NS), "db").expect("d");
    d["spec"]["template"]["spec"]["nodeSelector"] = json!({});
    d["spec"]["template"]["spec"]["volumes"]
        .as_array_mut()
        .expect("volumes")
        .push(json!({"name": "scratch", "persistentVolumeClaim": {"claimName": "scratch"}}));
    api.remove("apps/deployments", Some(NS), "db");
    api.seed(d);
    api.seed(json!({"apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": "local-scratch"},
        "spec": {"local": {"path": "/mnt/disk"},
                 "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                     {"key": "kubernetes.io/hostname", "operator": "In", "values": ["node-a"]}]}]}}}}));
    api.seed(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "scratch", "namespace": NS},
        "spec": {"volumeName": "local-scratch"}}));
    let err = run(&s, &args("node-b"))
        .await
        .expect_err("local")
        .to_string();
    assert!(
        err.contains("PV local-scratch may not be used on node node-b"),
        "{err}"
    );
    // None of them changed the workload.
    assert_eq!(patches(api), 0);
    assert_eq!(
        api.get("apps/deployments", Some(NS), "db").expect("d")["spec"]["replicas"],
        1
    );
}

#[tokio::test]
async fn a_node_that_never_unstages_undoes_the_move() {
    let s = setup().await;
    s.cluster.stuck.store(true, Ordering::SeqCst);
    let loops = s.cluster.run();
    let mut a = args("node-b");
    a.timeout = Duration::from_secs(1);
    let err = run(&s, &a).await.expect_err("stuck").to_string();
    s.cluster.stop.store(true, Ordering::SeqCst);
    loops.await.expect("loops");
    assert!(
        err.contains("is still staged for writing by node node-a"),
        "{err}"
    );
    assert!(err.contains("the move is undone"), "{err}");
    let d = s
        .cluster
        .api
        .get("apps/deployments", Some(NS), "db")
        .expect("d");
    assert_eq!(d["spec"]["replicas"], 1);
    assert!(
        d["metadata"]["annotations"]
            .get("ferry.dev/moveReplicas")
            .is_none(),
        "{d}"
    );
    assert!(
        d["spec"]["template"]["spec"].get("affinity").is_none(),
        "{d}"
    );
}

#[tokio::test]
async fn an_interrupted_move_continues_and_another_target_is_refused_meanwhile() {
    let s = setup().await;
    // Left as a move killed after it scaled down: zero replicas, the count kept.
    let api = &s.cluster.api;
    let mut d = api.get("apps/deployments", Some(NS), "db").expect("d");
    d["spec"]["replicas"] = json!(0);
    d["metadata"]["annotations"] =
        json!({"ferry.dev/moveReplicas": "1", "ferry.dev/moveToNode": "node-c"});
    api.remove("apps/deployments", Some(NS), "db");
    api.seed(d);
    let err = run(&s, &args("node-b"))
        .await
        .expect_err("other")
        .to_string();
    assert!(err.contains("is being moved to node node-c"), "{err}");
    let loops = s.cluster.run();
    let report = run(&s, &args("node-c")).await.expect("continued");
    s.cluster.stop.store(true, Ordering::SeqCst);
    loops.await.expect("loops");
    assert_eq!(report.replicas, 1);
    assert!(
        report
            .volumes
            .iter()
            .all(|v| matches!(&v.taken_up, Some(TakenUp::FromRoot { writer, .. }) if writer.starts_with("node-c#"))),
        "{report:?}"
    );
    assert_eq!(
        api.get("apps/deployments", Some(NS), "db").expect("d")["spec"]["replicas"],
        1
    );
}

/// Where a new node took a volume up, from the generations and the lease the store keeps.
#[tokio::test]
async fn the_new_nodes_first_generation_or_its_lease_shows_where_it_took_up_the_volume() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = store(dir.path()).await;
    let id = volume(&s, "v").await;
    // As ferry's node plugin stages for writing; `record` false plays a node that records
    // no start in its lease.
    let stage = |node: &'static str, record: bool| {
        let s = s.clone();
        let id = id.clone();
        async move {
            let lease = s.acquire_lease(&id, node, LEASE).await.expect("lease");
            let h = s
                .open_volume_as(&id, Some(lease.writer()))
                .await
                .expect("open");
            let fenced = h.fence().await.expect("fence");
            if record {
                s.record_lease_start(&lease, &fenced, LEASE)
                    .await
                    .expect("start");
            }
            h
        }
    };
    let write = |h: Arc<VolumeHandle>, byte: u8| async move {
        h.write_at(0, &[byte; 16]).await.expect("write");
        h.checkpoint().await.expect("checkpoint");
    };
    let unstage = |h: Arc<VolumeHandle>, node: &'static str| {
        let s = s.clone();
        let id = id.clone();
        async move {
            h.checkpoint().await.expect("checkpoint");
            s.release_lease(&id, node).await.expect("release");
        }
    };
    let a = stage("node-a", true).await;
    write(a.clone(), 1).await;
    unstage(a, "node-a").await;
    let base = s.head(&id).await.expect("head");
    assert!(matches!(
        volumes::let_go(&s, &id).await.expect("lease"),
        Some(LetGo::Released { node }) if node == "node-a"
    ));

    // Nobody holds it yet.
    assert_eq!(
        volumes::taken_up(&s, &id, "node-b", &base)
            .await
            .expect("check"),
        None
    );
    let b = stage("node-b", true).await;
    let first = volumes::taken_up(&s, &id, "node-b", &base)
        .await
        .expect("check")
        .expect("taken up");
    assert!(
        matches!(&first, TakenUp::FromRoot { generation, .. } if generation == &(base.generation + 1)),
        "{first:?}"
    );
    // Two commits and a lease renewal later its first generation is pruned; the start
    // recorded in its lease still shows it.
    write(b.clone(), 2).await;
    write(b.clone(), 3).await;
    let held = s.lease(&id).await.expect("lease").expect("held");
    s.renew_lease(&held, LEASE).await.expect("renew");
    assert!(
        s.generation(&id, base.generation + 1)
            .await
            .expect("read")
            .is_none()
    );
    let later = volumes::taken_up(&s, &id, "node-b", &base)
        .await
        .expect("check")
        .expect("taken up");
    assert_eq!(later, first, "the same generation, from the lease");
    unstage(b, "node-b").await;

    // Another node staged it in between: refused while its generation is there, not shown
    // once it is pruned.
    let base = s.head(&id).await.expect("head");
    let c = stage("node-c", true).await;
    unstage(c, "node-c").await;
    let b = stage("node-b", true).await;
    let err = volumes::taken_up(&s, &id, "node-b", &base)
        .await
        .expect_err("another writer first")
        .to_string();
    assert!(err.contains("the data is not verified"), "{err}");
    for n in 5..8 {
        write(b.clone(), n).await;
    }
    let late = volumes::taken_up(&s, &id, "node-b", &base)
        .await
        .expect("check")
        .expect("held");
    assert!(!late.verified(), "{late:?}");
    unstage(b, "node-b").await;

    // A node that records no start: shown while its first generation is kept, not after.
    let base = s.head(&id).await.expect("head");
    let b = stage("node-b", false).await;
    assert!(
        volumes::taken_up(&s, &id, "node-b", &base)
            .await
            .expect("check")
            .expect("held")
            .verified()
    );
    write(b.clone(), 8).await;
    write(b.clone(), 9).await;
    let late = volumes::taken_up(&s, &id, "node-b", &base)
        .await
        .expect("check")
        .expect("held");
    assert!(!late.verified(), "{late:?}");
}
