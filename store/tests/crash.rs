//! Crash safety of the chunk store's multi-step operations, on a local folder: each test
//! leaves the store as a process killed between two steps would, then checks that the next
//! call finishes the job (or ignores the debris) without losing anything.

use ferry_store::records::{self, NameRecord, RECORD_FORMAT};
use ferry_store::{Store, StoreConfig, StoreOptions, VolumeOptions, VolumeSpec, layout};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

fn spec(name: &str) -> VolumeSpec {
    VolumeSpec {
        name: name.into(),
        capacity_bytes: 1 << 20,
        options: VolumeOptions {
            chunk_size: 16 << 10,
            ..Default::default()
        },
        parameters: BTreeMap::new(),
        source: None,
    }
}

async fn store(dir: &std::path::Path) -> Store {
    Store::open(
        &StoreConfig::fs(dir.to_string_lossy()),
        StoreOptions::default(),
    )
    .await
    .unwrap()
}

/// Chunks stored, in packs or one object each.
async fn stored_chunks(s: &Store) -> usize {
    s.stored_blobs(ferry_store::Kind::Chunk).await.unwrap()
}

/// Makes a file look as if written `age` ago (a crash long past).
fn age_file(path: &std::path::Path, age: Duration) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(SystemTime::now() - age).unwrap();
}

#[tokio::test]
async fn create_volume_killed_after_claiming_the_name_is_finished_by_the_retry() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path()).await;
    let claimed = NameRecord {
        format: RECORD_FORMAT,
        name: "pvc-a".into(),
        id: "vol-0123456789abcdef0123456789abcdef".into(),
        request: serde_json::to_value(spec("pvc-a")).unwrap(),
    };
    s.raw_objects()
        .put_if_absent(
            &layout::volume_name("pvc-a"),
            records::encode(&claimed).unwrap(),
        )
        .await
        .unwrap();
    assert!(
        s.list_volumes(None, 0).await.unwrap().0.is_empty(),
        "not a volume yet"
    );
    let v = s.create_volume(spec("pvc-a")).await.unwrap();
    assert_eq!(
        v.id(),
        claimed.id,
        "the retry finishes the volume the first call named"
    );
    assert_eq!(s.list_volumes(None, 0).await.unwrap().0.len(), 1);
}

#[tokio::test]
async fn a_torn_name_record_is_reclaimed_once_old() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path()).await;
    let path = layout::volume_name("pvc-t");
    std::fs::create_dir_all(dir.path().join("names/volumes")).unwrap();
    std::fs::write(dir.path().join(&path), b"{\"form").unwrap();
    age_file(&dir.path().join(&path), Duration::from_secs(600));
    let v = s.create_volume(spec("pvc-t")).await.unwrap();
    assert_eq!(s.create_volume(spec("pvc-t")).await.unwrap().id(), v.id());
}

#[tokio::test]
async fn a_torn_generation_is_skipped_by_readers_and_writers() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path()).await;
    let v = s.create_volume(spec("pvc-g")).await.unwrap();
    let h = s.open_volume(v.id()).await.unwrap();
    h.write_at(0, b"first").await.unwrap();
    let g1 = h.flush().await.unwrap().generation.unwrap();
    // A writer died while writing generation g1 + 1: an empty file under its name.
    let torn = dir.path().join(layout::gen_path(v.id(), g1 + 1));
    std::fs::write(&torn, b"").unwrap();
    age_file(&torn, Duration::from_secs(600));
    assert_eq!(
        s.head(v.id()).await.unwrap().generation,
        g1,
        "readers skip it"
    );
    h.write_at(0, b"second").await.unwrap();
    let g = h.flush().await.unwrap().generation.unwrap();
    assert_eq!(
        g,
        g1 + 2,
        "the next commit takes the number after the torn one"
    );
    let fresh = s.open_volume(v.id()).await.unwrap();
    assert_eq!(fresh.read_at(0, 6).await.unwrap(), b"second");
}

#[tokio::test]
async fn a_young_unreadable_generation_is_a_commit_in_progress_not_debris() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path()).await;
    let v = s.create_volume(spec("pvc-y")).await.unwrap();
    let head = s.head(v.id()).await.unwrap();
    std::fs::write(
        dir.path()
            .join(layout::gen_path(v.id(), head.generation + 1)),
        b"",
    )
    .unwrap();
    let h = s.open_volume(v.id()).await.unwrap();
    h.write_at(0, b"x").await.unwrap();
    let err = h.flush().await.unwrap_err();
    assert!(matches!(err, ferry_store::Error::Conflict(_)), "{err}");
}

