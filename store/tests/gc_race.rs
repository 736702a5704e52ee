//! GC with a non-zero grace period running while a volume writer holds chunks it uploaded
//! over the dirty limit (or found already stored) and has not committed yet, on a local
//! folder and on a real S3 server (moto on 127.0.0.1). Every chunk the committed volume
//! names must still read back once the writer flushes, however long it waited.

use ferry_store::{Store, StoreConfig, StoreOptions, VolumeOptions, VolumeSpec};
use ferry_testkit::{Kind, TestServer};
use rand::{RngCore, SeedableRng, rngs::StdRng};
use std::collections::BTreeMap;
use std::time::Duration;

const CHUNK: usize = 16 << 10;
const CHUNKS: usize = 8;
const GRACE: Duration = Duration::from_secs(2);

fn options() -> StoreOptions {
    StoreOptions {
        gc_grace: GRACE,
        // Two dirty chunks are over the limit: writes upload before any commit.
        max_dirty_bytes: CHUNK,
        hold_ttl: Duration::from_secs(3),
        ..Default::default()
    }
}

fn spec(name: &str) -> VolumeSpec {
    VolumeSpec {
        name: name.into(),
        capacity_bytes: (CHUNKS * CHUNK) as u64,
        options: VolumeOptions {
            chunk_size: CHUNK as u32,
            ..Default::default()
        },
        parameters: BTreeMap::new(),
        source: None,
    }
}

fn content(seed: u64) -> Vec<u8> {
    let mut b = vec![0u8; CHUNKS * CHUNK];
    StdRng::seed_from_u64(seed).fill_bytes(&mut b);
    b
}

/// Sleeps past the grace period, then runs GC.
async fn gc_after_grace(s: &Store) -> ferry_store::GcReport {
    tokio::time::sleep(GRACE + Duration::from_millis(200)).await;
    s.gc().await.unwrap()
}

async fn writer_over_the_dirty_limit_survives_gc(config: StoreConfig) {
    let s = Store::open(&config, options()).await.unwrap();
    let data = content(7);

    // 1. The same content, committed once and deleted: its chunks are old, unreferenced,
    //    and condemned by the next run.
    let old = s.create_volume(spec("old")).await.unwrap();
    let h = s.open_volume(old.id()).await.unwrap();
    h.write_at(0, &data).await.unwrap();
    h.flush().await.unwrap();
    drop(h);
    s.delete_volume(old.id()).await.unwrap();
    let first = gc_after_grace(&s).await;
    assert!(
        first.condemned >= CHUNKS,
        "the deleted volume's chunks are condemned: {first:?}"
    );

    // 2. A new volume writes the same bytes over the dirty limit: the condemned chunks are
    //    stale, so they are written again (revived) and held, without a commit.
    let new = s.create_volume(spec("new")).await.unwrap();
    let h = s.open_volume(new.id()).await.unwrap();
    h.write_at(0, &data).await.unwrap();
    assert!(
        h.dirty_bytes().await <= CHUNK as u64,
        "most chunks were uploaded before any flush"
    );

    // 3. Collections past the grace period, twice, while the writer sits on them.
    let second = gc_after_grace(&s).await;
    assert!(
        second.holds >= 1,
        "the writer's hold is honoured: {second:?}"
    );
    assert!(
        second.revived >= CHUNKS - 1,
        "condemned chunks written again or held are kept: {second:?}"
    );
    let third = gc_after_grace(&s).await;
    assert!(third.holds >= 1, "the hold was kept alive: {third:?}");

    // 4. The commit names them; later runs find them reachable.
    h.flush().await.unwrap();
    gc_after_grace(&s).await;
    gc_after_grace(&s).await;
    let cold = Store::open(&config, options()).await.unwrap();
    let back = cold.open_volume(new.id()).await.unwrap();
    assert_eq!(
        back.read_at(0, data.len()).await.unwrap(),
        data,
        "every chunk the committed volume names reads back"
    );

    // 5. A chunk found stored and fresh (another writer's, uncommitted) is not uploaded
    //    again, only held: it must survive that other writer's death too.
    let other = s.create_volume(spec("other")).await.unwrap();
    let fresh = content(8);
    {
        let h = s.open_volume(other.id()).await.unwrap();
        h.write_at(0, &fresh).await.unwrap(); // uploaded, never committed; the writer dies
    }
    let reuse = s.create_volume(spec("reuse")).await.unwrap();
    let h = s.open_volume(reuse.id()).await.unwrap();
    h.write_at(0, &fresh).await.unwrap();
    for _ in 0..3 {
        let r = gc_after_grace(&s).await;
        assert!(r.holds >= 1, "the reusing writer's hold is live: {r:?}");
    }
    h.flush().await.unwrap();
    gc_after_grace(&s).await;
    gc_after_grace(&s).await;
    let cold = Store::open(&config, options()).await.unwrap();
    let back = cold.open_volume(reuse.id()).await.unwrap();
    assert_eq!(back.read_at(0, fresh.len()).await.unwrap(), fresh);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_over_the_dirty_limit_survives_gc_on_a_folder() {
    let dir = tempfile::tempdir().unwrap();
    writer_over_the_dirty_limit_survives_gc(StoreConfig::fs(dir.path().to_string_lossy())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_over_the_dirty_limit_survives_gc_on_s3() {
    let Some(server) = TestServer::start(Kind::S3).await else {
        return;
    };
    let params = server.bucket("ferry-gc-race").await;
    writer_over_the_dirty_limit_survives_gc(StoreConfig::from_params(&params).unwrap()).await;
    drop(server);
}
