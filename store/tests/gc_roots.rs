//! Garbage collection never acts on a partial view of the roots: a generation record it
//! cannot decode (damaged, or written by a newer build during a rolling upgrade) stops the
//! pass before it deletes anything, with an error naming the record. On a memory store (an
//! object store's create-if-absent: records land whole) and on a local folder.

use ferry_store::{Error, Store, StoreConfig, StoreOptions, VolumeOptions, VolumeSpec, layout};
use std::collections::BTreeMap;
use std::time::Duration;

fn spec(name: &str) -> VolumeSpec {
    VolumeSpec {
        name: name.into(),
        capacity_bytes: 256 << 10,
        options: VolumeOptions {
            chunk_size: 16 << 10,
            ..Default::default()
        },
        parameters: BTreeMap::new(),
        source: None,
    }
}

fn options() -> StoreOptions {
    StoreOptions {
        gc_grace: Duration::ZERO,
        ..Default::default()
    }
}

async fn stored_chunks(s: &Store) -> usize {
    s.stored_blobs(ferry_store::Kind::Chunk).await.unwrap()
}

/// A volume whose data only its generation records reach, and garbage beside it.
async fn volume_and_garbage(s: &Store) -> String {
    let v = s.create_volume(spec("kept")).await.unwrap();
    let h = s.open_volume(v.id()).await.unwrap();
    h.write_at(0, &[7u8; 64 << 10]).await.unwrap();
    h.write_at(100 << 10, b"only a root reaches these bytes")
        .await
        .unwrap();
    h.flush().await.unwrap();
    let g = s.create_volume(spec("garbage")).await.unwrap();
    let h = s.open_volume(g.id()).await.unwrap();
    h.write_at(0, &[9u8; 48 << 10]).await.unwrap();
    h.flush().await.unwrap();
    s.delete_volume(g.id()).await.unwrap();
    v.id().to_string()
}

/// Replaces every generation record of volume `id` with `bytes`; returns their paths.
async fn rewrite_generations(s: &Store, id: &str, bytes: &[u8]) -> Vec<String> {
    let mut gens: Vec<String> = s
        .raw_objects()
        .list(&layout::gens(id))
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.path)
        .collect();
    gens.sort();
    for g in &gens {
        s.raw_objects().put(g, bytes.to_vec()).await.unwrap();
    }
    gens
}

async fn unreadable_root_stops_gc(s: Store, bytes: &[u8], says: &str) {
    let id = volume_and_garbage(&s).await;
    let before = stored_chunks(&s).await;
    // The first pass condemns the garbage; the next one would delete it.
    let first = s.gc().await.unwrap();
    assert!(first.condemned > 0, "{first:?}");
    let rewritten = rewrite_generations(&s, &id, bytes).await;
    for pass in 0..2 {
        match s.gc().await {
            Err(Error::Corrupt { path, reason }) => {
                assert!(rewritten.contains(&path), "pass {pass}: names {path}");
                assert!(reason.contains(says), "pass {pass}: {reason}");
                assert!(
                    reason.contains("GC deletes nothing"),
                    "pass {pass}: {reason}"
                );
            }
            other => panic!("pass {pass}: GC must stop on an unreadable root, got {other:?}"),
        }
    }
    assert_eq!(stored_chunks(&s).await, before, "nothing was deleted");
    // The volume's readers refuse it too, naming it, instead of reading an older state.
    let err = s.head(&id).await.unwrap_err();
    let newest = rewritten.last().unwrap();
    assert!(err.to_string().contains(newest.as_str()), "{err}");
}

const NEWER: &[u8] = br#"{"format": 2, "volumeId": "vol-x", "generation": 1, "anything": true}"#;
const DAMAGED: &[u8] = b"\x01\x02 not a generation record";

#[tokio::test]
async fn a_newer_generation_record_stops_gc_in_memory() {
    let s = Store::open(&StoreConfig::memory(), options())
        .await
        .unwrap();
    unreadable_root_stops_gc(s, NEWER, "newer build").await;
}

#[tokio::test]
async fn an_undecodable_generation_record_stops_gc_in_memory() {
    let s = Store::open(&StoreConfig::memory(), options())
        .await
        .unwrap();
    unreadable_root_stops_gc(s, DAMAGED, "does not parse").await;
}

#[tokio::test]
async fn a_newer_generation_record_stops_gc_on_a_folder() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&StoreConfig::fs(dir.path().to_string_lossy()), options())
        .await
        .unwrap();
    unreadable_root_stops_gc(s, NEWER, "newer build").await;
}

#[tokio::test]
async fn an_undecodable_generation_record_stops_gc_on_a_folder() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&StoreConfig::fs(dir.path().to_string_lossy()), options())
        .await
        .unwrap();
    unreadable_root_stops_gc(s, DAMAGED, "does not parse").await;
}
