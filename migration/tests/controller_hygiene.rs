//! What a real API server showed that an easy stand-in hid, against the in-memory API
//! (standing in for one, which cannot run here) with these behaviours modelled as the real
//! server has them: a watch event for every write, status writes included; JSON merge patch
//! removing a member only when it is sent as null; a resourceVersion in a patch as a
//! precondition (409).

mod common;

use common::World;
use ferry_migration::crd::{ClusterPair, ClusterPairStatus, PairState};
use ferry_migration::runtime::status::StatusWriter;
use ferry_migration::source::cluster_pair::{Pairs, recheck_after};

/// One pass over the pair: when to look again.
async fn reconcile(
    ctx: &ferry_migration::Ctx,
    p: &ClusterPair,
) -> ferry_migration::Result<Duration> {
    Ok(ferry_migration::runtime::pass::<Pairs>(ctx, p)
        .await?
        .unwrap_or_default())
}
use serde_json::json;
use std::time::Duration;

const NS: &str = "shop";

fn pair(w: &World) -> ClusterPair {
    serde_json::from_value(
        w.src
            .get("ferry.dev/clusterpairs", Some(NS), "remote")
            .expect("pair"),
    )
    .expect("parse")
}

fn status_writes(w: &World) -> usize {
    w.src
        .log()
        .iter()
        .filter(|l| l.method == "PATCH" && l.path.ends_with("/clusterpairs/remote/status"))
        .count()
}

/// Makes the pair's next check due, as time passing would.
fn age_last_check(w: &World) {
    let mut st = w
        .src
        .get("ferry.dev/clusterpairs", Some(NS), "remote")
        .expect("pair")["status"]
        .clone();
    st["lastChecked"] = json!("2000-01-01T00:00:00Z");
    w.src
        .set_status("ferry.dev/clusterpairs", Some(NS), "remote", st);
}

/// Defect 1: a pair whose destination is down was reconciled about 20 times a second, each
/// time dialling the destination, because its own status write came back as a watch event.
/// Here the write does make a watch event, and the reconcile it causes neither dials nor
/// writes; checks back off 30 s, 60 s, ... up to 5 minutes.
#[tokio::test]
async fn a_pair_that_is_not_ready_is_not_checked_in_a_loop() {
    let w = World::new().await;
    w.pair(NS, "remote", false);
    w.dst.set_unreachable(true);
    let wait = reconcile(&w.src_ctx, &pair(&w)).await.expect("reconcile");
    assert_eq!(wait, Duration::from_secs(30));
    let st = pair(&w).status.expect("status");
    assert_eq!(st.scheduler_status, PairState::Error);
    assert_eq!(st.failed_checks, 1);
    assert_eq!(status_writes(&w), 1);
    let events = w
        .src
        .watch_events("ferry.dev/clusterpairs", Some(NS), "remote");
    assert_eq!(
        events.last(),
        Some(&"MODIFIED"),
        "the status write is a watch event"
    );

    // The watch event brings the pair back at once, several times over.
    let dials = w.dst.log().len();
    for _ in 0..5 {
        let wait = reconcile(&w.src_ctx, &pair(&w)).await.expect("reconcile");
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
    }
    assert_eq!(
        w.dst.log().len(),
        dials,
        "the destination was dialled again"
    );
    assert_eq!(status_writes(&w), 1, "the status was written again");

    // Once due, it is checked again and backs off further.
    age_last_check(&w);
    let wait = reconcile(&w.src_ctx, &pair(&w)).await.expect("reconcile");
    assert_eq!(wait, Duration::from_secs(60));
    assert_eq!(pair(&w).status.expect("status").failed_checks, 2);
}

