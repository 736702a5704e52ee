//! A volume of a store written before packs (the format-1 fixture of the chunk store's
//! tests) migrates: exported from the store as it was found, and again after the store was
//! upgraded and its blobs folded into packs, each time imported into a new (packed) store, where
//! it reads back as the fixture recorded it.

use ferry_store::{Store, StoreConfig, StoreOptions};
use ferry_transfer::{Progress, TransferStore, Tuning, export, import};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        match e.file_type().unwrap().is_dir() {
            true => copy_dir(&e.path(), &dest),
            false => drop(std::fs::copy(e.path(), dest).unwrap()),
        }
    }
}

async fn migrate(source: &Store, name: &str, round: &str) -> String {
    let v = source.volume_by_name(name).await.unwrap().expect(name);
    let snap = source
        .create_snapshot(&format!("{name}-{round}"), v.id(), Default::default())
        .await
        .unwrap();
    let t_dir = tempfile::tempdir().unwrap();
    let t = TransferStore::open(&StoreConfig::fs(t_dir.path().to_string_lossy()), None)
        .await
        .unwrap();
    export(
        source,
        &snap.id,
        &t,
        Arc::new(Progress::default()),
        Tuning::default(),
    )
    .await
    .unwrap();
    let dest_dir = tempfile::tempdir().unwrap();
    let dest = Store::open(
        &StoreConfig::fs(dest_dir.path().to_string_lossy()),
        StoreOptions::default(),
    )
    .await
    .unwrap();
    let commit = t.find_commit(v.id()).await.unwrap();
    let r = import(
        &t,
        &commit,
        &dest,
        name,
        Arc::new(Progress::default()),
        Tuning::default(),
    )
    .await
    .unwrap();
    let h = dest.open_volume(&r.volume_id.unwrap()).await.unwrap();
    let size = h.size().await as usize;
    hex::encode(Sha256::digest(h.read_at(0, size).await.unwrap()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_volume_of_a_format_1_store_migrates_before_and_after_the_upgrade() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../store/tests/fixtures/format1");
    let expected: BTreeMap<String, String> =
        serde_json::from_slice(&std::fs::read(fixture.join("expected.json")).unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture.join("store"), dir.path());
    let config = StoreConfig::fs(dir.path().to_string_lossy());
    let s = Store::open(&config, StoreOptions::default()).await.unwrap();
    assert_eq!(s.format().await.unwrap(), 1);
    for name in ["deflate", "journaled"] {
        assert_eq!(migrate(&s, name, "found").await, expected[name], "{name}");
    }
    s.upgrade_format().await.unwrap();
    let mut policy = s.gc_policy();
    policy.grace = std::time::Duration::ZERO;
    s.set_gc_policy(policy).await.unwrap();
    // The first run folds the blobs into packs; the second deletes some of the originals.
    s.gc().await.unwrap();
    s.gc().await.unwrap();
    for name in ["clone", "zstd"] {
        assert_eq!(
            migrate(&s, name, "upgraded").await,
            expected[name],
            "{name}"
        );
    }
}
