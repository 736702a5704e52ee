//! Failover and failback (`Action`s on the destination) against two stand-in API servers
//! with real chunk stores and a folder transfer store between them (see `common`).
//!
//! Modelled on the real API server: the pod a kubelet would stop is deleted by the test
//! (no kubelet runs here); a PVC is bound by setting its status (no PV controller runs).
//! A controller kill is modelled by failing the k-th write: the reconcile stops there with
//! what it wrote before, as a killed process would, and the next reconcile starts from a
//! fresh read (the reconcilers keep no state between calls).

mod common;

use common::{CHUNK, World, digest, play_snapshotter};
use ferry_migration::crd::{Action, ActionStatus, ItemStatus, Migration, VolumeImport};
use ferry_migration::pair::PairSettings;
use serde_json::{Value, json};
use std::sync::Arc;

const NS: &str = "shop";
const CHUNKS: u64 = 16;

/// A world whose destination reaches the source back through pair `back` in `shop`.
async fn world() -> World {
    let mut w = World::new().await;
    let src = w.src.clone();
    w.dst_ctx.connect = Arc::new(move |s: PairSettings| {
        let src = src.clone();
        Box::pin(async move { Ok(src.client_for_token(&common::token_of(&s.kubeconfig))) })
    });
    w.pair(NS, "remote", true);
    let root = w.transfer_root();
    let enc = |v: &str| json!(ferry_kubefake::base64(v.as_bytes()));
    // The pair back to the source, bound there per namespace as the DR walk-through says.
    let back = common::pair_account_on(
        &w.src,
        NS,
        "back",
        &["ferry-migration-destination", "ferry-dr-source"],
    );
    w.dst.seed(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "back-secret", "namespace": NS},
        "data": {"kubeconfig": enc(&back), "backend": enc("fs"), "root": enc(&root)}}));
    w.dst.seed(json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "ClusterPair", "metadata": {"name": "back", "namespace": NS},
        "spec": {"secretRef": {"name": "back-secret"}}, "status": {"schedulerStatus": "Ready", "storageStatus": "Ready"}}));
    w.src.seed(json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "MigrationSchedule", "metadata": {"name": "nightly", "namespace": NS},
        "spec": {"schedulePolicyName": "every-minute", "template": {"spec": {"clusterPair": "remote", "namespaces": [NS]}}}}));
    w
}

/// The shop namespace on the source, migrated once to the destination as a schedule run.
async fn standby(w: &World) -> String {
    standby_as(w, true).await
}

/// Like [`standby`]; without `other_driver`, the namespace has no claim of another driver
/// (whose volume a migration skips), so the run is Successful, not PartialSuccess.
async fn standby_as(w: &World, other_driver: bool) -> String {
    let vol = w.shop(NS, CHUNKS).await;
    if !other_driver {
        w.src.remove("/persistentvolumeclaims", Some(NS), "cache");
    }
    w.src.seed(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-1", "namespace": NS, "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "web", "image": "nginx"}], "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]},
        "status": {"phase": "Running"}}));
    w.migration(
        NS,
        "nightly-interval-1",
        json!({"clusterPair": "remote", "namespaces": [NS]}),
    );
    let st = w.drive(NS, "nightly-interval-1").await;
    let want = if other_driver {
        ItemStatus::PartialSuccess
    } else {
        ItemStatus::Successful
    };
    assert_eq!(st.status, want, "{st:?}");
    // The destination's claim binds to the PV its import made (the PV controller's work).
    w.dst.set_status(
        "/persistentvolumeclaims",
        Some(NS),
        "data",
        json!({"phase": "Bound"}),
    );
    vol
}

fn action(w: &World, name: &str, spec: Value) {
    w.dst.seed(json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "Action", "metadata": {"name": name, "namespace": NS}, "spec": spec}));
}

fn failover(pair: Option<&str>, sync_first: bool) -> Value {
    let mut p = json!({"migrationScheduleReference": "nightly", "syncFirst": sync_first});
    if let Some(pair) = pair {
        p["clusterPair"] = json!(pair);
    }
    json!({"actionType": "failover", "actionParameter": {"failoverParameter": p}})
}

fn failback() -> Value {
    json!({"actionType": "failback", "actionParameter": {"failbackParameter": {"migrationScheduleReference": "nightly", "clusterPair": "back"}}})
}