#[test]
fn pair_checks_back_off_exponentially_up_to_five_minutes() {
    let st = |n: u32, ready: bool| ClusterPairStatus {
        failed_checks: n,
        scheduler_status: if ready {
            PairState::Ready
        } else {
            PairState::Error
        },
        storage_status: PairState::Ready,
        ..Default::default()
    };
    let secs: Vec<u64> = (1..=7)
        .map(|n| recheck_after(&st(n, false)).as_secs())
        .collect();
    assert_eq!(secs, [30, 60, 120, 240, 300, 300, 300]);
    assert_eq!(recheck_after(&st(0, true)), Duration::from_secs(300));
    assert_eq!(
        recheck_after(&st(u32::MAX, false)),
        Duration::from_secs(300)
    );
}

/// Defect 2: once the destination answered again, the pair showed Ready with the old
/// "did not answer" reason still beside it, because the status was sent as a merge patch
/// that left the cleared field out (which keeps it).
#[tokio::test]
async fn a_cleared_reason_is_removed_from_the_object() {
    let w = World::new().await;
    w.pair(NS, "remote", false);
    w.dst.set_unreachable(true);
    reconcile(&w.src_ctx, &pair(&w)).await.expect("reconcile");
    let obj = w
        .src
        .get("ferry.dev/clusterpairs", Some(NS), "remote")
        .expect("pair");
    assert!(obj["status"]["schedulerReason"].is_string(), "{obj}");

    w.dst.set_unreachable(false);
    age_last_check(&w);
    reconcile(&w.src_ctx, &pair(&w)).await.expect("reconcile");
    let obj = w
        .src
        .get("ferry.dev/clusterpairs", Some(NS), "remote")
        .expect("pair");
    assert_eq!(obj["status"]["schedulerStatus"], "Ready");
    let status = obj["status"].as_object().expect("status");
    assert!(
        !status.contains_key("schedulerReason") && !status.contains_key("failedChecks"),
        "cleared fields stayed: {obj}"
    );
}

/// An older view never overwrites a newer one: a writer whose object changed since it was
/// read gets 409 Conflict and writes nothing.
#[tokio::test]
async fn a_status_write_from_an_older_view_is_refused() {
    let w = World::new().await;
    w.pair(NS, "remote", false);
    let seen = pair(&w);
    let mut writer = StatusWriter::new(&w.src.client(), &seen).expect("writer");
    // Someone else writes meanwhile.
    w.src.set_status(
        "ferry.dev/clusterpairs",
        Some(NS),
        "remote",
        json!({"schedulerStatus": "Ready", "storageStatus": "Ready"}),
    );
    let stale = ClusterPairStatus {
        scheduler_status: PairState::Error,
        scheduler_reason: Some("old view".into()),
        ..Default::default()
    };
    let e = writer.save(&stale).await.expect_err("conflict");
    assert_eq!(e.api_code(), Some(409), "{e}");
    assert_eq!(
        pair(&w).status.expect("status").scheduler_status,
        PairState::Ready
    );
    // Unchanged status: nothing is sent at all.
    let fresh = pair(&w);
    let mut writer = StatusWriter::new(&w.src.client(), &fresh).expect("writer");
    let before = w.src.log().len();
    assert!(
        !writer
            .save(&fresh.status.clone().expect("status"))
            .await
            .expect("save")
    );
    assert_eq!(w.src.log().len(), before);
}

/// Defect 7: 401 and 403 from the destination were reported as "did not answer" with a
/// debug dump; they name the status and what to fix.
#[test]
fn destination_refusals_say_what_to_fix() {
    let api = |code: u16, reason: &str| {
        ferry_migration::Error::Kube(kube::Error::Api(Box::new(
            kube::core::Status::failure("no", reason).with_code(code),
        )))
    };
    let unauthorized = ferry_migration::destination_problem(&api(401, "Unauthorized"));
    assert!(
        unauthorized.contains("401 Unauthorized") && unauthorized.contains("credentials"),
        "{unauthorized}"
    );
    let forbidden = ferry_migration::destination_problem(&api(403, "Forbidden"));
    assert!(
        forbidden.contains("403 Forbidden") && forbidden.contains("ferry-migration-destination"),
        "{forbidden}"
    );
    assert!(!forbidden.contains("did not answer") && !forbidden.contains("Status {"));
}
