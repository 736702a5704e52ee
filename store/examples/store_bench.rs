//! Chunk-store benchmarks; figures go to docs/benchmarks.md. Run with
//! `hack/bench.sh` (release build). All on the local-folder backend in a temporary folder.
//!
//! 1. Per-core limits: SHA-256 and deflate-1 over the same mixed content.
//! 2. Ingest (write + flush) and cold read of a 1 GiB volume with mixed content.
//! 3. CreateSnapshot and clone latency for 1 GiB, 100 GiB and 1 TiB volumes (sparse).
//! 4. Chunk-size choice: ingest speed, objects, tree size, bytes a 1 % scattered change dirties.

use ferry_store::codec::{self, CodecPolicy, Kind};
use ferry_store::{
    Hash, Source, Store, StoreConfig, StoreOptions, VolumeOptions, VolumeSpec, layout,
};
use rand::{Rng, RngCore, SeedableRng, rngs::StdRng};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;

/// Database-like content, in 1 MiB pieces: a third CSV rows (compressible), a third random
/// (incompressible), a third zeros (free space).
fn mixed(rng: &mut StdRng, size: u64) -> Vec<u8> {
    let mut out = vec![0u8; size as usize];
    for (i, piece) in out.chunks_mut(MIB as usize).enumerate() {
        match i % 3 {
            0 => {
                let mut pos = 0;
                let mut row = rng.random_range(0..1_000_000u64);
                while pos < piece.len() {
                    let line = format!(
                        "{row},customer-{:05},{}.{:02},2026-11-{:02},\"{}\"\n",
                        rng.random_range(0..99_999),
                        rng.random_range(1..9_999),
                        rng.random_range(0..99),
                        rng.random_range(1..29),
                        ["shipped", "pending", "returned", "cancelled"][rng.random_range(0..4)]
                    );
                    let n = line.len().min(piece.len() - pos);
                    piece[pos..pos + n].copy_from_slice(&line.as_bytes()[..n]);
                    pos += n;
                    row += 1;
                }
            }
            1 => rng.fill_bytes(piece),
            _ => {}
        }
    }
    out
}

/// Writes `data` from offset 0 in 1 MiB writes.
async fn write_all(h: &ferry_store::VolumeHandle, data: &[u8]) {
    for (i, piece) in data.chunks(MIB as usize).enumerate() {
        h.write_at(i as u64 * MIB, piece).await.expect("write");
    }
}

fn mbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}

fn spec(name: &str, capacity: u64, chunk: u32, source: Option<Source>) -> VolumeSpec {
    VolumeSpec {
        name: name.into(),
        capacity_bytes: capacity,
        options: VolumeOptions {
            chunk_size: chunk,
            ..Default::default()
        },
        parameters: BTreeMap::new(),
        source,
    }
}

async fn open(dir: &std::path::Path) -> Store {
    Store::open(
        &StoreConfig::fs(dir.to_string_lossy()),
        StoreOptions::default(),
    )
    .await
    .expect("store")
}

/// Encodes every chunk as the store would; returns stored bytes and the time taken.
fn encode_all(chunks: &[&[u8]]) -> (u64, Duration) {
    let t = Instant::now();
    let stored = chunks
        .iter()
        .map(|c| {
            codec::encode(Kind::Chunk, c, CodecPolicy::default())
                .0
                .len() as u64
        })
        .sum();
    (stored, t.elapsed())
}

fn limits(data: &[u8]) {
    let non_zero: Vec<&[u8]> = data
        .chunks(64 << 10)
        .filter(|c| !ferry_store::hash::is_all_zero(c))
        .collect();
    let bytes: u64 = non_zero.iter().map(|c| c.len() as u64).sum();
    let t = Instant::now();
    for c in &non_zero {
        std::hint::black_box(Hash::of(c));
    }
    let sha = t.elapsed();
    let (stored, enc) = encode_all(&non_zero);
    println!(
        "## per-core limits on the non-zero part ({} MB)",
        bytes / 1_000_000
    );
    println!("sha256            {:8.0} MB/s", mbps(bytes, sha));
    println!(
        "encode (probe + deflate-1 where it pays) {:8.0} MB/s, stored {} MB",
        mbps(bytes, enc),
        stored / 1_000_000
    );
    // Deflate alone on the compressible third (every chunk compressed), as pigz -1 measures.
    let text: Vec<&[u8]> = data
        .chunks(MIB as usize)
        .step_by(3)
        .flat_map(|m| m.chunks(64 << 10))
        .collect();
    let text_bytes: u64 = text.iter().map(|c| c.len() as u64).sum();
    let (packed, d) = encode_all(&text);
    println!(
        "deflate-1 on the CSV third {:8.0} MB/s, ratio {:.2}",
        mbps(text_bytes, d),
        packed as f64 / text_bytes as f64
    );
    let both = sha + enc;
    println!(
        "hash + encode     {:8.0} MB/s per core, {:.0} MB/s on 2 cores",
        mbps(bytes, both),
        2.0 * mbps(bytes, both)
    );
    // Per byte of the whole volume (zeros are detected, not hashed).
    println!(
        "limit per volume byte (2 cores): {:.0} MB/s",
        2.0 * mbps(data.len() as u64, both)
    );
}

/// The same ingest into the memory service: the CPU path without the disk.
async fn ingest_memory(data: &[u8]) {
    let store = Store::open(&StoreConfig::memory(), StoreOptions::default())
        .await
        .expect("store");
    let size = data.len() as u64;
    let v = store
        .create_volume(spec("mem", size, 64 << 10, None))
        .await
        .expect("create");
    let h = store.open_volume(v.id()).await.expect("open");
    let t = Instant::now();
    write_all(&h, data).await;
    h.flush().await.expect("flush");
    let w = t.elapsed();
    println!(
        "ingest into memory     {:.0} MB/s ({:.1} s)",
        mbps(size, w),
        w.as_secs_f64()
    );
}

