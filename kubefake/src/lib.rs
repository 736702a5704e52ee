//! An in-memory stand-in for the Kubernetes API server, for tests and for the local demo
//! (`ferry-demo`), which shows a migration without a cluster. A test-support crate: no
//! shipped binary links it.
//!
//! No real API server can be installed here, so tests drive the controller against this one.
//! It keeps objects as JSON and models the API behaviours the controller relies on:
//! - authentication and authorization: every request carries an identity (a bearer token
//!   over HTTP, [`FakeApi::client_as`] in process) and is authorised by RBAC from the Roles,
//!   ClusterRoles and bindings stored here ([`rbac`]): 403 with the real server's message,
//!   the escalation check on RBAC writes, aggregated ClusterRoles filled by a controller a
//!   moment after a ClusterRole changes, SelfSubjectAccessReview and SelfSubjectRulesReview
//!   answered from the same rules; members of `system:masters` bypass it, as
//!   [`FakeApi::client`] does; 403 also for a collection a test forbids ([`FakeApi::forbid`]);
//! - an outage as a restarted kube-apiserver has it ([`FakeApi::go_down`],
//!   [`FakeApi::come_back`]): connections refused and open watches cut, then a short window
//!   in which every RBAC-decided request gets 403 while the authorizer warms up; time is
//!   tokio's, so tests can run it paused and move it;
//! - 404 NotFound, 409 AlreadyExists and Conflict, 422 Invalid with `Status` bodies;
//! - server-assigned metadata (uid, resourceVersion, creationTimestamp, generation, which
//!   moves on a change outside metadata and status and when an object is marked deleted);
//! - the status subresource (writes to the object ignore `status`; writes to `/status`
//!   change only `status`);
//! - server-side apply (`fieldManager` required; creates or merges);
//! - JSON merge patch: a member sent as null is removed, one left out is kept;
//! - a resourceVersion in a PUT, or in a merge patch, is a precondition (409 Conflict);
//! - a watch event for every write, status writes included (watches stream in process and
//!   over HTTP; [`FakeApi::watch_events`] reads them back);
//! - custom resources checked against the `x-kubernetes-validations` CEL rules of their
//!   CustomResourceDefinition on create and update (transition rules such as
//!   `self == oldSelf` on update only), evaluated by kube-rs's CEL crate, 422 with the
//!   rule's message when one fails;
//! - finalizers: a DELETE of an object that has some sets its `deletionTimestamp` and keeps
//!   it; it goes when a write removes the last one; none may be added meanwhile (422);
//! - immutable fields of PVCs and PVs (422), label selectors on lists;
//! - `pods/exec` over a websocket with the `v4.channel.k8s.io` subprotocol (served over HTTP
//!   only; see [`exec`]), the commands' output and exit codes being the test's;
//! - custom resources served only while their CRD exists and is Established (404
//!   otherwise); a CRD created through the API becomes Established at the next read of it,
//!   not in the create's answer, so clients must wait for the condition.
//!
//! A new FakeApi has ferry's own CRDs installed (as `kubectl apply -k manifests/` would) and
//! the bootstrap roles of a new cluster; [`FakeApi::install_ferry_rbac`] adds ferry's roles.
//! Every request is logged (with its user) for assertions, and the Nth write can be made to
//! fail with 500 to test resumption.
//!
//! Two ways in: [`FakeApi::client`] / [`FakeApi::client_as`] give a kube client answered in
//! process; [`FakeApi::serve`] listens on 127.0.0.1 for real processes (with a kubeconfig
//! from [`FakeApi::kubeconfig`] or [`FakeApi::kubeconfig_as`]).

pub mod exec;
pub mod identity;
pub mod rbac;

pub use identity::Identity;

use bytes::Bytes;
pub use http::Method;
use http::{Request, Response};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// One logged request.
#[derive(Clone, Debug)]
pub struct Logged {
    /// Who sent it (user name).
    pub user: String,
    /// HTTP method.
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Query string.
    pub query: String,
    /// Content type of the body.
    pub content_type: String,
    /// HTTP status answered.
    pub status: u16,
}

#[derive(Default)]
struct State {
    objects: BTreeMap<String, Value>,
    rv: u64,
    events: Vec<(u64, String, &'static str, Value)>,
    log: Vec<Logged>,
    writes: usize,
    fail_write: Option<usize>,
    unreachable: bool,
    forbidden: std::collections::BTreeSet<String>,
    /// Bearer tokens and whom they authenticate (over HTTP).
    tokens: BTreeMap<String, Identity>,
    /// Down: no connection is accepted (see [`FakeApi::go_down`]).
    down: bool,
    /// Until then every request that RBAC would decide is refused (a restarted server whose
    /// authorizer has not synced yet).
    warming_until: Option<tokio::time::Instant>,
    /// How long a server that comes back refuses RBAC-decided requests.
    warmup: std::time::Duration,
    /// When the aggregation controller next fills aggregated ClusterRoles.
    aggregate_at: Option<tokio::time::Instant>,
    /// How long after a ClusterRole write the aggregation controller acts.
    aggregation_delay: std::time::Duration,
}

/// The fake API server. Clones share state.
#[derive(Clone, Default)]
pub struct FakeApi {
    state: Arc<Mutex<State>>,
    exec_handler: Arc<Mutex<Option<exec::ExecHandler>>>,
    exec_log: exec::ExecLog,
    /// Wakes watches when an event is recorded or the server goes down.
    changed: Arc<tokio::sync::Notify>,
    /// Wakes the HTTP listener when the server goes down or comes back.
    availability: Arc<tokio::sync::Notify>,
}

/// Where a request points.
#[derive(Debug)]
struct Target {
    group: String,
    version: String,
    plural: String,
    ns: Option<String>,
    name: Option<String>,
    status: bool,
    /// The subresource (`status`, `exec`, `scale`), or empty.
    sub: String,
}

impl Target {
    fn parse(path: &str) -> Option<Target> {
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (group, version, rest) = match *segs.first()? {
            "api" => (String::new(), segs.get(1)?.to_string(), &segs[2..]),
            "apis" => (
                segs.get(1)?.to_string(),
                segs.get(2)?.to_string(),
                &segs[3..],
            ),
            _ => return None,
        };
        let (ns, rest) = if rest.first() == Some(&"namespaces") && rest.len() >= 3 {
            (Some(rest[1].to_string()), &rest[2..])
        } else {
            (None, rest)
        };
        Some(Target {
            group,
            version,
            plural: rest.first()?.to_string(),
            ns,
            name: rest.get(1).map(|s| s.to_string()),
            status: rest.get(2) == Some(&"status"),
            sub: rest.get(2).map(|s| s.to_string()).unwrap_or_default(),
        })
    }

    fn collection(&self) -> String {
        format!("{}/{}", self.group, self.plural)
    }

    fn key(&self, name: &str) -> String {
        format!(
            "{}/{}/{name}",
            self.collection(),
            self.ns.as_deref().unwrap_or("")
        )
    }

