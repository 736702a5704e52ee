//! MigrationSchedules against the stand-in API with real chunk stores, the controller's clock
//! moved by hand: runs when due, one at a time (a due time during a run is skipped and
//! recorded), incremental after the first, `retain` Migrations kept, suspend honoured, and
//! missed slots collapsed into one run; over a folder and over moto's S3 server on loopback.

mod common;

use common::{CHUNK, World};
use ferry_migration::crd::{ItemStatus, MigrationSchedule, MigrationScheduleStatus};
use ferry_migration::source::migration_schedule::{SCHEDULE_LABEL, Schedules};

async fn reconcile(
    ctx: &ferry_migration::Ctx,
    s: &MigrationSchedule,
) -> ferry_migration::Result<Option<std::time::Duration>> {
    ferry_migration::runtime::pass::<Schedules>(ctx, s).await
}
use jiff::Timestamp;
use serde_json::json;
use std::collections::BTreeMap;

const NS: &str = "shop";

/// The metrics registry is one per process and every test here writes the same schedule's
/// series: one test at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The controllers' clock (the World's), moved by hand in whole seconds.
struct Clock(ferry_migration::context::ManualClock);

impl Clock {
    fn install(w: &mut World) -> Clock {
        Clock(w.clock.clone())
    }
    fn advance(&self, secs: i64) {
        self.0
            .advance(std::time::Duration::from_secs(secs.max(0) as u64));
    }
    fn now(&self) -> Timestamp {
        self.0.now()
    }
}

/// Seeds cluster-wide SchedulePolicy `name` with `policy`.
fn seed_policy(w: &World, name: &str, policy: serde_json::Value) {
    w.src.seed(
        json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "SchedulePolicy",
        "metadata": {"name": name}, "policy": policy}),
    );
}

/// Seeds MigrationSchedule `standby` of namespace `shop` over policy `policy`, its spec
/// extended by `extra`.
fn seed_standby(w: &World, policy: &str, extra: serde_json::Value) {
    let mut spec = json!({"schedulePolicyName": policy,
        "template": {"spec": {"clusterPair": "remote", "namespaces": [NS]}}});
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        s.extend(e.clone());
    }
    w.src.seed(
        json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "MigrationSchedule",
        "metadata": {"name": "standby", "namespace": NS}, "spec": spec}),
    );
}

fn schedule(w: &World) -> MigrationSchedule {
    serde_json::from_value(
        w.src
            .get("ferry.dev/migrationschedules", Some(NS), "standby")
            .expect("schedule"),
    )
    .expect("parse")
}

async fn tick(w: &World) -> MigrationScheduleStatus {
    reconcile(&w.src_ctx, &schedule(w))
        .await
        .expect("reconcile");
    // The Migration controller finishes the deletions retention asked for (its finalizer).
    for m in w.src.all("ferry.dev/migrations") {
        if m["metadata"]["deletionTimestamp"].is_string() {
            let m = serde_json::from_value(m).expect("migration");
            ferry_migration::runtime::pass::<ferry_migration::source::migrate::Migrations>(
                &w.src_ctx, &m,
            )
            .await
            .expect("finalize");
        }
    }
    schedule(w).status.unwrap_or_default()
}

