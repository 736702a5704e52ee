//! Attacks a tenant with `edit` rights in their own namespace could try on the migration
//! controller, each written as the attack, against the in-memory API (standing in for a real
//! server, which cannot run here). Each asserts the refusal, its reason, and that nothing was
//! run, read, copied or made. The API behaviours leaned on are named in each test.

mod common;

use common::{FERRY_NS, World};
use ferry_kubefake::{Method, base64};
use ferry_migration::crd::{ClusterPair, ItemStatus, PairState, VolumeImport};
use serde_json::{Value, json};

const NS: &str = "shop";

fn secret(name: &str, ns: &str, pairs: &[(&str, &str)]) -> Value {
    let data: serde_json::Map<String, Value> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), json!(base64(v.as_bytes()))))
        .collect();
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": ns}, "data": data})
}

fn pair_object(w: &World, ns: &str, name: &str) -> ClusterPair {
    serde_json::from_value(
        w.src
            .get("ferry.dev/clusterpairs", Some(ns), name)
            .expect("pair"),
    )
    .expect("parse")
}

/// A tenant's pair whose Secret holds `kubeconfig`, with a folder transfer store the
/// operator allows.
fn tenant_pair(w: &World, name: &str, kubeconfig: &str) {
    let root = w.transfer_root();
    w.src.seed(secret(
        &format!("{name}-secret"),
        NS,
        &[
            ("kubeconfig", kubeconfig),
            ("backend", "fs"),
            ("root", &root),
        ],
    ));
    w.src.seed(json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "ClusterPair", "metadata": {"name": name, "namespace": NS},
        "spec": {"secretRef": {"name": format!("{name}-secret")}}}));
}

/// A context that reaches destinations through the kubeconfig, as the production sidecar
/// does (the World's own context hands out the in-memory destination instead).
fn production_ctx(w: &World) -> ferry_migration::Ctx {
    let mut ctx =
        ferry_migration::Ctx::new(w.src.client(), w.src_store.clone(), FERRY_NS.into(), false);
    ctx.policy = w.src_ctx.policy.clone();
    ctx
}

/// Hole 1: an `exec` credential plugin in a tenant's kubeconfig would run a command in the
/// migration container. The plugin here would create a marker file; it must never run.
#[tokio::test]
async fn an_exec_plugin_in_a_tenant_kubeconfig_never_runs() {
    let w = World::new().await;
    let dir = tempfile::tempdir().expect("tmp");
    let marker = dir.path().join("pwned");
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:9\n\
         users:\n- name: u\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: sh\n      args: [\"-c\", \"touch {}\"]\n      interactiveMode: Never\n\
         contexts:\n- name: x\n  context: {{cluster: c, user: u}}\ncurrent-context: x\n",
        marker.display()
    );
    tenant_pair(&w, "evil", &kubeconfig);
    let ctx = production_ctx(&w);
    let st = ferry_migration::source::cluster_pair::check(&ctx, &pair_object(&w, NS, "evil")).await;
    assert_eq!(st.scheduler_status, PairState::Error);
    let reason = st.scheduler_reason.unwrap_or_default();
    assert!(reason.contains("exec"), "names exec: {reason}");
    assert!(!marker.exists(), "the exec plugin ran");

    // A Migration through that pair fails at validation, before any snapshot.
    w.shop(NS, 2).await;
    w.migration(NS, "m1", json!({"clusterPair": "evil", "namespaces": [NS]}));
    let m = serde_json::from_value(
        w.src
            .get("ferry.dev/migrations", Some(NS), "m1")
            .expect("m"),
    )
    .expect("parse");
    ferry_migration::runtime::pass::<ferry_migration::source::migrate::Migrations>(&ctx, &m)
        .await
        .expect("reconcile");
    let st = w.migration_status(NS, "m1");
    assert_eq!(st.status, ItemStatus::Failed);
    assert!(st.reason.unwrap_or_default().contains("exec"));
    assert!(!marker.exists(), "the exec plugin ran");
    assert!(
        w.src
            .all("snapshot.storage.k8s.io/volumesnapshots")
            .is_empty()
    );
}

