//! Pre and post exec rules through the stand-in's `pods/exec`, served over HTTP with the
//! websocket subprotocol the real server speaks (`v4.channel.k8s.io`, Status on channel 3).
//! No container runs here: each command's output, exit code and run time are the test's
//! (see `ferry_kubefake::exec`); everything else (chunk stores, transfer store) is real.

mod common;

use common::World;
use ferry_kubefake::exec::{ExecCall, ExecReply};
use ferry_migration::crd::ItemStatus;
use serde_json::json;
use std::time::Duration;

const NS: &str = "shop";

/// A world whose source API is served over HTTP (exec needs a connection upgrade), with a
/// running database pod and commands that lock, sync, fail and hang.
async fn world() -> World {
    let mut w = World::new().await;
    let addr = w.src.serve().await.expect("serve");
    let kc = kube::config::Kubeconfig::from_yaml(&ferry_kubefake::FakeApi::kubeconfig(addr))
        .expect("kubeconfig");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("config");
    w.src_ctx.client = kube::Client::try_from(cfg).expect("client");
    w.pair(NS, "remote", true);
    w.shop(NS, 4).await;
    w.ferry_claim(NS, "log", 4, 9).await;
    w.src.seed(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "db-0", "namespace": NS, "labels": {"app": "db"}},
        "spec": {"containers": [{"name": "db", "image": "postgres"}]},
        "status": {"phase": "Running"}}));
    w.src.on_exec(|c: &ExecCall| {
        let script = c.command.last().cloned().unwrap_or_default();
        match script.as_str() {
            "lock" => ExecReply {
                stdout: "locked\n".into(),
                runs_for: Some(Duration::from_secs(30)),
                ..Default::default()
            },
            "sync" => ExecReply::default(),
            "boom" => ExecReply {
                stdout: "flushing".into(),
                stderr: "disk full".into(),
                exit_code: 3,
                ..Default::default()
            },
            "hang" => ExecReply {
                runs_for: Some(Duration::from_secs(30)),
                ..Default::default()
            },
            _ => ExecReply {
                exit_code: 127,
                stderr: "not found".into(),
                ..Default::default()
            },
        }
    });
    w
}

