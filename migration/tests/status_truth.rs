//! Events and status that tell the truth, and purging that deletes only what the source no
//! longer has, against the in-memory API (standing in for a real server, which cannot run
//! here). Modelled as the real server has them: Events through `events.k8s.io/v1` (kube's
//! recorder creates one per series and patches the series on repeats), 403 Forbidden for a
//! kind the client may not list.

mod common;

use common::{FERRY_NS, World};
use ferry_migration::Ctx;
use ferry_migration::crd::ItemStatus;
use serde_json::json;

const NS: &str = "shop";

fn spec() -> serde_json::Value {
    json!({"clusterPair": "remote", "namespaces": [NS]})
}

/// The World's source context, but publishing Events.
fn with_events(w: &mut World) {
    let mut ctx = Ctx::new(
        w.src_ctx.client.clone(),
        w.src_store.clone(),
        FERRY_NS.into(),
        true,
    );
    ctx.connect = w.src_ctx.connect.clone();
    ctx.policy = w.src_ctx.policy.clone();
    ctx.poll = w.src_ctx.poll;
    ctx.clock = w.clock.clock();
    w.src_ctx = ctx;
}

/// Defect 7: each volume's Events are their own series, so the second volume's note is not
/// lost behind the first's.
#[tokio::test]
async fn each_volume_has_its_own_events() {
    let mut w = World::new().await;
    with_events(&mut w);
    w.pair(NS, "remote", true);
    w.shop(NS, 4).await;
    w.ferry_claim(NS, "logs", 3, 11).await;
    w.migration(NS, "m1", spec());
    let st = w.drive(NS, "m1").await;
    assert_eq!(st.status, ItemStatus::PartialSuccess, "{st:?}"); // the EBS claim is skipped
    let events = w.src.all("events.k8s.io/events");
    for reason in ["SnapshotCreated", "VolumeExported", "VolumeImported"] {
        let notes: Vec<String> = events
            .iter()
            .filter(|e| e["reason"] == reason)
            .map(|e| e["note"].as_str().unwrap_or_default().to_string())
            .collect();
        assert_eq!(notes.len(), 2, "{reason}: {notes:?}");
        assert!(
            notes.iter().any(|n| n.contains("shop/data")),
            "{reason}: {notes:?}"
        );
        assert!(
            notes.iter().any(|n| n.contains("shop/logs")),
            "{reason}: {notes:?}"
        );
    }
}

/// Defect 7: the summary gives the data's bytes to move (uncompressed, changed chunks only)
/// and the bytes actually sent to the transfer store, named as such; a second run moves and
/// sends only what changed.
#[tokio::test]
async fn the_summary_tells_logical_bytes_from_bytes_transferred() {
    let w = World::new().await;
    w.pair(NS, "remote", true);
    let id = w.shop(NS, 16).await;
    w.migration(NS, "m1", spec());
    let first = w.drive(NS, "m1").await.summary.expect("summary");
    assert!(first.total_bytes_migrated > 0);
    assert!(first.total_bytes_transferred > 0);
    // One chunk changes.
    let h = w.src_store.open_volume(&id).await.expect("open");
    h.write_at(0, &[9u8; 4096]).await.expect("write");
    h.flush().await.expect("flush");
    w.migration(NS, "m2", spec());
    let second = w.drive(NS, "m2").await.summary.expect("summary");
    assert_eq!(
        second.total_bytes_migrated,
        common::CHUNK,
        "one chunk changed"
    );
    assert!(first.total_bytes_migrated > 8 * common::CHUNK, "{first:?}");
    assert!(
        second.total_bytes_transferred < first.total_bytes_transferred / 4,
        "{second:?} vs {first:?}"
    );
}