    fn in_scope(&self, key: &str) -> bool {
        let prefix = format!("{}/", self.collection());
        let Some(rest) = key.strip_prefix(&prefix) else {
            return false;
        };
        match &self.ns {
            Some(ns) => rest.starts_with(&format!("{ns}/")),
            None => true,
        }
    }
}

fn status(code: u16, reason: &str, message: String) -> (u16, Value) {
    (
        code,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": message, "reason": reason, "code": code}),
    )
}

/// RFC 7386 merge: objects merge, null deletes, everything else replaces.
fn merge(into: &mut Value, patch: &Value) {
    match (into, patch) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                if v.is_null() {
                    a.remove(k);
                } else {
                    merge(a.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (slot, p) => *slot = p.clone(),
    }
}

fn matches_labels(obj: &Value, selector: &str) -> bool {
    selector
        .split(',')
        .filter(|s| !s.is_empty())
        .all(|term| match term.split_once('=') {
            Some((k, v)) => obj["metadata"]["labels"][k.trim_end_matches('=')].as_str() == Some(v),
            None => obj["metadata"]["labels"][term].is_string(),
        })
}

fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| {
            v.replace("%3D", "=")
                .replace("%2C", ",")
                .replace("%2F", "/")
        })
    })
}

/// Fields of a kind that may not change once set (the API answers 422).
fn immutable_change(collection: &str, live: &Value, next: &Value) -> Option<String> {
    let paths: &[&[&str]] = match collection {
        "/persistentvolumeclaims" => &[
            &["spec", "volumeName"],
            &["spec", "storageClassName"],
            &["spec", "accessModes"],
            &["spec", "volumeMode"],
        ],
        "/persistentvolumes" => &[&["spec", "csi"]],
        "snapshot.storage.k8s.io/volumesnapshots" => &[&["spec", "source"]],
        _ => &[],
    };
    for p in paths {
        let get = |v: &Value| p.iter().fold(v.clone(), |v, k| v[*k].clone());
        let (a, b) = (get(live), get(next));
        if !a.is_null() && a != b {
            return Some(format!("{}: field is immutable", p.join(".")));
        }
    }
    None
}

impl FakeApi {
    /// An API with ferry's CRDs installed and no other object.
    ///
    /// Like a new cluster it also has the bootstrap roles (`cluster-admin`, `admin`, `edit`,
    /// `view`, `system:basic-user`; see [`rbac::bootstrap`]), and every request is authorised
    /// for the identity it carries: [`FakeApi::client`] is a cluster administrator,
    /// [`FakeApi::client_as`] anyone else, who gets what the roles bound to them grant.
    pub fn new() -> FakeApi {
        let api = FakeApi::default();
        api.lock().warmup = std::time::Duration::from_secs(1);
        for crd in ferry_migration::crd::crds() {
            if let Ok(v) = serde_json::to_value(crd) {
                api.seed(v);
            }
        }
        for o in rbac::bootstrap() {
            api.seed(o);
        }
        api
    }

