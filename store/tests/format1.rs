//! A store written before packs (format 1: every chunk and page its own object), kept in
//! `tests/fixtures/format1/` as the code of that time wrote it, is opened, read, written
//! and collected by this build without changing its layout (older processes sharing it keep
//! reading what this one writes), then upgraded: later collections fold its blobs into
//! packs, and every volume and snapshot reads back the same throughout.

use ferry_store::{
    Kind, SnapshotFilter, Source, Store, StoreConfig, StoreOptions, VolumeOptions, VolumeSpec,
    layout,
};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

const SIZE: u64 = 64 << 10;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// The fixture copied into a temporary folder (tests change it).
pub fn fixture() -> (tempfile::TempDir, StoreConfig, BTreeMap<String, String>) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/format1");
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&src.join("store"), &dir.path().join("store"));
    let expected =
        serde_json::from_slice(&std::fs::read(src.join("expected.json")).unwrap()).unwrap();
    let config = StoreConfig::fs(dir.path().join("store").to_string_lossy());
    (dir, config, expected)
}

fn options() -> StoreOptions {
    StoreOptions {
        gc_grace: Duration::ZERO,
        ..Default::default()
    }
}

async fn digest_of(s: &Store, id: &str) -> String {
    let h = s.open_volume(id).await.unwrap();
    hex::encode(Sha256::digest(h.read_at(0, SIZE as usize).await.unwrap()))
}

/// Every volume and the snapshot read back as the fixture recorded them.
async fn check(s: &Store, expected: &BTreeMap<String, String>, round: &str) {
    for name in ["deflate", "zstd", "clone", "journaled"] {
        let v = s.volume_by_name(name).await.unwrap().expect(name);
        assert_eq!(
            digest_of(s, v.id()).await,
            expected[name],
            "{round}: {name}"
        );
    }
    let (snaps, _) = s
        .list_snapshots(&SnapshotFilter::default(), None, 0)
        .await
        .unwrap();
    assert_eq!(snaps.len(), 1, "{round}");
    let r = s
        .create_volume(VolumeSpec {
            name: format!("restore-{round}"),
            capacity_bytes: SIZE,
            options: VolumeOptions::default(),
            parameters: Default::default(),
            source: Some(Source::Snapshot(snaps[0].id.clone())),
        })
        .await
        .unwrap();
    assert_eq!(
        digest_of(s, r.id()).await,
        expected["deflate-snap"],
        "{round}: snapshot"
    );
    s.delete_volume(r.id()).await.unwrap();
}

async fn loose(s: &Store) -> (usize, usize) {
    let c = s.raw_objects().list(layout::CHUNKS).await.unwrap().len();
    let p = s.raw_objects().list(layout::TREES).await.unwrap().len();
    (c, p)
}

async fn packs(s: &Store) -> usize {
    s.raw_objects().list(layout::PACKS).await.unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_format_1_store_is_read_written_collected_and_upgraded() {
    let (_dir, config, expected) = fixture();
    let s = Store::open(&config, options()).await.unwrap();
    assert_eq!(s.format().await.unwrap(), 1);
    check(&s, &expected, "as found").await;

    // Written in its own layout: new chunks are objects of their own, no pack appears.
    let (chunks_before, _) = loose(&s).await;
    let z = s.volume_by_name("zstd").await.unwrap().unwrap();
    let h = s.open_volume(z.id()).await.unwrap();
    let mut want = h.read_at(0, SIZE as usize).await.unwrap();
    h.write_at(1000, b"written by the packing build")
        .await
        .unwrap();
    want[1000..1028].copy_from_slice(b"written by the packing build");
    h.flush().await.unwrap();
    assert!(loose(&s).await.0 > chunks_before);
    assert_eq!(packs(&s).await, 0, "a format-1 store gets no packs");
    let mut expected = expected;
    expected.insert("zstd".into(), hex::encode(Sha256::digest(&want)));

    // The journaled volume is taken up by a node: its records replay, then commit.
    let j = s.volume_by_name("journaled").await.unwrap().unwrap();
    let taken = s
        .open_volume_as(j.id(), Some("node-b#2".into()))
        .await
        .unwrap();
    taken.fence().await.unwrap();
    drop(taken);

    // Collected as before: the deleted volume's chunks go, everything live stays. (The
    // fixture recorded the default grace period; the test needs none.)
    let mut policy = s.gc_policy();
    policy.grace = Duration::ZERO;
    s.set_gc_policy(policy).await.unwrap();
    let stored = s.stored_blobs(Kind::Chunk).await.unwrap();
    for _ in 0..2 {
        s.gc().await.unwrap();
    }
    assert!(s.stored_blobs(Kind::Chunk).await.unwrap() < stored);
    assert_eq!(packs(&s).await, 0);
    check(&s, &expected, "collected").await;

    // Upgraded: writes go to packs, and collections fold the objects into packs.
    assert!(s.upgrade_format().await.unwrap());
    assert!(!s.upgrade_format().await.unwrap(), "once");
    assert_eq!(s.format().await.unwrap(), 2);
    let h = s.open_volume(z.id()).await.unwrap();
    h.write_at(5000, b"after the upgrade").await.unwrap();
    want[5000..5017].copy_from_slice(b"after the upgrade");
    h.flush().await.unwrap();
    expected.insert("zstd".into(), hex::encode(Sha256::digest(&want)));
    assert!(packs(&s).await > 0, "format 2 writes packs");
    let live = s.stored_blobs(Kind::Chunk).await.unwrap();
    for _ in 0..3 {
        s.gc().await.unwrap();
    }
    assert_eq!(loose(&s).await, (0, 0), "every blob folded into packs");
    assert!(s.stored_blobs(Kind::Chunk).await.unwrap() <= live);
    let cold = Store::open(&config, options()).await.unwrap();
    assert_eq!(cold.format().await.unwrap(), 2);
    check(&cold, &expected, "upgraded").await;
}