/// Hole 1: `tokenFile` would send the controller's own service-account token (or any file
/// it can read) to a server of the tenant's choosing. The server here is a listener this
/// test owns: it must get no connection at all.
#[tokio::test]
async fn a_token_file_in_a_tenant_kubeconfig_is_never_read_or_sent() {
    let w = World::new().await;
    let dir = tempfile::tempdir().expect("tmp");
    let token = dir.path().join("token");
    std::fs::write(&token, "the-controllers-own-token").expect("token");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("addr");
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://{addr}\n\
         users:\n- name: u\n  user:\n    tokenFile: {}\n\
         contexts:\n- name: x\n  context: {{cluster: c, user: u}}\ncurrent-context: x\n",
        token.display()
    );
    tenant_pair(&w, "evil", &kubeconfig);
    let st = ferry_migration::source::cluster_pair::check(
        &production_ctx(&w),
        &pair_object(&w, NS, "evil"),
    )
    .await;
    assert_eq!(st.scheduler_status, PairState::Error);
    let reason = st.scheduler_reason.unwrap_or_default();
    assert!(reason.contains("tokenFile"), "{reason}");
    // Any connection attempt would wait in the listener's backlog.
    assert_eq!(
        listener.accept().map_err(|e| e.kind()).err(),
        Some(std::io::ErrorKind::WouldBlock),
        "the controller connected to the tenant's server"
    );
}

/// Hole 1, the other fields: every file path, an auth provider and skipping TLS checks are
/// refused for a tenant's pair, each named in the status; the admin's pair may use them.
#[tokio::test]
async fn tenant_kubeconfigs_refuse_every_file_path_and_insecure_tls() {
    let w = World::new().await;
    let cases = [
        (
            "client-certificate",
            "users:\n- name: u\n  user:\n    client-certificate: /etc/ssl/cert.pem\n",
        ),
        (
            "client-key",
            "users:\n- name: u\n  user:\n    client-key: /etc/ssl/key.pem\n",
        ),
        (
            "certificate-authority",
            "clusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:9\n    certificate-authority: /etc/ssl/ca.pem\n",
        ),
        (
            "insecure-skip-tls-verify",
            "clusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:9\n    insecure-skip-tls-verify: true\n",
        ),
        (
            "auth-provider",
            "users:\n- name: u\n  user:\n    auth-provider:\n      name: gcp\n      config: {cmd-path: /bin/sh}\n",
        ),
    ];
    for (i, (field, body)) in cases.iter().enumerate() {
        let name = format!("p{i}");
        tenant_pair(&w, &name, &format!("apiVersion: v1\nkind: Config\n{body}"));
        let st =
            ferry_migration::source::cluster_pair::check(&w.src_ctx, &pair_object(&w, NS, &name))
                .await;
        assert_eq!(st.scheduler_status, PairState::Error, "{field}");
        let reason = st.scheduler_reason.unwrap_or_default();
        assert!(reason.contains(field), "{field}: {reason}");
    }
}

