//! One behaviour suite for the chunk store, run against every backend: memory, a local
//! folder, and real S3 (moto), Azure Blob (Azurite) and GCS (fake-gcs-server) servers on
//! 127.0.0.1. Each case gets its own store prefix; the server is stopped at the end.

use ferry_store::{
    Error, Hash, SnapshotFilter, Source, Store, StoreConfig, StoreOptions, VolumeOptions,
    VolumeSpec, layout,
};
use ferry_testkit::{Kind, TestServer};
use rand::{Rng, RngCore, SeedableRng, rngs::StdRng};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

type Case = fn(Store) -> Pin<Box<dyn Future<Output = ()>>>;

macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        const CASES: &[(&str, Case)] = &[$((stringify!($name), |s| Box::pin($name(s)))),*];
    };
}

cases!(
    round_trip_at_unaligned_offsets,
    snapshot_isolation,
    clone_independence,
    concurrent_committers_exactly_one_wins,
    gc_never_removes_reachable_data,
    corrupted_chunk_is_detected,
    a_root_reads_back_whole_or_names_what_is_damaged,
    zero_chunks_are_never_stored,
    names_map_to_ids_idempotently,
    deleting_a_volume_keeps_its_snapshots,
    identical_content_is_stored_once,
    listings_paginate,
    expansion_moves_only_the_size,
    concurrent_creates_of_one_name_give_one_volume,
);

/// Cases that need the server to enforce create-if-absent.
const NEED_CAS: &[&str] = &[
    "concurrent_committers_exactly_one_wins",
    "concurrent_creates_of_one_name_give_one_volume",
    "expansion_moves_only_the_size",
];

/// Does the server refuse a second create-if-absent of one key? (fake-gcs-server does not
/// enforce `ifGenerationMatch=0`; real GCS does.)
async fn enforces_create_if_absent(store: &Store) -> bool {
    let o = store.raw_objects();
    o.put_if_absent("probe/cas", b"1".to_vec()).await.unwrap();
    !o.put_if_absent("probe/cas", b"2".to_vec()).await.unwrap()
}

fn options() -> StoreOptions {
    StoreOptions {
        gc_grace: Duration::ZERO,
        max_dirty_bytes: 256 << 10,
        ..Default::default()
    }
}

