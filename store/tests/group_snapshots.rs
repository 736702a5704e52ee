//! Group snapshots against a real local-folder store: one instant for every member under
//! concurrent writes, idempotent by name, refused inputs, deletion with the members, and a
//! create that died before its group record.

use ferry_store::{Error, Store, StoreConfig, StoreOptions, VolumeOptions, VolumeSpec};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const CHUNK: u32 = 4096;

async fn store(dir: &std::path::Path) -> Store {
    Store::open(
        &StoreConfig::fs(dir.to_string_lossy()),
        StoreOptions {
            gc_grace: Duration::ZERO,
            ..Default::default()
        },
    )
    .await
    .expect("store")
}

async fn volume(s: &Store, name: &str) -> String {
    s.create_volume(VolumeSpec {
        name: name.into(),
        capacity_bytes: 16 * CHUNK as u64,
        options: VolumeOptions {
            chunk_size: CHUNK,
            ..Default::default()
        },
        parameters: Default::default(),
        source: None,
    })
    .await
    .expect("volume")
    .id()
    .to_string()
}

/// The counter a snapshot holds at offset 0, read through a volume made from it.
async fn counter(s: &Store, snap: &str, n: usize) -> u64 {
    let v = s
        .create_volume(VolumeSpec {
            name: format!("read-{snap}-{n}"),
            capacity_bytes: 16 * CHUNK as u64,
            options: VolumeOptions {
                chunk_size: CHUNK,
                ..Default::default()
            },
            parameters: Default::default(),
            source: Some(ferry_store::Source::Snapshot(snap.into())),
        })
        .await
        .expect("from snapshot");
    let h = s.open_volume(v.id()).await.expect("open");
    let b = h.read_at(0, 8).await.expect("read");
    let out = u64::from_le_bytes(b[..8].try_into().expect("8 bytes"));
    drop(h);
    s.delete_volume(v.id()).await.expect("delete");
    out
}

/// Volumes in the concurrency test.
const VOLUMES: usize = 6;