/// Hole 2: a tenant's pair pointing at the admin pair's Secret in the controller's
/// namespace, to use its destination and keys. Refused, and that Secret is never read.
#[tokio::test]
async fn a_pair_may_not_name_a_secret_in_another_namespace() {
    let w = World::new().await;
    w.pair(FERRY_NS, "admin", true);
    w.src.seed(json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "ClusterPair", "metadata": {"name": "borrow", "namespace": NS},
        "spec": {"secretRef": {"name": "admin-secret", "namespace": FERRY_NS}}}));
    let st =
        ferry_migration::source::cluster_pair::check(&w.src_ctx, &pair_object(&w, NS, "borrow"))
            .await;
    assert_eq!(st.scheduler_status, PairState::Error);
    assert_eq!(st.storage_status, PairState::Error);
    let reason = st.scheduler_reason.unwrap_or_default();
    assert!(
        reason.contains("may name only a Secret in its own namespace"),
        "{reason}"
    );
    let read_admin_secret = w
        .src
        .log()
        .iter()
        .any(|l| l.path.contains(&format!("/namespaces/{FERRY_NS}/secrets")));
    assert!(!read_admin_secret, "the admin Secret was read");
    // The admin's own pair may name a Secret elsewhere.
    w.src.seed(json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "ClusterPair", "metadata": {"name": "admin2", "namespace": FERRY_NS},
        "spec": {"secretRef": {"name": "admin-secret", "namespace": FERRY_NS}}}));
    let st = ferry_migration::source::cluster_pair::check(
        &w.src_ctx,
        &pair_object(&w, FERRY_NS, "admin2"),
    )
    .await;
    assert!(st.ready(), "{st:?}");
}

/// Hole 3: a spec patched after validation to add another namespace. The API server refuses
/// the patch (the CRD's `self == oldSelf` rule on spec, modelled here by evaluating the CRD's
/// CEL rules on update, as the real server does); where the CRD was installed without the
/// rule, the controller fails the migration and copies nothing of the other namespace.
#[tokio::test]
async fn a_spec_patched_after_validation_moves_nothing_more() {
    let w = World::new().await;
    w.pair(NS, "remote", true);
    w.shop(NS, 2).await;
    w.src
        .seed(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "payroll"}}));
    w.src.seed(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "bank", "namespace": "payroll"}, "data": {"k": "eA=="}}));
    w.migration(
        NS,
        "m1",
        json!({"clusterPair": "remote", "namespaces": [NS]}),
    );
    // Validate, and start on the volumes (it waits for the snapshot).
    let wait = ferry_migration::runtime::pass::<ferry_migration::source::migrate::Migrations>(
        &w.src_ctx,
        &w.migration_object(NS, "m1"),
    )
    .await
    .expect("reconcile");
    assert!(wait.is_some());
    let st = w.migration_status(NS, "m1");
    assert!(st.validated_spec.is_some(), "{st:?}");

    let path = format!("/apis/ferry.dev/v1alpha1/namespaces/{NS}/migrations/m1");
    let patch = json!({"spec": {"namespaces": [NS, "payroll"]}}).to_string();
    let (code, body) = w.src.serve_one(
        &Method::PATCH,
        &path,
        "",
        "application/merge-patch+json",
        patch.as_bytes(),
    );
    assert_eq!(code, 422, "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("spec is immutable")),
        "{body}"
    );

    // Without the rule (the CRD replaced by one without it, and the object edited anyway),
    // the controller stops. (Deleting the CRD would delete its objects on a real server, and
    // the stand-in then stops serving the kind.)
    let crds = "apiextensions.k8s.io/customresourcedefinitions";
    let mut crd = w.src.get(crds, None, "migrations.ferry.dev").expect("crd");
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                m.remove("x-kubernetes-validations");
                m.values_mut().for_each(strip);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut crd["spec"]);
    assert!(w.src.remove(crds, None, "migrations.ferry.dev"));
    w.src.seed(crd);
    let (code, body) = w.src.serve_one(
        &Method::PATCH,
        &path,
        "",
        "application/merge-patch+json",
        patch.as_bytes(),
    );
    assert_eq!(code, 200, "{body}");
    let st = w.drive(NS, "m1").await;
    assert_eq!(st.status, ItemStatus::Failed);
    assert!(
        st.reason
            .unwrap_or_default()
            .contains("spec changed after validation"),
    );
    assert!(
        w.dst.get("/secrets", Some("payroll"), "bank").is_none()
            && w.dst.get("/namespaces", None, "payroll").is_none(),
        "the other namespace was copied"
    );
    assert!(
        w.dst.all("/configmaps").is_empty() && w.dst.all("apps/deployments").is_empty(),
        "the Application stage ran"
    );
    // Its snapshots are cleaned up as for any failed migration.
    assert!(
        w.src
            .all("snapshot.storage.k8s.io/volumesnapshots")
            .is_empty()
    );
}