/// Custom kinds the controller may not list are said in the status's warnings (and an
/// Event): their objects were not looked for. They are not skipped objects, so they do not
/// make the outcome a PartialSuccess (a failback listing every custom kind of the cluster
/// as Skipped made every failback one).
#[tokio::test]
async fn custom_kinds_it_may_not_list_are_a_warning_not_a_partial_success() {
    let w = World::new().await;
    w.pair(NS, "remote", true);
    w.shop(NS, 2).await;
    w.src.seed(json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "clusters.db.example.com"},
        "spec": {"group": "db.example.com", "scope": "Namespaced", "names": {"kind": "Cluster", "plural": "clusters"},
                 "versions": [{"name": "v1", "served": true, "storage": true}]}}));
    w.src.seed(json!({"apiVersion": "db.example.com/v1", "kind": "Cluster", "metadata": {"name": "pg", "namespace": NS}, "spec": {}}));
    w.src.forbid("db.example.com/clusters");
    // No claim of another driver: nothing else makes this run a partial one.
    w.src.remove("/persistentvolumeclaims", Some(NS), "cache");
    w.migration(NS, "m1", spec());
    let st = w.drive(NS, "m1").await;
    // Whether shop has clusters is not known (they could not be listed): a warning, not a
    // skipped object, so the outcome is not a PartialSuccess that says nothing.
    assert_eq!(st.status, ItemStatus::Successful, "{st:?}");
    assert!(st.resources.iter().all(|r| r.kind != "Cluster"), "{st:?}");
    let warning = st.warnings.join("; ");
    assert!(
        warning.contains("may not list clusters.db.example.com in namespace shop")
            && warning.contains("db.example.com/clusters"),
        "{warning}"
    );
    assert!(w.dst.all("db.example.com/clusters").is_empty());
}

/// Habit: purgeDeletedResources deletes only what the source no longer has. A claim the
/// source still has (skipped this time, its volume of another driver) stays with its data,
/// and counts stay within their totals.
#[tokio::test]
async fn purge_deletes_only_what_the_source_no_longer_has() {
    let w = World::new().await;
    w.pair(NS, "remote", true);
    w.shop(NS, 2).await;
    let migrated = json!({"ferry.dev/migrated": "true"});
    // An earlier migration brought these; the source still has "cache", not "old-settings".
    w.dst.seed(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "cache", "namespace": NS, "labels": migrated}, "spec": {}}));
    w.dst.seed(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "old-settings", "namespace": NS, "labels": migrated}, "data": {}}));
    // Not ferry's: never touched.
    w.dst.seed(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "local", "namespace": NS}, "data": {}}));
    w.migration(
        NS,
        "m1",
        json!({"clusterPair": "remote", "namespaces": [NS], "purgeDeletedResources": true}),
    );
    let st = w.drive(NS, "m1").await;
    assert!(
        w.dst.get("/configmaps", Some(NS), "old-settings").is_none(),
        "purged"
    );
    assert!(
        w.dst
            .get("/persistentvolumeclaims", Some(NS), "cache")
            .is_some(),
        "the source still has it"
    );
    assert!(w.dst.get("/configmaps", Some(NS), "local").is_some());
    let s = st.summary.expect("summary");
    assert_eq!(s.number_of_purged_resources, 1);
    assert!(
        s.number_of_migrated_resources <= s.total_number_of_resources,
        "{s:?}"
    );
}

