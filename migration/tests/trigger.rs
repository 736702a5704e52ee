//! The `ferry.dev/migrate-to` annotation, against the in-memory API (standing in for a real
//! server): one annotation makes one Migration; the source object is never written.

mod common;

use common::{FERRY_NS, World};
use ferry_migration::trigger::{HANDLED_CONFIGMAP, handle, trigger_of};
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
        &ferry_migration::fake_api::Method::DELETE,
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
async fn a_pvc_annotation_migrates_that_claim_only_through_the_admin_namespace_pair() {
    let w = World::new().await;
    w.pair(FERRY_NS, "remote", true);
    let pvc = w.src.seed(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data", "namespace": "shop", "annotations": {"ferry.dev/migrate-to": "remote"}}, "spec": {}}));
    let made = handle(&w.src_ctx, &pvc)
        .await
        .expect("handle")
        .expect("created");
    assert!(
        made.starts_with(&format!("{FERRY_NS}/shop-data-to-remote-")),
        "{made}"
    );
    let m = &w.src.all("ferry.dev/migrations")[0];
    assert_eq!(m["spec"]["persistentVolumeClaims"], json!(["data"]));
    assert_eq!(m["spec"]["namespaces"], json!(["shop"]));
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
