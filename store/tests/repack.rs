//! Repacking: a pack whose live share falls under the threshold has its live blobs copied
//! into a new pack and is deleted a run later; a writer that holds a chunk of it (named in
//! its GC hold, reached by no root) through the repack keeps it readable, and once the hold
//! is released the chunk goes. On a local folder and on moto S3.

use ferry_store::{Hash, Kind, Store, StoreConfig, StoreOptions, VolumeOptions, VolumeSpec};
use ferry_testkit::TestServer;
use rand::{RngCore, SeedableRng, rngs::StdRng};
use std::time::Duration;

const CHUNK: usize = 16 << 10;
const CHUNKS: usize = 8;

fn options() -> StoreOptions {
    StoreOptions {
        gc_grace: Duration::ZERO,
        ..Default::default()
    }
}

fn random(seed: u64, n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    StdRng::seed_from_u64(seed).fill_bytes(&mut b);
    b
}

async fn where_is(s: &Store, h: &Hash) -> Option<String> {
    s.blob_location(Kind::Chunk, h).await.unwrap().map(|l| l.0)
}

async fn repack_keeps_held_and_live_chunks(config: StoreConfig) {
    let s = Store::open(&config, options()).await.unwrap();
    let v = s
        .create_volume(VolumeSpec {
            name: "v".into(),
            capacity_bytes: (CHUNKS * CHUNK) as u64,
            options: VolumeOptions {
                chunk_size: CHUNK as u32,
                ..Default::default()
            },
            parameters: Default::default(),
            source: None,
        })
        .await
        .unwrap();
    let first = random(1, CHUNKS * CHUNK);
    let h = s.open_volume(v.id()).await.unwrap();
    h.write_at(0, &first).await.unwrap();
    h.flush().await.unwrap();
    let names: Vec<Hash> = first.chunks(CHUNK).map(Hash::of).collect();
    let old_pack = where_is(&s, &names[7]).await.expect("stored");
    assert_eq!(where_is(&s, &names[0]).await.as_ref(), Some(&old_pack));
    // Seven of eight chunks rewritten: the first pack is one eighth live (and its pages are
    // dead), under the threshold.
    let mut now = first.clone();
    now[..7 * CHUNK].copy_from_slice(&random(2, 7 * CHUNK));
    h.write_at(0, &now[..7 * CHUNK]).await.unwrap();
    h.flush().await.unwrap();
    // One more commit, so the generation before (kept beside the head) no longer names
    // the first content either.
    now[6 * CHUNK..7 * CHUNK].copy_from_slice(&random(3, CHUNK));
    h.write_at(6 * CHUNK as u64, &now[6 * CHUNK..7 * CHUNK])
        .await
        .unwrap();
    h.flush().await.unwrap();

    // A writer holds chunk 0, which no root reaches any more.
    let hold = s.hold("a writer").await.unwrap();
    hold.protect(&[names[0]], &[]).await.unwrap();

    let first_run = s.gc().await.unwrap();
    assert!(first_run.repacked >= 1, "{first_run:?}");
    assert!(first_run.repacked_bytes > 0, "{first_run:?}");
    let second = s.gc().await.unwrap();
    assert!(second.packs_deleted >= 1, "{second:?}");
    for h in [&names[0], &names[7]] {
        let at = where_is(&s, h).await.expect("still stored");
        assert_ne!(at, old_pack, "{h} was moved out of the repacked pack");
    }
    assert!(
        !s.raw_objects().exists(&old_pack).await.unwrap(),
        "the repacked pack is deleted"
    );
    // Read back from a store handle that never saw the old pack's place.
    let cold = Store::open(&config, options()).await.unwrap();
    assert_eq!(
        *cold.blobs().get_chunk(&names[0]).await.unwrap(),
        first[..CHUNK]
    );
    let back = cold.open_volume(v.id()).await.unwrap();
    assert_eq!(back.read_at(0, now.len()).await.unwrap(), now);
    // A handle that knew the old place finds the new one.
    s.blobs().forget_chunk(&names[7]);
    assert_eq!(
        *s.blobs().get_chunk(&names[7]).await.unwrap(),
        first[7 * CHUNK..]
    );

    // Released, the held chunk is reclaimed by later runs (which repack any pack holding
    // something unreachable: its pack is half live, at the default threshold).
    hold.release().await;
    for _ in 0..3 {
        s.gc_repacking(Default::default(), 1.0).await.unwrap();
    }
    assert_eq!(
        where_is(&s, &names[0]).await,
        None,
        "unheld and unreachable: gone"
    );
    let back = Store::open(&config, options()).await.unwrap();
    let back = back.open_volume(v.id()).await.unwrap();
    assert_eq!(back.read_at(0, now.len()).await.unwrap(), now);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mostly_dead_pack_is_repacked_and_a_held_chunk_stays_readable_on_a_folder() {
    let dir = tempfile::tempdir().unwrap();
    repack_keeps_held_and_live_chunks(StoreConfig::fs(dir.path().to_string_lossy())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mostly_dead_pack_is_repacked_and_a_held_chunk_stays_readable_on_s3() {
    let Some(server) = TestServer::start(ferry_testkit::Kind::S3).await else {
        return;
    };
    let params = server.bucket("ferry-repack").await;
    repack_keeps_held_and_live_chunks(StoreConfig::from_params(&params).unwrap()).await;
    drop(server);
}