/// Hole 6 on the destination: VolumeImport fields that become names and paths are checked
/// before anything is read or made.
#[tokio::test]
async fn a_volume_import_with_path_like_ids_fails_and_makes_nothing() {
    let w = World::new().await;
    let root = w.transfer_root();
    w.dst
        .seed(secret("t", NS, &[("backend", "fs"), ("root", &root)]));
    for (i, (field, spec)) in [
        (
            "spec.source.volumeId",
            json!({"volumeId": "../../../etc", "snapshotId": "s"}),
        ),
        (
            "spec.source.snapshotId",
            json!({"volumeId": "vol-1", "snapshotId": "../x"}),
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let name = format!("vi{i}");
        let vi = w.dst.seed(
            json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "VolumeImport",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"source": spec, "transferSecret": "t",
                     "persistentVolume": {"claimName": "data", "capacity": "1Mi"}}}),
        );
        let vi: VolumeImport = serde_json::from_value(vi).expect("parse");
        ferry_migration::runtime::pass::<ferry_migration::destination::volume_import::Imports>(
            &w.dst_ctx, &vi,
        )
        .await
        .expect("reconcile");
        let got: VolumeImport = serde_json::from_value(
            w.dst
                .get("ferry.dev/volumeimports", Some(NS), &name)
                .expect("vi"),
        )
        .expect("parse");
        let st = got.status.expect("status");
        assert_eq!(st.phase, ferry_migration::crd::ImportPhase::Failed);
        assert!(st.reason.unwrap_or_default().contains(field), "{field}");
        assert!(w.dst.all("/persistentvolumes").is_empty());
    }
}

/// A tenant's transfer store may not be a folder of the controller's own filesystem (say,
/// its chunk store), nor reach a metadata service, nor fall back to credentials from the
/// controller's environment.
#[tokio::test]
async fn a_tenant_transfer_store_stays_where_the_operator_allows() {
    let w = World::new().await;
    let kc = "apiVersion: v1\nkind: Config\n";
    for (name, pairs, why) in [
        (
            "root",
            vec![("backend", "fs"), ("root", "/var/lib/ferry/store")],
            "not inside a transfer folder",
        ),
        (
            "meta",
            vec![
                ("backend", "s3"),
                ("bucket", "b"),
                ("endpoint", "http://169.254.169.254/latest"),
                ("accessKeyId", "a"),
                ("secretAccessKey", "b"),
            ],
            "link-local",
        ),
        (
            "envcreds",
            vec![
                ("backend", "s3"),
                ("bucket", "b"),
                ("endpoint", "http://127.0.0.1:9"),
            ],
            "environment",
        ),
    ] {
        let mut all = pairs.clone();
        all.push(("kubeconfig", kc));
        w.src.seed(secret(&format!("{name}-secret"), NS, &all));
        w.src.seed(json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "ClusterPair", "metadata": {"name": name, "namespace": NS},
            "spec": {"secretRef": {"name": format!("{name}-secret")}}}));
        let st =
            ferry_migration::source::cluster_pair::check(&w.src_ctx, &pair_object(&w, NS, name))
                .await;
        assert_eq!(st.storage_status, PairState::Error, "{name}");
        let reason = st.storage_reason.unwrap_or_default();
        assert!(reason.contains(why), "{name}: {reason}");
    }
    assert!(
        !std::path::Path::new("/var/lib/ferry/store/ferry-transfer.json").exists(),
        "the controller wrote into a folder it was not allowed"
    );
}