/// Names of the schedule's Migrations that exist.
fn runs(w: &World) -> Vec<String> {
    let mut v: Vec<String> = w
        .src
        .all("ferry.dev/migrations")
        .into_iter()
        .filter(|m| m["metadata"]["labels"][SCHEDULE_LABEL] == "standby")
        .filter_map(|m| m["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    v.sort();
    v
}

fn newest(st: &MigrationScheduleStatus) -> String {
    st.items["interval"].last().expect("a run").name.clone()
}

async fn bytes_moved(w: &World, name: &str) -> u64 {
    let st = w.drive(NS, name).await;
    let data = st
        .volumes
        .iter()
        .find(|v| v.persistent_volume_claim == "data")
        .expect("data volume");
    assert_eq!(data.status, ItemStatus::Successful, "{st:?}");
    data.bytes_transferred
}

#[tokio::test]
async fn a_one_minute_schedule_runs_incrementally_one_at_a_time() {
    one_minute_schedule(None).await;
}

/// The same over moto's S3 server on loopback as the pair's transfer store.
#[tokio::test]
async fn a_one_minute_schedule_runs_incrementally_through_s3() {
    let Some(s3) = ferry_testkit::TestServer::start(ferry_testkit::Kind::S3).await else {
        return;
    };
    one_minute_schedule(Some(s3.bucket("standby").await)).await;
    drop(s3);
}

/// Runs a one-minute schedule three times, then suspends and resumes it; the pair's transfer
/// store is the folder of `World` or the one `transfer` describes.
async fn one_minute_schedule(transfer: Option<BTreeMap<String, String>>) {
    let _one = SERIAL.lock().await;
    let mut w = World::new().await;
    let clock = Clock::install(&mut w);
    let config = match &transfer {
        Some(t) => {
            w.pair_over(NS, "remote", t);
            ferry_store::StoreConfig::from_params(t).expect("transfer config")
        }
        None => {
            w.pair(NS, "remote", true);
            ferry_store::StoreConfig::fs(w.transfer_root())
        }
    };
    let vol = w.shop(NS, 32).await;
    seed_policy(
        &w,
        "every-minute",
        json!({"interval": {"intervalMinutes": 1, "retain": 2}}),
    );
    seed_standby(&w, "every-minute", json!({}));

    // An interval never run runs at once.
    let st = tick(&w).await;
    let first = newest(&st);
    assert!(first.starts_with("standby-interval-"), "{first}");
    assert_eq!(runs(&w), vec![first.clone()]);

    // Not due 10 s later; due after a minute, but the first run is still going: skipped.
    clock.advance(10);
    assert_eq!(tick(&w).await.items["interval"].len(), 1);
    clock.advance(55);
    let st = tick(&w).await;
    assert_eq!(
        st.items["interval"].len(),
        1,
        "no second run while one is in progress"
    );
    assert_eq!(st.skipped.len(), 1, "{st:?}");
    assert_eq!(st.skipped[0].running, first);
    // Seen again while the same run goes on: recorded once.
    assert_eq!(tick(&w).await.skipped.len(), 1);
    let full = bytes_moved(&w, &first).await;

    // Two chunks change; the next run moves about them.
    let h = w.src_store.open_volume(&vol).await.expect("open");
    h.write_at(0, &vec![7u8; 4096]).await.expect("write");
    h.write_at(9 * CHUNK, &vec![6u8; 4096])
        .await
        .expect("write");
    h.flush().await.expect("flush");
    clock.advance(1);
    let st = tick(&w).await;
    assert!(st.last_success_time.is_some(), "{st:?}");
    let second = newest(&st);
    assert_ne!(second, first);
    let delta = bytes_moved(&w, &second).await;
    assert!(
        delta < full / 4,
        "the second run moved {delta} bytes, the first {full}"
    );

    // A third run; retain 2 leaves two Migration objects.
    clock.advance(61);
    let third = newest(&tick(&w).await);
    bytes_moved(&w, &third).await;
    clock.advance(1);
    let st = tick(&w).await;
    assert_eq!(runs(&w), [second.clone(), third.clone()], "{st:?}");
    assert_eq!(st.items["interval"].len(), 2);
    let t = ferry_transfer::TransferStore::open(&config, None)
        .await
        .expect("transfer store");
    assert_eq!(
        t.commits_of(&vol).await.expect("commits").len(),
        2,
        "the pair's default retention keeps two commits"
    );

    // Suspended: nothing starts, however long.
    let api: kube::Api<MigrationSchedule> = kube::Api::namespaced(w.src.client(), NS);
    api.patch(
        "standby",
        &Default::default(),
        &kube::api::Patch::Merge(json!({"spec": {"suspend": true}})),
    )
    .await
    .expect("suspend");
    clock.advance(600);
    let st = tick(&w).await;
    assert_eq!(
        runs(&w),
        [second.clone(), third.clone()],
        "suspended: {st:?}"
    );
    // The next slot to come is shown, never one that passed while suspended.
    let next: jiff::Timestamp = st.next_due["interval"].parse().expect("time");
    assert!(next > clock.now(), "next due {next} is in the past");

    // Resumed after ten missed slots: one run, not ten.
    api.patch(
        "standby",
        &Default::default(),
        &kube::api::Patch::Merge(json!({"spec": {"suspend": null}})),
    )
    .await
    .expect("resume");
    let st = tick(&w).await;
    let fourth = newest(&st);
    assert!(![second.clone(), third.clone()].contains(&fourth));
    // Retain 2: the new run and the newest finished one.
    assert_eq!(
        runs(&w),
        [third.clone(), fourth.clone()],
        "one new run: {st:?}"
    );
    let st = tick(&w).await;
    assert_eq!(runs(&w), [third, fourth], "still one: {st:?}");
}

#[tokio::test]
async fn a_missing_or_invalid_policy_is_named_in_status() {
    let _one = SERIAL.lock().await;
    let w = World::new().await;
    seed_standby(&w, "nope", json!({}));
    let st = tick(&w).await;
    assert!(
        st.reason
            .as_deref()
            .is_some_and(|r| r.contains("SchedulePolicy nope not found")),
        "{st:?}"
    );
    seed_policy(&w, "nope", json!({"daily": {"time": "7PM"}}));
    let st = tick(&w).await;
    assert!(
        st.reason
            .as_deref()
            .is_some_and(|r| r.contains("policy.daily.time")),
        "{st:?}"
    );
    assert!(runs(&w).is_empty(), "no run from a bad policy");
}

#[tokio::test]
async fn an_rpo_past_twice_the_interval_is_a_condition_and_a_metric() {
    let _one = SERIAL.lock().await;
    let mut w = World::new().await;
    let clock = Clock::install(&mut w);
    w.pair(NS, "remote", true);
    w.shop(NS, 4).await;
    seed_policy(
        &w,
        "every-minute",
        json!({"interval": {"intervalMinutes": 1}}),
    );
    seed_standby(&w, "every-minute", json!({}));
    let first = newest(&tick(&w).await);
    bytes_moved(&w, &first).await;
    clock.advance(1);
    let st = tick(&w).await;
    let rpo = |st: &MigrationScheduleStatus| {
        st.conditions
            .iter()
            .find(|c| c.type_ == "RPOExceeded")
            .map(|c| c.status.clone())
    };
    assert_eq!(rpo(&st).as_deref(), Some("False"), "{st:?}");
    // The second run never finishes (nobody drives it): the state ages past two minutes.
    clock.advance(150);
    let st = tick(&w).await;
    assert_eq!(rpo(&st).as_deref(), Some("True"), "{st:?}");
    let text = ferry_csi::metrics::render();
    assert!(
        text.lines()
            .any(|l| l.starts_with("ferry_migration_schedule_rpo_seconds")
                && l.contains("schedule=\"standby\"")
                && l.rsplit(' ')
                    .next()
                    .and_then(|v| v.parse::<f64>().ok())
                    .is_some_and(|v| v >= 150.0)),
        "{text}"
    );
    assert!(text.contains("ferry_migration_schedule_last_success_timestamp_seconds"));
    // Looked at again with nothing changed: no status write (no watch event, no loop).
    let before = w.src.log().iter().filter(|l| l.method == "PATCH").count();
    tick(&w).await;
    let after = w.src.log().iter().filter(|l| l.method == "PATCH").count();
    assert_eq!(before, after);
}

/// autoSuspend: once a migrated application runs on the destination (activated there), the
/// schedule suspends itself rather than overwrite the copy that took over.
#[tokio::test]
async fn auto_suspend_stops_the_schedule_once_the_destination_is_activated() {
    let _one = SERIAL.lock().await;
    let mut w = World::new().await;
    let clock = Clock::install(&mut w);
    w.pair(NS, "remote", true);
    w.shop(NS, 4).await;
    seed_policy(
        &w,
        "every-minute",
        json!({"interval": {"intervalMinutes": 1}}),
    );
    seed_standby(&w, "every-minute", json!({"autoSuspend": true}));
    let first = newest(&tick(&w).await);
    bytes_moved(&w, &first).await;
    let web = w
        .dst
        .get("apps/deployments", Some(NS), "web")
        .expect("web on the destination");
    assert_eq!(web["spec"]["replicas"], 0, "parked: {web}");

    // Parked on the destination: the schedule goes on.
    clock.advance(61);
    let second = newest(&tick(&w).await);
    assert_ne!(second, first);
    bytes_moved(&w, &second).await;

    // Activated there: the next look suspends the schedule and starts nothing.
    let dst: kube::Api<k8s_openapi::api::apps::v1::Deployment> =
        kube::Api::namespaced(w.dst.client(), NS);
    dst.patch(
        "web",
        &Default::default(),
        &kube::api::Patch::Merge(json!({"spec": {"replicas": 2}})),
    )
    .await
    .expect("activate");
    clock.advance(61);
    tick(&w).await;
    assert_eq!(schedule(&w).spec.suspend, Some(true), "auto-suspended");
    let st = tick(&w).await;
    let rpo = st.conditions.iter().find(|c| c.type_ == "RPOExceeded");
    assert_eq!(rpo.map(|c| c.reason.as_str()), Some("Suspended"), "{st:?}");
    assert_eq!(runs(&w).len(), 2, "no run after the destination took over");
    clock.advance(600);
    tick(&w).await;
    assert_eq!(runs(&w).len(), 2);
}