fn status(w: &World, name: &str) -> ActionStatus {
    let a = w
        .dst
        .get("ferry.dev/actions", Some(NS), name)
        .expect("action");
    serde_json::from_value(a["status"].clone()).unwrap_or_default()
}

fn step<'a>(st: &'a ActionStatus, name: &str) -> &'a ferry_migration::crd::ActionStep {
    st.steps
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("step {name} in {st:?}"))
}

/// One turn of every controller on both clusters.
async fn turn(w: &World) {
    for (api, ctx) in [(&w.src, &w.src_ctx), (&w.dst, &w.dst_ctx)] {
        for m in api.all("ferry.dev/migrations") {
            let m: Migration = serde_json::from_value(m).expect("migration");
            match ferry_migration::runtime::pass::<ferry_migration::source::migrate::Migrations>(
                ctx, &m,
            )
            .await
            {
                Ok(Some(wait)) => w.clock.advance(wait),
                Ok(_) => {}
                Err(e) => eprintln!("migration reconcile error (retried): {e}"),
            }
        }
        for vi in api.all("ferry.dev/volumeimports") {
            let vi: VolumeImport = serde_json::from_value(vi).expect("volume import");
            match ferry_migration::runtime::pass::<
                ferry_migration::destination::volume_import::Imports,
            >(ctx, &vi)
            .await
            {
                Ok(Some(wait)) => w.clock.advance(wait),
                Ok(None) => {}
                Err(e) => eprintln!("import reconcile error (retried): {e}"),
            }
        }
    }
    play_snapshotter(&w.src, &w.src_store).await;
    play_snapshotter(&w.dst, &w.dst_store).await;
}

/// Reconciles Action `name` on the destination, with every other controller in between,
/// until it ends or `stop` says so; returns its status.
async fn drive(w: &World, name: &str, stop: impl Fn(&ActionStatus) -> bool) -> ActionStatus {
    for _ in 0..80 {
        let a: Action = serde_json::from_value(
            w.dst
                .get("ferry.dev/actions", Some(NS), name)
                .expect("action"),
        )
        .expect("parse");
        match ferry_migration::runtime::pass::<ferry_migration::destination::dr::Actions>(
            &w.dst_ctx, &a,
        )
        .await
        {
            // What the runtime would wait for, the clock moves by.
            Ok(Some(wait)) => w.clock.advance(wait),
            Ok(None) => {}
            Err(e) => eprintln!("action reconcile error (retried): {e}"),
        }
        let st = status(w, name);
        if st.status.is_final() || stop(&st) {
            return st;
        }
        turn(w).await;
    }
    panic!("action {name} did not end: {:?}", status(w, name));
}

fn replicas(api: &ferry_kubefake::FakeApi, name: &str) -> (i64, Value) {
    let d = api
        .get("apps/deployments", Some(NS), name)
        .expect("deployment");
    (
        d["spec"]["replicas"].as_i64().unwrap_or(-1),
        d["metadata"]["annotations"]["ferry.dev/migrationReplicas"].clone(),
    )
}

fn suspended(w: &World) -> bool {
    w.src
        .get("ferry.dev/migrationschedules", Some(NS), "nightly")
        .expect("schedule")["spec"]["suspend"]
        .as_bool()
        .unwrap_or(false)
}

async fn stop_pod(w: &World) {
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
        kube::Api::namespaced(w.src.client(), NS);
    pods.delete("web-1", &Default::default())
        .await
        .expect("delete pod");
}

/// The destination volume behind the destination's claim `data`.
fn dst_volume(w: &World) -> String {
    let pvc = w
        .dst
        .get("/persistentvolumeclaims", Some(NS), "data")
        .expect("claim");
    let pv = w
        .dst
        .get(
            "/persistentvolumes",
            None,
            pvc["spec"]["volumeName"].as_str().expect("bound"),
        )
        .expect("pv");
    pv["spec"]["csi"]["volumeHandle"]
        .as_str()
        .expect("handle")
        .to_string()
}

