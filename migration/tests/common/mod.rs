//! Two clusters for migration tests: each an in-memory API (`FakeApi`, standing in for a
//! real API server, which cannot run here) and a real chunk store; a local-folder transfer
//! store between them. The csi-snapshotter and the destination's sidecar are played by
//! [`World::step_cluster_controllers`]: the first makes real chunk-store snapshots for
//! VolumeSnapshots, the second runs ferry's real VolumeImport reconciler.

#![allow(dead_code)]

pub mod relay;

use ferry_kubefake::{FakeApi, Identity};
use ferry_migration::context::ManualClock;
use ferry_migration::crd::{Migration, MigrationStatus, VolumeImport};
use ferry_migration::destination::volume_import::Imports;
use ferry_migration::source::migrate::Migrations;
use ferry_migration::{Ctx, pair::PairSettings};
use ferry_store::{Store, StoreConfig, StoreOptions, VolumeOptions, VolumeSpec};
use rand::{RngCore, SeedableRng, rngs::StdRng};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

pub const FERRY_NS: &str = "ferry-system";
pub const CHUNK: u64 = 64 << 10;

pub struct World {
    /// The two controllers' clock, moved by [`World::drive`] by the waits passes ask for.
    pub clock: ManualClock,
    pub src: FakeApi,
    pub dst: FakeApi,
    pub src_store: Store,
    pub dst_store: Store,
    pub src_ctx: Ctx,
    pub dst_ctx: Ctx,
    pub transfer_dir: tempfile::TempDir,
}

async fn store() -> Store {
    Store::open(
        &StoreConfig::memory(),
        StoreOptions {
            gc_grace: Duration::ZERO,
            ..Default::default()
        },
    )
    .await
    .expect("memory store")
}

