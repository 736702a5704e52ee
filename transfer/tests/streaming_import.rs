//! An import streams its tree walk in batches and names in its GC hold only what it still
//! needs by name (this batch, the chunks of the open page) and the finished subtrees by
//! their roots. Garbage collection with a zero grace period runs in a loop on the
//! destination the whole time: nothing an earlier batch stored may go, in a first import
//! and in an incremental one onto the imported volume. The destination is the in-memory
//! backend, the one on which a zero grace period is honoured (it keeps no write times), so
//! every unmarked blob is deleted at once: only the hold keeps the import's blobs.

use ferry_store::{Store, StoreConfig, StoreOptions, VolumeOptions, VolumeSpec};
use ferry_transfer::{Progress, TransferStore, Tuning, export, import};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

const CHUNK: u64 = 4 << 10;
/// 64 MiB of 4 KiB chunks: 16 level-0 pages and one above them.
const SIZE: u64 = 64 << 20;

async fn digest(store: &Store, id: &str) -> String {
    let h = store.open_volume(id).await.unwrap();
    let size = h.size().await;
    hex::encode(Sha256::digest(h.read_at(0, size as usize).await.unwrap()))
}

async fn write_spread(store: &Store, id: &str, every: u64, tag: u8) {
    let h = store.open_volume(id).await.unwrap();
    for i in (0..SIZE / CHUNK).step_by(every as usize) {
        let mut buf = vec![tag; CHUNK as usize];
        buf[..8].copy_from_slice(&i.to_le_bytes());
        h.write_at(i * CHUNK, &buf).await.unwrap();
    }
    h.flush().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_import_keeps_what_earlier_batches_stored_through_a_gc_loop() {
    let a = Store::open(&StoreConfig::memory(), StoreOptions::default())
        .await
        .unwrap();
    let v = a
        .create_volume(VolumeSpec {
            name: "data".into(),
            capacity_bytes: SIZE,
            options: VolumeOptions {
                chunk_size: CHUNK as u32,
                ..VolumeOptions::default()
            },
            parameters: Default::default(),
            source: None,
        })
        .await
        .unwrap();
    write_spread(&a, v.id(), 7, 1).await;
    let folder = tempfile::tempdir().unwrap();
    let t = TransferStore::open(&StoreConfig::fs(folder.path().to_string_lossy()), None)
        .await
        .unwrap();
    let b = Store::open(
        &StoreConfig::memory(),
        StoreOptions {
            gc_grace: Duration::ZERO,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    // Small batches: the import takes a few hundred of them, with GC passes between.
    let tuning = Tuning {
        diff_batch: 8,
        diff_window: 64,
        ..Tuning::default()
    };

    let stop = Arc::new(AtomicBool::new(false));
    let passes = Arc::new(AtomicUsize::new(0));
    let gc_loop = {
        let (b, stop, passes) = (b.clone(), stop.clone(), passes.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                b.gc().await.unwrap();
                passes.fetch_add(1, Ordering::SeqCst);
            }
        })
    };

    let mut imported = None;
    for (round, (every, tag)) in [(0, (7, 1)), (1, (5, 2))] {
        if round > 0 {
            write_spread(&a, v.id(), every, tag).await;
        }
        let snap = a
            .create_snapshot(&format!("s{round}"), v.id(), Default::default())
            .await
            .unwrap();
        export(&a, &snap.id, &t, Arc::new(Progress::default()), tuning)
            .await
            .unwrap();
        let commit = t.find_commit(v.id()).await.unwrap();
        let before = passes.load(Ordering::SeqCst);
        let r = import(
            &t,
            &commit,
            &b,
            "data",
            Arc::new(Progress::default()),
            tuning,
        )
        .await
        .unwrap();
        assert!(r.chunks_copied > 100, "round {round}: {r:?}");
        assert!(
            passes.load(Ordering::SeqCst) > before,
            "round {round}: GC ran during the import"
        );
        let id = r.volume_id.unwrap();
        assert_eq!(
            digest(&b, &id).await,
            digest(&a, v.id()).await,
            "round {round}"
        );
        imported = Some(id);
    }
    stop.store(true, Ordering::SeqCst);
    gc_loop.await.unwrap();
    // Two more passes after the last import: a condemned-but-needed blob would go now.
    b.gc().await.unwrap();
    b.gc().await.unwrap();
    let id = imported.unwrap();
    assert_eq!(digest(&b, &id).await, digest(&a, v.id()).await);
}