#[tokio::test]
async fn failover_stops_the_source_syncs_last_writes_and_starts_the_standby() {
    let w = world().await;
    let vol = standby(&w).await;
    // Written after the last scheduled run: only a sync after the stop carries it.
    common::fill(&w.src_store, &vol, 2, 99).await;
    action(&w, "fo", failover(Some("back"), true));

    let st = drive(&w, "fo", |st| {
        st.steps
            .iter()
            .any(|s| s.name == "DeactivateSource" && s.message.is_some())
    })
    .await;
    // The schedule is suspended, the source parked, and the failover waits for its pod.
    assert!(suspended(&w));
    assert_eq!(step(&st, "SuspendSchedule").status, ItemStatus::Successful);
    assert_eq!(replicas(&w.src, "web"), (0, json!("3")));
    let msg = step(&st, "DeactivateSource")
        .message
        .clone()
        .unwrap_or_default();
    assert!(msg.contains("shop/web-1"), "{msg}");
    let again = drive(&w, "fo", |_| true).await;
    assert_eq!(
        again.status,
        ItemStatus::InProgress,
        "still waits for the pod: {again:?}"
    );

    stop_pod(&w).await;
    let st = drive(&w, "fo", |_| false).await;
    assert_eq!(st.status, ItemStatus::Successful, "{st:?}");
    assert_eq!(st.source_reachable, Some(true));
    let names: Vec<&str> = st.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "SuspendSchedule",
            "DeactivateSource",
            "SyncFirst",
            "ActivateDestination"
        ]
    );
    assert!(
        st.steps.iter().all(|s| s.status == ItemStatus::Successful),
        "{st:?}"
    );
    // The last sync carried the writes made after the scheduled run.
    assert_eq!(
        digest(&w.dst_store, &dst_volume(&w)).await,
        digest(&w.src_store, &vol).await
    );
    // Its Migration carried the source's parked count, not the zero it was parked at.
    assert_eq!(replicas(&w.dst, "web"), (3, json!("3")));
    assert_eq!(replicas(&w.src, "web"), (0, json!("3")));
    let sync = step(&st, "SyncFirst").migration.clone().expect("sync run");
    assert!(w.src.get("ferry.dev/migrations", Some(NS), &sync).is_some());
}

#[tokio::test]
async fn failover_with_the_source_gone_starts_the_standby_and_says_so() {
    let w = world().await;
    standby(&w).await;
    let before = w.src.log().len();
    w.src.set_unreachable(true);
    action(&w, "fo", failover(Some("back"), true));
    let st = drive(&w, "fo", |_| false).await;
    assert_eq!(st.status, ItemStatus::Successful, "{st:?}");
    assert_eq!(st.source_reachable, Some(false));
    assert_eq!(st.source_attempts, 3);
    for s in ["SuspendSchedule", "DeactivateSource", "SyncFirst"] {
        let s = step(&st, s);
        assert_eq!(s.status, ItemStatus::Skipped, "{s:?}");
        assert!(
            s.message
                .as_deref()
                .unwrap_or("")
                .contains("did not answer"),
            "{s:?}"
        );
    }
    assert_eq!(
        step(&st, "ActivateDestination").status,
        ItemStatus::Successful
    );
    assert_eq!(replicas(&w.dst, "web"), (3, json!("3")));
    // Nothing reached the source: every request got the down server's 503.
    assert!(w.src.log()[before..].iter().all(|l| l.status == 503));

    // The source comes back with its schedule unsuspended: a due run does not overwrite
    // the standby that took over.
    w.src.set_unreachable(false);
    assert_eq!(replicas(&w.src, "web"), (3, Value::Null));
    w.src.seed(json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "SchedulePolicy", "metadata": {"name": "every-minute"},
        "policy": {"interval": {"intervalMinutes": 1}}}));
    let runs = w.src.all("ferry.dev/migrations").len();
    let s: ferry_migration::crd::MigrationSchedule = serde_json::from_value(
        w.src
            .get("ferry.dev/migrationschedules", Some(NS), "nightly")
            .expect("schedule"),
    )
    .expect("parse");
    ferry_migration::runtime::pass::<ferry_migration::source::migration_schedule::Schedules>(
        &w.src_ctx, &s,
    )
    .await
    .expect("schedule reconcile");
    assert_eq!(w.src.all("ferry.dev/migrations").len(), runs, "no run made");
    let sst = w
        .src
        .get("ferry.dev/migrationschedules", Some(NS), "nightly")
        .expect("schedule");
    let why = sst["status"]["skipped"][0]["reason"].as_str().unwrap_or("");
    assert!(why.contains("runs on the destination"), "{sst}");
}