impl World {
    pub async fn new() -> World {
        let src = FakeApi::new();
        let dst = FakeApi::new();
        let (src_store, dst_store) = (store().await, store().await);
        // Both controllers run as their service account, with manifests/rbac.yaml's roles,
        // as `kubectl apply -k manifests/` installs them; a pair reaches the destination as
        // the account its kubeconfig's token names there.
        for api in [&src, &dst] {
            api.install_ferry_rbac(FERRY_NS);
        }
        let controller = Identity::service_account(FERRY_NS, "ferry-migration");
        let dst_for_connect = dst.clone();
        let mut src_ctx = Ctx::new(
            src.client_as(&controller),
            src_store.clone(),
            FERRY_NS.into(),
            false,
        );
        src_ctx.connect = Arc::new(move |s: PairSettings| {
            let d = dst_for_connect.clone();
            Box::pin(async move { Ok(d.client_for_token(&token_of(&s.kubeconfig))) })
        });
        src_ctx.poll = Duration::from_millis(1);
        let transfer_dir = tempfile::tempdir().expect("tmp");
        // The operator allows folder transfer stores under this one (--transfer-folder).
        src_ctx.policy.transfer_folders = vec![transfer_dir.path().to_path_buf()];
        let mut dst_ctx = Ctx::new(
            dst.client_as(&controller),
            dst_store.clone(),
            FERRY_NS.into(),
            false,
        );
        dst_ctx.poll = Duration::from_millis(1);
        let clock = ManualClock::new(jiff::Timestamp::now());
        src_ctx.clock = clock.clock();
        dst_ctx.clock = clock.clock();
        dst_ctx.policy.transfer_folders = vec![transfer_dir.path().to_path_buf()];
        for api in [&src, &dst] {
            api.seed(
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": FERRY_NS}}),
            );
            api.seed(json!({"apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver", "metadata": {"name": "ferry.csi.dev"}, "spec": {"attachRequired": false}}));
            api.seed(json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "ferry"}, "provisioner": "ferry.csi.dev", "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate"}));
            api.seed(json!({"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotClass", "metadata": {"name": "ferry", "annotations": {"snapshot.storage.kubernetes.io/is-default-class": "true"}}, "driver": "ferry.csi.dev", "deletionPolicy": "Delete"}));
        }
        World {
            clock,
            src,
            dst,
            src_store,
            dst_store,
            src_ctx,
            dst_ctx,
            transfer_dir,
        }
    }

    /// The folder of the transfer store the pairs name: in the part of the allowed folder
    /// that belongs to namespace `shop`, the tests' tenant (the admin's pairs may use it too).
    pub fn transfer_root(&self) -> String {
        self.transfer_root_of("shop")
    }

    /// The folder of the transfer store a pair in namespace `ns` names: inside that
    /// namespace's part of the allowed folder.
    pub fn transfer_root_of(&self, ns: &str) -> String {
        self.transfer_dir
            .path()
            .join(ns)
            .join("store")
            .to_string_lossy()
            .to_string()
    }

    /// A ClusterPair `name` in `ns`, its Secret, and (when `ready`) a Ready status.
    pub fn pair(&self, ns: &str, name: &str, ready: bool) {
        self.pair_with(ns, name, ready, json!({}));
    }

    /// The account pair `ns/name` uses on the destination, bound there as
    /// docs/migration.md tells an admin to: a tenant's pair gets ferry-migration-destination
    /// in its namespace (which the admin creates there) and ferry-migration-pair
    /// cluster-wide; the admin's pair (in the controller's namespace) gets both
    /// cluster-wide. Returns the kubeconfig (an inline token) the pair's Secret carries.
    pub fn pair_account(&self, ns: &str, name: &str) -> String {
        pair_account_on(&self.dst, ns, name, &["ferry-migration-destination"])
    }

    /// Lets pair `ns/name` land in namespace `there` of the destination too, as the
    /// destination's admin does for a tenant who migrates into another namespace (it makes
    /// the namespace and binds ferry-migration-destination there).
    pub fn let_pair_land(&self, ns: &str, name: &str, there: &str) {
        let who = Identity::service_account(ns, &format!("pair-{name}"));
        self.dst
            .seed(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": there}}));
        self.dst.bind(
            &format!("pair-{name}-{ns}"),
            "ferry-migration-destination",
            &who,
            Some(there),
        );
    }

    /// Binds `role` cluster-wide to the account of pair `ns/name` on the destination (an
    /// opt-in role such as ferry-migration-destination-crds).
    pub fn grant_pair(&self, ns: &str, name: &str, role: &str) {
        let who = Identity::service_account(ns, &format!("pair-{name}"));
        self.dst
            .bind(&format!("{ns}-pair-{name}-{role}"), role, &who, None);
    }

    /// Like [`World::pair`], with `extra` fields added to the pair's spec.
    pub fn pair_with(&self, ns: &str, name: &str, ready: bool, extra: Value) {
        let root = self.transfer_root_of(ns);
        let kc = self.pair_account(ns, name);
        self.src.seed(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": format!("{name}-secret"), "namespace": ns},
            "data": b64(&[("kubeconfig", &kc), ("backend", "fs"), ("root", &root)])}));
        let mut p = json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "ClusterPair", "metadata": {"name": name, "namespace": ns},
            "spec": {"secretRef": {"name": format!("{name}-secret")}}});
        if let (Some(spec), Some(extra)) = (p["spec"].as_object_mut(), extra.as_object()) {
            spec.extend(extra.clone());
        }
        if ready {
            p["status"] = json!({"schedulerStatus": "Ready", "storageStatus": "Ready"});
        }
        self.src.seed(p);
    }

    /// A ClusterPair `name` in `ns` (Ready) whose transfer store is the one `transfer`
    /// describes (Secret keys, as a test server's `bucket` gives them).
    pub fn pair_over(
        &self,
        ns: &str,
        name: &str,
        transfer: &std::collections::BTreeMap<String, String>,
    ) {
        let kc = self.pair_account(ns, name);
        let mut data: Vec<(&str, &str)> = vec![("kubeconfig", &kc)];
        data.extend(transfer.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        self.src.seed(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": format!("{name}-secret"), "namespace": ns},
            "data": b64(&data)}));
        self.src.seed(json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "ClusterPair", "metadata": {"name": name, "namespace": ns},
            "spec": {"secretRef": {"name": format!("{name}-secret")}},
            "status": {"schedulerStatus": "Ready", "storageStatus": "Ready"}}));
    }

    /// A ferry volume of `chunks` chunks of seeded bytes in namespace `ns`, its PV and its
    /// bound PVC `claim` (labelled app=web). Returns the volume id.
    pub async fn ferry_claim(&self, ns: &str, claim: &str, chunks: u64, seed: u64) -> String {
        let v = self
            .src_store
            .create_volume(VolumeSpec {
                name: format!("pvc-{ns}-{claim}"),
                capacity_bytes: chunks * CHUNK,
                options: VolumeOptions::default(),
                parameters: Default::default(),
                source: None,
            })
            .await
            .expect("volume");
        let id = v.id().to_string();
        fill(&self.src_store, &id, chunks, seed).await;
        let s = &self.src;
        s.seed(json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": format!("pv-{ns}-{claim}")},
            "spec": {"capacity": {"storage": format!("{}Ki", chunks * 64)}, "accessModes": ["ReadWriteOnce"], "volumeMode": "Filesystem",
                     "persistentVolumeReclaimPolicy": "Delete", "storageClassName": "ferry",
                     "claimRef": {"namespace": ns, "name": claim},
                     "csi": {"driver": "ferry.csi.dev", "volumeHandle": id, "fsType": "ext4"}}}));
        s.seed(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": claim, "namespace": ns, "labels": {"app": "web"},
                "annotations": {"pv.kubernetes.io/bind-completed": "yes", "volume.kubernetes.io/storage-provisioner": "ferry.csi.dev"}},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "ferry", "volumeName": format!("pv-{ns}-{claim}"), "resources": {"requests": {"storage": "3Mi"}}},
            "status": {"phase": "Bound"}}));
        id
    }

    /// Namespace `ns` with a ferry volume (PVC `data`, `chunks` chunks of seeded bytes), a PVC
    /// of another driver, and the usual resources around them. Returns the volume id.
    pub async fn shop(&self, ns: &str, chunks: u64) -> String {
        self.src.seed(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {"team": "shop"}}}));
        let id = self.ferry_claim(ns, "data", chunks, 7).await;
        let s = &self.src;
        s.seed(json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": format!("pv-{ns}-ebs")},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "csi": {"driver": "ebs.csi.aws.com", "volumeHandle": "vol-123"}}}));
        s.seed(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "cache", "namespace": ns},
            "spec": {"accessModes": ["ReadWriteOnce"], "volumeName": format!("pv-{ns}-ebs"), "resources": {"requests": {"storage": "1Gi"}}},
            "status": {"phase": "Bound"}}));
        let dep = s.seed(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": ns, "labels": {"app": "web"}},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx"}], "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]}}},
            "status": {"readyReplicas": 3}}));
        s.seed(json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web-5d4f", "namespace": ns,
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": dep["metadata"]["uid"], "controller": true}]},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}}));
        s.seed(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": ns},
            "spec": {"type": "NodePort", "clusterIP": "10.0.0.5", "clusterIPs": ["10.0.0.5"], "selector": {"app": "web"}, "ports": [{"port": 80, "nodePort": 30080}]}}));
        s.seed(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db", "namespace": ns},
            "spec": {"clusterIP": "None", "selector": {"app": "db"}, "ports": [{"port": 5432}]}}));
        s.seed(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "web-token", "namespace": ns}, "type": "kubernetes.io/service-account-token", "data": {}}));
        s.seed(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db-password", "namespace": ns}, "type": "Opaque", "data": {"password": "aHVudGVyMg=="}}));
        s.seed(json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": ns}}));
        s.seed(json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "web", "namespace": ns}, "secrets": [{"name": "web-token"}]}));
        s.seed(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": ns}, "data": {"mode": "prod"}}));
        s.seed(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kube-root-ca.crt", "namespace": ns}, "data": {"ca.crt": "x"}}));
        s.seed(json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "report", "namespace": ns},
            "spec": {"schedule": "0 * * * *", "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "r", "image": "busybox"}]}}}}}}));
        id
    }

    pub fn migration(&self, ns: &str, name: &str, spec: Value) {
        self.src.seed(json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "Migration", "metadata": {"name": name, "namespace": ns}, "spec": spec}));
    }

    /// Migration `ns/name` as the source API holds it now.
    pub fn migration_object(&self, ns: &str, name: &str) -> Migration {
        serde_json::from_value(
            self.src
                .get("ferry.dev/migrations", Some(ns), name)
                .expect("migration"),
        )
        .expect("parse")
    }

    pub fn migration_status(&self, ns: &str, name: &str) -> MigrationStatus {
        let m = self
            .src
            .get("ferry.dev/migrations", Some(ns), name)
            .expect("migration");
        serde_json::from_value(m["status"].clone()).unwrap_or_default()
    }

    /// Plays csi-snapshotter on the source and ferry's sidecar on the destination, once.
    pub async fn step_cluster_controllers(&self) {
        play_snapshotter(&self.src, &self.src_store).await;
        for vi in self.dst.all("ferry.dev/volumeimports") {
            let vi: VolumeImport = serde_json::from_value(vi).expect("volume import");
            // A controller retries a failed reconcile; so does this loop, on its next turn.
            match ferry_migration::runtime::pass::<Imports>(&self.dst_ctx, &vi).await {
                // A retry's wait passes on the clock (the import's own pool is real time).
                Ok(Some(wait)) => self.clock.advance(wait),
                Ok(_) => {}
                Err(e) => eprintln!("import reconcile error (retried): {e}"),
            }
        }
    }

    /// Reconciles migration `ns/name` (with the other controllers in between) until it ends.
    pub async fn drive(&self, ns: &str, name: &str) -> MigrationStatus {
        for _ in 0..40 {
            let m: Migration = serde_json::from_value(
                self.src
                    .get("ferry.dev/migrations", Some(ns), name)
                    .expect("migration"),
            )
            .expect("parse");
            match ferry_migration::runtime::pass::<Migrations>(&self.src_ctx, &m).await {
                Ok(None) => return self.migration_status(ns, name),
                // What the runtime would wait for, the clock moves by.
                Ok(Some(wait)) => self.clock.advance(wait),
                Err(e) => eprintln!("reconcile error (retried): {e}"),
            }
            self.step_cluster_controllers().await;
        }
        panic!(
            "migration {ns}/{name} did not end: {:?}; destination imports: {:?}",
            self.migration_status(ns, name),
            self.dst.all("ferry.dev/volumeimports")
        );
    }

    /// The destination chunk-store volume behind a migrated volume's PV.
    pub fn destination_volume_id(&self, v: &ferry_migration::crd::VolumeInfo) -> String {
        let pv_name = v.destination_volume.as_deref().unwrap_or("");
        let pv = self
            .dst
            .get("/persistentvolumes", None, pv_name)
            .expect("pv");
        pv["spec"]["csi"]["volumeHandle"]
            .as_str()
            .expect("id")
            .to_string()
    }

    /// Every write the source API saw, as `METHOD path`.
    pub fn source_writes(&self) -> Vec<String> {
        self.src
            .log()
            .into_iter()
            .filter(|l| l.method != "GET")
            .map(|l| format!("{} {}", l.method, l.path))
            .collect()
    }
}

