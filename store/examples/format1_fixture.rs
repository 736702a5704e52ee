//! Writes the format-1 fixture store kept in `store/tests/fixtures/format1/`: a chunk store
//! in the layout where every chunk and tree page is its own object (`chunks/`, `trees/`),
//! as stores were written before packs. Volumes of 4 KiB chunks: a deflate and a zstd
//! volume, a snapshot, a clone from the snapshot changed after, a volume whose last writes
//! live only in its journal (segment files), and a deleted volume's unreachable chunks.
//! `expected.json` beside the store gives the SHA-256 of every volume's and snapshot's bytes
//! by CSI name.
//!
//! Usage: cargo run -p ferry-store --example format1_fixture OUT_DIR

use ferry_store::{Codec, Source, Store, StoreConfig, StoreOptions, VolumeOptions, VolumeSpec};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

const SIZE: u64 = 64 << 10;

fn spec(name: &str, codec: Codec, source: Option<Source>) -> VolumeSpec {
    VolumeSpec {
        name: name.into(),
        capacity_bytes: SIZE,
        options: VolumeOptions {
            chunk_size: 4096,
            compression: codec,
        },
        parameters: BTreeMap::new(),
        source,
    }
}

/// Rows of text (compress) and a seeded pseudo-random run (does not).
fn content(seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(SIZE as usize);
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while out.len() < (SIZE / 2) as usize {
        out.extend_from_slice(format!("{seed},row,{},ferry\n", out.len()).as_bytes());
    }
    out.truncate((SIZE / 2) as usize);
    while out.len() < (SIZE * 3 / 4) as usize {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push((x >> 24) as u8);
    }
    out.resize(SIZE as usize, 0); // the last quarter is a hole
    out
}

async fn digest(store: &Store, id: &str) -> Result<String, ferry_store::Error> {
    let h = store.open_volume(id).await?;
    Ok(hex::encode(Sha256::digest(
        h.read_at(0, SIZE as usize).await?,
    )))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::path::PathBuf::from(std::env::args().nth(1).ok_or("name an output folder")?);
    let root = out.join("store");
    let store = Store::open(
        &StoreConfig::fs(root.to_string_lossy()),
        StoreOptions::default(),
    )
    .await?;
    let mut expected = BTreeMap::new();

    let deflate = store
        .create_volume(spec("deflate", Codec::Deflate, None))
        .await?;
    let h = store.open_volume(deflate.id()).await?;
    h.write_at(0, &content(1)).await?;
    h.flush().await?;
    let snap = store
        .create_snapshot("deflate-snap", deflate.id(), BTreeMap::new())
        .await?;
    h.write_at(8192, b"written after the snapshot").await?;
    h.flush().await?;

    let zstd = store.create_volume(spec("zstd", Codec::Zstd, None)).await?;
    let h = store.open_volume(zstd.id()).await?;
    h.write_at(0, &content(2)).await?;
    h.flush().await?;

    let clone = store
        .create_volume(spec(
            "clone",
            Codec::Zstd,
            Some(Source::Snapshot(snap.id.clone())),
        ))
        .await?;
    let h = store.open_volume(clone.id()).await?;
    h.write_at(20_000, &content(3)[..10_000]).await?;
    h.flush().await?;

    // Taken up by a node, checkpointed once, then journaled writes no checkpoint holds.
    let journaled = store
        .create_volume(spec("journaled", Codec::Zstd, None))
        .await?;
    let h = store
        .open_volume_as(journaled.id(), Some("node-a#1".into()))
        .await?;
    h.fence().await?;
    h.write_at(0, &content(4)).await?;
    h.checkpoint().await?;
    h.write_at(4096, b"only in the journal").await?;
    h.flush().await?;
    h.write_at(30_000, &[0x5a; 5000]).await?;
    h.flush().await?;
    let journaled_sum = hex::encode(Sha256::digest(h.read_at(0, SIZE as usize).await?));
    drop(h);

    let gone = store.create_volume(spec("gone", Codec::Zstd, None)).await?;
    let h = store.open_volume(gone.id()).await?;
    h.write_at(0, &content(5)).await?;
    h.flush().await?;
    drop(h);
    store.delete_volume(gone.id()).await?;

    for (name, id) in [
        ("deflate", deflate.id()),
        ("zstd", zstd.id()),
        ("clone", clone.id()),
    ] {
        expected.insert(name.to_string(), digest(&store, id).await?);
    }
    expected.insert("journaled".into(), journaled_sum);
    let restored = store
        .create_volume(spec(
            "snapshot-check",
            Codec::Zstd,
            Some(Source::Snapshot(snap.id.clone())),
        ))
        .await?;
    expected.insert("deflate-snap".into(), digest(&store, restored.id()).await?);
    store.delete_volume(restored.id()).await?;
    std::fs::write(
        out.join("expected.json"),
        serde_json::to_vec_pretty(&expected)?,
    )?;
    println!("fixture written to {}", out.display());
    Ok(())
}