    /// Installs the objects of a manifest (YAML documents) as `kubectl apply` would (by
    /// seeding; namespaced objects without a namespace go to `namespace`).
    ///
    /// # Panics
    /// When the YAML does not parse: a test's fixture is wrong.
    pub fn apply_manifest(&self, yaml: &str, namespace: &str) {
        for doc in yaml.split("\n---") {
            let v: Value = match serde_yaml::from_str(doc) {
                Ok(Value::Null) => continue,
                Ok(v) => v,
                Err(e) => panic!("manifest does not parse: {e}"),
            };
            let mut v = v;
            let kind = v["kind"].as_str().unwrap_or_default().to_string();
            let cluster_scoped = matches!(
                kind.as_str(),
                "ClusterRole"
                    | "ClusterRoleBinding"
                    | "Namespace"
                    | "CustomResourceDefinition"
                    | "StorageClass"
                    | "CSIDriver"
                    | "PersistentVolume"
                    | "VolumeSnapshotClass"
            );
            if !cluster_scoped && v["metadata"]["namespace"].is_null() {
                v["metadata"]["namespace"] = json!(namespace);
            }
            let t = seed_target(&v);
            let name = v["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let key = t.key(&name);
            if self.lock().objects.contains_key(&key) {
                let mut st = self.lock();
                if let Some(live) = st.objects.get(&key).cloned() {
                    let mut next = live;
                    merge(&mut next, &v);
                    bump(&mut st, &key, &mut next, "MODIFIED");
                    st.objects.insert(key, next);
                }
            } else {
                self.seed(v);
            }
        }
        // The aggregation controller notices the change after its delay.
        let mut st = self.lock();
        st.aggregate_at = Some(tokio::time::Instant::now() + st.aggregation_delay);
        aggregate_if_due(&mut st);
        drop(st);
        self.changed.notify_waiters();
    }

    /// Ferry's RBAC (`manifests/rbac.yaml`) installed in namespace `ns`, as
    /// `kubectl apply -k manifests/` does.
    pub fn install_ferry_rbac(&self, ns: &str) {
        self.apply_manifest(include_str!("../../manifests/rbac.yaml"), ns);
    }

    /// Runs the aggregation controller now.
    pub fn aggregate_now(&self) {
        let mut st = self.lock();
        st.aggregate_at = Some(tokio::time::Instant::now());
        aggregate_if_due(&mut st);
        drop(st);
        self.changed.notify_waiters();
    }

    /// Binds `role` (a ClusterRole, or a Role when `namespaced_role`) to `who` in `ns` with a
    /// RoleBinding named `name` (a ClusterRoleBinding when `ns` is `None`), as an admin would.
    pub fn bind(&self, name: &str, role: &str, who: &Identity, ns: Option<&str>) {
        let subject = match who.service_account_of() {
            Some((sns, sname)) => {
                json!({"kind": "ServiceAccount", "name": sname, "namespace": sns})
            }
            None => {
                json!({"kind": "User", "name": who.user, "apiGroup": "rbac.authorization.k8s.io"})
            }
        };
        let kind = if ns.is_some() {
            "RoleBinding"
        } else {
            "ClusterRoleBinding"
        };
        let mut b = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind,
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [subject]});
        if let Some(ns) = ns {
            b["metadata"]["namespace"] = json!(ns);
        }
        self.seed(b);
    }

    /// Would the server allow `who` this request now (RBAC and warm-up)?
    pub fn can(
        &self,
        who: &Identity,
        verb: &str,
        group: &str,
        resource: &str,
        ns: Option<&str>,
    ) -> bool {
        let st = self.lock();
        let a = rbac::Attributes {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            namespace: ns.map(str::to_string),
            ..Default::default()
        };
        authorize(&st, who, &a).is_none()
    }

    /// Every object stored, keyed `group/plural/namespace/name` (for reviews a test computes
    /// with [`rbac`]).
    pub fn objects(&self) -> BTreeMap<String, Value> {
        self.lock().objects.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores `obj` as the server would after a create (no request logged). A seeded CRD
    /// is Established at once.
    pub fn seed(&self, mut obj: Value) -> Value {
        let t = seed_target(&obj);
        if t.collection() == CRD_COLLECTION && !established(&obj) {
            obj["status"]["conditions"] = established_conditions();
            obj["status"]["acceptedNames"] = obj["spec"]["names"].clone();
        }
        let mut st = self.lock();
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let out = create(&mut st, &t, &name, obj, true);
        if t.collection() == rbac::CLUSTER_ROLES {
            st.aggregate_at = Some(tokio::time::Instant::now() + st.aggregation_delay);
        }
        drop(st);
        self.changed.notify_waiters();
        out.1
    }

    /// The object at `collection` (`group/plural`), namespace and name.
    pub fn get(&self, collection: &str, ns: Option<&str>, name: &str) -> Option<Value> {
        self.lock()
            .objects
            .get(&format!("{collection}/{}/{name}", ns.unwrap_or("")))
            .cloned()
    }

    /// Removes an object as another client's delete would (no request logged; a DELETED
    /// watch event). Returns whether it was there.
    pub fn remove(&self, collection: &str, ns: Option<&str>, name: &str) -> bool {
        let mut st = self.lock();
        let key = format!("{collection}/{}/{name}", ns.unwrap_or(""));
        let Some(o) = st.objects.remove(&key) else {
            return false;
        };
        st.rv += 1;
        let rv = st.rv;
        st.events.push((rv, key, "DELETED", o));
        drop(st);
        self.changed.notify_waiters();
        true
    }

    /// Every object in `collection`.
    pub fn all(&self, collection: &str) -> Vec<Value> {
        let prefix = format!("{collection}/");
        self.lock()
            .objects
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The watch events recorded for one object (what a watch from the start would deliver),
    /// oldest first, as their types (`ADDED`, `MODIFIED`, `DELETED`).
    pub fn watch_events(
        &self,
        collection: &str,
        ns: Option<&str>,
        name: &str,
    ) -> Vec<&'static str> {
        let key = format!("{collection}/{}/{name}", ns.unwrap_or(""));
        self.lock()
            .events
            .iter()
            .filter(|(_, k, _, _)| *k == key)
            .map(|(_, _, ty, _)| *ty)
            .collect()
    }

    /// Answers 403 Forbidden to every request on `collection` (`group/plural`), as the real
    /// server does for a client whose RBAC does not grant it.
    pub fn forbid(&self, collection: &str) {
        self.lock().forbidden.insert(collection.to_string());
    }

    /// Sets an object's status directly, as another controller would.
    pub fn set_status(&self, collection: &str, ns: Option<&str>, name: &str, status: Value) {
        let mut st = self.lock();
        st.rv += 1;
        let rv = st.rv;
        let key = format!("{collection}/{}/{name}", ns.unwrap_or(""));
        if let Some(o) = st.objects.get_mut(&key) {
            o["status"] = status;
            o["metadata"]["resourceVersion"] = json!(rv.to_string());
            let o = o.clone();
            st.events.push((rv, key, "MODIFIED", o));
        }
        drop(st);
        self.changed.notify_waiters();
    }

    /// Plays csi-snapshotter once against this API: each VolumeSnapshot not yet ready gets a
    /// snapshot from `create(volume handle of its claim's PV, content name)`, a
    /// VolumeSnapshotContent naming it, and a ready status; each content whose VolumeSnapshot
    /// is gone is removed after `delete(snapshot handle)` (deletionPolicy Delete). Returns the
    /// snapshot handles made.
    ///
    /// # Errors
    /// What `create` or `delete` returns; a snapshot whose claim or volume is missing.
    pub async fn play_snapshotter<E, C, CF, D, DF>(
        &self,
        mut create: C,
        mut delete: D,
    ) -> Result<Vec<String>, E>
    where
        E: From<String>,
        C: FnMut(String, String) -> CF,
        CF: std::future::Future<Output = Result<String, E>>,
        D: FnMut(String) -> DF,
        DF: std::future::Future<Output = Result<(), E>>,
    {
        const SNAPS: &str = "snapshot.storage.k8s.io/volumesnapshots";
        const CONTENTS: &str = "snapshot.storage.k8s.io/volumesnapshotcontents";
        for vsc in self.all(CONTENTS) {
            let r = &vsc["spec"]["volumeSnapshotRef"];
            let owner = r["name"].as_str().unwrap_or_default();
            if self.get(SNAPS, r["namespace"].as_str(), owner).is_none() {
                let handle = vsc["status"]["snapshotHandle"].as_str().unwrap_or_default();
                delete(handle.to_string()).await?;
                let name = vsc["metadata"]["name"].as_str().unwrap_or_default();
                let key = format!("{CONTENTS}//{name}");
                let mut st = self.lock();
                if let Some(mut o) = st.objects.remove(&key) {
                    bump(&mut st, &key, &mut o, "DELETED");
                }
            }
        }
        let mut made = Vec::new();
        for vs in self.all(SNAPS) {
            if vs["status"]["readyToUse"].as_bool() == Some(true) {
                continue;
            }
            let ns = vs["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let name = vs["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let claim = vs["spec"]["source"]["persistentVolumeClaimName"]
                .as_str()
                .unwrap_or_default();
            let pvc = self
                .get("/persistentvolumeclaims", Some(&ns), claim)
                .ok_or_else(|| format!("claim {ns}/{claim} of VolumeSnapshot {name} is missing"))?;
            let pv_name = pvc["spec"]["volumeName"].as_str().unwrap_or_default();
            let pv = self
                .get("/persistentvolumes", None, pv_name)
                .ok_or_else(|| format!("volume {pv_name} of claim {ns}/{claim} is missing"))?;
            let volume = pv["spec"]["csi"]["volumeHandle"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let content = format!(
                "snapcontent-{}",
                vs["metadata"]["uid"].as_str().unwrap_or_default()
            );
            let handle = create(volume, content.clone()).await?;
            self.seed(json!({"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotContent",
                "metadata": {"name": content},
                "spec": {"driver": "ferry.csi.dev", "deletionPolicy": "Delete", "volumeSnapshotRef": {"namespace": ns, "name": name}},
                "status": {"snapshotHandle": handle, "readyToUse": true}}));
            self.set_status(
                SNAPS,
                Some(&ns),
                &name,
                json!({"readyToUse": true, "boundVolumeSnapshotContentName": content}),
            );
            made.push(handle);
        }
        Ok(made)
    }

    /// The requests served so far.
    pub fn log(&self) -> Vec<Logged> {
        self.lock().log.clone()
    }

    /// Makes the `n`th write from now (1-based) fail with 500, once.
    pub fn fail_write(&self, n: usize) {
        let mut st = self.lock();
        st.fail_write = Some(st.writes + n);
    }

    /// Answers every request with 503, as an API server that is overloaded or behind a
    /// proxy whose backend is gone.
    pub fn set_unreachable(&self, down: bool) {
        self.lock().unreachable = down;
    }

    /// Takes the server down as a stopped kube-apiserver is: no connection is accepted
    /// (clients see connection refused), and open watches end.
    pub fn go_down(&self) {
        self.lock().down = true;
        self.changed.notify_waiters();
        self.availability.notify_waiters();
    }

    /// Brings the server back as a restarted kube-apiserver comes back: connections are
    /// accepted again, and for the warm-up time ([`FakeApi::set_warmup`], 1 s unless set)
    /// every request RBAC decides is refused with 403, as while its authorizer's caches
    /// fill.
    pub fn come_back(&self) {
        let mut st = self.lock();
        st.down = false;
        st.warming_until = Some(tokio::time::Instant::now() + st.warmup);
        drop(st);
        self.availability.notify_waiters();
    }

    /// How long the server refuses RBAC-decided requests after [`FakeApi::come_back`].
    pub fn set_warmup(&self, d: std::time::Duration) {
        self.lock().warmup = d;
    }

    /// How long after a ClusterRole changes the aggregation controller fills aggregated
    /// ClusterRoles (zero: at the next request).
    pub fn set_aggregation_delay(&self, d: std::time::Duration) {
        self.lock().aggregation_delay = d;
    }

    /// True while the server is down.
    pub fn is_down(&self) -> bool {
        self.lock().down
    }

    /// Serves one request as `who`.
    pub fn serve_one_as(
        &self,
        who: &Identity,
        method: &Method,
        path: &str,
        query: &str,
        content_type: &str,
        body: &[u8],
    ) -> (u16, Value) {
        let mut st = self.lock();
        let (code, v) = handle(&mut st, who, method, path, query, content_type, body);
        st.log.push(Logged {
            user: who.user.clone(),
            method: method.to_string(),
            path: path.to_string(),
            query: query.to_string(),
            content_type: content_type.to_string(),
            status: code,
        });
        drop(st);
        if *method != Method::GET {
            self.changed.notify_waiters();
        }
        (code, v)
    }

    /// Serves one request as a cluster administrator.
    pub fn serve_one(
        &self,
        method: &Method,
        path: &str,
        query: &str,
        content_type: &str,
        body: &[u8],
    ) -> (u16, Value) {
        self.serve_one_as(&Identity::admin(), method, path, query, content_type, body)
    }

    /// A kube client acting as a cluster administrator (`system:masters`).
    pub fn client(&self) -> kube::Client {
        self.client_as(&Identity::admin())
    }

    /// A kube client whose requests carry `who`, answered in process (watches included);
    /// while the server is down ([`FakeApi::go_down`]) every request fails as a refused
    /// connection does.
    pub fn client_as(&self, who: &Identity) -> kube::Client {
        let api = self.clone();
        let who = who.clone();
        let svc = tower::service_fn(move |req: Request<kube::client::Body>| {
            let api = api.clone();
            let who = who.clone();
            async move { api.respond(req, &who).await }
        });
        kube::Client::new(svc, "default")
    }

    async fn respond(
        &self,
        req: Request<kube::client::Body>,
        who: &Identity,
    ) -> Result<
        Response<http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>>,
        std::io::Error,
    > {
        if self.is_down() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "connection refused (the API server is down)",
            ));
        }
        let (parts, body) = req.into_parts();
        let bytes = http_body_util::BodyExt::collect(body)
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        Ok(self.answer(who, &parts, &bytes))
    }

    /// The response to a request (a watch streams).
    fn answer(
        &self,
        who: &Identity,
        parts: &http::request::Parts,
        bytes: &[u8],
    ) -> Response<http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>> {
        let query = parts.uri.query().unwrap_or("").to_string();
        let path = parts.uri.path().to_string();
        if parts.method == Method::GET && query_param(&query, "watch").as_deref() == Some("true") {
            // Authorised (and logged) as a request of its own first.
            let (code, v) = self.serve_one_as(who, &Method::GET, &path, &query, "", &[]);
            if code >= 400 {
                return json_response(code, &v);
            }
            return self.watch(&path, &query);
        }
        let ct = content_type(&parts.headers);
        let (code, v) = self.serve_one_as(who, &parts.method, &path, &query, &ct, bytes);
        json_response(code, &v)
    }

    /// Serves the API over HTTP on 127.0.0.1 (port picked by the OS), watches included.
    /// A request's identity is the one its bearer token was issued for
    /// ([`FakeApi::kubeconfig_as`]); the token of [`FakeApi::kubeconfig`] is a cluster
    /// administrator's, a request without one is anonymous. While the server is down
    /// ([`FakeApi::go_down`]) the port refuses connections. Returns the address; the server
    /// stops when the runtime does.
    ///
    /// # Errors
    /// The socket cannot be bound.
    pub async fn serve(&self) -> std::io::Result<std::net::SocketAddr> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        self.lock().tokens.insert("fake".into(), Identity::admin());
        let api = self.clone();
        tokio::spawn(async move {
            let mut listener = Some(listener);
            loop {
                let waiting = api.availability.notified();
                tokio::pin!(waiting);
                waiting.as_mut().enable();
                let down = api.is_down();
                match (&listener, down) {
                    (Some(_), true) => {
                        // Closing the socket makes new connections fail with ECONNREFUSED.
                        listener = None;
                        continue;
                    }
                    (None, false) => {
                        match tokio::net::TcpListener::bind(addr).await {
                            Ok(l) => listener = Some(l),
                            Err(_) => {
                                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                            }
                        }
                        continue;
                    }
                    (None, true) => {
                        waiting.await;
                        continue;
                    }
                    (Some(_), false) => {}
                }
                let Some(l) = &listener else { continue };
                let accepted = tokio::select! {
                    a = l.accept() => a,
                    _ = &mut waiting => continue,
                };
                let Ok((conn, _)) = accepted else {
                    continue;
                };
                let api = api.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let api = api.clone();
                        async move { Ok::<_, std::convert::Infallible>(api.http(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(conn), svc)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Ok(addr)
    }

    /// A kubeconfig for a server at `addr`, authenticating as a cluster administrator.
    pub fn kubeconfig(addr: std::net::SocketAddr) -> String {
        kubeconfig_with_token(addr, "fake")
    }

    /// A kubeconfig for this server at `addr` whose token authenticates as `who`.
    pub fn kubeconfig_as(&self, addr: std::net::SocketAddr, who: &Identity) -> String {
        let token = who.token();
        self.lock().tokens.insert(token.clone(), who.clone());
        kubeconfig_with_token(addr, &token)
    }

    /// Issues a bearer token for `who` (as a cluster's token authenticator would accept).
    pub fn register(&self, who: &Identity) -> String {
        let token = who.token();
        self.lock().tokens.insert(token.clone(), who.clone());
        token
    }

    /// A client whose requests carry `token`: its identity when the server issued it
    /// ([`FakeApi::register`], [`FakeApi::kubeconfig_as`]), anonymous otherwise.
    pub fn client_for_token(&self, token: &str) -> kube::Client {
        let who = self
            .lock()
            .tokens
            .get(token)
            .cloned()
            .unwrap_or_else(Identity::anonymous);
        self.client_as(&who)
    }

    /// The identity a request's `Authorization` header carries.
    fn identity_of(&self, headers: &http::HeaderMap) -> Identity {
        let token = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match token {
            Some(t) => self
                .lock()
                .tokens
                .get(t)
                .cloned()
                .unwrap_or_else(Identity::anonymous),
            None => Identity::anonymous(),
        }
    }

    /// Answers every exec request with `handler` (see [`exec`]).
    pub fn on_exec(
        &self,
        handler: impl Fn(&exec::ExecCall) -> exec::ExecReply + Send + Sync + 'static,
    ) {
        *self.exec_handler.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(handler));
    }

    /// The exec requests served so far.
    pub fn execs(&self) -> Vec<exec::ExecRecord> {
        self.exec_log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// An exec request: 101 Switching Protocols, then the command over the websocket.
    fn exec(
        &self,
        mut req: Request<hyper::body::Incoming>,
    ) -> Response<http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>> {
        use http_body_util::BodyExt;
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or("").to_string();
        let fail = |code: u16, v: Value| json_response(code, &v);
        // GET /api/v1/namespaces/{ns}/pods/{name}/exec, logged like any request.
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (ns, pod) = match segs.as_slice() {
            ["api", "v1", "namespaces", ns, "pods", pod, "exec"] => {
                (ns.to_string(), pod.to_string())
            }
            _ => return fail(404, status(404, "NotFound", format!("no API at {path}")).1),
        };
        let who = self.identity_of(req.headers());
        {
            let mut st = self.lock();
            let attrs = rbac::Attributes {
                verb: "create".into(),
                resource: "pods".into(),
                subresource: "exec".into(),
                namespace: Some(ns.clone()),
                name: Some(pod.clone()),
                ..Default::default()
            };
            let refused = authorize(&st, &who, &attrs);
            st.log.push(Logged {
                user: who.user.clone(),
                method: "GET".into(),
                path: path.clone(),
                query: query.clone(),
                content_type: String::new(),
                status: refused.as_ref().map_or(101, |r| r.0),
            });
            if let Some((code, v)) = refused {
                return fail(code, v);
            }
            if st.forbidden.contains("/pods/exec") {
                return fail(
                    403,
                    status(
                        403,
                        "Forbidden",
                        format!(
                            "pods \"{pod}\" is forbidden: cannot create resource \"pods/exec\""
                        ),
                    )
                    .1,
                );
            }
            if !st.objects.contains_key(&format!("/pods/{ns}/{pod}")) {
                return fail(
                    404,
                    status(404, "NotFound", format!("pods \"{pod}\" not found")).1,
                );
            }
        }
        let params: Vec<(String, String)> = query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), percent_decode(v)))
            .collect();
        let call = exec::ExecCall {
            namespace: ns,
            pod,
            container: params
                .iter()
                .find(|(k, _)| k == "container")
                .map(|(_, v)| v.clone()),
            command: params
                .iter()
                .filter(|(k, _)| k == "command")
                .map(|(_, v)| v.clone())
                .collect(),
        };
        let reply = match self
            .exec_handler
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            Some(h) => h(&call),
            None => exec::ExecReply {
                stderr: "no exec handler set by the test".into(),
                exit_code: 127,
                ..Default::default()
            },
        };
        let key = req
            .headers()
            .get("sec-websocket-key")
            .and_then(|k| k.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
        let log = self.exec_log.clone();
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let Ok(upgraded) = upgrade.await else { return };
            let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
                hyper_util::rt::TokioIo::new(upgraded),
                tokio_tungstenite::tungstenite::protocol::Role::Server,
                None,
            )
            .await;
            exec::serve(ws, call, reply, log).await;
        });
        Response::builder()
            .status(101)
            .header("upgrade", "websocket")
            .header("connection", "Upgrade")
            .header("sec-websocket-accept", accept)
            .header("sec-websocket-protocol", "v4.channel.k8s.io")
            .body(http_body_util::Full::new(Bytes::new()).boxed())
            .unwrap_or_default()
    }

    async fn http(
        &self,
        req: Request<hyper::body::Incoming>,
    ) -> Response<http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>> {
        use http_body_util::BodyExt;
        if req.uri().path().ends_with("/exec")
            && req
                .headers()
                .get("upgrade")
                .and_then(|u| u.to_str().ok())
                .is_some_and(|u| u.eq_ignore_ascii_case("websocket"))
        {
            return self.exec(req);
        }
        let (parts, body) = req.into_parts();
        let bytes = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let who = self.identity_of(&parts.headers);
        self.answer(&who, &parts, &bytes)
    }

    /// A watch: events after `resourceVersion`, one JSON object per line, until
    /// `timeoutSeconds` pass.
    fn watch(
        &self,
        path: &str,
        query: &str,
    ) -> Response<http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>> {
        use http_body_util::BodyExt;
        let Some(t) = Target::parse(path) else {
            return Response::builder()
                .status(404)
                .body(http_body_util::Full::new(Bytes::new()).boxed())
                .unwrap_or_default();
        };
        let after: u64 = query_param(query, "resourceVersion")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let selector = query_param(query, "labelSelector").unwrap_or_default();
        let secs: u64 = query_param(query, "timeoutSeconds")
            .and_then(|v| v.parse().ok())
            .unwrap_or(300)
            .min(300);
        let api = self.clone();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
        let t = Arc::new(Target {
            group: t.group.clone(),
            version: String::new(),
            plural: t.plural.clone(),
            ns: t.ns.clone(),
            name: None,
            status: false,
            sub: String::new(),
        });
        let stream = futures::stream::unfold(after, move |mut after| {
            let api = api.clone();
            let selector = selector.clone();
            let t = t.clone();
            async move {
                loop {
                    // Registered before looking, so an event recorded in between wakes it.
                    let changed = api.changed.clone();
                    let woken = changed.notified();
                    tokio::pin!(woken);
                    woken.as_mut().enable();
                    if tokio::time::Instant::now() >= deadline {
                        return None;
                    }
                    let lines: Vec<(u64, Value)> = {
                        let st = api.lock();
                        if st.down {
                            // A stopped server drops its connections.
                            return None;
                        }
                        let from = st.events.partition_point(|(rv, ..)| *rv <= after);
                        st.events[from..]
                            .iter()
                            .filter(|(_, key, _, o)| {
                                t.in_scope(key) && matches_labels(o, &selector)
                            })
                            .map(|(rv, _, ty, o)| (*rv, json!({"type": ty, "object": o})))
                            .collect()
                    };
                    if let Some(last) = lines.last().map(|(rv, _)| *rv) {
                        after = last;
                        let mut out = Vec::new();
                        for (_, l) in lines {
                            out.extend(serde_json::to_vec(&l).unwrap_or_default());
                            out.push(b'\n');
                        }
                        return Some((
                            Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(
                                Bytes::from(out),
                            )),
                            after,
                        ));
                    }
                    tokio::select! {
                        _ = &mut woken => {}
                        _ = tokio::time::sleep_until(deadline) => return None,
                    }
                }
            }
        });
        Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(http_body_util::StreamBody::new(stream).boxed())
            .unwrap_or_default()
    }
}

