//! A transfer store written by someone else: without a key, indexes and commits are plain
//! data anyone with bucket access can write. Each test writes the attack by hand into a real
//! folder transfer store and asserts the refusal, its reason, and that nothing was read
//! outside the store, allocated from the crafted length, or imported.

use ferry_store::{Store, StoreConfig, StoreOptions, VolumeOptions, VolumeSpec};
use ferry_transfer::{Error, Progress, TransferStore, Tuning, export, import};
use std::path::Path;
use std::sync::Arc;

const CHUNK: u64 = 64 << 10;

async fn store() -> Store {
    Store::open(&StoreConfig::memory(), StoreOptions::default())
        .await
        .expect("store")
}

async fn transfer(root: &Path) -> TransferStore {
    TransferStore::open(&StoreConfig::fs(root.to_string_lossy()), None)
        .await
        .expect("transfer store")
}

/// A volume of four chunks exported to the folder at `root`; returns the commit's id.
async fn exported(src: &Store, root: &Path) -> String {
    let v = src
        .create_volume(VolumeSpec {
            name: "v".into(),
            capacity_bytes: 4 * CHUNK,
            options: VolumeOptions::default(),
            parameters: Default::default(),
            source: None,
        })
        .await
        .expect("volume");
    let h = src.open_volume(v.id()).await.expect("open");
    for i in 0..4u8 {
        h.write_at(u64::from(i) * CHUNK, &vec![i + 1; CHUNK as usize])
            .await
            .expect("write");
    }
    h.flush().await.expect("flush");
    let snap = src
        .create_snapshot("s", v.id(), Default::default())
        .await
        .expect("snapshot");
    let t = transfer(root).await;
    export(
        src,
        &snap.id,
        &t,
        Arc::new(Progress::default()),
        Tuning::default(),
    )
    .await
    .expect("export");
    format!("{}/{}", v.id(), snap.id)
}

/// The one index the export wrote: its path and JSON.
fn the_index(root: &Path) -> (std::path::PathBuf, serde_json::Value) {
    let dir = root.join("index");
    let entry = std::fs::read_dir(&dir)
        .expect("index dir")
        .next()
        .expect("an index")
        .expect("entry");
    let text = std::fs::read_to_string(entry.path()).expect("read");
    (entry.path(), serde_json::from_str(&text).expect("json"))
}

#[tokio::test]
async fn an_index_naming_a_pack_outside_the_store_is_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path().join("transfer");
    let src = store().await;
    let commit_id = exported(&src, &root).await;
    // A file outside the store that the attack would have the import read as a pack.
    std::fs::write(dir.path().join("secret"), b"not for the importer").expect("secret");
    let (path, mut idx) = the_index(&root);
    idx["pack"] = "../../secret".into();
    std::fs::write(&path, serde_json::to_vec(&idx).expect("json")).expect("write");

    let t = transfer(&root).await;
    let e = t.load_index().await.expect_err("refused");
    assert!(matches!(e, Error::Tampered(_)), "{e:?}");
    assert!(e.to_string().contains("describes pack"), "{e}");
    let commit = t.find_commit(&commit_id).await.expect("commit");
    let dst = store().await;
    let e = import(
        &t,
        &commit,
        &dst,
        "imported",
        Arc::new(Progress::default()),
        Tuning::default(),
    )
    .await
    .expect_err("import refused");
    assert!(matches!(e, Error::Tampered(_)), "{e:?}");
    assert!(
        dst.volume_by_name("imported")
            .await
            .expect("lookup")
            .is_none(),
        "no volume was made"
    );
}

#[tokio::test]
async fn an_index_with_a_crafted_length_allocates_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path().join("transfer");
    let src = store().await;
    let commit_id = exported(&src, &root).await;
    let (path, mut idx) = the_index(&root);
    // 2^40 bytes: an importer that trusted it would try to allocate a TiB.
    idx["entries"][0]["len"] = serde_json::json!(1u64 << 40);
    std::fs::write(&path, serde_json::to_vec(&idx).expect("json")).expect("write");
    let t = transfer(&root).await;
    let e = t.load_index().await.expect_err("refused");
    assert!(
        e.to_string().contains("length 1099511627776"),
        "names the length: {e}"
    );
    // An offset that overflows with its length.
    idx["entries"][0]["len"] = serde_json::json!(100);
    idx["entries"][0]["offset"] = serde_json::json!(u64::MAX - 10);
    std::fs::write(&path, serde_json::to_vec(&idx).expect("json")).expect("write");
    let e = t.load_index().await.expect_err("refused");
    assert!(e.to_string().contains("ends past the largest pack"), "{e}");
    // A blob name that is a path.
    idx["entries"][0]["offset"] = serde_json::json!(0);
    idx["entries"][0]["name"] = "../../../etc/passwd".into();
    std::fs::write(&path, serde_json::to_vec(&idx).expect("json")).expect("write");
    let e = t.load_index().await.expect_err("refused");
    assert!(e.to_string().contains("not 64 hex digits"), "{e}");
    let commit = t.find_commit(&commit_id).await.expect("commit");
    let dst = store().await;
    assert!(
        import(
            &t,
            &commit,
            &dst,
            "imported",
            Arc::new(Progress::default()),
            Tuning::default(),
        )
        .await
        .is_err()
    );
    assert!(
        dst.volume_by_name("imported")
            .await
            .expect("lookup")
            .is_none()
    );
}

#[tokio::test]
async fn an_index_file_with_another_name_or_size_is_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path().join("transfer");
    let src = store().await;
    exported(&src, &root).await;
    let t = transfer(&root).await;
    std::fs::write(root.join("index").join("..json"), b"{}").expect("write");
    let e = t.load_index().await.expect_err("refused");
    assert!(e.to_string().contains("not a pack index name"), "{e}");
    std::fs::remove_file(root.join("index").join("..json")).expect("rm");
    // An index far larger than the format allows is refused before it is read.
    let big = root.join("index").join(format!("{}.json", "ab".repeat(32)));
    let f = std::fs::File::create(&big).expect("create");
    f.set_len(ferry_transfer::bounds::MAX_INDEX_BYTES + 1)
        .expect("sparse file");
    let e = t.load_index().await.expect_err("refused");
    assert!(e.to_string().contains("more than the"), "{e}");
}

#[tokio::test]
async fn commit_ids_that_are_paths_are_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path().join("transfer");
    let src = store().await;
    let commit_id = exported(&src, &root).await;
    let t = transfer(&root).await;
    for id in ["../../x/snap", "vol/../../..", "./s", "v/.."] {
        let e = t.find_commit(id).await.expect_err(id);
        assert!(
            e.to_string().contains("is not an id") || e.to_string().contains("no commit"),
            "{id}: {e}"
        );
    }
    // A commit whose content names another volume than its path is refused.
    let (volume, snap) = commit_id.split_once('/').expect("id");
    let path = root
        .join("commits")
        .join(volume)
        .join(format!("{snap}.json"));
    let mut c: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
    c["volumeId"] = "vol-other".into();
    std::fs::write(&path, serde_json::to_vec(&c).expect("json")).expect("write");
    let e = t.find_commit(&commit_id).await.expect_err("refused");
    assert!(e.to_string().contains("not the"), "{e}");
    c["volumeId"] = volume.into();
    c["sizeBytes"] = serde_json::json!(u64::MAX);
    std::fs::write(&path, serde_json::to_vec(&c).expect("json")).expect("write");
    let e = t.find_commit(&commit_id).await.expect_err("refused");
    assert!(e.to_string().contains("volume size"), "{e}");
}
