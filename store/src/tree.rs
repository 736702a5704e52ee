//! A volume's content as a tree of content-addressed pages.
//!
//! The tree has a fixed depth of [`DEPTH`] levels and [`FANOUT`] entries a page, so a root
//! covers up to 2^40 chunks and never changes shape when a volume grows: expansion only moves
//! the size. Level-0 pages list chunk hashes; higher levels list page hashes. [`Hash::ZERO`]
//! stands for an all-zero chunk or an all-hole subtree and is never stored, so a sparse volume
//! of any size has the root `ZERO`. A snapshot or clone copies one root hash.
//!
//! Page bytes (before blob framing): `level: u8, 3 reserved bytes, count: u32 LE`, then
//! `count` 32-byte hashes; entries past `count` are holes.

use crate::blobs::Blobs;
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::store::Store;
use futures::future::BoxFuture;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Entries per page.
pub const FANOUT: u64 = 1024;
/// Levels of pages.
pub const DEPTH: u32 = 4;
/// Chunks one root can address.
pub const MAX_CHUNKS: u64 = FANOUT * FANOUT * FANOUT * FANOUT;

/// A decoded tree page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    /// 0 for pages of chunk hashes.
    pub level: u8,
    /// Entries; holes past the end are implicit.
    pub entries: Vec<Hash>,
}

impl Page {
    /// The entry at `i` (a hole past the end).
    pub fn entry(&self, i: usize) -> Hash {
        self.entries.get(i).copied().unwrap_or(Hash::ZERO)
    }

    /// Encodes the page, trailing holes trimmed.
    pub fn encode(&self) -> Vec<u8> {
        let count = self
            .entries
            .iter()
            .rposition(|h| !h.is_zero())
            .map_or(0, |p| p + 1);
        let mut out = Vec::with_capacity(8 + count * 32);
        out.push(self.level);
        out.extend_from_slice(&[0, 0, 0]);
        out.extend_from_slice(&(count as u32).to_le_bytes());
        for h in &self.entries[..count] {
            out.extend_from_slice(&h.0);
        }
        out
    }

    /// Decodes page bytes read from `path`.
    ///
    /// # Errors
    /// [`Error::Corrupt`] on a malformed page.
    pub fn decode(path: &str, raw: &[u8]) -> Result<Page> {
        let corrupt = |reason: &str| Error::Corrupt {
            path: path.to_string(),
            reason: reason.to_string(),
        };
        if raw.len() < 8 {
            return Err(corrupt("tree page shorter than its header"));
        }
        let level = raw[0];
        let count = u32::from_le_bytes([raw[4], raw[5], raw[6], raw[7]]) as usize;
        if level as u32 >= DEPTH || count as u64 > FANOUT || raw.len() != 8 + count * 32 {
            return Err(corrupt("tree page header does not match its size"));
        }
        let entries = raw[8..]
            .chunks_exact(32)
            .map(|c| {
                let mut h = [0u8; 32];
                h.copy_from_slice(c);
                Hash(h)
            })
            .collect();
        Ok(Page { level, entries })
    }
}

/// Chunks covered by one entry of a page at `level`.
fn span(level: u32) -> u64 {
    FANOUT.pow(level)
}

/// The chunk hash at `index` under `root` (a hole when absent).
///
/// # Errors
/// Missing or corrupt pages; backend errors.
pub async fn lookup(blobs: &Blobs, root: Hash, index: u64) -> Result<Hash> {
    let mut h = root;
    for level in (0..DEPTH).rev() {
        if h.is_zero() {
            return Ok(Hash::ZERO);
        }
        let page = blobs.get_page(&h).await?;
        h = page.entry(((index / span(level)) % FANOUT) as usize);
    }
    Ok(h)
}

/// As [`lookup`] from cached pages only; `None` when a page on the way is not cached.
pub fn lookup_cached(blobs: &Blobs, root: Hash, index: u64) -> Option<Hash> {
    let mut h = root;
    for level in (0..DEPTH).rev() {
        if h.is_zero() {
            return Some(Hash::ZERO);
        }
        let page = blobs.cached_page(&h)?;
        h = page.entry(((index / span(level)) % FANOUT) as usize);
    }
    Some(h)
}

/// A page built by [`update`], not yet uploaded.
pub struct NewPage {
    hash: Hash,
    raw: Vec<u8>,
    page: Arc<Page>,
}

impl NewPage {
    /// The page's name.
    pub fn hash(&self) -> Hash {
        self.hash
    }
}

impl NewPage {
    /// Its name, bytes and decoded form.
    pub fn into_parts(self) -> (Hash, Vec<u8>, Arc<Page>) {
        (self.hash, self.raw, self.page)
    }
}