async fn run_suite(make: impl Fn(&str) -> StoreConfig) {
    for (name, case) in CASES {
        let store = Store::open(&make(name), options())
            .await
            .expect("open store");
        if NEED_CAS.contains(name) && !enforces_create_if_absent(&store).await {
            eprintln!("SKIP case {name}: this server does not enforce create-if-absent");
            continue;
        }
        eprintln!("case {name}");
        case(store).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory() {
    // Each case opens its own in-memory operator, so cases do not see each other.
    run_suite(|_| StoreConfig::memory()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_folder() {
    let dir = tempfile::tempdir().unwrap();
    run_suite(|case| StoreConfig::fs(dir.path().join(case).to_string_lossy())).await;
}

async fn on_server(kind: Kind) {
    let Some(server) = TestServer::start(kind).await else {
        return;
    };
    let params = server.bucket("ferry-suite").await;
    run_suite(|case| {
        let mut p = params.clone();
        p.insert("root".into(), format!("/{case}/"));
        StoreConfig::from_params(&p).expect("server settings")
    })
    .await;
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_moto() {
    on_server(Kind::S3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_blob_azurite() {
    on_server(Kind::Azblob).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcs_fake_gcs_server() {
    on_server(Kind::Gcs).await;
}

// ------------------------------------------------------------------------------- helpers

fn spec(name: &str, capacity: u64, chunk: u32, source: Option<Source>) -> VolumeSpec {
    VolumeSpec {
        name: name.to_string(),
        capacity_bytes: capacity,
        options: VolumeOptions {
            chunk_size: chunk,
            ..Default::default()
        },
        parameters: BTreeMap::new(),
        source,
    }
}

/// Mixed content: text that compresses, random bytes that do not.
fn content(rng: &mut StdRng, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    if rng.random_bool(0.5) {
        rng.fill_bytes(&mut v);
    } else {
        for (i, b) in v.iter_mut().enumerate() {
            *b = b"row,ferry,12345\n"[i % 16];
        }
    }
    v
}

async fn read_all(store: &Store, id: &str) -> Vec<u8> {
    let h = store.open_volume(id).await.unwrap();
    let size = h.size().await;
    h.read_at(0, size as usize).await.unwrap()
}

async fn write_flush(store: &Store, id: &str, offset: u64, data: &[u8]) {
    let h = store.open_volume(id).await.unwrap();
    h.write_at(offset, data).await.unwrap();
    h.flush().await.unwrap();
}

/// Distinct blobs stored (chunks for `layout::CHUNKS`, pages for `layout::TREES`), in packs
/// or one object each.
async fn count(store: &Store, dir: &str) -> usize {
    let kind = if dir == layout::TREES {
        ferry_store::Kind::Page
    } else {
        ferry_store::Kind::Chunk
    };
    store.stored_blobs(kind).await.unwrap()
}

// --------------------------------------------------------------------------------- cases

async fn round_trip_at_unaligned_offsets(store: Store) {
    let size = 300 * 1024 + 123;
    let v = store
        .create_volume(spec("rt", size, 16 << 10, None))
        .await
        .unwrap();
    let h = store.open_volume(v.id()).await.unwrap();
    let mut shadow = vec![0u8; size as usize];
    let mut rng = StdRng::seed_from_u64(7);
    for i in 0..40 {
        let len = rng.random_range(1..40_000usize);
        let off = rng.random_range(0..size - len as u64);
        let data = content(&mut rng, len);
        h.write_at(off, &data).await.unwrap();
        shadow[off as usize..off as usize + len].copy_from_slice(&data);
        if i % 10 == 9 {
            h.flush().await.unwrap();
        }
        // Reads see unflushed writes too.
        let got = h.read_at(off.saturating_sub(100), len + 100).await.unwrap();
        assert_eq!(
            got,
            &shadow[off.saturating_sub(100) as usize..off as usize + len]
        );
    }
    h.flush().await.unwrap();
    assert_eq!(
        read_all(&store, v.id()).await,
        shadow,
        "fresh handle reads what was flushed"
    );
    let err = h.read_at(size - 10, 11).await.unwrap_err();
    assert!(matches!(err, Error::OutOfRange(_)), "{err}");
    assert!(matches!(
        h.write_at(size, b"x").await.unwrap_err(),
        Error::OutOfRange(_)
    ));
}

async fn snapshot_isolation(store: Store) {
    let v = store
        .create_volume(spec("iso", 256 << 10, 16 << 10, None))
        .await
        .unwrap();
    write_flush(&store, v.id(), 1000, &[1u8; 50_000]).await;
    let before = read_all(&store, v.id()).await;
    let snap = store
        .create_snapshot("iso-snap", v.id(), BTreeMap::new())
        .await
        .unwrap();
    write_flush(&store, v.id(), 20_000, &[2u8; 100_000]).await;
    let clone = store
        .create_volume(spec(
            "iso-restore",
            256 << 10,
            16 << 10,
            Some(Source::Snapshot(snap.id.clone())),
        ))
        .await
        .unwrap();
    assert_eq!(
        read_all(&store, clone.id()).await,
        before,
        "snapshot kept the old content"
    );
    assert_ne!(read_all(&store, v.id()).await, before, "volume moved on");
}

async fn clone_independence(store: Store) {
    let v = store
        .create_volume(spec("orig", 128 << 10, 16 << 10, None))
        .await
        .unwrap();
    write_flush(&store, v.id(), 0, &[5u8; 128 << 10]).await;
    let c = store
        .create_volume(spec(
            "clone",
            128 << 10,
            16 << 10,
            Some(Source::Volume(v.id().into())),
        ))
        .await
        .unwrap();
    assert_eq!(
        c.head.root,
        store.head(v.id()).await.unwrap().root,
        "a clone copies the root"
    );
    write_flush(&store, c.id(), 10, b"clone-only").await;
    write_flush(&store, v.id(), 50_000, b"original-only").await;
    let vo = read_all(&store, v.id()).await;
    let co = read_all(&store, c.id()).await;
    assert_eq!(&vo[10..20], &[5u8; 10]);
    assert_eq!(&co[10..20], b"clone-only");
    assert_eq!(&co[50_000..50_013], &[5u8; 13]);
    assert_eq!(&vo[50_000..50_013], b"original-only");
}

async fn concurrent_committers_exactly_one_wins(store: Store) {
    let v = store
        .create_volume(spec("race", 64 << 10, 16 << 10, None))
        .await
        .unwrap();
    // Raw compare-and-swap: eight writers from one base generation.
    let base = store.head(v.id()).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..8u8 {
        let (s, b) = (store.clone(), base.clone());
        tasks.push(tokio::spawn(async move {
            s.commit(&b, Hash::of(&[i]), b.size_bytes).await
        }));
    }
    let mut wins = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => wins += 1,
            Err(Error::Conflict(_)) => {}
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert_eq!(wins, 1, "exactly one committer wins");
    // Two handles that both read generation N: the second flush loses.
    let v = store
        .create_volume(spec("race2", 64 << 10, 16 << 10, None))
        .await
        .unwrap();
    let a = store.open_volume(v.id()).await.unwrap();
    let b = store.open_volume(v.id()).await.unwrap();
    a.write_at(0, b"aaaa").await.unwrap();
    b.write_at(0, b"bbbb").await.unwrap();
    a.flush().await.unwrap();
    assert!(matches!(b.flush().await.unwrap_err(), Error::Conflict(_)));
    assert_eq!(&read_all(&store, v.id()).await[..4], b"aaaa");
}

async fn gc_never_removes_reachable_data(store: Store) {
    let mut rng = StdRng::seed_from_u64(11);
    let v = store
        .create_volume(spec("gc", 512 << 10, 16 << 10, None))
        .await
        .unwrap();
    let first = content(&mut rng, 512 << 10);
    write_flush(&store, v.id(), 0, &first).await;
    let snap = store
        .create_snapshot("gc-snap", v.id(), BTreeMap::new())
        .await
        .unwrap();
    let mut second = first.clone();
    let patch = content(&mut rng, 100_000);
    second[5_000..105_000].copy_from_slice(&patch);
    write_flush(&store, v.id(), 5_000, &patch).await;
    // More generations, so old ones get pruned.
    for i in 0..3u8 {
        write_flush(&store, v.id(), 400_000, &[i + 1; 10]).await;
        second[400_000..400_010].copy_from_slice(&[i + 1; 10]);
    }
    let throwaway = store
        .create_volume(spec("gc-tmp", 64 << 10, 16 << 10, None))
        .await
        .unwrap();
    write_flush(&store, throwaway.id(), 0, &content(&mut rng, 64 << 10)).await;
    store.delete_volume(throwaway.id()).await.unwrap();
    let chunks_before = count(&store, layout::CHUNKS).await;

    let r1 = store.gc().await.unwrap();
    assert!(r1.condemned > 0, "garbage is condemned first: {r1:?}");
    assert_eq!(r1.deleted, 0, "nothing is deleted by a single run");
    let r2 = store.gc().await.unwrap();
    assert!(r2.deleted > 0, "the second run deletes: {r2:?}");
    assert!(count(&store, layout::CHUNKS).await < chunks_before);

    // Everything reachable still reads back, from a cold cache.
    let cold = Store::with_objects(store.raw_objects().clone(), options());
    assert_eq!(read_all(&cold, v.id()).await, second);
    let restored = cold
        .create_volume(spec(
            "gc-restore",
            512 << 10,
            16 << 10,
            Some(Source::Snapshot(snap.id)),
        ))
        .await
        .unwrap();
    assert_eq!(read_all(&cold, restored.id()).await, first);
}

/// Damages the stored frame of blob `h` in place (the last byte of its frame, in its pack
/// or its own object). Returns the object's path.
async fn flip_last_byte(store: &Store, kind: ferry_store::Kind, h: &Hash) -> String {
    let (path, off, len) = store.blob_location(kind, h).await.unwrap().expect("stored");
    let mut blob = store
        .raw_objects()
        .get(&path)
        .await
        .unwrap()
        .expect("stored");
    blob[(off + len - 1) as usize] ^= 0xff;
    store.raw_objects().put(&path, blob).await.unwrap();
    path
}

/// Removes blob `h` from the store (its object, or its entry in its pack).
async fn remove_blob(store: &Store, kind: ferry_store::Kind, h: &Hash) {
    store.drop_blob(kind, h).await.unwrap();
}

async fn corrupted_chunk_is_detected(store: Store) {
    let v = store
        .create_volume(spec("bad", 64 << 10, 16 << 10, None))
        .await
        .unwrap();
    write_flush(&store, v.id(), 0, &[9u8; 16 << 10]).await;
    let h = Hash::of(&[9u8; 16 << 10]);
    flip_last_byte(&store, ferry_store::Kind::Chunk, &h).await;
    let cold = Store::with_objects(store.raw_objects().clone(), options());
    let err = cold
        .open_volume(v.id())
        .await
        .unwrap()
        .read_at(0, 100)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    assert!(
        err.to_string().contains(&h.to_hex()),
        "the error names the chunk: {err}"
    );
    remove_blob(&store, ferry_store::Kind::Chunk, &h).await;
    let cold = Store::with_objects(store.raw_objects().clone(), options());
    let err = cold
        .open_volume(v.id())
        .await
        .unwrap()
        .read_at(0, 100)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::MissingChunk(x) if x == h), "{err}");
}

async fn a_root_reads_back_whole_or_names_what_is_damaged(store: Store) {
    let v = store
        .create_volume(spec("check", 1 << 20, 16 << 10, None))
        .await
        .unwrap();
    // Eight chunks, two of them alike, and holes between.
    for (i, byte) in [1u8, 2, 3, 1, 4, 5, 6, 7].iter().enumerate() {
        write_flush(&store, v.id(), i as u64 * (32 << 10), &[*byte; 16 << 10]).await;
    }
    let root = store.head(v.id()).await.unwrap().root;
    let pages_only = store.check_root(root, false).await.unwrap();
    // One page a level for a volume this small.
    assert_eq!(pages_only.pages, 4);
    assert_eq!(pages_only.chunk_refs, 8);
    assert_eq!(pages_only.chunks_read, 0);
    let whole = store.check_root(root, true).await.unwrap();
    assert_eq!(
        whole.chunks_read, 7,
        "a chunk named twice in one page is read once"
    );
    assert!(whole.chunk_bytes_read > 0);
    assert_eq!(store.check_root(Hash::ZERO, true).await.unwrap().pages, 0);

    // A damaged chunk fails the chunk check, naming it, and not the page check.
    let h = Hash::of(&[5u8; 16 << 10]);
    let cold = Store::with_objects(store.raw_objects().clone(), options());
    flip_last_byte(&cold, ferry_store::Kind::Chunk, &h).await;
    let err = cold.check_root(root, true).await.unwrap_err();
    assert!(err.to_string().contains(&h.to_hex()), "{err}");
    cold.check_root(root, false).await.unwrap();
    remove_blob(&cold, ferry_store::Kind::Chunk, &h).await;
    let cold = Store::with_objects(store.raw_objects().clone(), options());
    let err = cold.check_root(root, true).await.unwrap_err();
    assert!(matches!(err, Error::MissingChunk(x) if x == h), "{err}");

    // A missing page fails both (read from a store without the page cache).
    let cold = Store::with_objects(store.raw_objects().clone(), options());
    remove_blob(&cold, ferry_store::Kind::Page, &root).await;
    let cold = Store::with_objects(store.raw_objects().clone(), options());
    let err = cold.check_root(root, false).await.unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
}

async fn zero_chunks_are_never_stored(store: Store) {
    let v = store
        .create_volume(spec("zeros", 1 << 20, 16 << 10, None))
        .await
        .unwrap();
    write_flush(&store, v.id(), 0, &vec![0u8; 1 << 20]).await;
    assert_eq!(count(&store, layout::CHUNKS).await, 0);
    assert!(
        store.head(v.id()).await.unwrap().root.is_zero(),
        "an all-zero volume is a hole"
    );
    // Overwriting data with zeros turns the chunk back into a hole.
    write_flush(&store, v.id(), 16 << 10, &[1u8; 16 << 10]).await;
    write_flush(&store, v.id(), 16 << 10, &[0u8; 16 << 10]).await;
    assert!(store.head(v.id()).await.unwrap().root.is_zero());
    assert_eq!(read_all(&store, v.id()).await, vec![0u8; 1 << 20]);
}

async fn names_map_to_ids_idempotently(store: Store) {
    let a = store
        .create_volume(spec("same", 1 << 20, 16 << 10, None))
        .await
        .unwrap();
    let b = store
        .create_volume(spec("same", 1 << 20, 16 << 10, None))
        .await
        .unwrap();
    assert_eq!(a.id(), b.id());
    let err = store
        .create_volume(spec("same", 2 << 20, 16 << 10, None))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AlreadyExists(_)), "{err}");
    let s1 = store
        .create_snapshot("s", a.id(), BTreeMap::new())
        .await
        .unwrap();
    write_flush(&store, a.id(), 0, b"later").await;
    let s2 = store
        .create_snapshot("s", a.id(), BTreeMap::new())
        .await
        .unwrap();
    assert_eq!(s1, s2, "a retried snapshot is the same snapshot");
    let other = store
        .create_volume(spec("other", 1 << 20, 16 << 10, None))
        .await
        .unwrap();
    let err = store
        .create_snapshot("s", other.id(), BTreeMap::new())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AlreadyExists(_)), "{err}");
}

async fn concurrent_creates_of_one_name_give_one_volume(store: Store) {
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.create_volume(spec("rush", 1 << 20, 16 << 10, None)).await
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        if let Ok(v) = t.await.unwrap() {
            ids.push(v.id().to_string());
        }
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "one name, one volume: {ids:?}");
}

async fn deleting_a_volume_keeps_its_snapshots(store: Store) {
    let v = store
        .create_volume(spec("del", 64 << 10, 16 << 10, None))
        .await
        .unwrap();
    write_flush(&store, v.id(), 0, b"keep me").await;
    let snap = store
        .create_snapshot("del-snap", v.id(), BTreeMap::new())
        .await
        .unwrap();
    store.delete_volume(v.id()).await.unwrap();
    store.delete_volume(v.id()).await.unwrap();
    assert!(matches!(
        store.get_volume(v.id()).await.unwrap_err(),
        Error::NotFound(_)
    ));
    store.gc().await.unwrap();
    store.gc().await.unwrap();
    let r = store
        .create_volume(spec(
            "del-r",
            64 << 10,
            16 << 10,
            Some(Source::Snapshot(snap.id.clone())),
        ))
        .await
        .unwrap();
    assert_eq!(&read_all(&store, r.id()).await[..7], b"keep me");
    store.delete_snapshot(&snap.id).await.unwrap();
    store.delete_snapshot(&snap.id).await.unwrap();
    let err = store
        .create_volume(spec(
            "del-r2",
            64 << 10,
            16 << 10,
            Some(Source::Snapshot(snap.id)),
        ))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err}");
    // The name is free again after deletion: a new volume, new id.
    let again = store
        .create_volume(spec("del", 64 << 10, 16 << 10, None))
        .await
        .unwrap();
    assert_ne!(again.id(), v.id());
}

