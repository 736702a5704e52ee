//! The `ferry.dev/migrate-to` annotation, against the in-memory API (standing in for a real
//! server): one annotation makes one Migration; the source object is never written.

mod common;

use common::{FERRY_NS, World};
use ferry_migration::Ctx;
use ferry_migration::source::trigger::{HANDLED_CONFIGMAP, handle, trigger_of};
use serde_json::json;

#[tokio::test]
async fn a_namespace_annotation_makes_one_migration() {
    let w = World::new().await;
    w.pair("shop", "remote", true);
    let ns = w.src.seed(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop", "annotations": {"ferry.dev/migrate-to": "remote"}}}));
    let made = handle(&w.src_ctx, &ns)
        .await
        .expect("handle")
        .expect("created");
    assert!(made.starts_with("shop/shop-to-remote-"), "{made}");
    // A second look (a re-list, a restart) does nothing.
    assert_eq!(handle(&w.src_ctx, &ns).await.expect("handle"), None);
    let migs = w.src.all("ferry.dev/migrations");
    assert_eq!(migs.len(), 1);
    assert_eq!(migs[0]["spec"]["namespaces"], json!(["shop"]));
    assert_eq!(migs[0]["spec"]["clusterPair"], "remote");
    // Deleting the Migration does not start another: the trigger is recorded.
    let name = migs[0]["metadata"]["name"]
        .as_str()
        .expect("name")
        .to_string();
    w.src.serve_one(
        &ferry_kubefake::Method::DELETE,
        &format!("/apis/ferry.dev/v1alpha1/namespaces/shop/migrations/{name}"),
        "",
        "",
        b"",
    );
    assert_eq!(handle(&w.src_ctx, &ns).await.expect("handle"), None);
    assert!(
        w.src
            .get("/configmaps", Some(FERRY_NS), HANDLED_CONFIGMAP)
            .is_some()
    );
    // The annotated Namespace was only read.
    assert!(
        !w.source_writes()
            .iter()
            .any(|p| p.contains("/namespaces/shop") && !p.contains("/migrations")),
        "{:?}",
        w.source_writes()
    );
}

#[tokio::test]
async fn a_pvc_annotation_migrates_that_claim_only_with_its_namespace_pair() {
    let w = World::new().await;
    w.pair("shop", "remote", true);
    let pvc = w.src.seed(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data", "namespace": "shop", "annotations": {"ferry.dev/migrate-to": "remote"}}, "spec": {}}));
    let made = handle(&w.src_ctx, &pvc)
        .await
        .expect("handle")
        .expect("created");
    assert!(made.starts_with("shop/shop-data-to-remote-"), "{made}");
    let m = &w.src.all("ferry.dev/migrations")[0];
    assert_eq!(m["spec"]["persistentVolumeClaims"], json!(["data"]));
    assert_eq!(m["spec"]["namespaces"], json!(["shop"]));
}

/// The attack: a tenant annotates their claim with the name of a pair that exists only in
/// the controller's namespace, hoping the trigger borrows it (a Migration there may move any
/// namespace). It gets a Warning Event and nothing else.
#[tokio::test]
async fn a_pvc_annotation_never_borrows_a_pair_of_the_controller_namespace() {
    let mut w = World::new().await;
    w.src_ctx = Ctx::new(w.src.client(), w.src_store.clone(), FERRY_NS.into(), true);
    w.pair(FERRY_NS, "admin-remote", true);
    let pvc = w.src.seed(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data", "namespace": "shop", "annotations": {"ferry.dev/migrate-to": "admin-remote"}}, "spec": {}}));
    assert_eq!(handle(&w.src_ctx, &pvc).await.expect("handle"), None);
    assert!(
        w.src.all("ferry.dev/migrations").is_empty(),
        "no Migration anywhere"
    );
    assert!(
        w.src
            .get("/configmaps", Some(FERRY_NS), HANDLED_CONFIGMAP)
            .is_none(),
        "nothing recorded: a pair made later in shop can still be used"
    );
    let events = w.src.all("events.k8s.io/events");
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!(e["type"], "Warning");
    assert_eq!(e["reason"], "TriggerRefused");
    assert_eq!(e["regarding"]["name"], "data");
    assert!(
        e["note"]
            .as_str()
            .is_some_and(|n| n.contains("not in namespace shop")),
        "{e}"
    );
    // The only write was the Event.
    assert!(
        w.source_writes().iter().all(|p| p.contains("/events")),
        "{:?}",
        w.source_writes()
    );
}

#[test]
fn only_namespaces_and_claims_with_a_pair_trigger() {
    let base = |kind: &str, ann: serde_json::Value| json!({"kind": kind, "metadata": {"name": "x", "namespace": "n", "uid": "u", "annotations": ann}});
    assert!(trigger_of(&base("Namespace", json!({"ferry.dev/migrate-to": "p"}))).is_some());
    assert!(
        trigger_of(&base(
            "PersistentVolumeClaim",
            json!({"ferry.dev/migrate-to": "p"})
        ))
        .is_some()
    );
    assert!(trigger_of(&base("Namespace", json!({"ferry.dev/migrate-to": " "}))).is_none());
    assert!(trigger_of(&base("Namespace", json!({}))).is_none());
    assert!(trigger_of(&base("Deployment", json!({"ferry.dev/migrate-to": "p"}))).is_none());
}