/// Computes the root after setting the chunks in `changes` (sorted by index, unique), and the
/// pages that root needs that the old tree lacks.
///
/// # Errors
/// Missing or corrupt pages of the old tree; backend errors.
pub async fn update(
    blobs: &Blobs,
    root: Hash,
    changes: &[(u64, Hash)],
) -> Result<(Hash, Vec<NewPage>)> {
    let idx: Vec<u64> = changes.iter().map(|(i, _)| *i).collect();
    let pages = pages_over(blobs, root, &idx).await?;
    update_from(&pages, root, changes)
}

/// The pages of the tree at `root` on the way to each chunk of `indices` (sorted): what
/// [`update_from`] reads.
///
/// # Errors
/// Missing or corrupt pages; backend errors.
pub async fn pages_over(
    blobs: &Blobs,
    root: Hash,
    indices: &[u64],
) -> Result<HashMap<Hash, Arc<Page>>> {
    let mut out = HashMap::new();
    if let Some(&i) = indices.last()
        && i >= MAX_CHUNKS
    {
        return Err(Error::OutOfRange(format!(
            "chunk index {i} is past the tree's reach"
        )));
    }
    // Level by level: the pages of one level name the next.
    let mut frontier: Vec<(Hash, u64)> = vec![(root, 0)];
    for level in (0..DEPTH).rev() {
        let mut next = Vec::new();
        for (h, base) in frontier {
            if h.is_zero() {
                continue;
            }
            let page = blobs.get_page(&h).await?;
            out.insert(h, page.clone());
            if level == 0 {
                continue;
            }
            let s = span(level);
            let lo = indices.partition_point(|i| *i < base);
            let hi = indices.partition_point(|i| *i < base + s * FANOUT);
            let mut last = None;
            for &i in &indices[lo..hi] {
                let child = (i - base) / s;
                if last != Some(child) {
                    last = Some(child);
                    next.push((page.entry(child as usize), base + child * s));
                }
            }
        }
        frontier = next;
    }
    Ok(out)
}

/// [`update`] from pages already read ([`pages_over`] of the changes' indices).
///
/// # Errors
/// [`Error::Corrupt`] when a page the change needs was not read.
pub fn update_from(
    pages: &HashMap<Hash, Arc<Page>>,
    root: Hash,
    changes: &[(u64, Hash)],
) -> Result<(Hash, Vec<NewPage>)> {
    let mut out = Vec::new();
    if changes.is_empty() {
        return Ok((root, out));
    }
    if let Some(&(i, _)) = changes.last()
        && i >= MAX_CHUNKS
    {
        return Err(Error::OutOfRange(format!(
            "chunk index {i} is past the tree's reach"
        )));
    }
    let new_root = rebuild(pages, root, DEPTH - 1, 0, changes, &mut out)?;
    Ok((new_root, out))
}

fn rebuild(
    pages: &HashMap<Hash, Arc<Page>>,
    old: Hash,
    level: u32,
    base: u64,
    changes: &[(u64, Hash)],
    out: &mut Vec<NewPage>,
) -> Result<Hash> {
    let mut entries = if old.is_zero() {
        Vec::new()
    } else {
        pages
            .get(&old)
            .ok_or_else(|| Error::Corrupt {
                path: format!("tree page {old}"),
                reason: "a page on the way to a changed chunk was not read".into(),
            })?
            .entries
            .clone()
    };
    entries.resize(FANOUT as usize, Hash::ZERO);
    if level == 0 {
        for &(i, h) in changes {
            entries[(i - base) as usize] = h;
        }
    } else {
        let s = span(level);
        let mut rest = changes;
        while let Some(&(first, _)) = rest.first() {
            let child = (first - base) / s;
            let end = rest
                .iter()
                .position(|&(i, _)| (i - base) / s != child)
                .unwrap_or(rest.len());
            let (group, tail) = rest.split_at(end);
            let c = child as usize;
            entries[c] = rebuild(pages, entries[c], level - 1, base + child * s, group, out)?;
            rest = tail;
        }
    }
    let page = Page {
        level: level as u8,
        entries,
    };
    if page.entries.iter().all(Hash::is_zero) {
        return Ok(Hash::ZERO);
    }
    let raw = page.encode();
    let hash = Hash::of(&raw);
    out.push(NewPage {
        hash,
        raw,
        page: Arc::new(page),
    });
    Ok(hash)
}

/// Uploads new pages together (one pack in a packed store); nothing names them before a
/// commit, which comes after this returns. Returns bytes written.
///
/// # Errors
/// Backend errors.
pub async fn upload(store: &Store, pages: Vec<NewPage>, _width: usize) -> Result<u64> {
    let parts = pages.into_iter().map(NewPage::into_parts).collect();
    let (_, n) = store.blobs().put_new(Vec::new(), parts).await?;
    Ok(n)
}

