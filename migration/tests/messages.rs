//! What a person reads when something is refused: reasons and Event notes built from an API
//! error or an object store's error are sentences (the API's or the service's code and
//! message, where, and what to fix), never a debug dump with headers and request ids, and a
//! refusal is said once. The API is the in-memory stand-in (a real API server cannot run
//! here); the object stores are the real S3, Azure Blob and GCS test servers on loopback.

mod common;

use common::World;
use ferry_kubefake::{Identity, base64};
use ferry_migration::crd::{ClusterPair, ItemStatus, PairState};
use ferry_testkit::{Kind, TestServer};
use serde_json::{Value, json};

const NS: &str = "shop";

/// Pieces of a debug dump that a reason must never carry.
const DUMP: [&str; 8] = [
    "Status {",
    "Some(Failure)",
    "ApiError",
    "Parts {",
    "headers",
    "request_id",
    "x-amzn-requestid",
    "x-ms-request-id",
];

fn assert_sentence(what: &str, text: &str) {
    for d in DUMP {
        assert!(!text.contains(d), "{what}: {d:?} in {text}");
    }
}

/// The World's source controller, publishing Events.
fn with_events(w: &mut World) {
    let mut ctx = ferry_migration::Ctx::new(
        w.src_ctx.client.clone(),
        w.src_store.clone(),
        common::FERRY_NS.into(),
        true,
    );
    ctx.connect = w.src_ctx.connect.clone();
    ctx.poll = w.src_ctx.poll;
    ctx.policy = w.src_ctx.policy.clone();
    ctx.clock = w.clock.clock();
    w.src_ctx = ctx;
}

fn pair(w: &World, name: &str) -> ClusterPair {
    serde_json::from_value(
        w.src
            .get("ferry.dev/clusterpairs", Some(NS), name)
            .expect("pair"),
    )
    .expect("parse")
}

/// A bucket (or Azure container) that does not exist, on each real object store: the pair
/// says `bucket X does not exist on <endpoint>: create it or fix bucket`, and so does a
/// Migration through it, which fails before anything is made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_is_named_with_where_and_what_to_do() {
    let mut ran = 0;
    for kind in [Kind::S3, Kind::Azblob, Kind::Gcs] {
        let Some(server) = TestServer::start(kind).await else {
            assert!(
                !ferry_testkit::servers_required(),
                "{kind:?} server missing (hack/install-test-servers.sh)"
            );
            continue;
        };
        ran += 1;
        let w = World::new().await;
        let mut settings = server.bucket("present").await;
        settings.insert("bucket".into(), "absent".into());
        w.pair_over(NS, "remote", &settings);
        let want = format!(
            "bucket absent does not exist on {}: create it or fix bucket",
            server.endpoint()
        );
        let st =
            ferry_migration::source::cluster_pair::check(&w.src_ctx, &pair(&w, "remote")).await;
        assert_eq!(st.storage_status, PairState::Error, "{kind:?}");
        let reason = st.storage_reason.unwrap_or_default();
        assert!(reason.contains(&want), "{kind:?}: {reason}");
        assert_sentence(&format!("{kind:?} pair"), &reason);

        w.shop(NS, 2).await;
        w.migration(
            NS,
            "m1",
            json!({"clusterPair": "remote", "namespaces": [NS]}),
        );
        let st = w.drive(NS, "m1").await;
        assert_eq!(st.status, ItemStatus::Failed, "{kind:?}");
        let reason = st.reason.unwrap_or_default();
        assert!(reason.contains(&want), "{kind:?}: {reason}");
        assert_sentence(&format!("{kind:?} migration"), &reason);
        assert!(
            w.src
                .all("snapshot.storage.k8s.io/volumesnapshots")
                .is_empty()
        );
    }
    assert!(ran > 0 || !ferry_testkit::servers_required());
}

/// The destination refuses the transfer Secret (403): the volume's reason and the
/// Migration's say the API's code and message and what to fix, without the client's dump of
/// the Status object.
#[tokio::test]
async fn an_api_refusal_is_a_sentence() {
    let mut w = World::new().await;
    with_events(&mut w);
    w.pair(NS, "remote", true);
    w.shop(NS, 2).await;
    w.dst.forbid("/secrets");
    w.migration(
        NS,
        "m1",
        json!({"clusterPair": "remote", "namespaces": [NS]}),
    );
    let st = w.drive(NS, "m1").await;
    assert_eq!(st.status, ItemStatus::Failed, "{st:?}");
    let data = st
        .volumes
        .iter()
        .find(|v| v.persistent_volume_claim == "data")
        .expect("data");
    let reason = data.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("answered 403 Forbidden") && reason.contains("bind"),
        "{reason}"
    );
    assert_sentence("volume", &reason);
    assert_sentence("migration", &st.reason.unwrap_or_default());
    let notes: Vec<Value> = w.src.all("events.k8s.io/events");
    assert!(!notes.is_empty(), "Events were published");
    for e in notes {
        assert_sentence("event", e["note"].as_str().unwrap_or_default());
    }
}

/// A tenant's pair naming the admin's Secret is refused for both of its sides with one
/// reason; the Migration through it and the pair's Event say that reason once, not twice.
#[tokio::test]
async fn a_refusal_is_said_once() {
    let mut w = World::new().await;
    with_events(&mut w);
    w.src.install_ferry_rbac(common::FERRY_NS);
    let alice = Identity::user("alice");
    w.src.bind("alice-edit", "edit", &alice, Some(NS));
    w.src.seed(json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "admin-secret", "namespace": common::FERRY_NS},
        "data": {"kubeconfig": base64(b"apiVersion: v1\nkind: Config\n")}}));
    let body = json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "ClusterPair",
        "metadata": {"name": "borrow", "namespace": NS},
        "spec": {"secretRef": {"name": "admin-secret", "namespace": common::FERRY_NS}}});
    let (code, out) = w.src.serve_one_as(
        &alice,
        &ferry_kubefake::Method::POST,
        &format!("/apis/ferry.dev/v1alpha1/namespaces/{NS}/clusterpairs"),
        "",
        "application/json",
        body.to_string().as_bytes(),
    );
    assert_eq!(code, 201, "{out}");
    let refusal = "a pair may name only a Secret in its own namespace";
    ferry_migration::runtime::pass::<ferry_migration::source::cluster_pair::Pairs>(
        &w.src_ctx,
        &pair(&w, "borrow"),
    )
    .await
    .expect("reconcile");
    let notes: Vec<String> = w
        .src
        .all("events.k8s.io/events")
        .iter()
        .filter_map(|e| e["note"].as_str().map(str::to_string))
        .filter(|n| n.contains(refusal))
        .collect();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(notes[0].matches(refusal).count(), 1, "{}", notes[0]);

    w.shop(NS, 2).await;
    w.migration(
        NS,
        "m1",
        json!({"clusterPair": "borrow", "namespaces": [NS]}),
    );
    let st = w.drive(NS, "m1").await;
    assert_eq!(st.status, ItemStatus::Failed);
    let reason = st.reason.unwrap_or_default();
    assert_eq!(reason.matches(refusal).count(), 1, "{reason}");
}