async fn ingest(data: &[u8]) {
    let dir = tempfile::tempdir_in(bench_dir()).expect("tmp");
    let store = open(dir.path()).await;
    let size = data.len() as u64;
    let v = store
        .create_volume(spec("ingest", size, 64 << 10, None))
        .await
        .expect("create");
    let h = store.open_volume(v.id()).await.expect("open");
    let t = Instant::now();
    write_all(&h, data).await;
    let report = h.flush().await.expect("flush");
    let w = t.elapsed();
    let cold = open(dir.path()).await;
    let rh = cold.open_volume(v.id()).await.expect("open");
    let t = Instant::now();
    let mut check = Vec::with_capacity(data.len());
    for i in 0..size / MIB {
        check.extend_from_slice(&rh.read_at(i * MIB, MIB as usize).await.expect("read"));
    }
    let r = t.elapsed();
    assert!(check == data, "read back differs");
    println!("## 1 GiB volume, 64 KiB chunks, local folder");
    println!(
        "ingest (write + flush) {:.0} MB/s ({:.1} s), {} chunks uploaded, {} MB stored",
        mbps(size, w),
        w.as_secs_f64(),
        report.chunks_uploaded,
        report.bytes_stored / 1_000_000
    );
    println!(
        "cold read              {:.0} MB/s ({:.1} s)",
        mbps(size, r),
        r.as_secs_f64()
    );
}

async fn snapshot_latency() {
    let dir = tempfile::tempdir_in(bench_dir()).expect("tmp");
    let store = open(dir.path()).await;
    println!("## CreateSnapshot and clone latency (median of 9, local folder)");
    for (label, size) in [
        ("1 GiB", 1u64 << 30),
        ("100 GiB", 100 << 30),
        ("1 TiB", 1 << 40),
    ] {
        let v = store
            .create_volume(spec(label, size, 64 << 10, None))
            .await
            .expect("create");
        // Data at the start, middle and end, so the tree has full-depth paths.
        let h = store.open_volume(v.id()).await.expect("open");
        for off in [0, size / 2, size - MIB] {
            h.write_at(off, &vec![7u8; MIB as usize])
                .await
                .expect("write");
        }
        h.flush().await.expect("flush");
        let mut snaps = Vec::new();
        let mut clones = Vec::new();
        for i in 0..9 {
            let t = Instant::now();
            let s = store
                .create_snapshot(&format!("{label}-s{i}"), v.id(), BTreeMap::new())
                .await
                .expect("snapshot");
            snaps.push(t.elapsed());
            let t = Instant::now();
            store
                .create_volume(spec(
                    &format!("{label}-c{i}"),
                    size,
                    64 << 10,
                    Some(Source::Snapshot(s.id)),
                ))
                .await
                .expect("clone");
            clones.push(t.elapsed());
        }
        snaps.sort();
        clones.sort();
        println!(
            "{label:>8}: snapshot {:6.2} ms, clone {:6.2} ms",
            ms(snaps[4]),
            ms(clones[4])
        );
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

async fn chunk_sizes(data: &[u8]) {
    println!(
        "## chunk size: 256 MiB mixed volume, then 1 % of it rewritten in scattered 4 KiB blocks"
    );
    println!(
        "| chunk | ingest MB/s | chunk objects | tree pages (bytes) | bytes dirtied by 1 % change | change flush MB uploaded |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    let size = data.len() as u64;
    for chunk in [16u32 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20] {
        let dir = tempfile::tempdir_in(bench_dir()).expect("tmp");
        let store = open(dir.path()).await;
        let v = store
            .create_volume(spec("cs", size, chunk, None))
            .await
            .expect("create");
        let h = store.open_volume(v.id()).await.expect("open");
        let t = Instant::now();
        write_all(&h, data).await;
        h.flush().await.expect("flush");
        let w = t.elapsed();
        let chunks = store
            .raw_objects()
            .list(layout::CHUNKS)
            .await
            .expect("list")
            .len();
        let pages: u64 = store
            .raw_objects()
            .list(layout::TREES)
            .await
            .expect("list")
            .iter()
            .map(|o| o.size)
            .sum();
        // 1 % of the volume in 4 KiB blocks at random places, same seed for every size.
        let mut rng = StdRng::seed_from_u64(99);
        let blocks = size / 100 / 4096;
        let mut dirty = std::collections::HashSet::new();
        for _ in 0..blocks {
            let b = rng.random_range(0..size / 4096);
            let mut buf = vec![0u8; 4096];
            rng.fill_bytes(&mut buf);
            h.write_at(b * 4096, &buf).await.expect("write");
            dirty.insert(b * 4096 / chunk as u64);
        }
        let r = h.flush().await.expect("flush");
        println!(
            "| {} KiB | {:.0} | {} | {} | {} MB | {} MB |",
            chunk >> 10,
            mbps(size, w),
            chunks,
            pages,
            dirty.len() as u64 * chunk as u64 / 1_000_000,
            r.bytes_stored / 1_000_000
        );
    }
}

fn bench_dir() -> std::path::PathBuf {
    std::env::var("FERRY_BENCH_DIR")
        .map(Into::into)
        .unwrap_or_else(|_| std::env::temp_dir())
}

#[tokio::main]
async fn main() {
    let mut rng = StdRng::seed_from_u64(1);
    let data = mixed(&mut rng, 1 << 30);
    limits(&data);
    ingest(&data).await;
    ingest_memory(&data).await;
    snapshot_latency().await;
    chunk_sizes(&data[..256 << 20]).await;
}
