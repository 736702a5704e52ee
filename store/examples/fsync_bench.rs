//! What an fsync costs on moto S3 on loopback (or on `FERRY_BENCH_S3_ENDPOINT`): the median latency of a 4 KiB write and its
//! fsync through a taken-up volume (one journal record) beside the median latency of one
//! PUT of the same size, and the objects written per GiB of sequential 1 MiB writes with an
//! fsync every 16 MiB and every 64 MiB (counted at the store's object layer). Run by `hack/bench-node.sh` after fio (needs moto:
//! `hack/install-test-servers.sh`).
//!
//! First the same on a local folder (under `FERRY_BENCH_DIR`, default `.cache`), over a
//! volume written whole, checkpoints included.
//!
//! Environment: `FERRY_BENCH_FSYNCS` (default 300), `FERRY_BENCH_SEQ_MIB` (default 256),
//! `FERRY_BENCH_FOLDER_OPS` (default 4000).

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

/// 4 KiB random writes, each followed by an fsync, over a volume written whole first, on a
/// local folder: the median fsync and the mean time per write + fsync, the checkpoints the
/// dirty limit forces included.
async fn folder(ops: usize) -> Result<(), BoxError> {
    let base = std::env::var("FERRY_BENCH_DIR").unwrap_or_else(|_| ".cache".into());
    std::fs::create_dir_all(&base)?;
    let dir = tempfile::tempdir_in(base)?;
    let store = Store::open(
        &StoreConfig::fs(dir.path().to_string_lossy()),
        StoreOptions::default(),
    )
    .await?;
    let size = 256u64 << 20;
    let id = store.create_volume(spec("folder", size)).await?.record.id;
    let h = store.open_volume_as(&id, Some("bench#0".into())).await?;
    h.fence().await?;
    let mut rng = StdRng::seed_from_u64(2);
    let mut buf = vec![0u8; 1 << 20];
    for mib in 0..size >> 20 {
        rng.fill(&mut buf[..]);
        h.write_at(mib << 20, &buf).await?;
    }
    h.checkpoint().await?;
    let mut block = vec![0u8; 4096];
    let mut fsync = Vec::with_capacity(ops);
    let all = Instant::now();
    for _ in 0..ops {
        rng.fill(&mut block[..]);
        h.write_at(rng.random_range(0..size / 4096) * 4096, &block)
            .await?;
        let t = Instant::now();
        h.flush().await?;
        fsync.push(t.elapsed());
    }
    let mean = all.elapsed() / ops as u32;
    println!(
        "folder: 4 KiB write + fsync over a written 256 MiB volume: fsync median {:.0} us, \
         mean per write + fsync {:.0} us (checkpoints included), {ops} ops",
        median(fsync).as_secs_f64() * 1e6,
        mean.as_secs_f64() * 1e6
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let fsyncs = env_u64("FERRY_BENCH_FSYNCS", 300) as usize;
    let seq_mib = env_u64("FERRY_BENCH_SEQ_MIB", 256);
    folder(env_u64("FERRY_BENCH_FOLDER_OPS", 4000) as usize).await?;
    // moto on loopback, or the S3 server the caller runs behind a benchmark link
    // (`FERRY_BENCH_S3_ENDPOINT`, bucket `bench`; `hack/bench-wan.sh`).
    let (mut server, params, label) = match std::env::var("FERRY_BENCH_S3_ENDPOINT") {
        Ok(e) => {
            let p: BTreeMap<String, String> = [
                ("backend", "s3"),
                ("bucket", "bench"),
                ("root", "/fsync-bench/"),
                ("endpoint", e.as_str()),
                ("region", "us-east-1"),
                ("accessKeyId", "test"),
                ("secretAccessKey", "test"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
            (None, p, "S3 over the link")
        }
        Err(_) => {
            let server = TestServer::start(Kind::S3)
                .await
                .ok_or("moto is not installed: run hack/install-test-servers.sh")?;
            let p = server.bucket("ferry-fsync-bench").await;
            (Some(server), p, "moto S3")
        }
    };
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
        "{label}: 4 KiB write + fsync median {:.2} ms; one 4 KiB PUT median {:.2} ms; ratio {:.2}",
        f.as_secs_f64() * 1e3,
        p.as_secs_f64() * 1e3,
        f.as_secs_f64() / p.as_secs_f64()
    );

    // Objects per GiB of sequential writes, an fsync every 16 MiB and every 64 MiB.
    for every in [16u64, 64] {
        let seq = seq_mib << 20;
        let id = store
            .create_volume(spec(&format!("seq-{every}"), seq))
            .await?
            .record
            .id;
        let h = store
            .open_volume_as(&id, Some(format!("bench#{every}")))
            .await?;
        h.fence().await?;
        let before = store.requests().writes;
        let mut buf = vec![0u8; 1 << 20];
        let t = Instant::now();
        for mib in 0..seq_mib {
            rng.fill(&mut buf[..]);
            h.write_at(mib << 20, &buf).await?;
            if (mib + 1) % every == 0 {
                h.flush().await?;
            }
        }
        h.flush().await?;
        let secs = t.elapsed().as_secs_f64();
        let written = store.requests().writes - before;
        println!(
            "{label}: {seq_mib} MiB sequential, fsync every {every} MiB, in {secs:.1} s ({:.0} MB/s): {written} objects written, {:.0} per GiB",
            seq as f64 / secs / 1e6,
            written as f64 * 1024.0 / seq_mib as f64
        );
    }
    if let Some(s) = server.as_mut() {
        s.stop();
    }
    Ok(())
}