#[tokio::test]
async fn failover_without_a_pair_back_acts_on_the_destination_alone() {
    let w = world().await;
    standby(&w).await;
    action(&w, "fo", failover(None, false));
    let st = drive(&w, "fo", |_| false).await;
    assert_eq!(st.status, ItemStatus::Successful, "{st:?}");
    assert!(
        step(&st, "DeactivateSource")
            .message
            .as_deref()
            .unwrap_or("")
            .contains("no clusterPair"),
        "{st:?}"
    );
    assert!(!suspended(&w));
    assert_eq!(replicas(&w.dst, "web"), (3, json!("3")));
}

#[tokio::test]
async fn a_tenant_action_may_not_act_on_another_namespace() {
    let w = world().await;
    let mut spec = failover(Some("back"), false);
    spec["actionParameter"]["failoverParameter"]["failoverNamespaces"] = json!(["payroll"]);
    action(&w, "fo", spec);
    let st = drive(&w, "fo", |_| false).await;
    assert_eq!(st.status, ItemStatus::Failed);
    assert!(
        st.reason
            .as_deref()
            .unwrap_or("")
            .contains("may only act on shop"),
        "{st:?}"
    );
    assert!(st.steps.is_empty());
    assert!(w.src.log().iter().all(|l| l.method == "GET"));
}

#[tokio::test]
async fn each_failover_step_survives_a_controller_kill() {
    for k in 1..=14 {
        let w = world().await;
        let vol = standby(&w).await;
        stop_pod(&w).await;
        common::fill(&w.src_store, &vol, 1, 5).await;
        action(&w, "fo", failover(Some("back"), true));
        // The k-th write from now, on either cluster, fails as if the process died there.
        w.dst.fail_write(k);
        w.src.fail_write(k);
        let st = drive(&w, "fo", |_| false).await;
        assert_eq!(
            st.status,
            ItemStatus::Successful,
            "kill at write {k}: {st:?}"
        );
        assert_eq!(
            replicas(&w.dst, "web"),
            (3, json!("3")),
            "kill at write {k}"
        );
        assert_eq!(
            replicas(&w.src, "web"),
            (0, json!("3")),
            "kill at write {k}"
        );
        assert_eq!(
            digest(&w.dst_store, &dst_volume(&w)).await,
            digest(&w.src_store, &vol).await,
            "kill at write {k}"
        );
        // One last sync, however often its step ran.
        let syncs = w
            .src
            .all("ferry.dev/migrations")
            .iter()
            .filter(|m| m["metadata"]["labels"]["ferry.dev/action"] == "fo")
            .count();
        assert_eq!(syncs, 1, "kill at write {k}");
    }
}

/// Fails over (source reachable), writes new data on the destination, fails back.
async fn failed_over_then_written(w: &World) -> (String, String) {
    let vol = standby(w).await;
    stop_pod(w).await;
    action(w, "fo", failover(Some("back"), false));
    let st = drive(w, "fo", |_| false).await;
    assert_eq!(st.status, ItemStatus::Successful, "{st:?}");
    let dvol = dst_volume(w);
    // The application writes on the destination: 2 of the 16 chunks change.
    let h = w.dst_store.open_volume(&dvol).await.expect("open");
    h.write_at(0, &vec![0xa5; (2 * CHUNK) as usize])
        .await
        .expect("write");
    h.flush().await.expect("flush");
    drop(h);
    (vol, dvol)
}

