//! Deleting ferry's resources mid-run, against the in-memory API (standing in for a real
//! server, which cannot run here), with finalizers modelled as the real server has them: a
//! DELETE of an object with finalizers only sets its deletionTimestamp; it goes when the
//! last finalizer is removed; none may be added meanwhile.

mod common;

use common::World;
use ferry_kubefake::Method;
use ferry_migration::crd::{ClusterPair, ItemStatus, Migration};
use ferry_migration::runtime::finalizer;
use serde_json::json;

const NS: &str = "shop";

fn migration(w: &World) -> Option<Migration> {
    w.src
        .get("ferry.dev/migrations", Some(NS), "m1")
        .map(|m| serde_json::from_value(m).expect("parse"))
}

fn pair(w: &World) -> Option<ClusterPair> {
    w.src
        .get("ferry.dev/clusterpairs", Some(NS), "remote")
        .map(|p| serde_json::from_value(p).expect("parse"))
}

fn delete(w: &World, plural: &str, name: &str) {
    let (code, body) = w.src.serve_one(
        &Method::DELETE,
        &format!("/apis/ferry.dev/v1alpha1/namespaces/{NS}/{plural}/{name}"),
        "",
        "",
        b"",
    );
    assert_eq!(code, 200, "{body}");
}

/// Deleting a Migration after its snapshot was taken and its import asked for, but before
/// the destination imported it: the snapshot and the unfinished VolumeImport are removed,
/// then the Migration goes.
#[tokio::test]
async fn deleting_a_migration_mid_run_removes_what_it_made() {
    let w = World::new().await;
    w.pair(NS, "remote", true);
    w.shop(NS, 2).await;
    w.migration(
        NS,
        "m1",
        json!({"clusterPair": "remote", "namespaces": [NS]}),
    );
    let ctx = &w.src_ctx;
    ferry_migration::runtime::pass::<ferry_migration::source::migrate::Migrations>(
        ctx,
        &migration(&w).expect("m"),
    )
    .await
    .expect("reconcile");
    assert!(finalizer::has(
        &migration(&w).expect("m"),
        finalizer::MIGRATION
    ));
    // The snapshotter makes the snapshot; the destination does not import yet.
    w.src
        .play_snapshotter(
            |volume, content| {
                let store = w.src_store.clone();
                async move {
                    store
                        .create_snapshot(&content, &volume, Default::default())
                        .await
                        .map(|s| s.id)
                        .map_err(|e| e.to_string())
                }
            },
            |_| async { Ok(()) },
        )
        .await
        .expect("snapshotter");
    ferry_migration::runtime::pass::<ferry_migration::source::migrate::Migrations>(
        ctx,
        &migration(&w).expect("m"),
    )
    .await
    .expect("reconcile");
    assert_eq!(w.dst.all("ferry.dev/volumeimports").len(), 1);
    assert_eq!(
        w.src.all("snapshot.storage.k8s.io/volumesnapshots").len(),
        1
    );

    delete(&w, "migrations", "m1");
    let marked = migration(&w).expect("kept while its finalizer is there");
    assert!(marked.metadata.deletion_timestamp.is_some());
    ferry_migration::runtime::pass::<ferry_migration::source::migrate::Migrations>(ctx, &marked)
        .await
        .expect("cleanup");
    assert!(
        w.src
            .all("snapshot.storage.k8s.io/volumesnapshots")
            .is_empty()
    );
    assert!(w.dst.all("ferry.dev/volumeimports").is_empty());
    assert!(migration(&w).is_none(), "gone once cleaned up");
    // Running the cleanup again (a retried reconcile) is harmless.
    ferry_migration::runtime::pass::<ferry_migration::source::migrate::Migrations>(ctx, &marked)
        .await
        .expect("again");
}

/// Deleting a ClusterPair that a running Migration uses waits until the migration ends.
#[tokio::test]
async fn deleting_a_pair_in_use_waits_for_its_migration() {
    let w = World::new().await;
    w.pair(NS, "remote", true);
    w.shop(NS, 2).await;
    ferry_migration::runtime::pass::<ferry_migration::source::cluster_pair::Pairs>(
        &w.src_ctx,
        &pair(&w).expect("pair"),
    )
    .await
    .expect("reconcile");
    assert!(finalizer::has(&pair(&w).expect("pair"), finalizer::PAIR));
    w.migration(
        NS,
        "m1",
        json!({"clusterPair": "remote", "namespaces": [NS]}),
    );
    ferry_migration::runtime::pass::<ferry_migration::source::migrate::Migrations>(
        &w.src_ctx,
        &migration(&w).expect("m"),
    )
    .await
    .expect("reconcile");

    delete(&w, "clusterpairs", "remote");
    ferry_migration::runtime::pass::<ferry_migration::source::cluster_pair::Pairs>(
        &w.src_ctx,
        &pair(&w).expect("pair"),
    )
    .await
    .expect("reconcile");
    assert!(pair(&w).is_some(), "kept while m1 runs");
    let st = w.drive(NS, "m1").await;
    assert_eq!(st.status, ItemStatus::PartialSuccess, "{st:?}");
    ferry_migration::runtime::pass::<ferry_migration::source::cluster_pair::Pairs>(
        &w.src_ctx,
        &pair(&w).expect("pair"),
    )
    .await
    .expect("reconcile");
    assert!(pair(&w).is_none(), "gone once no migration uses it");
}