async fn identical_content_is_stored_once(store: Store) {
    // With a grace period, stored chunks are fresh and reused as they are.
    let store = Store::with_objects(
        store.raw_objects().clone(),
        StoreOptions {
            gc_grace: Duration::from_secs(3600),
            ..options()
        },
    );
    let mut rng = StdRng::seed_from_u64(3);
    let data = content(&mut rng, 256 << 10);
    let a = store
        .create_volume(spec("dup-a", 256 << 10, 16 << 10, None))
        .await
        .unwrap();
    let b = store
        .create_volume(spec("dup-b", 256 << 10, 16 << 10, None))
        .await
        .unwrap();
    write_flush(&store, a.id(), 0, &data).await;
    let n = count(&store, layout::CHUNKS).await;
    let h = store.open_volume(b.id()).await.unwrap();
    h.write_at(0, &data).await.unwrap();
    let report = h.flush().await.unwrap();
    assert_eq!(report.chunks_uploaded, 0, "{report:?}");
    assert_eq!(count(&store, layout::CHUNKS).await, n);
}

async fn listings_paginate(store: Store) {
    let mut ids = Vec::new();
    for i in 0..5 {
        let v = store
            .create_volume(spec(&format!("l{i}"), 1 << 20, 16 << 10, None))
            .await
            .unwrap();
        store
            .create_snapshot(&format!("ls{i}"), v.id(), BTreeMap::new())
            .await
            .unwrap();
        ids.push(v.id().to_string());
    }
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let (page, next) = store.list_volumes(token.as_deref(), 2).await.unwrap();
        assert!(page.len() <= 2);
        seen.extend(page.iter().map(|v| v.id().to_string()));
        match next {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    ids.sort();
    assert_eq!(seen, ids);
    let (snaps, _) = store
        .list_snapshots(&SnapshotFilter::default(), None, 0)
        .await
        .unwrap();
    assert_eq!(snaps.len(), 5);
    let by_vol = SnapshotFilter {
        source_volume_id: Some(ids[0].clone()),
        ..Default::default()
    };
    let (one, _) = store.list_snapshots(&by_vol, None, 0).await.unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].source_volume_id, ids[0]);
    assert!(matches!(
        store.list_volumes(Some("junk"), 2).await,
        Err(Error::InvalidToken(_))
    ));
}

