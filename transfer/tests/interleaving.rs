//! Randomised interleavings of commits, writes over the dirty limit, snapshots, clones,
//! deletions, imports and garbage collection on one chunk store (a local folder), with a GC
//! loop of zero grace period running beside them the whole time: only the store's holds and
//! sweeps keep writers safe; repack steps copy the live blobs of every pack that holds
//! anything unreachable into new packs while all of that goes on. After every step, every live volume and snapshot is read back
//! through a cold store handle (no caches) and compared with a model of what it must hold.
//!
//! Seeds: `FERRY_INTERLEAVING_SEEDS` (default 4) seeds of `FERRY_INTERLEAVING_STEPS`
//! (default 40) steps each; raise both for a soak run.

use ferry_store::{
    Hash, Source, Store, StoreConfig, StoreOptions, VolumeOptions, VolumeSpec, tree,
};
use ferry_transfer::{Progress, TransferStore, Tuning, export, import};
use rand::{Rng, RngCore, SeedableRng, rngs::StdRng};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

const CHUNK: usize = 4 << 10;
const CHUNKS: usize = 8;
const SIZE: usize = CHUNK * CHUNKS;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn options() -> StoreOptions {
    StoreOptions {
        gc_grace: Duration::ZERO,
        // Two dirty chunks are over the limit: writes upload before their commit.
        max_dirty_bytes: CHUNK,
        cache_bytes: 1 << 20,
        ..Default::default()
    }
}

fn spec(name: &str, source: Option<Source>) -> VolumeSpec {
    VolumeSpec {
        name: name.into(),
        capacity_bytes: SIZE as u64,
        options: VolumeOptions {
            chunk_size: CHUNK as u32,
            ..Default::default()
        },
        parameters: Default::default(),
        source,
    }
}

/// What every live volume and snapshot must hold.
#[derive(Default)]
struct Model {
    volumes: BTreeMap<String, Vec<u8>>,
    snapshots: BTreeMap<String, Vec<u8>>,
}

/// Reads a root's bytes through `store`'s blob layer.
async fn read_root(store: &Store, root: Hash) -> Vec<u8> {
    let mut out = vec![0u8; SIZE];
    for i in 0..CHUNKS {
        let h = tree::lookup(store.blobs(), root, i as u64)
            .await
            .unwrap_or_else(|e| panic!("page of chunk {i} of root {root}: {e}"));
        if !h.is_zero() {
            let c = store
                .blobs()
                .get_chunk(&h)
                .await
                .unwrap_or_else(|e| panic!("chunk {i} ({h}) of root {root}: {e}"));
            out[i * CHUNK..(i + 1) * CHUNK].copy_from_slice(&c);
        }
    }
    out
}

async fn check(config: &StoreConfig, model: &Model, step: usize, what: &str) {
    let cold = Store::open(config, options()).await.unwrap();
    for (id, want) in &model.volumes {
        let head = cold
            .head(id)
            .await
            .unwrap_or_else(|e| panic!("step {step} ({what}): volume {id}: {e}"));
        let got = read_root(&cold, head.root).await;
        assert!(
            &got == want,
            "step {step} ({what}): volume {id} does not read back as written"
        );
    }
    for (id, want) in &model.snapshots {
        let s = cold
            .get_snapshot(id)
            .await
            .unwrap_or_else(|e| panic!("step {step} ({what}): snapshot {id}: {e}"));
        let got = read_root(&cold, s.root).await;
        assert!(
            &got == want,
            "step {step} ({what}): snapshot {id} does not read back as taken"
        );
    }
}

fn pick<'a>(rng: &mut StdRng, keys: impl Iterator<Item = &'a String>) -> Option<String> {
    let keys: Vec<&String> = keys.collect();
    (!keys.is_empty()).then(|| keys[rng.random_range(0..keys.len())].clone())
}