/// A writer that, like a database writing its log before its data, writes counter k to the
/// first volume, fsyncs, then to the second, fsyncs, and so on, over and over. A group
/// snapshot at one instant holds counters that never rise along the volumes and span at
/// most 1; snapshots taken one after another show a later volume ahead of an earlier one
/// whenever the writer moved on between them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_snapshot_is_one_instant_under_concurrent_writes() {
    // In memory, so commits come fast enough to race the snapshots.
    let s = Store::open(
        &StoreConfig::memory(),
        StoreOptions {
            gc_grace: Duration::ZERO,
            ..Default::default()
        },
    )
    .await
    .expect("store");
    let mut ids = Vec::new();
    for n in 0..VOLUMES {
        ids.push(volume(&s, &format!("v{n}")).await);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (s, ids, stop) = (s.clone(), ids.clone(), stop.clone());
        tokio::spawn(async move {
            let mut handles = Vec::new();
            for id in &ids {
                handles.push(s.open_volume(id).await.expect("open"));
            }
            let mut k: u64 = 0;
            while !stop.load(Ordering::Relaxed) {
                k += 1;
                for h in &handles {
                    h.write_at(0, &k.to_le_bytes()).await.expect("write");
                    h.flush().await.expect("flush");
                }
                tokio::task::yield_now().await;
            }
            k
        })
    };
    let rounds = std::env::var("FERRY_GROUP_SNAPSHOT_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let mut seen = Vec::new();
    for n in 0..rounds {
        let (g, members) = s
            .create_group_snapshot(&format!("g{n}"), &ids, Default::default())
            .await
            .expect("group snapshot");
        assert_eq!(members.len(), VOLUMES);
        for (m, id) in members.iter().zip(&ids) {
            assert_eq!(&m.source_volume_id, id);
            assert_eq!(m.group_snapshot_id.as_deref(), Some(g.id.as_str()));
        }
        let mut c = Vec::new();
        for m in &members {
            c.push(counter(&s, &m.id, n).await);
        }
        assert!(
            c.windows(2).all(|w| w[0] >= w[1]) && c[0] - c[VOLUMES - 1] <= 1,
            "group {n} is not one instant: counters {c:?}"
        );
        seen.push(c[0]);
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let last = writer.await.expect("writer");
    assert!(last > 10, "the writer kept writing: {last}");
    assert!(
        seen.windows(2).any(|w| w[0] != w[1]),
        "snapshots were taken while the data changed: {seen:?}"
    );
}

#[tokio::test]
async fn group_snapshots_are_idempotent_refuse_bad_input_and_delete_with_their_members() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = store(dir.path()).await;
    let a = volume(&s, "a").await;
    let b = volume(&s, "b").await;
    let both = vec![a.clone(), b.clone()];
    let (g, m) = s
        .create_group_snapshot("g", &both, Default::default())
        .await
        .expect("create");
    let (g2, m2) = s
        .create_group_snapshot("g", &both, Default::default())
        .await
        .expect("again");
    assert_eq!(
        (g.id.clone(), &m),
        (g2.id.clone(), &m2),
        "same name, same group"
    );
    let e = s
        .create_group_snapshot("g", std::slice::from_ref(&a), Default::default())
        .await
        .expect_err("other volumes");
    assert!(matches!(e, Error::AlreadyExists(_)), "{e}");
    let e = s
        .create_group_snapshot("h", &[], Default::default())
        .await
        .expect_err("none");
    assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
    let e = s
        .create_group_snapshot("h", &[a.clone(), a.clone()], Default::default())
        .await
        .expect_err("twice");
    assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
    let e = s
        .create_group_snapshot(
            "h",
            &[a.clone(), "vol-00000000000000000000000000000000".into()],
            Default::default(),
        )
        .await
        .expect_err("missing");
    assert!(matches!(e, Error::NotFound(_)), "{e}");

    // A member cannot go alone; the group takes its members with it.
    let e = s.delete_snapshot(&m[0].id).await.expect_err("member");
    assert!(matches!(e, Error::Held(_)), "{e}");
    let (got, members) = s.get_group_snapshot(&g.id).await.expect("get");
    assert_eq!(got.snapshot_ids, vec![m[0].id.clone(), m[1].id.clone()]);
    assert_eq!(members.len(), 2);
    s.delete_group_snapshot(&g.id).await.expect("delete");
    for x in &m {
        assert!(matches!(
            s.get_snapshot(&x.id).await,
            Err(Error::NotFound(_))
        ));
    }
    assert!(matches!(
        s.get_group_snapshot(&g.id).await,
        Err(Error::NotFound(_))
    ));
    s.delete_group_snapshot(&g.id)
        .await
        .expect("again: nothing to do");
    s.delete_group_snapshot("not-a-group")
        .await
        .expect("unknown id");
    // The name is free again.
    let (g3, _) = s
        .create_group_snapshot("g", std::slice::from_ref(&b), Default::default())
        .await
        .expect("reuse");
    assert_ne!(g3.id, g.id);
}

/// A create that died after writing its members and before the group record leaves
/// members naming a group that does not exist; the retry replaces them.
#[tokio::test]
async fn a_group_create_that_died_before_its_record_is_finished_by_the_retry() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = store(dir.path()).await;
    let ids = vec![volume(&s, "a").await, volume(&s, "b").await];
    let (g, m) = s
        .create_group_snapshot("g", &ids, Default::default())
        .await
        .expect("create");
    // Stands for the death: the group record removed, the name claim and members left.
    std::fs::remove_file(dir.path().join(format!("group-snapshots/{}.json", g.id)))
        .expect("remove group record");
    let (again, m2) = s
        .create_group_snapshot("g", &ids, Default::default())
        .await
        .expect("retry");
    assert_eq!(again.id, g.id, "the name keeps its id");
    for old in &m {
        assert!(
            matches!(s.get_snapshot(&old.id).await, Err(Error::NotFound(_))),
            "stale member {} removed",
            old.id
        );
    }
    assert_eq!(m2.len(), 2);
    let (page, _) = s
        .list_snapshots(&Default::default(), None, 0)
        .await
        .expect("list");
    assert_eq!(page.len(), 2, "only the retry's members: {page:?}");
}
