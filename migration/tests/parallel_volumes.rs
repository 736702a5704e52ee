//! Volumes of one migration exported at once through the controller's transfer pool, under
//! its global limit: one volume fails for good, one is cut off half way by a controller
//! kill and resumes in the next controller, two go through. The limit is checked through
//! the pool's counters; every wait point is a pack brake the test lets off, never a timer.
//!
//! Leans on the API stand-in for the VolumeSnapshot and VolumeImport objects only; the
//! chunk stores and the folder transfer store are real.

mod common;

use common::{World, digest};
use ferry_migration::crd::{ItemStatus, MigrationStatus, VolumeInfo};
use ferry_migration::transfers::{Look, Phase, Transfers};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

const NS: &str = "shop";

fn volume<'a>(st: &'a MigrationStatus, claim: &str) -> &'a VolumeInfo {
    st.volumes
        .iter()
        .find(|v| v.persistent_volume_claim == claim)
        .unwrap_or_else(|| panic!("no volume {claim} in {st:?}"))
}

/// One reconcile of the migration, then the snapshotter and the destination's imports.
async fn pass(w: &World) -> MigrationStatus {
    let m = w.migration_object(NS, "m1");
    if let Err(e) = ferry_migration::runtime::pass::<ferry_migration::source::migrate::Migrations>(
        &w.src_ctx, &m,
    )
    .await
    {
        eprintln!("reconcile error (retried): {e}");
    }
    w.step_cluster_controllers().await;
    w.migration_status(NS, "m1")
}

/// Waits (yielding, no deadline of its own: the test runner's timeout is the guard) until
/// `done` holds.
async fn until(mut done: impl FnMut() -> bool) {
    while !done() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Chunks the job under `key` has made durable.
fn chunks_done(pool: &Transfers, key: &str) -> u64 {
    pool.progress(key).map_or(0, |p| p.snapshot().chunks_done)
}

#[tokio::test]
async fn four_volumes_export_at_once_under_the_limit_and_a_killed_one_resumes() {
    let mut w = World::new().await;
    // Two transfers at once in the whole controller; the migration would run four. One
    // chunk per pack, so an export has many packs to be stopped between.
    w.src_ctx.transfers = Arc::new(Transfers::new(2));
    w.src_ctx.volume_width = 4;
    w.src_ctx.tuning = ferry_transfer::Tuning {
        width: 4,
        pack_bytes: 64 << 10,
        packs_in_flight: 1,
        ..ferry_transfer::Tuning::default()
    };
    w.src_ctx.transfers.hold_after_packs(Some(1));
    w.pair(NS, "remote", true);
    w.src
        .seed(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}));
    let mut ids = std::collections::HashMap::new();
    for (i, claim) in ["a", "b", "c", "d"].iter().enumerate() {
        ids.insert(*claim, w.ferry_claim(NS, claim, 16, 40 + i as u64).await);
    }
    w.migration(
        NS,
        "m1",
        json!({"clusterPair": "remote", "namespaces": [NS], "groupSnapshot": false}),
    );
    let uid = w.migration_object(NS, "m1").metadata.uid.expect("uid");

    // First pass: four VolumeSnapshots; the snapshotter makes them.
    pass(&w).await;
    // Snapshot c is deleted from the chunk store behind Kubernetes' back: its export can
    // never succeed.
    let contents = w.src.all("snapshot.storage.k8s.io/volumesnapshotcontents");
    let handle_of = |claim: &str| {
        let vs = w
            .src
            .all("snapshot.storage.k8s.io/volumesnapshots")
            .into_iter()
            .find(|vs| vs["spec"]["source"]["persistentVolumeClaimName"] == claim)
            .expect("snapshot");
        let content = vs["status"]["boundVolumeSnapshotContentName"].clone();
        contents
            .iter()
            .find(|c| c["metadata"]["name"] == content)
            .and_then(|c| c["status"]["snapshotHandle"].as_str())
            .expect("handle")
            .to_string()
    };
    let key = |claim: &str| format!("{uid}/export/{}", handle_of(claim));
    w.src_store
        .delete_snapshot(&handle_of("c"))
        .await
        .expect("delete c's snapshot");

    // Second pass: all four exports submitted, two run (a and b, in order), two queue.
    let st = pass(&w).await;
    let pool = w.src_ctx.transfers.clone();
    assert_eq!(pool.running(), 2, "{st:?}");
    for claim in ["c", "d"] {
        assert!(
            matches!(pool.look(&key(claim)), Look::InFlight(v) if v.phase == Phase::Queued),
            "{claim} waits for a slot"
        );
        let reason = volume(&st, claim).reason.clone().unwrap_or_default();
        assert!(reason.contains("queued"), "{claim}: {reason}");
    }
    // a and b each made one pack durable and wait at the brake.
    until(|| chunks_done(&pool, &key("a")) == 1 && chunks_done(&pool, &key("b")) == 1).await;

    // a goes on to its end; its slot goes to c, which fails, then to d.
    pool.progress(&key("a")).expect("a").hold_after_packs(None);
    let mut st = pass(&w).await;
    while volume(&st, "c").status != ItemStatus::Failed
        || volume(&st, "a").destination_volume.is_none()
    {
        st = pass(&w).await;
    }
    assert_eq!(volume(&st, "a").status, ItemStatus::Successful, "{st:?}");
    let c = volume(&st, "c");
    assert!(
        c.reason.as_deref().unwrap_or_default().contains("export"),
        "{c:?}"
    );
    // d runs now and stops at its brake; once let off it ends too.
    until(|| chunks_done(&pool, &key("d")) == 1).await;
    pool.progress(&key("d")).expect("d").hold_after_packs(None);
    while volume(&st, "d").destination_volume.is_none() {
        st = pass(&w).await;
    }
    // b is still half way: one of its twelve data chunks is in the transfer store.
    assert!(!volume(&st, "b").exported, "{st:?}");
    assert_eq!(chunks_done(&pool, &key("b")), 1);
    assert_eq!(pool.peak(), 2, "never more than the limit at once");

    // The controller dies (its pool and every task in it go); a new one takes over.
    drop(pool);
    w.src_ctx.transfers = Arc::new(Transfers::new(2));
    let st = loop {
        let st = pass(&w).await;
        if st.finish_timestamp.is_some() {
            break st;
        }
    };

    // Per volume: a, b, d moved with their bytes; c failed; the migration failed for c and
    // copied no resources.
    assert_eq!(st.status, ItemStatus::Failed, "{st:?}");
    assert!(
        st.reason.as_deref().unwrap_or_default().contains("shop/c"),
        "{st:?}"
    );
    assert_eq!(volume(&st, "c").status, ItemStatus::Failed);
    for claim in ["a", "b", "d"] {
        let v = volume(&st, claim);
        assert_eq!(v.status, ItemStatus::Successful, "{v:?}");
        assert_eq!(
            digest(&w.dst_store, &w.destination_volume_id(v)).await,
            digest(&w.src_store, &ids[claim]).await,
            "{claim} arrived whole"
        );
    }
    // The resumed export wrote only what the killed one had not: one data chunk less than
    // a whole export of a volume of the same shape (random data, ~64 KiB stored a chunk).
    let (a, b) = (volume(&st, "a"), volume(&st, "b"));
    assert!(
        b.bytes_transferred + 60_000 < a.bytes_transferred,
        "resumed b wrote {} bytes, whole a {}",
        b.bytes_transferred,
        a.bytes_transferred
    );
    assert!(w.src_ctx.transfers.peak() <= 2);
}
