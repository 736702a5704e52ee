//! GC throughput: a store of `FERRY_GC_BENCH_CHUNKS` chunks (default 100 000, 4 KiB of random
//! bytes each) in a local folder, half of them in live volumes and half in deleted ones.
//! Times the condemning pass and the deleting pass (zero grace period), and a pass with a
//! writer's hold in place. Run with `hack/bench.sh gc` (release build).

use ferry_store::{GcOptions, Store, StoreConfig, StoreOptions, VolumeOptions, VolumeSpec};
use rand::{RngCore, SeedableRng, rngs::StdRng};
use std::time::{Duration, Instant};

const CHUNK: usize = 4 << 10;
const PER_VOLUME: usize = 5_000;

fn options() -> StoreOptions {
    StoreOptions {
        gc_grace: Duration::ZERO,
        max_dirty_bytes: 64 << 20,
        ..Default::default()
    }
}

#[tokio::main]
async fn main() {
    let total: usize = std::env::var("FERRY_GC_BENCH_CHUNKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().expect("temporary folder");
    let config = StoreConfig::fs(dir.path().to_string_lossy());
    let store = Store::open(&config, options()).await.expect("store");
    let mut rng = StdRng::seed_from_u64(1);
    let volumes = total.div_ceil(PER_VOLUME);
    let t = Instant::now();
    let mut ids = Vec::new();
    for v in 0..volumes {
        let n = PER_VOLUME.min(total - v * PER_VOLUME);
        let vol = store
            .create_volume(VolumeSpec {
                name: format!("bench-{v}"),
                capacity_bytes: (n * CHUNK) as u64,
                options: VolumeOptions {
                    chunk_size: CHUNK as u32,
                    ..Default::default()
                },
                parameters: Default::default(),
                source: None,
            })
            .await
            .expect("create");
        let h = store.open_volume(vol.id()).await.expect("open");
        let mut buf = vec![0u8; n * CHUNK];
        rng.fill_bytes(&mut buf);
        for (i, piece) in buf.chunks(1 << 20).enumerate() {
            h.write_at((i << 20) as u64, piece).await.expect("write");
        }
        h.flush().await.expect("flush");
        ids.push(vol.id().to_string());
    }
    println!(
        "filled {total} chunks in {volumes} volumes in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    for id in ids.iter().step_by(2) {
        store.delete_volume(id).await.expect("delete");
    }

    let dry = store
        .gc_with(GcOptions { dry_run: true })
        .await
        .expect("dry run");
    let first = store.gc().await.expect("condemning pass");
    let second = store.gc().await.expect("deleting pass");
    let rate = |objects: usize, d: Duration| objects as f64 / d.as_secs_f64();
    println!(
        "dry run: {} objects would be condemned ({} bytes) in {:.2} s",
        dry.condemned,
        dry.condemned_bytes,
        dry.elapsed.as_secs_f64()
    );
    println!(
        "condemning pass: marked {} chunks + {} pages from {} roots, condemned {} objects ({} bytes) in {:.2} s ({:.0} objects/s listed and checked)",
        first.live_chunks,
        first.live_pages,
        first.roots,
        first.condemned,
        first.condemned_bytes,
        first.elapsed.as_secs_f64(),
        rate(
            first.live_chunks + first.live_pages + first.condemned,
            first.elapsed
        )
    );
    println!(
        "deleting pass: deleted {} objects ({} bytes reclaimed) in {:.2} s ({:.0} deletions/s)",
        second.deleted,
        second.deleted_bytes,
        second.elapsed.as_secs_f64(),
        rate(second.deleted, second.elapsed)
    );

    // A held writer: the pass reads its hold and marks through it.
    let hold = store.hold("bench writer").await.expect("hold");
    let held: Vec<ferry_store::Hash> = (0..10_000u32)
        .map(|i| ferry_store::Hash::of(&i.to_le_bytes()))
        .collect();
    hold.protect(&held, &[]).await.expect("protect");
    let third = store.gc().await.expect("pass with a hold");
    hold.release().await;
    println!(
        "pass with one hold of 10 000 names: {} holds honoured in {:.2} s",
        third.holds,
        third.elapsed.as_secs_f64()
    );
}
