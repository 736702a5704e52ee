//! What the `ferryctl` binary prints, run as a user runs it, against the API stand-in served
//! over HTTP on 127.0.0.1 (a real API server cannot run here): its own message for an error
//! and no library log line before it, a NAMESPACE column for every `get -A`, a name for
//! `get migrationschedule`, resources named as kubectl names them, and each verb's help
//! offering only the flags it honours.

use ferry_kubefake::FakeApi;
use serde_json::json;
use std::path::Path;

/// Runs `ferryctl` with `args` and the kubeconfig at `kubeconfig`; (exit success, stdout,
/// stderr).
async fn ferryctl(kubeconfig: &Path, args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_ferryctl"))
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .await
        .expect("run ferryctl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A served stand-in and a kubeconfig file for it.
async fn served(dir: &Path) -> (FakeApi, std::path::PathBuf) {
    let api = FakeApi::new();
    let addr = api.serve().await.expect("serve");
    let path = dir.join("kubeconfig");
    std::fs::write(&path, FakeApi::kubeconfig(addr)).expect("kubeconfig");
    (api, path)
}

/// `generate clusterpair` towards a destination where nothing listens: ferryctl says why,
/// once, in its own words; the kube client's ERROR line for the same failed request is not
/// printed before it, nor any debug dump.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_is_said_once_without_library_log_lines() {
    let dir = tempfile::tempdir().expect("tmp");
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, FakeApi::kubeconfig(closed)).expect("kubeconfig");
    let root = dir.path().join("shop").join("store");
    let (ok, _, err) = ferryctl(
        &kubeconfig,
        &[
            "-n",
            "shop",
            "generate",
            "clusterpair",
            "remote",
            "--backend",
            "fs",
            "--root",
            &root.to_string_lossy(),
        ],
    )
    .await;
    assert!(!ok, "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line, ferryctl's own: {err}");
    assert!(lines[0].starts_with("ferryctl: "), "{err}");
    assert!(lines[0].contains("did not answer"), "{err}");
    for noise in ["ERROR", "kube_client", "Status {", "\u{1b}["] {
        assert!(!err.contains(noise), "{noise:?} in {err}");
    }
}

/// Every namespaced kind `get` lists shows which namespace each row is from with `-A`, as
/// kubectl does; SchedulePolicies are cluster-scoped and have none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_across_namespaces_shows_the_namespace_of_every_kind() {
    let dir = tempfile::tempdir().expect("tmp");
    let (api, kubeconfig) = served(dir.path()).await;
    for ns in ["shop", "blog"] {
        api.seed(
            json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "ClusterPair",
            "metadata": {"name": "remote", "namespace": ns}, "spec": {"secretRef": {"name": "s"}}}),
        );
        api.seed(
            json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "Migration",
            "metadata": {"name": "m1", "namespace": ns},
            "spec": {"clusterPair": "remote", "namespaces": [ns]}}),
        );
        api.seed(json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "MigrationSchedule",
            "metadata": {"name": "standby", "namespace": ns},
            "spec": {"schedulePolicyName": "p", "template": {"spec": {"clusterPair": "remote", "namespaces": [ns]}}}}));
        api.seed(json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "Action",
            "metadata": {"name": "failover-1", "namespace": ns},
            "spec": {"actionType": "failover", "actionParameter": {"failoverParameter": {"migrationScheduleReference": "standby"}}}}));
    }
    for kind in ["clusterpair", "migration", "migrationschedule", "action"] {
        let (ok, out, err) = ferryctl(&kubeconfig, &["get", kind, "-A"]).await;
        assert!(ok, "{kind}: {err}");
        let mut lines = out.lines();
        let header: Vec<&str> = lines
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        assert_eq!(header.first(), Some(&"NAMESPACE"), "{kind}: {out}");
        let namespaces: Vec<&str> = lines
            .filter_map(|l| l.split_whitespace().next())
            .filter(|n| ["shop", "blog"].contains(n))
            .collect();
        assert_eq!(namespaces.len(), 2, "{kind}: a row per namespace: {out}");
    }
    // A name is looked up in one namespace.
    let (ok, out, err) = ferryctl(
        &kubeconfig,
        &["-n", "shop", "get", "migrationschedule", "standby"],
    )
    .await;
    assert!(ok, "{err}");
    assert_eq!(
        out.lines().count(),
        2,
        "the header and the one schedule: {out}"
    );
    assert!(out.contains("standby"), "{out}");
    let (ok, _, err) = ferryctl(
        &kubeconfig,
        &["-n", "shop", "get", "migrationschedule", "nope"],
    )
    .await;
    assert!(
        !ok && err.contains("MigrationSchedule nope not found"),
        "{err}"
    );
    let (ok, _, err) = ferryctl(&kubeconfig, &["get", "action", "failover-1", "-A"]).await;
    assert!(!ok && err.contains("-n NS"), "{err}");
}

