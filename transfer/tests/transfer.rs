//! The transfer engine end to end: chunk store A -> transfer store -> chunk store B, through
//! a local folder, memory, and real S3 (moto), Azure Blob (Azurite) and GCS (fake-gcs-server)
//! servers on 127.0.0.1, with and without encryption.

use ferry_store::{Hash, Store, StoreConfig, StoreOptions, VolumeOptions, VolumeSpec};
use ferry_testkit::{Kind, TestServer};
use ferry_transfer::{Key, Progress, TransferStore, Tuning, export, import, verify};
use rand::{Rng, RngCore, SeedableRng, rngs::StdRng};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

const CHUNK: u64 = 64 << 10;

fn options() -> StoreOptions {
    StoreOptions {
        gc_grace: Duration::ZERO,
        ..Default::default()
    }
}

async fn memory_store() -> Store {
    Store::open(&StoreConfig::memory(), options())
        .await
        .unwrap()
}

fn small_packs() -> Tuning {
    Tuning {
        pack_bytes: 256 << 10,
        ..Tuning::default()
    }
}

/// A volume of `chunks` chunks with mixed content (text, random, holes), flushed.
async fn volume(store: &Store, name: &str, chunks: u64, seed: u64) -> String {
    volume_with(
        store,
        name,
        chunks,
        seed,
        VolumeOptions::default().compression,
    )
    .await
}

/// Like [`volume`], its chunks written with `codec`.
async fn volume_with(
    store: &Store,
    name: &str,
    chunks: u64,
    seed: u64,
    codec: ferry_store::Codec,
) -> String {
    let v = store
        .create_volume(VolumeSpec {
            name: name.into(),
            capacity_bytes: chunks * CHUNK,
            options: VolumeOptions {
                compression: codec,
                ..VolumeOptions::default()
            },
            parameters: Default::default(),
            source: None,
        })
        .await
        .unwrap();
    let h = store.open_volume(v.id()).await.unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    for i in 0..chunks {
        let mut buf = vec![0u8; CHUNK as usize];
        match i % 3 {
            0 => rng.fill_bytes(&mut buf),
            1 => {
                for (j, b) in buf.iter_mut().enumerate() {
                    *b = format!("{i},row,{}\n", j % 97).as_bytes()[j % 8];
                }
            }
            _ => continue, // a hole
        }
        h.write_at(i * CHUNK, &buf).await.unwrap();
    }
    h.flush().await.unwrap();
    v.id().to_string()
}

async fn snapshot(store: &Store, volume: &str, name: &str) -> String {
    store
        .create_snapshot(name, volume, Default::default())
        .await
        .unwrap()
        .id
}

async fn digest(store: &Store, id: &str) -> String {
    let h = store.open_volume(id).await.unwrap();
    let size = h.size().await;
    hex::encode(Sha256::digest(h.read_at(0, size as usize).await.unwrap()))
}

/// Overwrites `n` random 4 KiB blocks, each in a different chunk; returns the chunks hit.
async fn scatter(store: &Store, id: &str, chunks: u64, n: usize, seed: u64) -> usize {
    let h = store.open_volume(id).await.unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut hit = std::collections::HashSet::new();
    while hit.len() < n {
        let c = rng.random_range(0..chunks);
        if hit.insert(c) {
            let mut b = vec![0u8; 4096];
            rng.fill_bytes(&mut b);
            h.write_at(c * CHUNK + rng.random_range(0..15u64) * 4096, &b)
                .await
                .unwrap();
        }
    }
    h.flush().await.unwrap();
    n
}

/// The codec byte of each chunk a root names, as stored in `store`.
async fn codecs(store: &Store, root: Hash) -> std::collections::BTreeMap<u8, usize> {
    let chunks = ferry_store::tree::diff(store.blobs(), root, store.blobs(), Hash::ZERO)
        .await
        .unwrap()
        .chunks;
    let mut out = std::collections::BTreeMap::new();
    for h in chunks {
        let (frame, _) = store
            .blobs()
            .read_frame(ferry_store::Kind::Chunk, &h)
            .await
            .unwrap();
        *out.entry(frame.bytes()[6]).or_insert(0) += 1;
    }
    out
}