async fn expansion_moves_only_the_size(store: Store) {
    let v = store
        .create_volume(spec("grow", 64 << 10, 16 << 10, None))
        .await
        .unwrap();
    let h = store.open_volume(v.id()).await.unwrap();
    h.write_at(0, b"before").await.unwrap();
    h.flush().await.unwrap();
    let root = store.head(v.id()).await.unwrap().root;
    assert_eq!(store.expand_volume(v.id(), 1 << 20).await.unwrap(), 1 << 20);
    assert_eq!(
        store.expand_volume(v.id(), 512 << 10).await.unwrap(),
        1 << 20,
        "never shrinks"
    );
    assert_eq!(store.head(v.id()).await.unwrap().root, root);
    // An open handle rebases on the expansion instead of failing.
    h.write_at(100, b"after").await.unwrap();
    h.flush().await.unwrap();
    assert_eq!(h.refresh_size().await.unwrap(), 1 << 20);
    h.write_at((1 << 20) - 5, b"tail!").await.unwrap();
    h.flush().await.unwrap();
    let all = read_all(&store, v.id()).await;
    assert_eq!(all.len(), 1 << 20);
    assert_eq!(&all[..6], b"before");
    assert_eq!(&all[100..105], b"after");
    assert_eq!(&all[(1 << 20) - 5..], b"tail!");
}