/// A migration's resources are named as kubectl names a type: `Kind.group namespace/name`,
/// a cluster-scoped CRD without a namespace, a kind left out as a whole as such; never a
/// bare `/name` or `namespace/`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_migration_names_custom_resources_as_kubectl_does() {
    let dir = tempfile::tempdir().expect("tmp");
    let (api, kubeconfig) = served(dir.path()).await;
    api.seed(
        json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "Migration",
        "metadata": {"name": "m1", "namespace": "shop"},
        "spec": {"clusterPair": "remote", "namespaces": ["shop"]}}),
    );
    api.set_status("ferry.dev/migrations", Some("shop"), "m1", json!({
        "stage": "Final", "status": "PartialSuccess",
        "resources": [
            {"group": "apiextensions.k8s.io", "version": "v1", "kind": "CustomResourceDefinition",
             "namespace": "", "name": "gadgets.example.com", "status": "Failed", "reason": "differs"},
            {"group": "example.com", "version": "v1", "kind": "Gadget",
             "namespace": "shop", "name": "", "status": "Skipped", "reason": "may not list"},
            {"group": "example.com", "version": "v1", "kind": "Gadget",
             "namespace": "shop", "name": "g1", "status": "Failed", "reason": "its CRD differs"},
            {"group": "", "version": "v1", "kind": "ConfigMap",
             "namespace": "shop", "name": "settings", "status": "Failed", "reason": "422"}]}));
    let (ok, out, err) = ferryctl(&kubeconfig, &["-n", "shop", "get", "migration", "m1"]).await;
    assert!(ok, "{err}");
    for want in [
        "resource CustomResourceDefinition.apiextensions.k8s.io gadgets.example.com: Failed",
        "resource every Gadget.example.com in shop: Skipped",
        "resource Gadget.example.com shop/g1: Failed",
        "resource ConfigMap shop/settings: Failed",
    ] {
        assert!(out.contains(want), "{want:?} in {out}");
    }
    for wrong in [" /gadgets.example.com", "shop/:", "Gadget shop/ "] {
        assert!(!out.contains(wrong), "{wrong:?} in {out}");
    }
}

/// `create migrationschedule --help` calls its NAME the schedule's and offers no flag it does
/// not honour (`--dry-run`, `--wait` are `create migration`'s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_migrationschedule_help_offers_what_it_honours() {
    let dir = tempfile::tempdir().expect("tmp");
    let kubeconfig = dir.path().join("none");
    let (ok, help, err) = ferryctl(&kubeconfig, &["create", "migrationschedule", "--help"]).await;
    assert!(ok, "{err}");
    assert!(help.contains("MigrationSchedule name"), "{help}");
    for absent in ["Migration name", "--dry-run", "--wait"] {
        assert!(!help.contains(absent), "{absent:?} in {help}");
    }
    for present in [
        "--clusterPair",
        "--namespaces",
        "--schedule-policy-name",
        "--suspend",
    ] {
        assert!(help.contains(present), "{present:?} missing from {help}");
    }
    let (ok, help, err) = ferryctl(&kubeconfig, &["create", "migration", "--help"]).await;
    assert!(ok, "{err}");
    for present in ["Migration name", "--dry-run", "--wait", "--clusterPair"] {
        assert!(help.contains(present), "{present:?} missing from {help}");
    }
}
