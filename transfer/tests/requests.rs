//! Objects an import writes into the destination chunk store, counted at its object layer
//! (not timed): a 64 MiB volume of incompressible data arrives as packs of 16 MiB and a few
//! records, not one object per 64 KiB chunk. The destination is in memory, which keeps
//! everything as objects, as S3, Azure Blob and GCS do.

use ferry_store::{Store, StoreConfig, StoreOptions, VolumeOptions, VolumeSpec};
use ferry_transfer::{Progress, TransferStore, Tuning, export, import};
use rand::{RngCore, SeedableRng, rngs::StdRng};
use std::sync::Arc;

const MIB: u64 = 1 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_of_64_mib_is_a_few_objects() {
    let a = Store::open(&StoreConfig::memory(), StoreOptions::default())
        .await
        .unwrap();
    let v = a
        .create_volume(VolumeSpec {
            name: "data".into(),
            capacity_bytes: 64 * MIB,
            options: VolumeOptions::default(),
            parameters: Default::default(),
            source: None,
        })
        .await
        .unwrap();
    let mut bytes = vec![0u8; (64 * MIB) as usize];
    StdRng::seed_from_u64(5).fill_bytes(&mut bytes);
    let h = a.open_volume(v.id()).await.unwrap();
    h.write_at(0, &bytes).await.unwrap();
    h.flush().await.unwrap();
    let snap = a
        .create_snapshot("s", v.id(), Default::default())
        .await
        .unwrap();
    let folder = tempfile::tempdir().unwrap();
    let t = TransferStore::open(&StoreConfig::fs(folder.path().to_string_lossy()), None)
        .await
        .unwrap();
    export(
        &a,
        &snap.id,
        &t,
        Arc::new(Progress::default()),
        Tuning::default(),
    )
    .await
    .unwrap();
    let commit = t.find_commit(v.id()).await.unwrap();

    let b = Store::open(&StoreConfig::memory(), StoreOptions::default())
        .await
        .unwrap();
    let before = b.requests();
    let r = import(
        &t,
        &commit,
        &b,
        "imported",
        Arc::new(Progress::default()),
        Tuning::default(),
    )
    .await
    .unwrap();
    assert_eq!(r.chunks_copied, 1024, "{r:?}");
    let writes = b.requests().writes - before.writes;
    // About five packs (64 MiB of chunks and the tree pages in 16 MiB packs), the import's GC
    // hold written three times (taken, per batch, before the commit), and the new volume's
    // name, record, first generation and the hold it is made under: against 1 024 chunk
    // objects and 5 pages before packs. Per GiB the packs grow to 64 and the rest stays
    // about the same (one hold write more per batch of 4 096 chunks).
    eprintln!("import of 64 MiB: {writes} objects written");
    assert!(writes <= 13, "{writes} objects written for a 64 MiB import");
    let back = b.open_volume(&r.volume_id.unwrap()).await.unwrap();
    assert_eq!(back.read_at(0, bytes.len()).await.unwrap(), bytes);
}