/// Defect 7: while a step retries, the Migration's own reason says so (with the cause), and
/// the volume counts its attempts; once it passes, the reason is cleared.
#[tokio::test]
async fn a_retried_step_shows_on_the_migration() {
    let w = World::new().await;
    w.pair(NS, "remote", true);
    w.shop(NS, 2).await;
    w.migration(NS, "m1", spec());
    // Validate with the destination up, then take it down before the import is made.
    ferry_migration::runtime::pass::<ferry_migration::source::migrate::Migrations>(
        &w.src_ctx,
        &w.migration_object(NS, "m1"),
    )
    .await
    .expect("reconcile");
    w.dst.set_unreachable(true);
    for _ in 0..4 {
        w.step_cluster_controllers().await;
        let _ = ferry_migration::runtime::pass::<ferry_migration::source::migrate::Migrations>(
            &w.src_ctx,
            &w.migration_object(NS, "m1"),
        )
        .await;
    }
    let st = w.migration_status(NS, "m1");
    let reason = st.reason.clone().unwrap_or_default();
    assert!(reason.starts_with("retrying: PVC shop/data"), "{reason}");
    let v = st
        .volumes
        .iter()
        .find(|v| v.persistent_volume_claim == "data")
        .expect("volume");
    assert!(v.retry.as_ref().is_some_and(|r| r.attempt >= 1), "{v:?}");
    assert!(
        v.reason.as_deref().unwrap_or_default().contains("attempt"),
        "{v:?}"
    );
    w.dst.set_unreachable(false);
    let st = w.drive(NS, "m1").await;
    assert_eq!(st.status, ItemStatus::PartialSuccess);
    assert!(
        !st.reason.unwrap_or_default().starts_with("retrying"),
        "cleared once it passed"
    );
}

/// One retry policy: a permanent error (here the snapshot a VolumeSnapshotContent names is
/// gone from the chunk store, as a corrupt or missing source would be) fails the volume with
/// the reason at once instead of being retried forever.
#[tokio::test]
async fn a_missing_source_snapshot_fails_the_volume_instead_of_retrying() {
    let w = World::new().await;
    w.pair(NS, "remote", true);
    w.shop(NS, 2).await;
    w.migration(NS, "m1", spec());
    ferry_migration::runtime::pass::<ferry_migration::source::migrate::Migrations>(
        &w.src_ctx,
        &w.migration_object(NS, "m1"),
    )
    .await
    .expect("reconcile");
    w.step_cluster_controllers().await;
    // The snapshot the snapshotter made disappears from the store before the export.
    for vsc in w.src.all("snapshot.storage.k8s.io/volumesnapshotcontents") {
        let handle = vsc["status"]["snapshotHandle"].as_str().expect("handle");
        w.src_store.delete_snapshot(handle).await.expect("delete");
    }
    let st = w.drive(NS, "m1").await;
    assert_eq!(st.status, ItemStatus::Failed, "{st:?}");
    let v = st
        .volumes
        .iter()
        .find(|v| v.persistent_volume_claim == "data")
        .expect("volume");
    assert_eq!(v.status, ItemStatus::Failed);
    assert!(v.retry.is_none(), "not retried: {v:?}");
    assert!(
        v.reason.as_deref().unwrap_or_default().contains("export"),
        "{v:?}"
    );
}

/// A migration applied while its namespace on the destination is being deleted: whatever
/// it wrote there would go with the namespace, so it waits (saying why) until the namespace
/// is gone, then lands in a new one, and ends with its objects there. Before, it reported
/// Successful with nothing left.
#[tokio::test]
async fn a_migration_into_a_namespace_being_deleted_waits_for_it_to_go() {
    let w = World::new().await;
    w.pair(NS, "remote", true);
    w.shop(NS, 2).await;
    // The destination's namespace is being deleted (its controller still empties it).
    let mut ns = w.dst.get("/namespaces", None, NS).expect("namespace");
    ns["metadata"]["deletionTimestamp"] = json!("2026-12-01T00:00:00Z");
    ns["metadata"]["finalizers"] = json!(["kubernetes"]);
    w.dst.remove("/namespaces", None, NS);
    w.dst.seed(ns);
    w.migration(NS, "m1", spec());
    for _ in 0..6 {
        let m = w.migration_object(NS, "m1");
        if let Ok(Some(wait)) = ferry_migration::runtime::pass::<
            ferry_migration::source::migrate::Migrations,
        >(&w.src_ctx, &m)
        .await
        {
            w.clock.advance(wait);
        }
        w.step_cluster_controllers().await;
    }
    let st = w.migration_status(NS, "m1");
    assert!(st.finish_timestamp.is_none(), "{st:?}");
    assert!(
        st.reason.unwrap_or_default().contains(&format!(
            "namespace {NS} is being deleted on the destination"
        )),
        "the reason says why it waits"
    );
    // The namespace goes; the admin makes it again (its pair's binding with it).
    w.dst.remove("/namespaces", None, NS);
    w.dst
        .seed(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}));
    let st = w.drive(NS, "m1").await;
    assert_eq!(st.status, ItemStatus::PartialSuccess, "{st:?}"); // the EBS claim is skipped
    assert!(w.dst.get("/configmaps", Some(NS), "settings").is_some());
}

