//! The batched tree walk against the whole-tree diff, on a real (memory) store: the same
//! chunks and pages, pages after what they name, and what it holds at once bounded by its
//! batch and window whatever the amount of data.

use ferry_store::diff_walk::DiffWalk;
use ferry_store::tree;
use ferry_store::{Hash, Store, StoreConfig, StoreOptions, VolumeOptions, VolumeSpec};
use std::collections::{HashMap, HashSet};

const CHUNK: u64 = 4 << 10;

/// A new volume of 4 KiB chunks; returns its id.
async fn new_volume(store: &Store, name: &str, capacity: u64) -> String {
    store
        .create_volume(VolumeSpec {
            name: name.into(),
            capacity_bytes: capacity,
            options: VolumeOptions {
                chunk_size: CHUNK as u32,
                ..VolumeOptions::default()
            },
            parameters: Default::default(),
            source: None,
        })
        .await
        .expect("volume")
        .id()
        .to_string()
}

async fn sparse_volume(store: &Store, chunks: u64, seed: u64) -> (String, Hash) {
    let id = new_volume(store, &format!("sparse-{seed}"), 1 << 40).await;
    write(store, &id, chunks, seed).await;
    (id.clone(), root(store, &id).await)
}

/// Writes `chunks` distinct chunks spread over the whole TiB (every 52 428th slot, so every
/// level of the tree has many pages).
async fn write(store: &Store, id: &str, chunks: u64, seed: u64) {
    let h = store.open_volume(id).await.expect("open");
    let stride = (1u64 << 40) / CHUNK / chunks.max(1);
    for i in 0..chunks {
        let mut buf = vec![0u8; CHUNK as usize];
        buf[..8].copy_from_slice(&(seed * 1_000_003 + i).to_le_bytes());
        h.write_at(i * stride * CHUNK, &buf).await.expect("write");
    }
    h.flush().await.expect("flush");
}

async fn root(store: &Store, id: &str) -> Hash {
    store.get_volume(id).await.expect("volume").head.root
}

/// Walks `new` against `old` in batches of `batch` with `window`; checks it against the
/// whole diff and returns the peak held.
async fn walk_matches_diff(
    store: &Store,
    new: Hash,
    old: Hash,
    batch: usize,
    window: usize,
) -> usize {
    let whole = tree::diff(store.blobs(), new, store.blobs(), old)
        .await
        .expect("diff");
    let mut walk = DiffWalk::new(store.blobs(), new, store.blobs(), old, window);
    let (mut chunks, mut pages) = (Vec::new(), Vec::new());
    while let Some(b) = walk.next_batch(batch).await.expect("batch") {
        assert!(
            b.chunks.len() <= batch,
            "a batch holds at most {batch} chunks"
        );
        chunks.extend(b.chunks);
        pages.extend(b.pages);
    }
    let set = |v: &[Hash]| v.iter().copied().collect::<HashSet<_>>();
    assert_eq!(
        chunks.len(),
        whole.chunks.len(),
        "each chunk once (all distinct)"
    );
    assert_eq!(set(&chunks), set(&whole.chunks));
    let whole_pages: HashSet<(Hash, u8)> = whole.pages.iter().copied().collect();
    assert_eq!(pages.iter().copied().collect::<HashSet<_>>(), whole_pages);
    // Post order: every page comes after each differing page it names.
    let at: HashMap<Hash, usize> = pages
        .iter()
        .enumerate()
        .map(|(i, (h, _))| (*h, i))
        .collect();
    for (i, (h, level)) in pages.iter().enumerate() {
        if *level == 0 {
            continue;
        }
        let page = tree::PageSource::page(store.blobs(), h)
            .await
            .expect("page");
        for e in &page.entries {
            if let Some(j) = at.get(e) {
                assert!(*j < i, "page {h} before a page it names");
            }
        }
    }
    walk.peak_held()
}