fn kubeconfig_with_token(addr: std::net::SocketAddr, token: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{addr}\n\
         contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\n\
         current-context: fake\nusers:\n- name: fake\n  user:\n    token: {token}\n"
    )
}

fn content_type(headers: &http::HeaderMap) -> String {
    let ct = headers.get(http::header::CONTENT_TYPE);
    ct.and_then(|v| v.to_str().ok()).unwrap_or("").to_string()
}

fn seed_target(obj: &Value) -> Target {
    let api_version = obj["apiVersion"].as_str().unwrap_or("v1");
    let (group, version) = api_version
        .rsplit_once('/')
        .map_or(("", api_version), |(g, v)| (g, v));
    let kind = obj["kind"].as_str().unwrap_or_default();
    Target {
        group: group.into(),
        version: version.into(),
        plural: plural_of(kind),
        ns: obj["metadata"]["namespace"].as_str().map(str::to_string),
        name: None,
        status: false,
        sub: String::new(),
    }
}

/// English plural of a kind, as the API names resources.
fn plural_of(kind: &str) -> String {
    let k = kind.to_ascii_lowercase();
    if k.ends_with("ss") || k.ends_with('x') {
        format!("{k}es")
    } else if let Some(stem) = k.strip_suffix('y') {
        format!("{stem}ies")
    } else {
        format!("{k}s")
    }
}