/// A pair whose status says Error from its last scheduled check, through which a Migration
/// has just checked the destination and found it ready: the pair's status says Ready at
/// once, not at its next check minutes later.
#[tokio::test]
async fn a_migration_that_checked_the_pair_live_refreshes_its_status() {
    let w = World::new().await;
    w.pair(NS, "remote", true);
    w.shop(NS, 2).await;
    w.src.set_status(
        "ferry.dev/clusterpairs",
        Some(NS),
        "remote",
        json!({"schedulerStatus": "Error", "schedulerReason": "destination API did not answer",
               "storageStatus": "Ready", "lastChecked": "2026-12-01T00:00:00Z"}),
    );
    w.migration(NS, "m1", spec());
    let m = w.migration_object(NS, "m1");
    ferry_migration::runtime::pass::<ferry_migration::source::migrate::Migrations>(&w.src_ctx, &m)
        .await
        .expect("pass");
    let pair = w
        .src
        .get("ferry.dev/clusterpairs", Some(NS), "remote")
        .expect("pair");
    assert_eq!(pair["status"]["schedulerStatus"], "Ready", "{pair}");
    assert!(pair["status"]["schedulerReason"].is_null(), "{pair}");
}

/// A re-import after the destination lost the volume (its namespace, claim and PV deleted):
/// the transfer store has every chunk, so the export copies nothing, but the destination
/// fetches the whole volume again, and the Migration says so (bytes imported), instead of
/// reporting that nothing moved.
#[tokio::test]
async fn a_reimport_reports_the_bytes_the_destination_fetched() {
    let w = World::new().await;
    w.pair(NS, "remote", true);
    w.shop(NS, 4).await;
    w.migration(NS, "m1", spec());
    let first = w.drive(NS, "m1").await;
    let data = first
        .volumes
        .iter()
        .find(|v| v.persistent_volume_claim == "data")
        .expect("data");
    assert!(data.bytes_copied > 0 && data.bytes_imported > 0, "{data:?}");
    // The destination loses it all: the claim, its PV and its volume.
    let id = w.destination_volume_id(data);
    let pv = data.destination_volume.clone().expect("pv");
    w.dst.remove("/persistentvolumeclaims", Some(NS), "data");
    w.dst.remove("/persistentvolumes", None, &pv);
    w.dst_store.delete_volume(&id).await.expect("delete");
    // Its chunks collected (two passes: condemned, then swept).
    w.dst_store.gc().await.expect("gc");
    w.dst_store.gc().await.expect("gc");
    w.migration(NS, "m2", spec());
    let second = w.drive(NS, "m2").await;
    let again = second
        .volumes
        .iter()
        .find(|v| v.persistent_volume_claim == "data")
        .expect("data");
    assert_eq!(
        again.bytes_copied, 0,
        "the transfer store had it all: {again:?}"
    );
    assert_eq!(again.bytes_imported, data.bytes_imported, "{again:?}");
    let summary = second.summary.expect("summary");
    assert_eq!(summary.total_bytes_migrated, 0);
    assert_eq!(summary.total_bytes_imported, data.bytes_imported);
}