#[tokio::test]
async fn delete_volume_killed_half_way_is_finished_by_the_retry() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path()).await;
    let v = s.create_volume(spec("pvc-d")).await.unwrap();
    let snap = s
        .create_snapshot("snap-d", v.id(), BTreeMap::new())
        .await
        .unwrap();
    // Killed after the name and generations went, before the volume record did.
    s.raw_objects()
        .delete(&layout::volume_name("pvc-d"))
        .await
        .unwrap();
    for g in s.raw_objects().list(&layout::gens(v.id())).await.unwrap() {
        s.raw_objects().delete(&g.path).await.unwrap();
    }
    assert!(
        s.get_volume(v.id()).await.is_err(),
        "a half-deleted volume is not served"
    );
    assert!(s.list_volumes(None, 0).await.unwrap().0.is_empty());
    s.delete_volume(v.id()).await.unwrap();
    assert!(
        !s.raw_objects()
            .exists(&layout::volume(v.id()))
            .await
            .unwrap()
    );
    assert!(
        s.get_snapshot(&snap.id).await.is_ok(),
        "its snapshot is untouched"
    );
    let again = s.create_volume(spec("pvc-d")).await.unwrap();
    assert_ne!(again.id(), v.id(), "the freed name gets a new volume");
}

#[tokio::test]
async fn chunks_uploaded_without_a_commit_are_invisible_and_collected() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        gc_grace: Duration::ZERO,
        max_dirty_bytes: 32 << 10,
        hold_ttl: Duration::from_secs(1),
        ..Default::default()
    };
    let s = Store::open(&StoreConfig::fs(dir.path().to_string_lossy()), options)
        .await
        .unwrap();
    let v = s.create_volume(spec("pvc-u")).await.unwrap();
    {
        // Past the dirty limit, chunks are uploaded; the process dies before flush.
        let h = s.open_volume(v.id()).await.unwrap();
        h.write_at(0, &vec![3u8; 256 << 10]).await.unwrap();
    }
    assert!(stored_chunks(&s).await > 0);
    let h = s.open_volume(v.id()).await.unwrap();
    assert_eq!(
        h.read_at(0, 4).await.unwrap(),
        vec![0u8; 4],
        "nothing was committed"
    );
    // The dead writer's GC hold still names them until it expires.
    s.gc().await.unwrap();
    s.gc().await.unwrap();
    assert!(
        stored_chunks(&s).await > 0,
        "a live hold keeps what its writer uploaded"
    );
    // Nobody refreshes the hold once its writer is gone: past its lifetime it is dead.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    s.gc().await.unwrap();
    s.gc().await.unwrap();
    assert_eq!(stored_chunks(&s).await, 0, "debris collected");
}

/// Commits prune older generations; a reader that lists the generations and then reads one
/// a concurrent commit pruned must list again, never call the volume missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_volume_read_while_commits_prune_is_never_missing() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path()).await;
    let v = s.create_volume(spec("pvc-h")).await.unwrap();
    let writer = {
        let (s, id) = (s.clone(), v.id().to_string());
        tokio::spawn(async move {
            for _ in 0..300 {
                let head = s.head(&id).await.unwrap();
                s.commit(&head, head.root, head.size_bytes).await.unwrap();
            }
        })
    };
    let mut reads = 0;
    while !writer.is_finished() {
        let r = s.head(v.id()).await;
        assert!(
            r.is_ok(),
            "read {reads}: an existing volume reported as {r:?}"
        );
        reads += 1;
    }
    writer.await.unwrap();
    assert!(reads > 0);
}

/// The same race made certain: every generation the listing names is gone when read (a
/// dangling link stands in for a file pruned between the listing and the read). The volume
/// has a live record, so the answer is "try again", never NOT_FOUND.
#[tokio::test]
async fn generations_pruned_between_listing_and_reading_are_not_a_missing_volume() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path()).await;
    let v = s.create_volume(spec("pvc-p")).await.unwrap();
    let gens = dir.path().join(layout::gens(v.id()));
    for g in std::fs::read_dir(&gens).unwrap() {
        std::fs::remove_file(g.unwrap().path()).unwrap();
    }
    for g in [7u64, 8] {
        let name = dir.path().join(layout::gen_path(v.id(), g));
        std::os::unix::fs::symlink(dir.path().join("pruned"), name).unwrap();
    }
    match s.head(v.id()).await {
        Err(ferry_store::Error::NotFound(m)) => panic!("reported missing: {m}"),
        Err(ferry_store::Error::Unavailable(m)) => assert!(m.contains("try again"), "{m}"),
        other => panic!("unexpected: {other:?}"),
    }
}