/// Standard base64, as the API encodes Secret data.
pub fn base64(b: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in b.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            out.push(if i <= c.len() {
                T[(n >> (18 - 6 * i) & 63) as usize] as char
            } else {
                '='
            });
        }
    }
    out
}

/// A Secret's `stringData` is write-only: the API merges it into `data`, base64-encoded.
fn fold_string_data(collection: &str, obj: &mut Value) {
    if collection != "/secrets" {
        return;
    }
    let Some(sd) = obj.as_object_mut().and_then(|o| o.remove("stringData")) else {
        return;
    };
    if !obj["data"].is_object() {
        obj["data"] = json!({});
    }
    for (k, v) in sd.as_object().into_iter().flatten() {
        obj["data"][k] = json!(base64(v.as_str().unwrap_or_default().as_bytes()));
    }
}

fn bump(st: &mut State, key: &str, obj: &mut Value, ty: &'static str) {
    st.rv += 1;
    obj["metadata"]["resourceVersion"] = json!(st.rv.to_string());
    st.events.push((st.rv, key.to_string(), ty, obj.clone()));
}

fn create(
    st: &mut State,
    t: &Target,
    name: &str,
    mut obj: Value,
    keep_status: bool,
) -> (u16, Value) {
    let key = t.key(name);
    fold_string_data(&t.collection(), &mut obj);
    if st.objects.contains_key(&key) {
        return status(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", t.plural),
        );
    }
    if !keep_status && let Some(o) = obj.as_object_mut() {
        o.remove("status");
    }
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    let m = &mut obj["metadata"];
    m["name"] = json!(name);
    if let Some(ns) = &t.ns {
        m["namespace"] = json!(ns);
    }
    if m["uid"].is_null() {
        m["uid"] = json!(format!("uid-{}-{}", t.plural, st.rv + 1));
    }
    m["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
    m["generation"] = json!(1);
    bump(st, &key, &mut obj, "ADDED");
    st.objects.insert(key, obj.clone());
    (201, obj)
}

/// Bumps `next`'s generation when anything but its metadata and status changed from `live`
/// (as the real server does for custom resources; built-in kinds that carry a generation
/// bump it on spec changes, which this covers).
fn next_generation(live: &Value, next: &mut Value) {
    let essence = |v: &Value| {
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            o.remove("metadata");
            o.remove("status");
        }
        v
    };
    let g = live["metadata"]["generation"].as_i64().unwrap_or(1);
    let g = if essence(live) != essence(next) {
        g + 1
    } else {
        g
    };
    next["metadata"]["generation"] = json!(g);
}