/// One migration of a 16-chunk volume through a relay to moto's S3 server (one chunk a
/// pack); with `cut_after`, the link is cut once that many packs are stored, the export
/// fails and is retried, and the link comes back. Returns the volume's record and whether a
/// retry was seen.
async fn export_through(
    s3: &ferry_testkit::TestServer,
    bucket: &str,
    cut_after: Option<u64>,
) -> (ferry_migration::crd::VolumeInfo, bool) {
    let mut w = World::new().await;
    w.src_ctx.tuning = ferry_transfer::Tuning {
        width: 1,
        pack_bytes: 64 << 10,
        packs_in_flight: 1,
        ..ferry_transfer::Tuning::default()
    };
    let relay = common::relay::Relay::start(
        s3.endpoint()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port"),
    )
    .await;
    let mut settings = s3.bucket(bucket).await;
    settings.insert("endpoint".into(), relay.endpoint());
    w.pair_over(NS, "remote", &settings);
    w.src
        .seed(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}));
    w.ferry_claim(NS, "data", 16, 11).await;
    w.migration(
        NS,
        "m1",
        json!({"clusterPair": "remote", "namespaces": [NS], "groupSnapshot": false}),
    );
    let mut retried = false;
    if let Some(packs) = cut_after {
        let pool = w.src_ctx.transfers.clone();
        pool.hold_after_packs(Some(packs + 1));
        let pass = |w: &World| {
            let m = w.migration_object(NS, "m1");
            let ctx = w.src_ctx.clone();
            async move {
                let _ = ferry_migration::runtime::pass::<
                    ferry_migration::source::migrate::Migrations,
                >(&ctx, &m)
                .await;
            }
        };
        // Snapshot, then the export submitted.
        let mut progress = None;
        for _ in 0..20 {
            pass(&w).await;
            w.step_cluster_controllers().await;
            if let Some(k) = pool.keys("").into_iter().find(|k| k.contains("/export/")) {
                progress = pool.progress(&k);
                break;
            }
        }
        let progress = progress.expect("the export was submitted");
        // Wait (real time: the export runs in the controller's pool) for `packs` stored.
        for _ in 0..600 {
            if progress.snapshot().bytes_stored >= packs * (64 << 10) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(
            progress.snapshot().bytes_stored >= packs * (64 << 10),
            "{:?}",
            progress.snapshot()
        );
        relay.cut();
        pool.hold_after_packs(None);
        progress.hold_after_packs(None);
        for _ in 0..600 {
            pass(&w).await;
            let st = w.migration_status(NS, "m1");
            if st.volumes.iter().any(|v| v.retry.is_some()) {
                retried = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        relay.restore();
        // The retried export runs in the pool, in real time.
        for _ in 0..1200 {
            pass(&w).await;
            if w.migration_status(NS, "m1")
                .volumes
                .iter()
                .all(|v| v.exported)
            {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    let st = w.drive(NS, "m1").await;
    assert_eq!(st.status, ItemStatus::Successful, "{st:?}");
    let v = st
        .volumes
        .into_iter()
        .find(|v| v.persistent_volume_claim == "data")
        .expect("data");
    (v, retried)
}

/// An export cut half way and retried counts the bytes of every try: what the first try
/// stored is durable in the transfer store (the retry skips it), so the volume's
/// `bytesTransferred` and `bytesCopied` equal a clean run's, not only the last try's.
/// Relies on moto's S3 server behind a relay the test cuts (a real network cut).
#[tokio::test]
async fn a_retried_export_counts_the_bytes_of_every_try() {
    let Some(s3) = ferry_testkit::TestServer::start(ferry_testkit::Kind::S3).await else {
        return;
    };
    let (clean, _) = export_through(&s3, "clean", None).await;
    let (cut, retried) = export_through(&s3, "cut", Some(4)).await;
    assert!(retried, "the cut export was retried: {cut:?}");
    assert!(clean.bytes_transferred > 0, "{clean:?}");
    assert_eq!(
        cut.bytes_transferred, clean.bytes_transferred,
        "{cut:?} vs {clean:?}"
    );
    assert_eq!(cut.bytes_copied, clean.bytes_copied, "{cut:?} vs {clean:?}");
}
