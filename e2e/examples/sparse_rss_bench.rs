//! Peak memory of `ferryctl transfer export` and `import` of a 1 TiB sparse volume as its
//! data grows (`FERRY_BENCH_DATA_GIB`, default "8,16"), in two layouts: `spread`, one
//! 64 KiB chunk at even steps over the whole volume (the most tree pages for the data), and
//! `runs`, the data in 64 MiB runs (one level-0 tree page each) at even steps. Every chunk
//! differs (4 KiB of random bytes, then zeros, so that the stores stay small on disk:
//! memory follows the number of chunks, not their size). `FERRY_BENCH_LAYOUTS` picks
//! layouts (default "spread,runs"). Each step is its own process under GNU time. Local folders under
//! `FERRY_BENCH_DIR` (default `.cache/bench-sparse`). Run by `hack/bench-transfer.sh sparse`
//! with `FERRYCTL_BIN` set to a release build. `FERRY_BENCH_KEEP=1` keeps the last step's
//! stores and transfer store (to profile `ferryctl` on them).

use ferry_e2e::bench::measure;
use ferry_store::{Store, StoreConfig, StoreOptions, VolumeOptions, VolumeSpec};
use rand::{RngCore, SeedableRng, rngs::StdRng};
use std::path::PathBuf;
use std::process::Command;

type BoxError = Box<dyn std::error::Error>;

const TIB: u64 = 1 << 40;
const CHUNK: u64 = 64 << 10;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let ferryctl = std::env::var("FERRYCTL_BIN").map_err(|_| "set FERRYCTL_BIN")?;
    let base = PathBuf::from(
        std::env::var("FERRY_BENCH_DIR").unwrap_or_else(|_| ".cache/bench-sparse".into()),
    );
    let sizes: Vec<u64> = std::env::var("FERRY_BENCH_DATA_GIB")
        .unwrap_or_else(|_| "8,16".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let layouts = std::env::var("FERRY_BENCH_LAYOUTS").unwrap_or_else(|_| "spread,runs".into());
    println!(
        "| layout | data GiB | chunks | export s | export peak RSS MB | import s | import peak RSS MB |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for (layout, gib) in layouts
        .split(',')
        .flat_map(|l| sizes.iter().map(move |g| (l.trim().to_string(), *g)))
    {
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base)?;
        let a = base.join("store-a");
        let store = Store::open(
            &StoreConfig::fs(a.to_string_lossy()),
            StoreOptions::default(),
        )
        .await?;
        let v = store
            .create_volume(VolumeSpec {
                name: "sparse".into(),
                capacity_bytes: TIB,
                options: VolumeOptions::default(),
                parameters: Default::default(),
                source: None,
            })
            .await?;
        let chunks = (gib << 30) / CHUNK;
        // Chunks per run, and the step between runs.
        let run = if layout == "runs" {
            (64 << 20) / CHUNK
        } else {
            1
        };
        let stride = TIB / (chunks / run) / CHUNK * CHUNK;
        let h = store.open_volume(v.id()).await?;
        let mut rng = StdRng::seed_from_u64(gib);
        let mut buf = vec![0u8; CHUNK as usize];
        for i in 0..chunks {
            rng.fill_bytes(&mut buf[..4096]);
            h.write_at((i / run) * stride + (i % run) * CHUNK, &buf)
                .await?;
        }
        h.flush().await?;
        drop(h);
        let snap = store
            .create_snapshot("s1", v.id(), Default::default())
            .await?
            .id;
        let t = base.join("transfer");
        let exp = measure(Command::new(&ferryctl).args([
            "transfer",
            "export",
            "--store",
            &a.to_string_lossy(),
            "--snapshot",
            &snap,
            "--transfer",
            &t.to_string_lossy(),
            "--json",
        ]))?;
        let imp = measure(Command::new(&ferryctl).args([
            "transfer",
            "import",
            "--store",
            &base.join("store-b").to_string_lossy(),
            "--commit",
            v.id(),
            "--name",
            "sparse",
            "--transfer",
            &t.to_string_lossy(),
            "--json",
        ]))?;
        println!(
            "| {layout} | {gib} | {chunks} | {:.1} | {:.0} | {:.1} | {:.0} |",
            exp.wall, exp.rss_mb, imp.wall, imp.rss_mb
        );
    }
    if std::env::var("FERRY_BENCH_KEEP").as_deref() != Ok("1") {
        let _ = std::fs::remove_dir_all(&base);
    }
    Ok(())
}
