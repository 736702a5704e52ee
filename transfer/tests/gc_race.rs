//! GC with a non-zero grace period running while an import is held open past the grace
//! period, on a destination chunk store in a local folder and on a real S3 server (moto on
//! 127.0.0.1). The import reuses chunks GC has already condemned in the destination (a
//! deleted volume's): they are written again (the revive path) and held, so the imported
//! volume reads back whole however long the import took.

use ferry_store::{Store, StoreConfig, StoreOptions, VolumeOptions, VolumeSpec};
use ferry_testkit::{Kind, TestServer};
use ferry_transfer::{Progress, TransferStore, Tuning, export, import, import_gated};
use rand::{RngCore, SeedableRng, rngs::StdRng};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

const CHUNK: u64 = 64 << 10;
const CHUNKS: u64 = 12;
const GRACE: Duration = Duration::from_secs(2);

fn options() -> StoreOptions {
    StoreOptions {
        gc_grace: GRACE,
        hold_ttl: Duration::from_secs(3),
        ..Default::default()
    }
}

async fn digest(store: &Store, id: &str) -> String {
    let h = store.open_volume(id).await.unwrap();
    let size = h.size().await;
    hex::encode(Sha256::digest(h.read_at(0, size as usize).await.unwrap()))
}

async fn gc_after_grace(s: &Store) -> ferry_store::GcReport {
    tokio::time::sleep(GRACE + Duration::from_millis(200)).await;
    s.gc().await.unwrap()
}

async fn import_paused_past_grace_keeps_every_chunk(dest_config: StoreConfig) {
    // A source volume, exported once.
    let a = Store::open(&StoreConfig::memory(), StoreOptions::default())
        .await
        .unwrap();
    let v = a
        .create_volume(VolumeSpec {
            name: "data".into(),
            capacity_bytes: CHUNKS * CHUNK,
            options: VolumeOptions::default(),
            parameters: Default::default(),
            source: None,
        })
        .await
        .unwrap();
    let mut bytes = vec![0u8; (CHUNKS * CHUNK) as usize];
    StdRng::seed_from_u64(3).fill_bytes(&mut bytes);
    let h = a.open_volume(v.id()).await.unwrap();
    h.write_at(0, &bytes).await.unwrap();
    h.flush().await.unwrap();
    let snap = a
        .create_snapshot("s", v.id(), Default::default())
        .await
        .unwrap();
    let folder = tempfile::tempdir().unwrap();
    let t = TransferStore::open(&StoreConfig::fs(folder.path().to_string_lossy()), None)
        .await
        .unwrap();
    export(
        &a,
        &snap.id,
        &t,
        Arc::new(Progress::default()),
        Tuning::default(),
    )
    .await
    .unwrap();
    let commit = t.find_commit(v.id()).await.unwrap();

    // The destination had these chunks once, in a volume since deleted: GC condemns them.
    let b = Store::open(&dest_config, options()).await.unwrap();
    let r = import(
        &t,
        &commit,
        &b,
        "earlier",
        Arc::new(Progress::default()),
        Tuning::default(),
    )
    .await
    .unwrap();
    b.delete_volume(&r.volume_id.unwrap()).await.unwrap();
    let first = gc_after_grace(&b).await;
    assert!(
        first.condemned as u64 >= CHUNKS,
        "the deleted volume's chunks are condemned: {first:?}"
    );

    // The import stops after storing every blob, before its commit, for two grace periods
    // with GC running.
    let (reached_tx, reached_rx) = tokio::sync::oneshot::channel::<()>();
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let gate = async move {
        let _ = reached_tx.send(());
        let _ = go_rx.await;
    };
    let task = {
        let (t, commit, b) = (t.clone(), commit.clone(), b.clone());
        tokio::spawn(async move {
            import_gated(
                &t,
                &commit,
                &b,
                "imported",
                Arc::new(Progress::default()),
                Tuning::default(),
                gate,
            )
            .await
        })
    };
    reached_rx.await.unwrap();
    let second = gc_after_grace(&b).await;
    assert!(
        second.holds >= 1,
        "the import's hold is honoured: {second:?}"
    );
    assert!(
        second.revived as u64 >= CHUNKS,
        "condemned chunks the import wrote again are kept: {second:?}"
    );
    let third = gc_after_grace(&b).await;
    assert!(
        third.holds >= 1,
        "the hold was kept alive past its lifetime: {third:?}"
    );
    go_tx.send(()).unwrap();
    let report = task.await.unwrap().unwrap();
    assert_eq!(
        report.chunks_copied, CHUNKS,
        "stale condemned chunks are written again, not reused as they are"
    );

    gc_after_grace(&b).await;
    gc_after_grace(&b).await;
    let cold = Store::open(&dest_config, options()).await.unwrap();
    assert_eq!(
        digest(&cold, &report.volume_id.unwrap()).await,
        digest(&a, v.id()).await,
        "every chunk the imported volume names reads back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_paused_past_grace_keeps_every_chunk_on_a_folder() {
    let dir = tempfile::tempdir().unwrap();
    import_paused_past_grace_keeps_every_chunk(StoreConfig::fs(dir.path().to_string_lossy())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_paused_past_grace_keeps_every_chunk_on_s3() {
    let Some(server) = TestServer::start(Kind::S3).await else {
        return;
    };
    let params = server.bucket("ferry-gc-import").await;
    import_paused_past_grace_keeps_every_chunk(StoreConfig::from_params(&params).unwrap()).await;
    drop(server);
}