/// Plays csi-snapshotter once on `api`: real snapshots of `store` for new VolumeSnapshots,
/// deleted for contents whose VolumeSnapshot is gone.
pub async fn play_snapshotter(api: &FakeApi, store: &Store) {
    api.play_snapshotter(
        |volume, content| async move {
            let snap = store
                .create_snapshot(&content, &volume, Default::default())
                .await;
            snap.map(|s| s.id).map_err(|e| e.to_string())
        },
        |id| async move { store.delete_snapshot(&id).await.map_err(|e| e.to_string()) },
    )
    .await
    .expect("snapshotter");
}

/// Secret data as the API returns it: base64-encoded.
fn b64(pairs: &[(&str, &str)]) -> Value {
    let enc = |v: &str| json!(ferry_kubefake::base64(v.as_bytes()));
    Value::Object(pairs.iter().map(|(k, v)| (k.to_string(), enc(v))).collect())
}

pub async fn fill(store: &Store, id: &str, chunks: u64, seed: u64) {
    let h = store.open_volume(id).await.expect("open");
    let mut rng = StdRng::seed_from_u64(seed);
    for i in 0..chunks {
        if i % 4 == 3 {
            continue; // a hole
        }
        let mut buf = vec![0u8; CHUNK as usize];
        rng.fill_bytes(&mut buf);
        h.write_at(i * CHUNK, &buf).await.expect("write");
    }
    h.flush().await.expect("flush");
}