async fn run_seed(seed: u64, steps: usize) -> usize {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig::fs(dir.path().join("store").to_string_lossy());
    let transfer_dir = tempfile::tempdir().unwrap();
    let t = TransferStore::open(
        &StoreConfig::fs(transfer_dir.path().to_string_lossy()),
        None,
    )
    .await
    .unwrap();
    let store = Store::open(&config, options()).await.unwrap();

    // GC beside everything, in a loop, with no grace period.
    let stop = Arc::new(AtomicBool::new(false));
    let passes = Arc::new(AtomicUsize::new(0));
    let gc_task = {
        let (store, stop, passes) = (store.clone(), stop.clone(), passes.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                store.gc().await.expect("a GC pass");
                passes.fetch_add(1, Ordering::Relaxed);
                tokio::task::yield_now().await;
            }
        })
    };

    let mut rng = StdRng::seed_from_u64(seed);
    let mut model = Model::default();
    let mut n = 0usize;
    let mut repacked = 0usize;
    for step in 0..steps {
        n += 1;
        let op = rng.random_range(0..100);
        let what = match op {
            // Create and fill a volume, writing over the dirty limit before the flush.
            0..=14 if model.volumes.len() < 6 => {
                let v = store
                    .create_volume(spec(&format!("v{n}"), None))
                    .await
                    .unwrap();
                let h = store.open_volume(v.id()).await.unwrap();
                let mut bytes = vec![0u8; SIZE];
                // Reuse earlier content now and then: chunks GC may have condemned.
                if let Some(old) = pick(&mut rng, model.volumes.keys())
                    && rng.random_bool(0.5)
                {
                    bytes.copy_from_slice(&model.volumes[&old]);
                } else {
                    rng.fill_bytes(&mut bytes);
                }
                h.write_at(0, &bytes).await.unwrap();
                tokio::task::yield_now().await;
                h.flush().await.unwrap();
                model.volumes.insert(v.id().to_string(), bytes);
                "create"
            }
            // Overwrite a few chunks of a volume, sometimes with another volume's chunk.
            0..=39 => {
                let Some(id) = pick(&mut rng, model.volumes.keys()) else {
                    continue;
                };
                let h = store.open_volume(&id).await.unwrap();
                let mut bytes = model.volumes[&id].clone();
                for _ in 0..rng.random_range(1..4) {
                    let c = rng.random_range(0..CHUNKS);
                    let mut buf = vec![0u8; CHUNK];
                    match pick(&mut rng, model.volumes.keys()) {
                        Some(other) if rng.random_bool(0.3) => {
                            let k = rng.random_range(0..CHUNKS);
                            buf.copy_from_slice(&model.volumes[&other][k * CHUNK..(k + 1) * CHUNK]);
                        }
                        _ if rng.random_bool(0.1) => {} // a hole
                        _ => rng.fill_bytes(&mut buf),
                    }
                    h.write_at((c * CHUNK) as u64, &buf).await.unwrap();
                    bytes[c * CHUNK..(c + 1) * CHUNK].copy_from_slice(&buf);
                }
                h.flush().await.unwrap();
                model.volumes.insert(id, bytes);
                "write"
            }
            40..=54 if model.snapshots.len() < 6 => {
                let Some(id) = pick(&mut rng, model.volumes.keys()) else {
                    continue;
                };
                let s = store
                    .create_snapshot(&format!("s{n}"), &id, Default::default())
                    .await
                    .unwrap();
                model.snapshots.insert(s.id, model.volumes[&id].clone());
                "snapshot"
            }
            55..=64 if model.volumes.len() < 6 => {
                let from_snap = rng.random_bool(0.5);
                let (source, bytes) = if from_snap {
                    let Some(s) = pick(&mut rng, model.snapshots.keys()) else {
                        continue;
                    };
                    let b = model.snapshots[&s].clone();
                    (Source::Snapshot(s), b)
                } else {
                    let Some(v) = pick(&mut rng, model.volumes.keys()) else {
                        continue;
                    };
                    let b = model.volumes[&v].clone();
                    (Source::Volume(v), b)
                };
                let v = store
                    .create_volume(spec(&format!("c{n}"), Some(source)))
                    .await
                    .unwrap();
                model.volumes.insert(v.id().to_string(), bytes);
                "clone"
            }
            65..=74 => {
                if rng.random_bool(0.5) {
                    let Some(id) = pick(&mut rng, model.volumes.keys()) else {
                        continue;
                    };
                    store.delete_volume(&id).await.unwrap();
                    model.volumes.remove(&id);
                    "delete volume"
                } else {
                    let Some(id) = pick(&mut rng, model.snapshots.keys()) else {
                        continue;
                    };
                    store.delete_snapshot(&id).await.unwrap();
                    model.snapshots.remove(&id);
                    "delete snapshot"
                }
            }
            // Export a snapshot and import it back into the same store as a new volume:
            // every chunk is found already stored (or condemned) there.
            75..=89 if model.volumes.len() < 6 => {
                let Some(s) = pick(&mut rng, model.snapshots.keys()) else {
                    continue;
                };
                export(
                    &store,
                    &s,
                    &t,
                    Arc::new(Progress::default()),
                    Tuning::default(),
                )
                .await
                .unwrap();
                let rec = store.get_snapshot(&s).await.unwrap();
                let commit = t
                    .get_commit(&rec.source_volume_id, &s)
                    .await
                    .unwrap()
                    .unwrap();
                let r = import(
                    &t,
                    &commit,
                    &store,
                    &format!("i{n}"),
                    Arc::new(Progress::default()),
                    Tuning::default(),
                )
                .await
                .unwrap();
                model
                    .volumes
                    .insert(r.volume_id.unwrap(), model.snapshots[&s].clone());
                "import"
            }
            90..=94 => {
                store.gc().await.unwrap();
                "gc"
            }
            // Repack every pack holding anything unreachable, beside the GC loop and the
            // writers: live blobs move to new packs, the old ones go a run later.
            _ => {
                let r = store.gc_repacking(Default::default(), 1.0).await.unwrap();
                repacked += r.repacked;
                "repack"
            }
        };
        check(&config, &model, step, what).await;
    }
    stop.store(true, Ordering::Relaxed);
    gc_task.await.unwrap();
    // Quiet now: two more passes, then everything live still reads back, and what the
    // model no longer holds is gone.
    store.gc().await.unwrap();
    store.gc().await.unwrap();
    check(&config, &model, steps, "final").await;
    assert!(
        passes.load(Ordering::Relaxed) > 0,
        "the GC loop ran beside the steps"
    );
    repacked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_live_root_reads_back_after_every_step() {
    let seeds = env_or("FERRY_INTERLEAVING_SEEDS", 4);
    let steps = env_or("FERRY_INTERLEAVING_STEPS", 40) as usize;
    let mut repacked = 0;
    for seed in 0..seeds {
        println!("seed {seed}, {steps} steps");
        repacked += run_seed(seed, steps).await;
    }
    assert!(repacked > 0, "repack steps rewrote packs");
}