/// While an object is being deleted, finalizers may be removed but none added (422), as on
/// the real server.
fn finalizer_change(t: &Target, name: &str, live: &Value, next: &Value) -> Option<(u16, Value)> {
    if live["metadata"]["deletionTimestamp"].is_null() {
        return None;
    }
    let list = |v: &Value| -> Vec<String> {
        v["metadata"]["finalizers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f.as_str().map(str::to_string))
            .collect()
    };
    let before = list(live);
    let added: Vec<String> = list(next)
        .into_iter()
        .filter(|f| !before.contains(f))
        .collect();
    (!added.is_empty()).then(|| {
        status(
            422,
            "Invalid",
            format!(
                "{} \"{name}\" is invalid: metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers {added:?}",
                t.plural
            ),
        )
    })
}

/// An object marked for deletion whose last finalizer was just removed is deleted.
fn gone_after_finalizers(next: &Value) -> bool {
    !next["metadata"]["deletionTimestamp"].is_null()
        && next["metadata"]["finalizers"]
            .as_array()
            .is_none_or(|f| f.is_empty())
}

/// The OpenAPI schema the CRD serving `t` gives its version, if a CRD serves it.
fn crd_schema(st: &State, t: &Target) -> Option<Value> {
    if t.group.is_empty() {
        return None;
    }
    let crd = st.objects.get(&format!(
        "apiextensions.k8s.io/customresourcedefinitions//{}.{}",
        t.plural, t.group
    ))?;
    crd["spec"]["versions"]
        .as_array()?
        .iter()
        .find(|v| v["name"] == t.version)
        .map(|v| v["schema"]["openAPIV3Schema"].clone())
}

/// Checks a custom resource against its CRD's CEL rules, as the real server does: `old` is
/// the stored object on update, `None` on create (where transition rules do not run).
fn check_rules(
    st: &State,
    t: &Target,
    name: &str,
    obj: &Value,
    old: Option<&Value>,
) -> Option<(u16, Value)> {
    let schema = crd_schema(st, t)?;
    let errors = kube_cel::Validator::new()
        .validate(&schema, obj, old)
        .err()?;
    let kind = obj["kind"].as_str().unwrap_or(&t.plural).to_string();
    let causes: Vec<String> = errors
        .iter()
        .map(|e| {
            if e.field_path.is_empty() {
                format!("<nil>: Invalid value: \"object\": {}", e.message)
            } else {
                format!("{}: Invalid value: \"object\": {}", e.field_path, e.message)
            }
        })
        .collect();
    Some(status(
        422,
        "Invalid",
        format!(
            "{kind}.{} \"{name}\" is invalid: {}",
            t.group,
            causes.join(", ")
        ),
    ))
}

/// The collection of CustomResourceDefinitions.
const CRD_COLLECTION: &str = "apiextensions.k8s.io/customresourcedefinitions";

/// API groups a cluster serves without a CRD (the built-in ones, and the snapshot groups a
/// CSI cluster installs with its snapshot controller, which tests do not seed).
const BUILT_IN_GROUPS: [&str; 16] = [
    "",
    "apps",
    "batch",
    "autoscaling",
    "policy",
    "rbac.authorization.k8s.io",
    "networking.k8s.io",
    "storage.k8s.io",
    "apiextensions.k8s.io",
    "coordination.k8s.io",
    "events.k8s.io",
    "authorization.k8s.io",
    "authentication.k8s.io",
    "admissionregistration.k8s.io",
    "snapshot.storage.k8s.io",
    "groupsnapshot.storage.k8s.io",
];

/// A custom resource collection is served only while a CRD of that plural and group
/// exists, serves the version and is Established, as on the real server (404 otherwise).
fn unserved(st: &State, t: &Target) -> Option<(u16, Value)> {
    if BUILT_IN_GROUPS.contains(&t.group.as_str()) {
        return None;
    }
    let crd = st
        .objects
        .get(&format!("{CRD_COLLECTION}//{}.{}", t.plural, t.group));
    let served = crd.is_some_and(|c| {
        established(c)
            && c["spec"]["versions"].as_array().is_some_and(|vs| {
                vs.iter()
                    .any(|v| v["name"] == t.version && v["served"] != json!(false))
            })
    });
    (!served).then(|| {
        status(
            404,
            "NotFound",
            "the server could not find the requested resource".into(),
        )
    })
}

/// Has a CRD the Established condition?
fn established(crd: &Value) -> bool {
    crd["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Established" && c["status"] == "True")
    })
}