pub async fn digest(store: &Store, id: &str) -> String {
    let h = store.open_volume(id).await.expect("open");
    let size = h.size().await;
    hex::encode(Sha256::digest(
        h.read_at(0, size as usize).await.expect("read"),
    ))
}

/// The bearer token of a kubeconfig's first user, if it has one.
pub fn token_of(kubeconfig: &str) -> String {
    serde_yaml::from_str::<serde_yaml::Value>(kubeconfig)
        .ok()
        .and_then(|k| k["users"][0]["user"]["token"].as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The account a pair `ns/name` uses on the cluster `api` stands for, bound there as
/// docs/migration.md tells an admin to: `roles` in `ns` (which the admin creates there) for
/// a tenant's pair, cluster-wide for the admin's pair (in the controller's namespace), and
/// ferry-migration-pair cluster-wide. Returns the kubeconfig (an inline token) the pair's
/// Secret carries.
pub fn pair_account_on(api: &FakeApi, ns: &str, name: &str, roles: &[&str]) -> String {
    let who = Identity::service_account(ns, &format!("pair-{name}"));
    if ns != FERRY_NS {
        api.seed(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}));
    }
    for role in roles {
        let scope = (ns != FERRY_NS).then_some(ns);
        api.bind(&format!("pair-{name}-{role}"), role, &who, scope);
    }
    api.bind(
        &format!("{ns}-pair-{name}-reads"),
        "ferry-migration-pair",
        &who,
        None,
    );
    let token = api.register(&who);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://peer.invalid\n\
         contexts:\n- name: c\n  context:\n    cluster: c\n    user: pair\ncurrent-context: c\n\
         users:\n- name: pair\n  user:\n    token: {token}\n"
    )
}

