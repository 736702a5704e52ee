//! SchedulePolicy: a Stork policy ports by changing its apiVersion, and the controller's
//! verdict names what is wrong with a bad one (never a silent default), against the
//! stand-in API (which models the status subresource, merge-patch null deletes and a watch
//! event per write, like the real server).

mod common;

use common::World;
use ferry_migration::crd::{SchedulePolicy, SchedulePolicyStatus};
use ferry_migration::source::schedule_policy::Policies;

async fn reconcile(
    ctx: &ferry_migration::Ctx,
    p: &SchedulePolicy,
) -> ferry_migration::Result<Option<std::time::Duration>> {
    ferry_migration::runtime::pass::<Policies>(ctx, p).await
}
use serde_json::json;

fn policy(name: &str, body: serde_json::Value) -> serde_json::Value {
    json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "SchedulePolicy",
        "metadata": {"name": name}, "policy": body})
}

fn read(w: &World, name: &str) -> SchedulePolicy {
    serde_json::from_value(
        w.src
            .get("ferry.dev/schedulepolicies", None, name)
            .expect("policy"),
    )
    .expect("parses")
}

#[test]
fn a_stork_schedule_policy_parses_after_changing_api_version() {
    let yaml = r#"
apiVersion: ferry.dev/v1alpha1
kind: SchedulePolicy
metadata:
  name: testpolicy
policy:
  interval:
    intervalMinutes: 1
    retain: 5
  daily:
    time: "10:14PM"
    retain: 3
  weekly:
    day: "Thursday"
    time: "10:13PM"
  monthly:
    date: 14
    time: "8:05PM"
    retain: 2
"#;
    let p: SchedulePolicy = serde_yaml::from_str(yaml).expect("parses");
    let checked = p.policy.checked().expect("valid");
    let kinds: Vec<_> = checked.iter().map(|c| (c.slot.kind(), c.retain)).collect();
    assert_eq!(
        kinds,
        [("interval", 5), ("daily", 3), ("weekly", 2), ("monthly", 2)],
        "weekly's retain defaults to 2"
    );
}

#[tokio::test]
async fn a_bad_policy_gets_a_reason_naming_its_field_and_a_good_one_is_valid() {
    let w = World::new().await;
    w.src
        .seed(policy("nightly", json!({"daily": {"time": "25:00"}})));
    w.src.seed(policy(
        "hourly",
        json!({"interval": {"intervalMinutes": 60}}),
    ));
    w.src.seed(policy("empty", json!({})));
    w.src
        .seed(policy("zero", json!({"interval": {"intervalMinutes": 0}})));
    w.src.seed(policy(
        "monthly",
        json!({"monthly": {"date": 32, "time": "8:05PM"}}),
    ));
    for name in ["nightly", "hourly", "empty", "zero", "monthly"] {
        reconcile(&w.src_ctx, &read(&w, name))
            .await
            .expect("reconcile");
    }
    let reason = |name: &str| {
        read(&w, name)
            .status
            .and_then(|s| s.reason)
            .unwrap_or_default()
    };
    assert!(
        reason("nightly").starts_with("policy.daily.time:"),
        "{}",
        reason("nightly")
    );
    assert!(reason("nightly").contains("22:30"), "says what to write");
    assert!(
        reason("empty").contains("names no type"),
        "{}",
        reason("empty")
    );
    assert!(
        reason("zero").contains("intervalMinutes is 0"),
        "{}",
        reason("zero")
    );
    assert!(
        reason("monthly").starts_with("policy.monthly.date:"),
        "{}",
        reason("monthly")
    );
    assert_eq!(
        read(&w, "hourly").status,
        Some(SchedulePolicyStatus {
            valid: Some("True".into()),
            reason: None
        })
    );

    // Fixed: the verdict turns valid and the old reason is removed (merge patch sends null).
    let mut fixed = read(&w, "nightly");
    fixed.policy.daily.as_mut().expect("daily").time = "10:30PM".into();
    let mut v = w
        .src
        .get("ferry.dev/schedulepolicies", None, "nightly")
        .expect("policy");
    v["policy"] = serde_json::to_value(&fixed.policy).expect("json");
    let client = w.src.client();
    let api: kube::Api<SchedulePolicy> = kube::Api::all(client);
    api.replace(
        "nightly",
        &Default::default(),
        &serde_json::from_value(v).expect("policy"),
    )
    .await
    .expect("replace");
    reconcile(&w.src_ctx, &read(&w, "nightly"))
        .await
        .expect("reconcile");
    let st = read(&w, "nightly").status.expect("status");
    assert_eq!(st.valid.as_deref(), Some("True"));
    assert_eq!(st.reason, None, "the old reason is gone");

    // A reconcile that finds nothing to change writes nothing (no status write, so no watch
    // event, so no loop).
    let before = w.src.log().iter().filter(|l| l.method != "GET").count();
    reconcile(&w.src_ctx, &read(&w, "nightly"))
        .await
        .expect("reconcile");
    let after = w.src.log().iter().filter(|l| l.method != "GET").count();
    assert_eq!(before, after);
}