#[tokio::test]
async fn the_walk_hands_out_the_whole_diff_holding_a_bounded_amount() {
    let store = Store::open(&StoreConfig::memory(), StoreOptions::default())
        .await
        .expect("store");
    let (batch, window) = (128, 512);
    // A fixed bound: four levels of two pages of at most 1024 entries, a batch, the window.
    let bound = 8 * 1024 + batch + window;
    let mut peaks = Vec::new();
    for (seed, chunks) in [(1u64, 1_000u64), (2, 4_000)] {
        let (_, r) = sparse_volume(&store, chunks, seed).await;
        let peak = walk_matches_diff(&store, r, Hash::ZERO, batch, window).await;
        assert!(peak <= bound, "{chunks} chunks: held {peak} > {bound}");
        peaks.push((chunks, peak));
    }
    // Four times the data, no more held (the sparse tree's pages hold few entries each).
    assert!(
        peaks[1].1 < 4_000 && peaks[0].1 < 1_000 + bound,
        "{peaks:?}"
    );

    // An incremental walk: only the changed chunks and the pages above them.
    let (id, before) = sparse_volume(&store, 2_000, 3).await;
    write(&store, &id, 50, 4).await;
    let after = root(&store, &id).await;
    walk_matches_diff(&store, after, before, batch, window).await;
    let whole = tree::diff(store.blobs(), after, store.blobs(), before)
        .await
        .expect("diff");
    assert_eq!(whole.chunks.len(), 50);
}

#[tokio::test]
async fn a_chunk_seen_again_within_the_window_is_handed_out_once() {
    let store = Store::open(&StoreConfig::memory(), StoreOptions::default())
        .await
        .expect("store");
    let id = new_volume(&store, "same", 64 * CHUNK).await;
    let h = store.open_volume(&id).await.expect("open");
    h.write_at(0, &vec![7u8; (64 * CHUNK) as usize])
        .await
        .expect("write");
    h.flush().await.expect("flush");
    let r = root(&store, &id).await;
    let count = |window| {
        let store = &store;
        async move {
            let mut walk = DiffWalk::new(store.blobs(), r, store.blobs(), Hash::ZERO, window);
            let mut n = 0;
            while let Some(b) = walk.next_batch(16).await.expect("batch") {
                n += b.chunks.len();
            }
            n
        }
    };
    assert_eq!(count(8).await, 1, "64 slots of one chunk: handed out once");
    assert_eq!(count(0).await, 64, "no window: once per slot, never fewer");
}

#[tokio::test]
async fn a_one_pass_walk_reads_pages_through_the_cache_without_filling_it() {
    let dir = tempfile::tempdir().expect("dir");
    let config = StoreConfig::fs(dir.path().to_string_lossy());
    let writer = Store::open(&config, StoreOptions::default())
        .await
        .expect("store");
    let (_, r) = sparse_volume(&writer, 300, 5).await;
    let all = tree::diff(writer.blobs(), r, writer.blobs(), Hash::ZERO)
        .await
        .expect("diff");
    assert!(all.pages.len() > 4, "a tree of several pages");
    // A second store on the same folder starts with an empty page cache.
    let reader = Store::open(&config, StoreOptions::default())
        .await
        .expect("reopen");
    let one_pass = tree::OnePass(reader.blobs());
    let mut walk = DiffWalk::new(&one_pass, r, &one_pass, Hash::ZERO, 0);
    let mut pages = Vec::new();
    while let Some(b) = walk.next_batch(64).await.expect("batch") {
        pages.extend(b.pages);
    }
    assert_eq!(pages.len(), all.pages.len(), "the same walk");
    for (h, _) in &pages {
        assert!(
            reader.blobs().cached_page(h).is_none(),
            "page {h} was added to the cache"
        );
    }
    // A cached page is served from the cache (and stays there).
    tree::PageSource::page(reader.blobs(), &r)
        .await
        .expect("cache the root");
    tree::PageSource::page(&one_pass, &r)
        .await
        .expect("root once more");
    assert!(reader.blobs().cached_page(&r).is_some());
}
