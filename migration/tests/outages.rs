//! The controllers through an outage, as the real API server has one, driven by the one
//! runtime (`runtime::driver`, the same loop `ferry migration` runs) on tokio's clock,
//! paused and let run: ten minutes of outage take a moment.
//!
//! What of the real server the stand-in models here, and these tests rely on: a stopped
//! server refuses connections and cuts its watches ([`FakeApi::go_down`]); a restarted one
//! refuses every request RBAC decides with 403 for a moment while its authorizer's caches
//! fill ([`FakeApi::come_back`]); every status write is a watch event; every request is
//! authorised for its identity (the controllers as their service account, the pair as the
//! account the docs tell an admin to bind).
//!
//! What they assert, per object: after the first minute of a ten-minute outage at most one
//! pass a minute (the backoff reaches its 5-minute cap), at most one status write per pass,
//! a reason that names the cause all along, and an end by itself once the server is back,
//! through its window of 403s.

mod common;

use common::{CHUNK, World, play_snapshotter};
use ferry_kubefake::FakeApi;
use ferry_migration::Ctx;
use ferry_migration::crd::{ClusterPair, ItemStatus, Migration, MigrationStatus, VolumeImport};
use ferry_migration::destination::volume_import::Imports;
use ferry_migration::runtime::driver;
use ferry_migration::source::{cluster_pair::Pairs, migrate::Migrations};
use kube::Api;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

const NS: &str = "shop";

/// A world on tokio's clock, with a realistic poll interval.
async fn world() -> World {
    let mut w = World::new().await;
    let clock = Ctx::tokio_clock(jiff::Timestamp::now());
    w.src_ctx.clock = clock.clone();
    w.dst_ctx.clock = clock;
    w.src_ctx.poll = Duration::from_secs(5);
    w.dst_ctx.poll = Duration::from_secs(5);
    w
}

/// Namespace `shop` with one ferry claim and a Deployment using it.
async fn shop(w: &World) {
    w.src
        .seed(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}));
    w.ferry_claim(NS, "data", 4, 3).await;
    w.src.seed(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": NS},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}}));
}

