//! Requests a store makes, counted at its object layer (not timed): a 64 MiB sequential
//! write through a node's handle (taken up under a lease tag, so its fsync checkpoints as a
//! volume server's does) writes a handful of objects, not one per 64 KiB chunk. In memory,
//! which keeps the journal and every record as objects, as S3, Azure Blob and GCS do.

use ferry_store::{Store, StoreConfig, StoreOptions, VolumeOptions, VolumeSpec};
use rand::{RngCore, SeedableRng, rngs::StdRng};

const MIB: u64 = 1 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_64_mib_sequential_write_is_a_few_objects() {
    let s = Store::open(&StoreConfig::memory(), StoreOptions::default())
        .await
        .unwrap();
    let v = s
        .create_volume(VolumeSpec {
            name: "seq".into(),
            capacity_bytes: 256 * MIB,
            options: VolumeOptions::default(), // 64 KiB chunks, zstd
            parameters: Default::default(),
            source: None,
        })
        .await
        .unwrap();
    let h = s
        .open_volume_as(v.id(), Some("node-a#1".into()))
        .await
        .unwrap();
    h.fence().await.unwrap();
    let mut rng = StdRng::seed_from_u64(9);
    let mut piece = vec![0u8; MIB as usize];
    let before = s.requests();
    // Incompressible 1 MiB writes, then the fsync.
    for i in 0..64 {
        rng.fill_bytes(&mut piece);
        h.write_at(i * MIB, &piece).await.unwrap();
    }
    let r = h.flush().await.unwrap();
    assert_eq!(r.chunks_uploaded, 1024, "{r:?}");
    let writes = s.requests().writes - before.writes;
    // Two packs of 32 MiB (the second with the tree pages), the GC hold naming them, and
    // the generation record: against 1 024 chunk objects, 5 pages and the rest before packs.
    eprintln!(
        "64 MiB sequential write: {writes} objects written ({} per GiB)",
        writes * 16
    );
    assert!(writes <= 4, "{writes} objects written for 64 MiB");
    // And it reads back.
    let back = s.open_volume(v.id()).await.unwrap();
    assert_eq!(back.read_at(63 * MIB, MIB as usize).await.unwrap(), piece);
}