/// The API path of the collection `obj` belongs in (its namespace's, or the cluster's).
pub fn collection_path(obj: &Value) -> String {
    let api_version = obj["apiVersion"].as_str().unwrap_or("v1");
    let base = match api_version.split_once('/') {
        Some((g, v)) => format!("/apis/{g}/{v}"),
        None => format!("/api/{api_version}"),
    };
    let kind = obj["kind"]
        .as_str()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let plural = if kind.ends_with('s') {
        format!("{kind}es")
    } else if let Some(stem) = kind.strip_suffix('y') {
        format!("{stem}ies")
    } else {
        format!("{kind}s")
    };
    match obj["metadata"]["namespace"].as_str() {
        Some(ns) => format!("{base}/namespaces/{ns}/{plural}"),
        None => format!("{base}/{plural}"),
    }
}

/// Creates `obj` through `api` as `who` would (a POST with their identity); returns the
/// code and body the server answered.
pub fn post_as(api: &FakeApi, who: &Identity, obj: &Value) -> (u16, Value) {
    let body = serde_json::to_vec(obj).expect("json");
    api.serve_one_as(
        who,
        &ferry_kubefake::Method::POST,
        &collection_path(obj),
        "",
        "application/json",
        &body,
    )
}

/// Merge-patches the object `obj` names (apiVersion, kind, namespace, name) as `who`.
pub fn patch_as(api: &FakeApi, who: &Identity, obj: &Value, patch: &Value) -> (u16, Value) {
    let path = format!(
        "{}/{}",
        collection_path(obj),
        obj["metadata"]["name"].as_str().unwrap_or_default()
    );
    api.serve_one_as(
        who,
        &ferry_kubefake::Method::PATCH,
        &path,
        "",
        "application/merge-patch+json",
        &serde_json::to_vec(patch).expect("json"),
    )
}