#[tokio::test]
async fn failback_moves_the_new_data_into_the_original_volume_and_resumes_the_schedule() {
    let w = world().await;
    let (vol, dvol) = failed_over_then_written(&w).await;
    let pvs_before = w.src.all("/persistentvolumes").len();
    action(&w, "fb", failback());
    let st = drive(&w, "fb", |_| false).await;
    assert_eq!(st.status, ItemStatus::Successful, "{st:?}");
    let names: Vec<&str> = st.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "SuspendSchedule",
            "DeactivateSource",
            "Migrate",
            "DeactivateDestination",
            "FinalMigrate",
            "ActivateSource",
            "ResumeSchedule"
        ]
    );

    // The source's own volume holds the destination's bytes; its claim keeps its PV.
    assert_eq!(
        digest(&w.src_store, &vol).await,
        digest(&w.dst_store, &dvol).await
    );
    let pvc = w
        .src
        .get("/persistentvolumeclaims", Some(NS), "data")
        .expect("claim");
    assert_eq!(pvc["spec"]["volumeName"], format!("pv-{NS}-data"));
    assert_eq!(w.src.all("/persistentvolumes").len(), pvs_before);
    // Each import went into that PV's volume, and was removed once it ended.
    assert!(w.src.all("ferry.dev/volumeimports").is_empty());
    for s in ["Migrate", "FinalMigrate"] {
        let name = step(&st, s).migration.clone().expect("migration");
        let m = w
            .dst
            .get("ferry.dev/migrations", Some(NS), &name)
            .expect("failback migration");
        assert_eq!(
            m["status"]["volumes"][0]["destinationVolume"],
            format!("pv-{NS}-data"),
            "{s}"
        );
    }

    // Bytes moved are about the new data (2 chunks), not the volume (16).
    let moved: u64 = ["Migrate", "FinalMigrate"]
        .iter()
        .map(|s| {
            let name = step(&st, s).migration.clone().expect("migration");
            let m = w
                .dst
                .get("ferry.dev/migrations", Some(NS), &name)
                .expect("failback migration");
            let ms: ferry_migration::crd::MigrationStatus =
                serde_json::from_value(m["status"].clone()).expect("status");
            ms.volumes.iter().map(|v| v.bytes_transferred).sum::<u64>()
        })
        .sum();
    assert!(moved > 0, "the new data moved");
    assert!(
        moved < 4 * CHUNK,
        "{moved} bytes moved for 2 changed chunks of 64 KiB"
    );
    // And the summary says the same of the data (uncompressed), not the whole volume.
    let migrated: u64 = ["Migrate", "FinalMigrate"]
        .iter()
        .map(|s| {
            let name = step(&st, s).migration.clone().expect("migration");
            let m = w
                .dst
                .get("ferry.dev/migrations", Some(NS), &name)
                .expect("failback migration");
            m["status"]["summary"]["totalBytesMigrated"]
                .as_u64()
                .unwrap_or_default()
        })
        .sum();
    assert!(
        migrated <= 2 * CHUNK,
        "{migrated} bytes migrated for 2 changed chunks of 64 KiB"
    );

    // The source runs, the destination is parked, the schedule runs again.
    assert_eq!(replicas(&w.src, "web"), (3, json!("3")));
    assert_eq!(replicas(&w.dst, "web"), (0, json!("3")));
    assert!(!suspended(&w));
}

#[tokio::test]
async fn each_failback_step_survives_a_controller_kill() {
    for k in [1, 3, 5, 8, 13, 21] {
        let w = world().await;
        let (vol, dvol) = failed_over_then_written(&w).await;
        action(&w, "fb", failback());
        w.dst.fail_write(k);
        w.src.fail_write(k);
        let st = drive(&w, "fb", |_| false).await;
        assert_eq!(
            st.status,
            ItemStatus::Successful,
            "kill at write {k}: {st:?}"
        );
        assert_eq!(
            digest(&w.src_store, &vol).await,
            digest(&w.dst_store, &dvol).await,
            "kill at write {k}"
        );
        assert_eq!(
            replicas(&w.src, "web"),
            (3, json!("3")),
            "kill at write {k}"
        );
        assert!(!suspended(&w), "kill at write {k}");
    }
}

/// A schedule whose namespaces land under other names is not failed over: the steps act on
/// one namespace name on both clusters, so they would park and start the wrong ones.
#[tokio::test]
async fn a_schedule_with_a_namespace_mapping_is_not_failed_over() {
    let w = world().await;
    standby(&w).await;
    w.src.seed(json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "MigrationSchedule", "metadata": {"name": "mapped", "namespace": NS},
        "spec": {"schedulePolicyName": "every-minute", "template": {"spec": {"clusterPair": "remote", "namespaces": [NS],
            "namespaceMapping": {NS: "shop-dr"}}}}}));
    let mut spec = failover(Some("back"), false);
    spec["actionParameter"]["failoverParameter"]["migrationScheduleReference"] = json!("mapped");
    action(&w, "fo", spec);
    let before = w.src.log().len();
    let st = drive(&w, "fo", |_| false).await;
    assert_eq!(st.status, ItemStatus::Failed, "{st:?}");
    assert!(
        st.reason
            .as_deref()
            .unwrap_or("")
            .contains("namespaceMapping"),
        "{st:?}"
    );
    assert!(
        w.src.log()[before..].iter().all(|l| l.method == "GET"),
        "nothing changed on the source"
    );
    assert_eq!(replicas(&w.dst, "web").0, 0, "the standby stays parked");
}

