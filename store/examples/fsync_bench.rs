//! What an fsync costs on moto S3 on loopback: the median latency of a 4 KiB write and its
//! fsync through a taken-up volume (one journal record) beside the median latency of one
//! PUT of the same size, and the objects written per GiB of sequential 1 MiB writes with an
//! fsync every 16 MiB. Run by `hack/bench-node.sh` after fio (needs moto:
//! `hack/install-test-servers.sh`).
//!
//! Environment: `FERRY_BENCH_FSYNCS` (default 300), `FERRY_BENCH_SEQ_MIB` (default 256).

use ferry_store::{Objects, Store, StoreConfig, StoreOptions, VolumeOptions, VolumeSpec};
use ferry_testkit::{Kind, TestServer};
use rand::{Rng, SeedableRng, rngs::StdRng};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

type BoxError = Box<dyn std::error::Error>;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn spec(name: &str, size: u64) -> VolumeSpec {
    VolumeSpec {
        name: name.into(),
        capacity_bytes: size,
        options: VolumeOptions::default(),
        parameters: BTreeMap::new(),
        source: None,
    }
}

/// Objects in the bucket that writing volume `id` adds to: chunks, pages, its own records.
async fn count(objects: &Objects, id: &str) -> Result<usize, BoxError> {
    let mut n = 0;
    for dir in [
        "chunks/".to_string(),
        "trees/".to_string(),
        format!("volumes/{id}/"),
    ] {
        n += objects.list(&dir).await?.len();
    }
    Ok(n)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let fsyncs = env_u64("FERRY_BENCH_FSYNCS", 300) as usize;
    let seq_mib = env_u64("FERRY_BENCH_SEQ_MIB", 256);
    let mut server = TestServer::start(Kind::S3)
        .await
        .ok_or("moto is not installed: run hack/install-test-servers.sh")?;
    let params = server.bucket("ferry-fsync-bench").await;
    let config = StoreConfig::from_params(&params)?;
    let store = Store::open(&config, StoreOptions::default()).await?;
    let objects = Objects::open(&config, 8)?;
    let mut rng = StdRng::seed_from_u64(1);

    // fsync latency: 4 KiB random write + fsync through a fenced writer.
    let size = 1u64 << 30;
    let id = store.create_volume(spec("fsync", size)).await?.record.id;
    let h = store.open_volume_as(&id, Some("bench#1".into())).await?;
    h.fence().await?;
    let mut block = vec![0u8; 4096];
    let mut fsync = Vec::with_capacity(fsyncs);
    for _ in 0..fsyncs {
        rng.fill(&mut block[..]);
        let off = rng.random_range(0..size / 4096) * 4096;
        h.write_at(off, &block).await?;
        let t = Instant::now();
        h.flush().await?;
        fsync.push(t.elapsed());
    }
    h.checkpoint().await?;
    // One PUT of the same size (a record is the block plus about 50 bytes).
    let mut put = Vec::with_capacity(fsyncs);
    for i in 0..fsyncs {
        rng.fill(&mut block[..]);
        let mut body = block.clone();
        body.extend_from_slice(&[0u8; 50]);
        let t = Instant::now();
        objects.put(&format!("bench/put-{i}"), body).await?;
        put.push(t.elapsed());
    }
    let (f, p) = (median(fsync), median(put));
    println!(
        "moto S3: 4 KiB write + fsync median {:.2} ms; one 4 KiB PUT median {:.2} ms; ratio {:.2}",
        f.as_secs_f64() * 1e3,
        p.as_secs_f64() * 1e3,
        f.as_secs_f64() / p.as_secs_f64()
    );

    // Objects per GiB of sequential writes, an fsync every 16 MiB.
    let seq = seq_mib << 20;
    let id = store.create_volume(spec("seq", seq)).await?.record.id;
    let h = store.open_volume_as(&id, Some("bench#2".into())).await?;
    h.fence().await?;
    let before = count(&objects, &id).await?;
    let mut buf = vec![0u8; 1 << 20];
    let t = Instant::now();
    for mib in 0..seq_mib {
        rng.fill(&mut buf[..]);
        h.write_at(mib << 20, &buf).await?;
        if (mib + 1) % 16 == 0 {
            h.flush().await?;
        }
    }
    h.flush().await?;
    let secs = t.elapsed().as_secs_f64();
    let written = count(&objects, &id).await? - before;
    println!(
        "moto S3: {seq_mib} MiB sequential in {secs:.1} s ({:.0} MB/s): {written} objects, {:.0} per GiB",
        seq as f64 / secs / 1e6,
        written as f64 * 1024.0 / seq_mib as f64
    );
    server.stop();
    Ok(())
}