/// Runs the source's Migration and ClusterPair controllers, the destination's VolumeImport
/// controller and csi-snapshotter on the source (played every second), until the test ends.
fn run_controllers(w: &World) {
    let src = Arc::new(w.src_ctx.clone());
    let dst = Arc::new(w.dst_ctx.clone());
    tokio::spawn(driver::run(
        src.clone(),
        Arc::new(Migrations),
        Api::<Migration>::all(src.client.clone()),
        vec![],
    ));
    tokio::spawn(driver::run(
        src.clone(),
        Arc::new(Pairs),
        Api::<ClusterPair>::all(src.client.clone()),
        vec![],
    ));
    tokio::spawn(driver::run(
        dst.clone(),
        Arc::new(Imports),
        Api::<VolumeImport>::all(dst.client.clone()),
        vec![],
    ));
    let (api, store) = (w.src.clone(), w.src_store.clone());
    tokio::spawn(async move {
        loop {
            play_snapshotter(&api, &store).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}

fn migration_status(w: &World) -> MigrationStatus {
    w.migration_status(NS, "m1")
}

/// Status writes of one object so far (PATCH or PUT of its status subresource).
fn status_writes(api: &FakeApi, path_end: &str) -> usize {
    api.log()
        .iter()
        .filter(|l| l.method != "GET" && l.path.ends_with(path_end))
        .count()
}

/// Sleeps on tokio's (paused) clock until `done` holds, looking every `step`, for at most
/// `limit`; returns whether it held.
async fn until(limit: Duration, step: Duration, mut done: impl FnMut() -> bool) -> bool {
    let end = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < end {
        if done() {
            return true;
        }
        tokio::time::sleep(step).await;
    }
    done()
}

/// A Migration and its pair with the destination API down for ten minutes while the
/// migration's volume goes to the destination: calm (the real server saw 65 passes and
/// 130 status writes a second), a reason that always says why, and the end once the
/// destination is back, through its window of 403s (which once failed the migration for
/// good).
#[tokio::test(start_paused = true)]
async fn a_destination_outage_is_waited_out_calmly() {
    let w = world().await;
    w.pair(NS, "remote", true);
    shop(&w).await;
    w.migration(
        NS,
        "m1",
        json!({"clusterPair": "remote", "namespaces": [NS]}),
    );
    run_controllers(&w);
    // Validated and on its volumes: the destination goes down.
    assert!(
        until(Duration::from_secs(60), Duration::from_millis(100), || {
            migration_status(&w).stage == Some(ferry_migration::crd::Stage::Volumes)
        })
        .await,
        "{:?}",
        migration_status(&w)
    );
    w.dst.go_down();
    let (m, p) = ("Migration/shop/m1", "ClusterPair/shop/remote");
    let writes = |w: &World| {
        (
            status_writes(&w.src, "/migrations/m1/status"),
            status_writes(&w.src, "/clusterpairs/remote/status"),
        )
    };
    let (m0, p0) = (w.src_ctx.reconciles.of(m), w.src_ctx.reconciles.of(p));
    let (mw0, pw0) = writes(&w);
    tokio::time::sleep(Duration::from_secs(60)).await;
    let (m1, p1) = (w.src_ctx.reconciles.of(m), w.src_ctx.reconciles.of(p));
    let mut reasons = Vec::new();
    for _ in 0..9 {
        tokio::time::sleep(Duration::from_secs(60)).await;
        reasons.push(migration_status(&w).reason.unwrap_or_default());
    }
    let (m10, p10) = (w.src_ctx.reconciles.of(m), w.src_ctx.reconciles.of(p));
    let (mw10, pw10) = writes(&w);
    assert!(
        m10 - m1 < 9,
        "Migration: {} passes in minutes 1-10 of the outage",
        m10 - m1
    );
    assert!(
        p10 - p1 < 9,
        "ClusterPair: {} passes in minutes 1-10 of the outage",
        p10 - p1
    );
    assert!(
        (mw10 - mw0) as u64 <= m10 - m0,
        "Migration: {} status writes for {} passes",
        mw10 - mw0,
        m10 - m0
    );
    assert!(
        (pw10 - pw0) as u64 <= p10 - p0,
        "ClusterPair: {} status writes for {} passes",
        pw10 - pw0,
        p10 - p0
    );
    for r in &reasons {
        assert!(
            r.starts_with("retrying: PVC shop/data: ") && r.contains("refused"),
            "the reason names the cause all along: {reasons:?}"
        );
    }
    let pair = w
        .src
        .get("ferry.dev/clusterpairs", Some(NS), "remote")
        .expect("pair");
    assert_eq!(pair["status"]["schedulerStatus"], "Error", "{pair}");

    // Back just before the migration's next try, refusing everything RBAC decides for its
    // first half minute: the try meets the window of 403s.
    let next: jiff::Timestamp = migration_status(&w)
        .volumes
        .iter()
        .find_map(|v| v.retry.as_ref().map(|r| r.next_attempt.clone()))
        .expect("a retry is recorded")
        .parse()
        .expect("time");
    let until_next = next.duration_since(w.src_ctx.now()).unsigned_abs();
    tokio::time::sleep(until_next.saturating_sub(Duration::from_secs(2))).await;
    w.dst.set_warmup(Duration::from_secs(30));
    w.dst.come_back();
    assert!(
        until(Duration::from_secs(900), Duration::from_secs(5), || {
            migration_status(&w).finish_timestamp.is_some()
        })
        .await,
        "{:?}",
        migration_status(&w)
    );
    let st = migration_status(&w);
    assert_eq!(st.status, ItemStatus::Successful, "{st:?}");
    let data = st
        .volumes
        .iter()
        .find(|v| v.persistent_volume_claim == "data");
    assert_eq!(data.map(|v| v.bytes_total), Some(3 * CHUNK), "{st:?}");
    assert!(
        w.dst.log().iter().any(|l| l.status == 403),
        "the window of 403s was met"
    );
}

/// A window of 403s long after an outage, as each `kubectl apply` of manifests that set
/// `rules: []` on the aggregated destination role made (empty until the aggregation
/// controller filled it again): the migration waits it out. The shipped manifests leave
/// the role's rules alone, so re-applying them refuses nothing.
#[tokio::test(start_paused = true)]
async fn a_destination_role_emptied_for_a_moment_is_waited_out() {
    let w = world().await;
    w.dst.set_aggregation_delay(Duration::from_secs(20));
    let who = ferry_kubefake::Identity::service_account(NS, "pair-remote");
    w.pair(NS, "remote", true);
    assert!(
        w.dst
            .can(&who, "create", "ferry.dev", "volumeimports", Some(NS))
    );
    w.dst
        .apply_manifest(include_str!("../../manifests/rbac.yaml"), common::FERRY_NS);
    assert!(
        w.dst
            .can(&who, "create", "ferry.dev", "volumeimports", Some(NS)),
        "re-applying the shipped manifests emptied the destination role"
    );
    shop(&w).await;
    w.migration(
        NS,
        "m1",
        json!({"clusterPair": "remote", "namespaces": [NS]}),
    );
    run_controllers(&w);
    assert!(
        until(Duration::from_secs(60), Duration::from_millis(100), || {
            migration_status(&w).stage == Some(ferry_migration::crd::Stage::Volumes)
        })
        .await
    );
    // An older manifest applied now: the role is empty until the controller fills it.
    w.dst.apply_manifest(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: ferry-migration-destination\nrules: []\n",
        common::FERRY_NS,
    );
    assert!(
        until(Duration::from_secs(900), Duration::from_secs(5), || {
            migration_status(&w).finish_timestamp.is_some()
        })
        .await,
        "{:?}",
        migration_status(&w)
    );
    let st = migration_status(&w);
    assert_eq!(st.status, ItemStatus::Successful, "{st:?}");
}

/// Every controller of both sides (`ferry_migration::run::run`, what `ferry migration`
/// runs) with the source's own API server down for ten minutes while a schedule, its pair,
/// its policy and a transformation are there: after the first minute fewer than one pass a
/// minute of any object, and once the server is back, through its window of 403s, the
/// watches pick up again and the schedule's next run ends Successful.
///
/// Relies on the stand-in's outage as a restarted kube-apiserver has it (refused
/// connections, watches cut, then 403s while its authorizer warms up).
#[tokio::test(start_paused = true)]
async fn every_controller_waits_out_an_outage_of_its_own_api_server() {
    let w = world().await;
    w.pair(NS, "remote", true);
    shop(&w).await;
    w.src.seed(
        json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "SchedulePolicy",
        "metadata": {"name": "quarter"}, "policy": {"interval": {"intervalMinutes": 15}}}),
    );
    w.src.seed(json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "ResourceTransformation",
        "metadata": {"name": "replicas", "namespace": NS},
        "spec": {"objects": [{"resource": "apps/v1/Deployment",
            "paths": [{"path": "spec.replicas", "value": "0", "type": "int", "operation": "modify"}]}]}}));
    w.src.seed(
        json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "MigrationSchedule",
        "metadata": {"name": "standby", "namespace": NS},
        "spec": {"schedulePolicyName": "quarter",
            "template": {"spec": {"clusterPair": "remote", "namespaces": [NS]}}}}),
    );
    tokio::spawn(ferry_migration::run::run(w.src_ctx.clone()));
    tokio::spawn(ferry_migration::run::run(w.dst_ctx.clone()));
    let (api, store) = (w.src.clone(), w.src_store.clone());
    tokio::spawn(async move {
        loop {
            if !api.is_down() {
                play_snapshotter(&api, &store).await;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    let runs = |w: &World| -> Vec<Value> {
        let s = w
            .src
            .get("ferry.dev/migrationschedules", Some(NS), "standby")
            .expect("schedule");
        s["status"]["items"]["interval"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    // The first run (an interval never run runs at once) ends.
    assert!(
        until(Duration::from_secs(300), Duration::from_secs(1), || {
            runs(&w)
                .first()
                .is_some_and(|r| r["status"] == "Successful")
        })
        .await,
        "{:?}",
        runs(&w)
    );

    w.src.go_down();
    tokio::time::sleep(Duration::from_secs(60)).await;
    let first = w.src_ctx.reconciles.all();
    tokio::time::sleep(Duration::from_secs(540)).await;
    let tenth = w.src_ctx.reconciles.all();
    for (key, n) in &tenth {
        let before = first.get(key).copied().unwrap_or_default();
        assert!(
            n - before < 9,
            "{key}: {} passes in minutes 1-10 of the outage",
            n - before
        );
    }

    w.src.set_warmup(Duration::from_secs(30));
    w.src.come_back();
    assert!(
        until(Duration::from_secs(1800), Duration::from_secs(5), || {
            runs(&w).len() >= 2 && runs(&w).iter().all(|r| r["status"] == "Successful")
        })
        .await,
        "{:?}",
        runs(&w)
    );
    assert!(
        w.src.log().iter().any(|l| l.status == 403),
        "the window of 403s was met"
    );
    let t = w
        .src
        .get("ferry.dev/resourcetransformations", Some(NS), "replicas")
        .expect("transformation");
    assert_eq!(t["status"]["status"], "Ready", "{t}");
}