fn rule(w: &World, name: &str, actions: serde_json::Value) {
    w.src
        .seed(json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "Rule",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"rules": [{"podSelector": {"app": "db"}, "actions": actions}]}}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_background_lock_is_held_across_the_snapshots_then_released() {
    let w = world().await;
    rule(
        &w,
        "quiesce",
        json!([{"type": "command", "value": "lock", "background": true},
               {"type": "command", "value": "sync"}]),
    );
    rule(&w, "after", json!([{"value": "sync"}]));
    w.migration(
        NS,
        "m1",
        json!({"clusterPair": "remote", "namespaces": [NS],
               "preExecRule": "quiesce", "postExecRule": "after"}),
    );
    let st = w.drive(NS, "m1").await;
    assert_ne!(st.status, ItemStatus::Failed, "{st:?}");
    let moved: Vec<_> = st
        .volumes
        .iter()
        .filter(|v| v.status == ItemStatus::Successful)
        .collect();
    assert_eq!(moved.len(), 2, "{st:?}");
    assert!(
        st.group_snapshot.is_some(),
        "taken at once in the chunk store"
    );
    let execs = w.src.execs();
    let scripts: Vec<String> = execs
        .iter()
        .map(|e| e.call.command.last().cloned().unwrap_or_default())
        .collect();
    assert_eq!(scripts, ["lock", "sync", "sync"], "{execs:?}");
    for e in &execs {
        assert_eq!(e.call.pod, "db-0");
        assert_eq!(e.call.container.as_deref(), Some("db"));
        assert_eq!(e.call.command[..2], ["sh".to_string(), "-c".to_string()]);
    }
    // The lock's session was closed by the controller (it would have run 30 s).
    assert!(execs[0].ended_by_client, "{:?}", execs[0]);
    assert!(execs.iter().all(|e| e.done));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_pre_rule_fails_the_migration_before_any_snapshot() {
    let w = world().await;
    rule(
        &w,
        "quiesce",
        json!([{"value": "lock", "background": true}, {"value": "boom"}]),
    );
    w.migration(
        NS,
        "m1",
        json!({"clusterPair": "remote", "namespaces": [NS], "preExecRule": "quiesce"}),
    );
    let st = w.drive(NS, "m1").await;
    assert_eq!(st.status, ItemStatus::Failed);
    let why = st.reason.clone().unwrap_or_default();
    for want in [
        "preExecRule quiesce",
        "db-0",
        "`boom`",
        "exit code 3",
        "disk full",
        "flushing",
    ] {
        assert!(why.contains(want), "{want:?} not in {why}");
    }
    assert!(st.group_snapshot.is_none());
    assert!(
        st.volumes.iter().all(|v| v.snapshot_handle.is_none()),
        "{st:?}"
    );
    assert!(
        !w.source_writes()
            .iter()
            .any(|x| x.contains("volumesnapshots")),
        "nothing snapshotted"
    );
    let (snaps, _) = w
        .src_store
        .list_snapshots(&Default::default(), None, 0)
        .await
        .expect("list");
    assert!(snaps.is_empty(), "{snaps:?}");
    // The lock started before the failure was ended, not left holding.
    let lock = &w.src.execs()[0];
    assert!(lock.ended_by_client && lock.done, "{lock:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_past_its_timeout_fails_the_rule() {
    let w = world().await;
    rule(&w, "slow", json!([{"value": "hang", "timeoutSeconds": 1}]));
    w.migration(
        NS,
        "m1",
        json!({"clusterPair": "remote", "namespaces": [NS], "preExecRule": "slow"}),
    );
    let st = w.drive(NS, "m1").await;
    assert_eq!(st.status, ItemStatus::Failed);
    let why = st.reason.clone().unwrap_or_default();
    assert!(why.contains("timed out after 1s"), "{why}");
    assert!(st.volumes.iter().all(|v| v.snapshot_handle.is_none()));
    // A background action that never says it is ready fails the same way.
    rule(
        &w,
        "mute",
        json!([{"value": "hang", "background": true, "timeoutSeconds": 1}]),
    );
    w.migration(
        NS,
        "m2",
        json!({"clusterPair": "remote", "namespaces": [NS], "preExecRule": "mute"}),
    );
    let st = w.drive(NS, "m2").await;
    assert_eq!(st.status, ItemStatus::Failed);
    assert!(
        st.reason
            .clone()
            .unwrap_or_default()
            .contains("printed no line within 1s"),
        "{st:?}"
    );
    // A rule that names no Rule fails validation.
    w.migration(
        NS,
        "m3",
        json!({"clusterPair": "remote", "namespaces": [NS], "postExecRule": "absent"}),
    );
    let st = w.drive(NS, "m3").await;
    assert_eq!(st.status, ItemStatus::Failed);
    assert!(
        st.reason
            .clone()
            .unwrap_or_default()
            .contains("postExecRule absent"),
        "{st:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_lists_the_rules_and_runs_none() {
    let w = world().await;
    rule(
        &w,
        "quiesce",
        json!([{"value": "lock", "background": true}, {"value": "sync"}]),
    );
    w.migration(
        NS,
        "plan",
        json!({"clusterPair": "remote", "namespaces": [NS], "dryRun": true,
               "preExecRule": "quiesce"}),
    );
    let st = w.drive(NS, "plan").await;
    let plan = st.plan.expect("plan");
    assert_eq!(
        plan.rules,
        vec![
            "preExecRule quiesce: rules[0] podSelector app=db: 2 action(s) (1 background) in pods db-0"
                .to_string()
        ]
    );
    assert!(w.src.execs().is_empty(), "a dry run runs no command");
}