/// Modelled as the real server: no finalizer may be added to an object being deleted.
#[test]
fn no_finalizer_is_added_to_an_object_being_deleted() {
    let api = ferry_kubefake::FakeApi::new();
    api.seed(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": NS, "finalizers": ["a"]}}));
    let path = format!("/api/v1/namespaces/{NS}/configmaps/c");
    assert_eq!(api.serve_one(&Method::DELETE, &path, "", "", b"").0, 200);
    let add = json!({"metadata": {"finalizers": ["a", "b"]}}).to_string();
    let (code, _) = api.serve_one(
        &Method::PATCH,
        &path,
        "",
        "application/merge-patch+json",
        add.as_bytes(),
    );
    assert_eq!(code, 422);
    let drop = json!({"metadata": {"finalizers": []}}).to_string();
    let (code, _) = api.serve_one(
        &Method::PATCH,
        &path,
        "",
        "application/merge-patch+json",
        drop.as_bytes(),
    );
    assert_eq!(code, 200);
    assert!(api.get("/configmaps", Some(NS), "c").is_none());
}

/// A Migration deleted while its import runs, through a pair whose account may not delete
/// VolumeImports on the destination (an admin bound a narrower role than the docs'): the
/// cleanup cannot remove the import, yet the Migration goes (a finalizer always finishes),
/// and a Warning Event on it names what was left and where, with what to do.
#[tokio::test]
async fn a_migration_goes_even_when_its_import_cannot_be_removed() {
    let mut w = World::new().await;
    // Events recorded through the API, as the controller does.
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
    w.pair(NS, "remote", true);
    w.shop(NS, 2).await;
    w.migration(
        NS,
        "m1",
        json!({"clusterPair": "remote", "namespaces": [NS]}),
    );
    // Validated, snapshotted, exported, and its import made on the destination, not yet
    // imported.
    for _ in 0..6 {
        if let Some(m) = migration(&w) {
            let _ = ferry_migration::runtime::pass::<ferry_migration::source::migrate::Migrations>(
                &w.src_ctx, &m,
            )
            .await;
        }
        common::play_snapshotter(&w.src, &w.src_store).await;
        if !w.dst.all("ferry.dev/volumeimports").is_empty() {
            break;
        }
    }
    let imports = w.dst.all("ferry.dev/volumeimports");
    assert_eq!(imports.len(), 1, "{:?}", w.migration_status(NS, "m1"));
    // Now the admin narrows the pair's role in shop: the destination's own, without delete
    // of VolumeImports.
    let mut narrow = w
        .dst
        .get(
            "rbac.authorization.k8s.io/clusterroles",
            None,
            "ferry-migration-destination-builtin",
        )
        .expect("role");
    for r in narrow["rules"].as_array_mut().expect("rules") {
        if r["resources"][0] == "volumeimports" {
            r["verbs"] = json!(["get", "list", "create"]);
        }
    }
    narrow["metadata"] = json!({"name": "narrow-destination"});
    w.dst.seed(narrow);
    w.dst.remove(
        "rbac.authorization.k8s.io/rolebindings",
        Some(NS),
        "pair-remote-ferry-migration-destination",
    );
    w.dst.bind(
        "narrow",
        "narrow-destination",
        &ferry_kubefake::Identity::service_account(NS, "pair-remote"),
        Some(NS),
    );

    let vi = imports[0]["metadata"]["name"]
        .as_str()
        .expect("name")
        .to_string();

    delete(&w, "migrations", "m1");
    let marked = migration(&w).expect("kept while its finalizer is there");
    ferry_migration::runtime::pass::<ferry_migration::source::migrate::Migrations>(
        &w.src_ctx, &marked,
    )
    .await
    .expect("cleanup");
    assert!(migration(&w).is_none(), "the Migration went");
    assert_eq!(
        w.dst.all("ferry.dev/volumeimports").len(),
        1,
        "the pair could not remove the import"
    );
    let notes: Vec<String> = w
        .src
        .all("events.k8s.io/events")
        .iter()
        .filter(|e| e["reason"] == "CleanupIncomplete" && e["type"] == "Warning")
        .filter_map(|e| e["note"].as_str().map(str::to_string))
        .collect();
    assert!(
        notes
            .iter()
            .any(|n| n.contains(&format!("{NS}/{vi}")) && n.contains("delete them there")),
        "{notes:?}"
    );
}