/// Visits every page and chunk reachable from `root`, each once across calls sharing `seen`.
/// Calls `on_chunk` for each chunk hash and records pages in `pages`.
///
/// # Errors
/// Missing or corrupt pages; backend errors.
pub async fn walk(
    blobs: &Blobs,
    root: Hash,
    pages: &mut HashSet<Hash>,
    chunks: &mut HashSet<Hash>,
) -> Result<()> {
    let mut frontier = vec![root];
    for _level in (0..DEPTH).rev() {
        let mut next = Vec::new();
        for h in frontier {
            if h.is_zero() || !pages.insert(h) {
                continue;
            }
            let page = blobs.get_page(&h).await?;
            for e in page.entries.iter().filter(|e| !e.is_zero()) {
                if page.level == 0 {
                    chunks.insert(*e);
                } else {
                    next.push(*e);
                }
            }
        }
        frontier = next;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_round_trip_trims_holes() {
        let mut entries = vec![Hash::ZERO; 10];
        entries[3] = Hash::of(b"a");
        let p = Page { level: 0, entries };
        let raw = p.encode();
        assert_eq!(raw.len(), 8 + 4 * 32);
        let back = Page::decode("x", &raw).unwrap();
        assert_eq!(back.entry(3), Hash::of(b"a"));
        assert_eq!(back.entry(9), Hash::ZERO);
        assert_eq!(back.entry(5000), Hash::ZERO);
    }

    #[test]
    fn malformed_pages_are_refused() {
        assert!(Page::decode("x", &[0; 4]).is_err());
        let mut raw = Page {
            level: 0,
            entries: vec![Hash::of(b"a")],
        }
        .encode();
        raw.push(0);
        assert!(Page::decode("x", &raw).is_err());
        let mut raw = Page {
            level: 0,
            entries: vec![],
        }
        .encode();
        raw[0] = 9;
        assert!(Page::decode("x", &raw).is_err());
    }

    /// Golden fixture: the page format must not change without a format bump.
    #[test]
    fn golden_page() {
        let p = Page {
            level: 1,
            entries: vec![Hash([0xab; 32])],
        };
        assert_eq!(
            hex::encode(p.encode()),
            format!("01000000{}{}", "01000000", "ab".repeat(32))
        );
    }
}

/// Where [`diff`] reads pages from: a chunk store, or a transfer store.
pub trait PageSource: Sync {
    /// The verified page named `h`.
    fn page<'a>(&'a self, h: &'a Hash) -> BoxFuture<'a, Result<Arc<Page>>>;
}

impl PageSource for Blobs {
    fn page<'a>(&'a self, h: &'a Hash) -> BoxFuture<'a, Result<Arc<Page>>> {
        Box::pin(self.get_page(h))
    }
}

/// Pages of a store read for one pass over a tree: served from the page cache when there,
/// never added to it ([`Blobs::get_page_once`]).
pub struct OnePass<'a>(pub &'a Blobs);

impl PageSource for OnePass<'_> {
    fn page<'a>(&'a self, h: &'a Hash) -> BoxFuture<'a, Result<Arc<Page>>> {
        Box::pin(self.0.get_page_once(h))
    }
}

/// What a tree has that another lacks, position by position.
#[derive(Debug, Default, Clone)]
pub struct Diff {
    /// Pages of the new tree not at the same place in the old one, with their level.
    pub pages: Vec<(Hash, u8)>,
    /// Chunks of the new tree not at the same place in the old one (unique, no holes).
    pub chunks: Vec<Hash>,
}

/// Walks `new` (pages from `new_src`) against `old` (pages from `old_src`; [`Hash::ZERO`]
/// for none), descending only where the two differ. Equal subtrees are skipped whole, so
/// the work grows with the change, not with the volume.
///
/// # Errors
/// Missing or corrupt pages; backend errors.
pub async fn diff(
    new_src: &dyn PageSource,
    new: Hash,
    old_src: &dyn PageSource,
    old: Hash,
) -> Result<Diff> {
    let mut out = Diff::default();
    let mut seen_chunks = HashSet::new();
    let mut seen_pages = HashSet::new();
    let mut listed_pages = HashSet::new();
    let mut frontier = vec![(new, old)];
    for _ in 0..DEPTH {
        let mut next = Vec::new();
        for (n, o) in frontier {
            if n == o || n.is_zero() || !seen_pages.insert((n, o)) {
                continue;
            }
            let page = new_src.page(&n).await?;
            let old_page = if o.is_zero() {
                None
            } else {
                Some(old_src.page(&o).await?)
            };
            if listed_pages.insert(n) {
                out.pages.push((n, page.level));
            }
            for (i, e) in page.entries.iter().enumerate() {
                let oe = old_page.as_ref().map_or(Hash::ZERO, |p| p.entry(i));
                if e.is_zero() || *e == oe {
                    continue;
                }
                if page.level == 0 {
                    if seen_chunks.insert(*e) {
                        out.chunks.push(*e);
                    }
                } else {
                    next.push((*e, oe));
                }
            }
        }
        frontier = next;
    }
    Ok(out)
}