/// The conditions of a CRD the server has accepted the names of and serves.
fn established_conditions() -> Value {
    json!([
        {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts"},
        {"type": "Established", "status": "True", "reason": "InitialNamesAccepted"}
    ])
}

/// A created CRD becomes Established a moment later on the real server (its names are
/// checked and its handler starts); here, at the first read after the create, so a client
/// that creates a CRD and uses it at once gets 404 until it has waited for the condition.
fn establish(st: &mut State, name: &str) {
    let key = format!("{CRD_COLLECTION}//{name}");
    let Some(crd) = st.objects.get(&key) else {
        return;
    };
    if established(crd) {
        return;
    }
    let mut crd = crd.clone();
    crd["status"]["conditions"] = established_conditions();
    crd["status"]["acceptedNames"] = crd["spec"]["names"].clone();
    bump(st, &key, &mut crd, "MODIFIED");
    st.objects.insert(key, crd);
}

fn handle(
    st: &mut State,
    who: &Identity,
    method: &Method,
    path: &str,
    query: &str,
    ct: &str,
    body: &[u8],
) -> (u16, Value) {
    let out = handle_request(st, who, method, path, query, ct, body);
    // The aggregation controller notices a changed ClusterRole a moment later.
    if *method != Method::GET
        && out.0 < 300
        && Target::parse(path).is_some_and(|t| t.collection() == rbac::CLUSTER_ROLES)
    {
        st.aggregate_at = Some(tokio::time::Instant::now() + st.aggregation_delay);
    }
    out
}

/// The request's attributes as the authorizer sees them.
fn attributes(method: &Method, query: &str, t: &Target) -> rbac::Attributes {
    let verb = match (method.as_str(), &t.name) {
        ("GET", None) if query_param(query, "watch").as_deref() == Some("true") => "watch",
        ("GET", None) => "list",
        // exec over a websocket upgrade is authorised as create (as servers since 1.30 do).
        ("GET", Some(_)) if t.sub == "exec" => "create",
        ("GET", Some(_)) => "get",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", None) => "deletecollection",
        ("DELETE", Some(_)) => "delete",
        (other, _) => {
            return rbac::Attributes {
                verb: other.to_lowercase(),
                ..Default::default()
            };
        }
    };
    rbac::Attributes {
        verb: verb.into(),
        group: t.group.clone(),
        resource: t.plural.clone(),
        subresource: t.sub.clone(),
        // As the real server's request info has it: a request for a Namespace object is in
        // that namespace, so a RoleBinding there may grant it.
        namespace: if t.group.is_empty() && t.plural == "namespaces" && t.name.is_some() {
            t.name.clone()
        } else {
            t.ns.clone()
        },
        name: t.name.clone(),
    }
}

/// `Some(403)` when `who` may not do this: RBAC's answer, or a server still warming up.
fn authorize(st: &State, who: &Identity, a: &rbac::Attributes) -> Option<(u16, Value)> {
    if who.is_master() {
        return None;
    }
    let warming = st
        .warming_until
        .is_some_and(|t| tokio::time::Instant::now() < t);
    if warming || !rbac::allowed(&st.objects, who, a) {
        let mut out = status(403, "Forbidden", rbac::forbidden_message(who, a));
        out.1["details"] = json!({"group": a.group, "kind": a.resource});
        if let Some(n) = &a.name {
            out.1["details"]["name"] = json!(n);
        }
        return Some(out);
    }
    None
}

/// Runs the aggregation controller when a ClusterRole changed long enough ago.
fn aggregate_if_due(st: &mut State) {
    let Some(at) = st.aggregate_at else { return };
    if tokio::time::Instant::now() < at {
        return;
    }
    st.aggregate_at = None;
    for (key, rules) in rbac::aggregate(&st.objects) {
        if let Some(mut o) = st.objects.get(&key).cloned() {
            o["rules"] = rules;
            bump(st, &key, &mut o, "MODIFIED");
            st.objects.insert(key, o);
        }
    }
}

/// A namespace being deleted takes no new objects: 403, with the real server's message.
fn terminating(st: &State, t: &Target) -> Option<(u16, Value)> {
    let ns = t.ns.as_deref()?;
    let n = st.objects.get(&format!("/namespaces//{ns}"))?;
    (!n["metadata"]["deletionTimestamp"].is_null()).then(|| {
        status(
            403,
            "Forbidden",
            format!(
                "{} is forbidden: unable to create new content in namespace {ns} because it is \
                 being terminated",
                t.plural
            ),
        )
    })
}

/// The escalation check on a write of an RBAC object (403 when refused).
fn escalation(st: &State, who: &Identity, t: &Target, obj: &Value) -> Option<(u16, Value)> {
    let c = t.collection();
    if ![
        rbac::ROLES,
        rbac::CLUSTER_ROLES,
        rbac::ROLE_BINDINGS,
        rbac::CLUSTER_ROLE_BINDINGS,
    ]
    .contains(&c.as_str())
    {
        return None;
    }
    rbac::escalation(&st.objects, who, &c, t.ns.as_deref(), obj)
        .map(|m| status(403, "Forbidden", m))
}

#[allow(clippy::too_many_arguments)]
fn handle_request(
    st: &mut State,
    who: &Identity,
    method: &Method,
    path: &str,
    query: &str,
    ct: &str,
    body: &[u8],
) -> (u16, Value) {
    if st.unreachable {
        return status(503, "ServiceUnavailable", "the API server is down".into());
    }
    aggregate_if_due(st);
    if path == "/version" && *method == Method::GET {
        // Modelled on the real server's /version (open to every caller).
        return (
            200,
            json!({
                "major": "1", "minor": "31", "gitVersion": "v1.31.0", "gitCommit": "stand-in",
                "gitTreeState": "clean", "buildDate": "2024-08-13T00:00:00Z",
                "goVersion": "go1.22.5", "compiler": "gc", "platform": "linux/amd64"
            }),
        );
    }
    let Some(t) = Target::parse(path) else {
        return status(404, "NotFound", format!("no API at {path}"));
    };
    let attrs = attributes(method, query, &t);
    if let Some(refused) = authorize(st, who, &attrs) {
        return refused;
    }
    if st.forbidden.contains(&t.collection()) {
        return status(403, "Forbidden", rbac::forbidden_message(who, &attrs));
    }
    if *method == Method::POST && t.group == "authorization.k8s.io" {
        let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        match t.plural.as_str() {
            "selfsubjectaccessreviews" => {
                return (201, rbac::access_review(&st.objects, who, &parsed));
            }
            "selfsubjectrulesreviews" => {
                return (201, rbac::rules_review(&st.objects, who, &parsed));
            }
            _ => {}
        }
    }
    if let Some(missing) = unserved(st, &t) {
        return missing;
    }
    if *method == Method::GET
        && t.collection() == CRD_COLLECTION
        && let Some(name) = &t.name
    {
        establish(st, name);
    }
    if *method != Method::GET {
        st.writes += 1;
        if st.fail_write == Some(st.writes) {
            st.fail_write = None;
            return status(500, "InternalError", "injected failure".into());
        }
    }
    let parsed: Option<Value> = if body.is_empty() {
        None
    } else {
        serde_json::from_slice(body).ok()
    };
    match (method.clone(), &t.name) {
        (Method::GET, None) => {
            let selector = query_param(query, "labelSelector").unwrap_or_default();
            let items: Vec<Value> = st
                .objects
                .iter()
                .filter(|(k, o)| t.in_scope(k) && matches_labels(o, &selector))
                .map(|(_, o)| o.clone())
                .collect();
            (
                200,
                json!({"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": st.rv.to_string()}, "items": items}),
            )
        }
        (Method::GET, Some(name)) => match st.objects.get(&t.key(name)) {
            Some(o) => (200, o.clone()),
            None => status(
                404,
                "NotFound",
                format!("{} \"{name}\" not found", t.plural),
            ),
        },
        (Method::POST, None) => {
            let Some(obj) = parsed else {
                return status(400, "BadRequest", "no body".into());
            };
            let name = obj["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if name.is_empty() {
                return status(422, "Invalid", "metadata.name: Required value".into());
            }
            if let Some(refused) = check_rules(st, &t, &name, &obj, None) {
                return refused;
            }
            if let Some(refused) = escalation(st, who, &t, &obj) {
                return refused;
            }
            if let Some(refused) = terminating(st, &t) {
                return refused;
            }
            create(st, &t, &name, obj, false)
        }
        (Method::PUT, Some(name)) => {
            let Some(mut obj) = parsed else {
                return status(400, "BadRequest", "no body".into());
            };
            let key = t.key(name);
            let Some(live) = st.objects.get(&key).cloned() else {
                return status(
                    404,
                    "NotFound",
                    format!("{} \"{name}\" not found", t.plural),
                );
            };
            if obj["metadata"]["resourceVersion"] != live["metadata"]["resourceVersion"] {
                return status(
                    409,
                    "Conflict",
                    format!(
                        "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                        t.plural
                    ),
                );
            }
            if t.status {
                let mut next = live.clone();
                next["status"] = obj["status"].clone();
                obj = next;
            } else {
                obj["status"] = live["status"].clone();
                obj["metadata"]["uid"] = live["metadata"]["uid"].clone();
            }
            if let Some(refused) = check_rules(st, &t, name, &obj, Some(&live)) {
                return refused;
            }
            if !t.status
                && let Some(refused) = escalation(st, who, &t, &obj)
            {
                return refused;
            }
            next_generation(&live, &mut obj);
            bump(st, &key, &mut obj, "MODIFIED");
            st.objects.insert(key, obj.clone());
            (200, obj)
        }
        (Method::PATCH, Some(name)) => {
            let Some(patch) = parsed else {
                return status(400, "BadRequest", "no body".into());
            };
            let key = t.key(name);
            let apply = ct.starts_with("application/apply-patch");
            if apply && query_param(query, "fieldManager").is_none() {
                return status(
                    400,
                    "BadRequest",
                    "PATCH with apply-patch needs a fieldManager".into(),
                );
            }
            let Some(live) = st.objects.get(&key).cloned() else {
                if apply && !t.status {
                    if let Some(refused) = check_rules(st, &t, name, &patch, None) {
                        return refused;
                    }
                    if let Some(refused) = escalation(st, who, &t, &patch) {
                        return refused;
                    }
                    if let Some(refused) = terminating(st, &t) {
                        return refused;
                    }
                    return create(st, &t, name, patch, false);
                }
                return status(
                    404,
                    "NotFound",
                    format!("{} \"{name}\" not found", t.plural),
                );
            };
            // A patch that names a resourceVersion is a precondition, as on the real server.
            if !apply
                && let Some(rv) = patch["metadata"]["resourceVersion"].as_str()
                && live["metadata"]["resourceVersion"].as_str() != Some(rv)
            {
                return status(
                    409,
                    "Conflict",
                    format!(
                        "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                        t.plural
                    ),
                );
            }
            let mut next = live.clone();
            if t.status {
                let mut s = next["status"].take();
                if s.is_null() {
                    s = Value::Object(Map::new());
                }
                merge(&mut s, &patch["status"]);
                next["status"] = s;
            } else {
                let mut p = patch.clone();
                if let Some(o) = p.as_object_mut() {
                    o.remove("status");
                }
                merge(&mut next, &p);
                fold_string_data(&t.collection(), &mut next);
                if let Some(why) = immutable_change(&t.collection(), &live, &next) {
                    return status(
                        422,
                        "Invalid",
                        format!("{} \"{name}\" is invalid: {why}", t.plural),
                    );
                }
                next_generation(&live, &mut next);
            }
            next["metadata"]["uid"] = live["metadata"]["uid"].clone();
            next["metadata"]["deletionTimestamp"] = live["metadata"]["deletionTimestamp"].clone();
            if let Some(refused) = check_rules(st, &t, name, &next, Some(&live)) {
                return refused;
            }
            if !t.status
                && let Some(refused) = escalation(st, who, &t, &next)
            {
                return refused;
            }
            if let Some(refused) = finalizer_change(&t, name, &live, &next) {
                return refused;
            }
            if gone_after_finalizers(&next) {
                bump(st, &key, &mut next, "DELETED");
                st.objects.remove(&key);
                return (200, next);
            }
            bump(st, &key, &mut next, "MODIFIED");
            st.objects.insert(key, next.clone());
            (200, next)
        }
        (Method::DELETE, Some(name)) => {
            let key = t.key(name);
            // An object with finalizers is only marked; it goes once they are all removed.
            if let Some(live) = st.objects.get(&key).cloned()
                && live["metadata"]["finalizers"]
                    .as_array()
                    .is_some_and(|f| !f.is_empty())
            {
                let mut next = live;
                if next["metadata"]["deletionTimestamp"].is_null() {
                    next["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:01Z");
                    // As the real server does when it marks an object for deletion.
                    if let Some(g) = next["metadata"]["generation"].as_i64() {
                        next["metadata"]["generation"] = json!(g + 1);
                    }
                    bump(st, &key, &mut next, "MODIFIED");
                    st.objects.insert(key, next.clone());
                }
                return (200, next);
            }
            match st.objects.remove(&key) {
                Some(mut o) => {
                    bump(st, &key, &mut o, "DELETED");
                    (200, o)
                }
                None => status(
                    404,
                    "NotFound",
                    format!("{} \"{name}\" not found", t.plural),
                ),
            }
        }
        _ => status(405, "MethodNotAllowed", format!("{method} {path}")),
    }
}

/// A JSON body for `v` with `code`; an object that does not encode is answered 500 with the
/// reason, never with an empty body.
fn encoded(code: u16, v: &Value) -> (u16, Vec<u8>) {
    match serde_json::to_vec(v) {
        Ok(b) => (code, b),
        Err(e) => (
            500,
            format!(
                "{{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\",\"code\":500,\"reason\":\"InternalError\",\"message\":{}}}",
                Value::String(format!("the stand-in could not encode its answer: {e}"))
            )
            .into_bytes(),
        ),
    }
}

/// An HTTP response carrying `v` as JSON (see [`encoded`]).
fn json_response(
    code: u16,
    v: &Value,
) -> Response<http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>> {
    use http_body_util::BodyExt;
    let (code, body) = encoded(code, v);
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(Bytes::from(body)).boxed())
        .unwrap_or_default()
}

/// Decodes `%XX` escapes and `+` in a query value.
fn percent_decode(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Some(x) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(x);
            i += 3;
            continue;
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