/// A volume whose deflate chunks were cloned into a zstd volume that then wrote more:
/// export, verify and import carry each chunk as stored, and every byte reads back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_volume_of_deflate_and_zstd_chunks_round_trips_with_its_frames_as_stored() {
    let dir = tempfile::tempdir().unwrap();
    let a = memory_store().await;
    let b = Store::open(
        &StoreConfig::fs(dir.path().join("b").to_string_lossy()),
        options(),
    )
    .await
    .unwrap();
    let base = volume_with(&a, "deflated", 24, 7, ferry_store::Codec::Deflate).await;
    let s0 = snapshot(&a, &base, "s0").await;
    let mixed = a
        .create_volume(VolumeSpec {
            name: "mixed".into(),
            capacity_bytes: 24 * CHUNK,
            options: VolumeOptions {
                compression: ferry_store::Codec::Zstd,
                ..Default::default()
            },
            parameters: Default::default(),
            source: Some(ferry_store::Source::Snapshot(s0)),
        })
        .await
        .unwrap()
        .id()
        .to_string();
    let h = a.open_volume(&mixed).await.unwrap();
    for i in [2u64, 5, 8, 11] {
        // Text into former holes: compressible, so written as zstd.
        let buf: Vec<u8> = (0..CHUNK as usize)
            .map(|j| format!("{i};zstd;{}\n", j % 89).as_bytes()[j % 6])
            .collect();
        h.write_at(i * CHUNK, &buf).await.unwrap();
    }
    h.flush().await.unwrap();
    let snap = snapshot(&a, &mixed, "s1").await;
    let root = a.get_snapshot(&snap).await.unwrap().root;
    let before = codecs(&a, root).await;
    assert_eq!(before.get(&2), Some(&4), "{before:?}");
    assert!(before.get(&1).is_some_and(|n| *n > 0), "{before:?}");

    let t = TransferStore::open(
        &StoreConfig::fs(dir.path().join("t").to_string_lossy()),
        None,
    )
    .await
    .unwrap();
    exp(&a, &snap, &t, small_packs()).await.unwrap();
    let commit = t.find_commit(&mixed).await.unwrap();
    ver(&t, &commit).await.unwrap();
    let r = imp(&t, &commit, &b, "imported").await.unwrap();
    let imported = r.volume_id.unwrap();
    assert_eq!(digest(&a, &mixed).await, digest(&b, &imported).await);
    let head = b.head(&imported).await.unwrap();
    assert_eq!(codecs(&b, head.root).await, before, "frames kept as stored");
}

async fn round_trip(transfer: StoreConfig, key: Option<Key>) {
    let a = memory_store().await;
    let b = memory_store().await;
    let vol = volume(&a, "data", 48, 1).await;
    let snap = snapshot(&a, &vol, "s1").await;
    let t = TransferStore::open(&transfer, key.clone()).await.unwrap();
    let progress = Arc::new(Progress::default());
    let r = export(&a, &snap, &t, progress.clone(), small_packs())
        .await
        .unwrap();
    assert_eq!(r.chunks_total, 32, "48 chunks, a third of them holes");
    assert_eq!(r.chunks_copied, 32);
    let p = progress.snapshot();
    assert!(p.finished(), "progress reports the end: {p:?}");
    assert_eq!(p.bytes_done, 32 * CHUNK);
    assert!(
        r.compression_ratio() < 0.9,
        "text chunks compress: {}",
        r.compression_ratio()
    );

    let commit = t.find_commit(&vol).await.unwrap();
    ver(&t, &commit).await.unwrap();
    let r = imp(&t, &commit, &b, "imported").await.unwrap();
    assert_eq!(r.chunks_copied, 32);
    let imported = r.volume_id.unwrap();
    assert_eq!(
        digest(&a, &vol).await,
        digest(&b, &imported).await,
        "byte-identical"
    );

    // Names in the transfer store give nothing away when encrypted.
    if key.is_some() {
        let hashes: Vec<String> = {
            let mut d = ferry_store::tree::Diff::default();
            let snap_rec = a.get_snapshot(&snap).await.unwrap();
            d.chunks = ferry_store::tree::diff(a.blobs(), snap_rec.root, a.blobs(), Hash::ZERO)
                .await
                .unwrap()
                .chunks;
            d.chunks.iter().map(|h| h.to_hex()).collect()
        };
        for obj in t.objects().list("").await.unwrap() {
            let bytes = t.objects().get(&obj.path).await.unwrap().unwrap();
            let text = String::from_utf8_lossy(&bytes);
            for h in &hashes {
                assert!(
                    !obj.path.contains(h.as_str()),
                    "{} names a chunk hash",
                    obj.path
                );
                assert!(
                    !text.contains(h.as_str()),
                    "{} holds a chunk hash",
                    obj.path
                );
            }
        }
    }
}

