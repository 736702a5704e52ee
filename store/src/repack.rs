//! What a collection finds stored, and repacking: packs whose live share has fallen under
//! [`REPACK_BELOW`] (and small packs, merged) have their live blobs copied into new packs and
//! are condemned; the next run deletes them once every blob still live in them is held by
//! an object that stays (see `gc`). Blobs stored one object each (format 1) are folded into
//! packs the same way once the store is format 2.
//!
//! Repacking reads and writes through the blob layer like any writer and needs no hold: what
//! it copies is live at this run's mark, the new packs are younger than the grace period
//! (never condemned by the next run), and the originals go only once the copies exist.

use crate::blobs::Layout;
use crate::codec::Kind;
use crate::error::Result;
use crate::hash::Hash;
use crate::layout;
use crate::pack;
use crate::store::Store;
use crate::torn::TORN_AFTER;
use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

/// A pack is repacked when less than this share of its frame bytes is live.
pub(crate) const REPACK_BELOW: f64 = 0.5;
/// Packs smaller than this are merged (when there are at least two).
pub const SMALL_PACK: u64 = (pack::TARGET / 8) as u64;

/// What the mark reached.
pub(crate) struct Live {
    pub chunks: HashSet<Hash>,
    pub pages: HashSet<Hash>,
}

impl Live {
    pub(crate) fn has(&self, b: &(Kind, Hash)) -> bool {
        match b.0 {
            Kind::Chunk => self.chunks.contains(&b.1),
            Kind::Page => self.pages.contains(&b.1),
        }
    }
}

/// One stored object a collection may delete: a pack, a blob stored alone, or a
/// temporary file.
#[derive(Clone, Debug)]
pub(crate) struct Object {
    pub path: String,
    pub size: u64,
    pub modified: Option<SystemTime>,
    pub pack: bool,
    /// The blobs in it, and each one's stored length.
    pub blobs: Vec<(Kind, Hash)>,
    pub lens: Vec<u32>,
}

/// Every object a collection may delete, by path.
#[derive(Default)]
pub(crate) struct Stored {
    by_path: HashMap<String, Object>,
}

impl Stored {
    /// The packs (as the index knows them, freshly refreshed) and the objects under
    /// `chunks/`, `trees/` and `tmp/`.
    pub(crate) async fn list(store: &Store) -> Result<Stored> {
        let mut by_path = HashMap::new();
        for (info, entries) in store.blobs().index().packs_with_entries() {
            let path = layout::pack(&info.id);
            by_path.insert(
                path.clone(),
                Object {
                    path,
                    size: info.size,
                    modified: info.modified,
                    pack: true,
                    blobs: entries.iter().map(|(k, h, _)| (*k, *h)).collect(),
                    lens: entries.iter().map(|(_, _, l)| *l).collect(),
                },
            );
        }
        for (dir, kind) in [
            (layout::CHUNKS, Some(Kind::Chunk)),
            (layout::TREES, Some(Kind::Page)),
            (layout::TMP, None),
        ] {
            for m in store.objects().list(dir).await? {
                let modified = match m.modified {
                    Some(t) => Some(t),
                    None => store
                        .objects()
                        .stat(&m.path)
                        .await?
                        .and_then(|s| s.modified),
                };
                // A temporary file is being written until it is renamed into place: only
                // an old one is a dead writer's, whatever the grace period.
                if kind.is_none()
                    && modified
                        .and_then(|t| SystemTime::now().duration_since(t).ok())
                        .is_none_or(|age| age < TORN_AFTER)
                {
                    continue;
                }
                let blob = kind.zip(layout::hash_of_path(&m.path));
                by_path.insert(
                    m.path.clone(),
                    Object {
                        path: m.path,
                        size: m.size,
                        modified,
                        pack: false,
                        blobs: blob.into_iter().collect(),
                        lens: blob.map(|_| m.size as u32).into_iter().collect(),
                    },
                );
            }
        }
        Ok(Stored { by_path })
    }

    pub(crate) fn get(&self, path: &str) -> Option<&Object> {
        self.by_path.get(path)
    }

