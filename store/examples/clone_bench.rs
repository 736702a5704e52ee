//! The chunk-store work of an in-cluster clone (an ApplicationClone's volumes): a group
//! snapshot of the volume, a volume made from it, the group deleted. Metadata only, so it
//! should cost the same for any size. Prints the wall time of each, on a local-folder store.
//!
//! Usage: cargo run --release -p ferry-store --example clone_bench [DIR]

use ferry_store::{Source, Store, StoreConfig, StoreOptions, VolumeOptions, VolumeSpec};
use std::time::Instant;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = match std::env::args().nth(1) {
        Some(d) => std::path::PathBuf::from(d),
        None => std::env::temp_dir().join(format!("ferry-clone-bench-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir)?;
    let store = Store::open(
        &StoreConfig::fs(dir.to_string_lossy()),
        StoreOptions::default(),
    )
    .await?;
    for (label, size) in [("1 GiB", 1u64 << 30), ("100 GiB", 100u64 << 30)] {
        let v = store
            .create_volume(VolumeSpec {
                name: format!("bench-{label}"),
                capacity_bytes: size,
                options: VolumeOptions::default(),
                parameters: Default::default(),
                source: None,
            })
            .await?;
        // 64 MiB of data spread over the volume, the rest holes.
        let h = store.open_volume(v.id()).await?;
        let block = vec![0x5au8; 1 << 20];
        for i in 0..64u64 {
            h.write_at(i * (size / 64), &block).await?;
        }
        h.flush().await?;
        drop(h);
        for round in 0..3 {
            let t = Instant::now();
            let (g, members) = store
                .create_group_snapshot(
                    &format!("g-{label}-{round}"),
                    &[v.id().to_string()],
                    Default::default(),
                )
                .await?;
            let snap = t.elapsed();
            let copy = store
                .create_volume(VolumeSpec {
                    name: format!("copy-{label}-{round}"),
                    capacity_bytes: size,
                    options: VolumeOptions::default(),
                    parameters: Default::default(),
                    source: Some(Source::Snapshot(members[0].id.clone())),
                })
                .await?;
            let made = t.elapsed();
            store.delete_group_snapshot(&g.id).await?;
            let total = t.elapsed();
            println!(
                "{label} volume, 64 MiB written: group snapshot {:.1} ms, volume from it {:.1} ms, group deleted {:.1} ms, total {:.1} ms (copy {})",
                snap.as_secs_f64() * 1e3,
                (made - snap).as_secs_f64() * 1e3,
                (total - made).as_secs_f64() * 1e3,
                total.as_secs_f64() * 1e3,
                copy.id()
            );
        }
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