async fn exp(
    a: &Store,
    snap: &str,
    t: &TransferStore,
    tuning: Tuning,
) -> ferry_transfer::Result<ferry_transfer::Report> {
    export(a, snap, t, Arc::new(Progress::default()), tuning).await
}

async fn imp(
    t: &TransferStore,
    c: &ferry_transfer::Commit,
    b: &Store,
    name: &str,
) -> ferry_transfer::Result<ferry_transfer::Report> {
    import(
        t,
        c,
        b,
        name,
        Arc::new(Progress::default()),
        Tuning::default(),
    )
    .await
}

async fn ver(
    t: &TransferStore,
    c: &ferry_transfer::Commit,
) -> ferry_transfer::Result<ferry_transfer::Report> {
    verify(t, c, Arc::new(Progress::default()), Tuning::default()).await
}

fn key() -> Key {
    Key::parse(Key::generate_hex().as_bytes()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_through_a_local_folder_and_memory() {
    let dir = tempfile::tempdir().unwrap();
    round_trip(
        StoreConfig::fs(dir.path().join("plain").to_string_lossy()),
        None,
    )
    .await;
    round_trip(
        StoreConfig::fs(dir.path().join("sealed").to_string_lossy()),
        Some(key()),
    )
    .await;
    round_trip(StoreConfig::memory(), None).await;
    round_trip(StoreConfig::memory(), Some(key())).await;
}

async fn on_server(kind: Kind) {
    let Some(server) = TestServer::start(kind).await else {
        return;
    };
    let params = server.bucket("ferry-transfer").await;
    for (prefix, k) in [("plain", None), ("sealed", Some(key()))] {
        let mut p = params.clone();
        p.insert("root".into(), format!("/{prefix}/"));
        round_trip(StoreConfig::from_params(&p).unwrap(), k).await;
    }
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_through_s3_moto() {
    on_server(Kind::S3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_through_azure_blob_azurite() {
    on_server(Kind::Azblob).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_through_gcs_fake_gcs_server() {
    on_server(Kind::Gcs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_export_and_import_move_about_the_change() {
    let a = memory_store().await;
    let b = memory_store().await;
    let chunks = 1000;
    let vol = volume(&a, "db", chunks, 2).await;
    let t = TransferStore::open(&StoreConfig::memory(), None)
        .await
        .unwrap();
    let s1 = snapshot(&a, &vol, "s1").await;
    let first = exp(&a, &s1, &t, Tuning::default()).await.unwrap();
    let c1 = t.find_commit(&vol).await.unwrap();
    let i1 = imp(&t, &c1, &b, "db").await.unwrap();

    // 1 % of the volume: 10 chunks get a new 4 KiB block each.
    let changed = scatter(&a, &vol, chunks, 10, 3).await as u64;
    let s2 = snapshot(&a, &vol, "s2").await;
    let second = exp(&a, &s2, &t, Tuning::default()).await.unwrap();
    assert!(
        second.chunks_total <= changed && second.chunks_copied <= changed,
        "the diff holds only changed chunks: {second:?}"
    );
    assert!(
        second.chunks_copied >= changed - 1,
        "each changed chunk is new: {second:?}"
    );
    assert!(
        second.bytes_read <= changed * CHUNK,
        "read {} bytes for a {} byte change",
        second.bytes_read,
        changed * CHUNK
    );
    // Chunks plus a handful of pages and the index, not the volume again.
    assert!(
        second.bytes_written <= changed * CHUNK + (64 << 10) * 4,
        "wrote {} bytes (first export wrote {})",
        second.bytes_written,
        first.bytes_written
    );

    let c2 = t.find_commit(&vol).await.unwrap();
    assert_eq!(c2.snapshot_id, s2);
    let i2 = imp(&t, &c2, &b, "db").await.unwrap();
    assert_eq!(
        i2.volume_id, i1.volume_id,
        "the same volume moves to the new root"
    );
    assert!(
        i2.chunks_copied <= changed,
        "import fetched {} chunks",
        i2.chunks_copied
    );
    assert!(i2.bytes_written <= changed * CHUNK + (64 << 10) * 4);
    let dst = i2.volume_id.unwrap();
    assert_eq!(digest(&a, &vol).await, digest(&b, &dst).await);
    assert!(
        i1.chunks_copied > 600,
        "the first import fetched everything: {i1:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_exports_and_imports_resume_to_the_same_result() {
    for seed in [11u64, 12, 13, 14] {
        let a = memory_store().await;
        let b = memory_store().await;
        let vol = volume(&a, "v", 96, seed).await;
        let snap = snapshot(&a, &vol, "s").await;
        let dir = tempfile::tempdir().unwrap();
        let cfg = StoreConfig::fs(dir.path().to_string_lossy());
        let k = key();
        let mut rng = StdRng::seed_from_u64(seed);
        // Cut the export off at a random moment (a dropped future stops at whatever await
        // it was in, as a killed process would), a few times, then let it finish.
        for _ in 0..3 {
            let t = TransferStore::open(&cfg, Some(k.clone())).await.unwrap();
            let (a2, snap2) = (a.clone(), snap.clone());
            let job = tokio::spawn(async move {
                export(
                    &a2,
                    &snap2,
                    &t,
                    Arc::new(Progress::default()),
                    small_packs(),
                )
                .await
            });
            tokio::time::sleep(Duration::from_micros(rng.random_range(0..20_000))).await;
            job.abort();
            let _ = job.await;
            let t = TransferStore::open(&cfg, Some(k.clone())).await.unwrap();
            if let Some(c) = t.latest_commit(&vol).await.unwrap() {
                // A commit present means everything it names is there.
                ver(&t, &c).await.unwrap();
            }
        }
        let t = TransferStore::open(&cfg, Some(k.clone())).await.unwrap();
        exp(&a, &snap, &t, small_packs()).await.unwrap();
        let c = t.find_commit(&vol).await.unwrap();
        ver(&t, &c).await.unwrap();

        for _ in 0..3 {
            let (t2, c2, b2) = (t.clone(), c.clone(), b.clone());
            let job = tokio::spawn(async move {
                import(
                    &t2,
                    &c2,
                    &b2,
                    "v",
                    Arc::new(Progress::default()),
                    Tuning::default(),
                )
                .await
            });
            tokio::time::sleep(Duration::from_micros(rng.random_range(0..20_000))).await;
            job.abort();
            let _ = job.await;
        }
        let r = imp(&t, &c, &b, "v").await.unwrap();
        let dst = r.volume_id.unwrap();
        assert_eq!(
            digest(&a, &vol).await,
            digest(&b, &dst).await,
            "seed {seed}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_or_missing_chunks_fail_the_import_by_name_and_create_nothing() {
    let a = memory_store().await;
    let vol = volume(&a, "v", 12, 5).await;
    let snap = snapshot(&a, &vol, "s").await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig::fs(dir.path().to_string_lossy());
    let t = TransferStore::open(&cfg, None).await.unwrap();
    exp(&a, &snap, &t, small_packs()).await.unwrap();
    let c = t.find_commit(&vol).await.unwrap();
    let index = t.load_index().await.unwrap();
    let root = a.get_snapshot(&snap).await.unwrap().root;
    let chunks = ferry_store::tree::diff(a.blobs(), root, a.blobs(), Hash::ZERO)
        .await
        .unwrap()
        .chunks;
    let victim = chunks[3];
    let loc = index.get(&victim.to_hex()).unwrap().unwrap();
    let pack = dir.path().join(ferry_transfer::layout::pack(&loc.pack));

    // One flipped byte inside the chunk.
    let original = std::fs::read(&pack).unwrap();
    let mut bad = original.clone();
    bad[(loc.offset + loc.len / 2) as usize] ^= 0x40;
    std::fs::write(&pack, &bad).unwrap();
    let b = memory_store().await;
    let e = imp(&t, &c, &b, "v").await.unwrap_err();
    assert!(
        e.to_string().contains(&victim.to_hex()),
        "names the chunk: {e}"
    );
    assert!(
        b.volume_by_name("v").await.unwrap().is_none(),
        "no half-made volume"
    );
    let e = ver(&t, &c).await.unwrap_err();
    assert!(
        e.to_string().contains(&victim.to_hex()),
        "verify names it too: {e}"
    );

    // The pack gone altogether.
    std::fs::remove_file(&pack).unwrap();
    let e = imp(&t, &c, &b, "v").await.unwrap_err();
    assert!(matches!(e, ferry_transfer::Error::Missing(_)), "{e:?}");
    assert!(b.volume_by_name("v").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_checked_before_anything_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig::fs(dir.path().to_string_lossy());
    let k = key();
    TransferStore::open(&cfg, Some(k.clone())).await.unwrap();
    let e = TransferStore::open(&cfg, Some(key())).await.unwrap_err();
    assert!(e.to_string().contains("wrong key"), "{e}");
    let e = TransferStore::open(&cfg, None).await.unwrap_err();
    assert!(e.to_string().contains("encrypted"), "{e}");
    let plain = tempfile::tempdir().unwrap();
    let cfg = StoreConfig::fs(plain.path().to_string_lossy());
    TransferStore::open(&cfg, None).await.unwrap();
    let e = TransferStore::open(&cfg, Some(k)).await.unwrap_err();
    assert!(e.to_string().contains("not encrypted"), "{e}");
}

/// A 1 TiB sparse volume (4 KiB chunks spread over all of it) exports walking its tree in
/// batches: the names the export held at once (counted by the export, not measured as
/// RSS) stay within a bound set by its batch and window alone, the same for four times the
/// data, and the import, streaming the same way, rebuilds the same root within a like bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_sparse_volume_exports_holding_a_bounded_number_of_names() {
    const SMALL: u64 = 4 << 10;
    let tuning = Tuning {
        diff_batch: 64,
        diff_window: 256,
        ..small_packs()
    };
    // Four levels of two pages of at most 1024 names each, one batch, the window.
    let bound = 8 * 1024 + 64 + 256;
    let (mut peaks, mut import_peaks) = (Vec::new(), Vec::new());
    for chunks in [1_500u64, 6_000] {
        let a = memory_store().await;
        let v = a
            .create_volume(VolumeSpec {
                name: "sparse".into(),
                capacity_bytes: 1 << 40,
                options: VolumeOptions {
                    chunk_size: SMALL as u32,
                    ..VolumeOptions::default()
                },
                parameters: Default::default(),
                source: None,
            })
            .await
            .unwrap();
        let h = a.open_volume(v.id()).await.unwrap();
        let stride = (1u64 << 40) / SMALL / chunks;
        for i in 0..chunks {
            let mut buf = vec![0u8; SMALL as usize];
            buf[..8].copy_from_slice(&(i + 1).to_le_bytes());
            h.write_at(i * stride * SMALL, &buf).await.unwrap();
        }
        h.flush().await.unwrap();
        let snap = snapshot(&a, v.id(), "s1").await;
        let dir = tempfile::tempdir().unwrap();
        let t = TransferStore::open(&StoreConfig::fs(dir.path().to_string_lossy()), None)
            .await
            .unwrap();
        let report = export(&a, &snap, &t, Arc::new(Progress::default()), tuning)
            .await
            .unwrap();
        assert_eq!(report.chunks_copied, chunks);
        assert!(
            report.names_held_peak > 0 && report.names_held_peak <= bound,
            "{chunks} chunks: held {} names at most, bound {bound}",
            report.names_held_peak
        );
        peaks.push(report.names_held_peak);

        let b = memory_store().await;
        let commit = t.get_commit(v.id(), &snap).await.unwrap().unwrap();
        let r = import(
            &t,
            &commit,
            &b,
            "sparse",
            Arc::new(Progress::default()),
            tuning,
        )
        .await
        .unwrap();
        let got = b.get_volume(r.volume_id.as_deref().unwrap()).await.unwrap();
        assert_eq!(got.head.root, a.get_volume(v.id()).await.unwrap().head.root);
        // The import streams the same walk: its walk, the pages it keeps until they are
        // stored and its GC hold stay within three such bounds. Holding every differing
        // page, as a whole-tree diff does, would be a page of 1024 names per chunk here.
        assert!(
            r.names_held_peak > 0 && r.names_held_peak <= 3 * bound,
            "{chunks} chunks: the import held {} names at most, bound {}",
            r.names_held_peak,
            3 * bound
        );
        import_peaks.push(r.names_held_peak);
    }
    assert!(peaks[1] <= peaks[0] + 1024, "not flat: {peaks:?}");
    assert!(peaks[1] < 6_000, "{peaks:?}");
    assert!(
        import_peaks[1] <= import_peaks[0] + 3 * 1024,
        "import not flat: {import_peaks:?}"
    );
}