    /// Every blob held by an object not in `except`.
    pub(crate) fn blobs_outside(&self, except: &HashSet<&str>) -> HashSet<(Kind, Hash)> {
        self.by_path
            .values()
            .filter(|o| !except.contains(o.path.as_str()))
            .flat_map(|o| o.blobs.iter().copied())
            .collect()
    }

    pub(crate) fn remove(&mut self, gone: &HashSet<String>) {
        self.by_path.retain(|p, _| !gone.contains(p));
    }

    pub(crate) fn clear(&mut self) {
        self.by_path.clear();
    }

    fn iter(&self) -> impl Iterator<Item = &Object> {
        self.by_path.values()
    }
}

/// What this run condemns as it is, and what it repacks (then condemns).
pub(crate) struct Plan {
    pub condemn: Vec<Object>,
    pub repack: Vec<Object>,
}

/// Sorts the objects old enough to act on: nothing live in it, condemned; a pack mostly
/// dead (or small, beside other small ones), or a live blob stored alone in a format-2
/// store, repacked.
pub(crate) fn plan(
    stored: &Stored,
    live: &Live,
    layout: Layout,
    below: f64,
    old_enough: &dyn Fn(Option<SystemTime>) -> bool,
) -> Plan {
    let mut condemn = Vec::new();
    let mut repack = Vec::new();
    let mut small = Vec::new();
    for o in stored.iter().filter(|o| old_enough(o.modified)) {
        let live_bytes: u64 = o
            .blobs
            .iter()
            .zip(&o.lens)
            .filter(|(b, _)| live.has(b))
            .map(|(_, l)| u64::from(*l))
            .sum();
        if live_bytes == 0 {
            condemn.push(o.clone());
        } else if !o.pack {
            if layout != Layout::Loose {
                repack.push(o.clone());
            }
        } else {
            let frames: u64 = o.lens.iter().map(|l| u64::from(*l)).sum();
            if (live_bytes as f64) < below * frames as f64 {
                repack.push(o.clone());
            } else if o.size < SMALL_PACK {
                small.push(o.clone());
            }
        }
    }
    // Merged only when together they make a pack that is not small itself: small packs
    // that stay small are left alone rather than copied round by every run.
    if small.len() >= 2 && small.iter().map(|o| o.size).sum::<u64>() >= SMALL_PACK {
        repack.extend(small);
    }
    Plan { condemn, repack }
}

/// Copies the live blobs of `objects` that no other object holds into new packs, a pack's
/// worth at a time. Returns the bytes written.
pub(crate) async fn copy_live(
    store: &Store,
    objects: &[Object],
    live: &Live,
    stored: &Stored,
) -> Result<u64> {
    let except: HashSet<&str> = objects.iter().map(|o| o.path.as_str()).collect();
    let elsewhere = stored.blobs_outside(&except);
    let mut wanted: HashMap<(Kind, Hash), u32> = HashMap::new();
    for o in objects {
        for (b, l) in o.blobs.iter().zip(&o.lens) {
            if live.has(b) && !elsewhere.contains(b) {
                wanted.insert(*b, *l);
            }
        }
    }
    let mut written = 0;
    for kind in [Kind::Chunk, Kind::Page] {
        let mut batch = Vec::new();
        let mut bytes = 0u64;
        let mut of_kind: Vec<(Hash, u32)> = wanted
            .iter()
            .filter(|((k, _), _)| *k == kind)
            .map(|((_, h), l)| (*h, *l))
            .collect();
        of_kind.sort();
        let last = of_kind.len();
        for (i, (h, l)) in of_kind.into_iter().enumerate() {
            batch.push(h);
            bytes += u64::from(l);
            if bytes >= pack::TARGET as u64 || i + 1 == last {
                let frames = store.blobs().read_frames(kind, &batch).await?;
                let frames = frames.into_iter().map(|(_, f, _)| f).collect();
                written += store.blobs().write_frames(frames).await?;
                batch.clear();
                bytes = 0;
            }
        }
    }
    Ok(written)
}