/// The DR walk-through's flow with exactly the roles it tells an admin to bind (a pair each
/// way, its roles bound per namespace, which creates RoleBindings in the namespace that is
/// migrated): the scheduled run, the failover's last sync and both failback migrations end
/// Successful, not PartialSuccess: the pairs' RoleBindings are this cluster's, never copied
/// (the other side would refuse them as an escalation), so nothing fails.
#[tokio::test]
async fn the_walk_through_ends_successful_at_every_step() {
    let w = world().await;
    standby_as(&w, false).await;
    stop_pod(&w).await;
    action(&w, "fo", failover(Some("back"), true));
    let st = drive(&w, "fo", |_| false).await;
    assert_eq!(st.status, ItemStatus::Successful, "{st:?}");
    let sync = step(&st, "SyncFirst").migration.clone().expect("sync run");
    let m = w
        .src
        .get("ferry.dev/migrations", Some(NS), &sync)
        .expect("sync migration");
    assert_eq!(m["status"]["status"], "Successful", "{m}");
    let dvol = dst_volume(&w);
    let h = w.dst_store.open_volume(&dvol).await.expect("open");
    h.write_at(0, &vec![0x5a; CHUNK as usize])
        .await
        .expect("write");
    h.flush().await.expect("flush");
    drop(h);
    action(&w, "fb", failback());
    let st = drive(&w, "fb", |_| false).await;
    assert_eq!(st.status, ItemStatus::Successful, "{st:?}");
    for s in ["Migrate", "FinalMigrate"] {
        let name = step(&st, s).migration.clone().expect("migration");
        let m = w
            .dst
            .get("ferry.dev/migrations", Some(NS), &name)
            .expect("failback migration");
        assert_eq!(m["status"]["status"], "Successful", "{s}: {m}");
    }
    // The pairs' bindings stayed where the admins made them.
    assert!(
        w.dst
            .all("rbac.authorization.k8s.io/rolebindings")
            .iter()
            .all(|b| !b["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .starts_with("pair-back-"))
    );
}

/// A source that does not answer for a second (a restarted API server, a network blip)
/// while a failover starts: however often the Action is looked at meanwhile (a status write
/// comes back as a watch event), the source is counted gone only once it has not answered
/// for the stated time, so here the failover waits and then does every source step: the
/// schedule suspended, the source stopped, the last sync run. Before, three looks in a few
/// milliseconds were three tries, and the failover went on without the source.
#[tokio::test]
async fn a_source_silent_for_a_second_is_waited_for_not_skipped() {
    let w = world().await;
    standby(&w).await;
    stop_pod(&w).await;
    action(&w, "fo", failover(Some("back"), true));
    w.src.go_down();
    let a = |w: &World| -> Action {
        serde_json::from_value(
            w.dst
                .get("ferry.dev/actions", Some(NS), "fo")
                .expect("action"),
        )
        .expect("parse")
    };
    // Looked at five times within the same second, as watch events would bring it.
    for _ in 0..5 {
        ferry_migration::runtime::pass::<ferry_migration::destination::dr::Actions>(
            &w.dst_ctx,
            &a(&w),
        )
        .await
        .expect("pass");
    }
    let st = status(&w, "fo");
    assert_ne!(st.source_reachable, Some(false), "{st:?}");
    assert!(
        st.steps.iter().all(|s| s.status != ItemStatus::Skipped),
        "{st:?}"
    );
    // A second later the source answers again.
    w.clock.advance(std::time::Duration::from_secs(1));
    // (A restarted server's window of 403s is the outage tests' subject, on one clock.)
    w.src.set_warmup(std::time::Duration::ZERO);
    w.src.come_back();
    let st = drive(&w, "fo", |_| false).await;
    assert_eq!(st.status, ItemStatus::Successful, "{st:?}");
    assert_eq!(st.source_reachable, Some(true));
    for s in [
        "SuspendSchedule",
        "DeactivateSource",
        "SyncFirst",
        "ActivateDestination",
    ] {
        assert_eq!(step(&st, s).status, ItemStatus::Successful, "{s}: {st:?}");
    }
    assert!(suspended(&w), "the schedule was suspended on the source");
    assert_eq!(replicas(&w.src, "web").0, 0, "the source was stopped");
}

/// A failback whose source is down for ten minutes, run by the runtime's driver (the loop
/// `ferry migration` runs) on tokio's clock, paused and let run: after the first minute
/// fewer than one pass of the Action a minute, at most one status write a pass, the step
/// saying all along that it waits for the source and why; then the source comes back with
/// its window of 403s and the failback ends by itself, the source's volume holding the
/// destination's bytes.
///
/// Relies on the stand-in's outage as a restarted kube-apiserver has it (refused
/// connections, watches cut, then 403s while its authorizer warms up) and on a watch event
/// for every status write.
#[tokio::test(start_paused = true)]
async fn a_failback_waits_out_a_source_outage_calmly() {
    use ferry_migration::runtime::driver;
    use kube::Api;
    use std::time::Duration;

    let mut w = world().await;
    let (vol, dvol) = failed_over_then_written(&w).await;
    let clock = ferry_migration::Ctx::tokio_clock(w.dst_ctx.now());
    w.src_ctx.clock = clock.clone();
    w.dst_ctx.clock = clock;
    w.src_ctx.poll = Duration::from_secs(5);
    w.dst_ctx.poll = Duration::from_secs(5);
    let (src, dst) = (Arc::new(w.src_ctx.clone()), Arc::new(w.dst_ctx.clone()));
    tokio::spawn(driver::run(
        dst.clone(),
        Arc::new(ferry_migration::destination::dr::Actions),
        Api::<Action>::all(dst.client.clone()),
        vec![],
    ));
    tokio::spawn(driver::run(
        dst.clone(),
        Arc::new(ferry_migration::source::migrate::Migrations),
        Api::<Migration>::all(dst.client.clone()),
        vec![],
    ));
    tokio::spawn(driver::run(
        src.clone(),
        Arc::new(ferry_migration::destination::volume_import::Imports),
        Api::<VolumeImport>::all(src.client.clone()),
        vec![],
    ));
    for (api, store) in [
        (w.src.clone(), w.src_store.clone()),
        (w.dst.clone(), w.dst_store.clone()),
    ] {
        tokio::spawn(async move {
            loop {
                if !api.is_down() {
                    play_snapshotter(&api, &store).await;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }

    w.src.go_down();
    action(&w, "fb", failback());
    let key = format!("Action/{NS}/fb");
    let writes = |w: &World| {
        w.dst
            .log()
            .iter()
            .filter(|l| l.method != "GET" && l.path.ends_with("/actions/fb/status"))
            .count() as u64
    };
    tokio::time::sleep(Duration::from_secs(60)).await;
    let (p1, w1) = (w.dst_ctx.reconciles.of(&key), writes(&w));
    let mut messages = Vec::new();
    for _ in 0..9 {
        tokio::time::sleep(Duration::from_secs(60)).await;
        let st = status(&w, "fb");
        messages.push(
            step(&st, "SuspendSchedule")
                .message
                .clone()
                .unwrap_or_default(),
        );
    }
    let (p10, w10) = (w.dst_ctx.reconciles.of(&key), writes(&w));
    assert!(p1 > 0, "the Action was looked at");
    assert!(
        p10 - p1 < 9,
        "{} passes in minutes 1-10 of the outage",
        p10 - p1
    );
    assert!(
        w10 - w1 <= p10 - p1,
        "{} status writes for {} passes",
        w10 - w1,
        p10 - p1
    );
    for m in &messages {
        assert!(
            m.starts_with("waiting for the source cluster to answer") && m.contains("refused"),
            "the step names the cause all along: {messages:?}"
        );
    }
    let st = status(&w, "fb");
    assert!(!st.status.is_final(), "{st:?}");
    assert!(
        st.steps.iter().all(|s| s.status != ItemStatus::Skipped),
        "a failback skips nothing on the source: {st:?}"
    );

    w.src.set_warmup(Duration::from_secs(30));
    w.src.come_back();
    let mut ended = false;
    for _ in 0..400 {
        tokio::time::sleep(Duration::from_secs(5)).await;
        if status(&w, "fb").status.is_final() {
            ended = true;
            break;
        }
    }
    let st = status(&w, "fb");
    assert!(ended, "{st:?}");
    assert_eq!(st.status, ItemStatus::Successful, "{st:?}");
    assert_eq!(
        digest(&w.src_store, &vol).await,
        digest(&w.dst_store, &dvol).await
    );
    assert_eq!(replicas(&w.src, "web"), (3, json!("3")));
    assert!(!suspended(&w));
    assert!(
        w.src.log().iter().any(|l| l.status == 403),
        "the source's window of 403s was met"
    );
}
