//! Where each packed blob lives, as this process knows it: every pack's entries, read from
//! the packs' own tails, in one table of 44-byte records (a sorted base and a small map of
//! recent additions, merged now and then), plus the packs themselves.
//!
//! The table is loaded on first use and refreshed when a lookup misses (another process may
//! have written the pack since) or finds its pack gone (a collection repacked it): a refresh
//! lists `packs/`, reads the tail of each pack it does not know, and marks the ones no
//! longer listed as gone. Lookups skip gone packs; a blob found in several packs (written
//! twice, or copied by a repack) resolves to a live one. A pack this process writes is added
//! as soon as it is durable.

use crate::codec::Kind;
use crate::error::{Error, Result};
use crate::fanout::fan_out;
use crate::hash::Hash;
use crate::layout;
use crate::objects::Objects;
use crate::pack::{self, Entry, Tail};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

/// A pack as listed.
#[derive(Clone, Debug)]
pub struct PackInfo {
    /// Its id.
    pub id: String,
    /// Stored size.
    pub size: u64,
    /// When it was written, when the backend says.
    pub modified: Option<SystemTime>,
    /// No longer listed: deleted by a collection.
    pub gone: bool,
}

/// Where a blob lives: pack number, offset and length of its frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Loc {
    /// Index into the pack table.
    pub pack: u32,
    /// Offset of the frame.
    pub offset: u32,
    /// Length of the frame.
    pub len: u32,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Key {
    kind: u8,
    hash: [u8; 32],
}

#[derive(Default)]
struct Table {
    packs: Vec<PackInfo>,
    by_id: HashMap<String, u32>,
    /// Sorted by key, then pack.
    base: Vec<(Key, Loc)>,
    recent: HashMap<Key, Vec<Loc>>,
    loaded: bool,
}

/// The blobs of every pack this process has seen.
#[derive(Default)]
pub struct PackIndex {
    table: RwLock<Table>,
    /// Refreshes begun.
    started: AtomicU64,
    /// One refresh at a time; holds the number of the last one finished.
    refreshing: tokio::sync::Mutex<u64>,
}

fn key(kind: Kind, h: &Hash) -> Key {
    Key {
        kind: kind as u8,
        hash: h.0,
    }
}

impl Table {
    fn live(&self, loc: &Loc) -> bool {
        self.packs.get(loc.pack as usize).is_some_and(|p| !p.gone)
    }

    fn lookup(&self, k: &Key) -> Option<Loc> {
        if let Some(locs) = self.recent.get(k)
            && let Some(l) = locs.iter().find(|l| self.live(l))
        {
            return Some(*l);
        }
        let from = self.base.partition_point(|(bk, _)| bk < k);
        self.base[from..]
            .iter()
            .take_while(|(bk, _)| bk == k)
            .map(|(_, l)| *l)
            .find(|l| self.live(l))
    }

    fn add(&mut self, info: PackInfo, entries: &[Entry]) -> u32 {
        if let Some(n) = self.by_id.get(&info.id) {
            return *n;
        }
        let n = self.packs.len() as u32;
        self.by_id.insert(info.id.clone(), n);
        self.packs.push(info);
        for e in entries {
            self.recent
                .entry(key(e.kind, &e.hash))
                .or_default()
                .push(Loc {
                    pack: n,
                    offset: e.offset,
                    len: e.len,
                });
        }
        if self.recent.len() > 4096 + self.base.len() / 8 {
            self.merge();
        }
        n
    }

    /// Folds the recent additions into the sorted base, dropping entries of gone packs.
    fn merge(&mut self) {
        let recent = std::mem::take(&mut self.recent);
        let mut add: Vec<(Key, Loc)> = recent
            .into_iter()
            .flat_map(|(k, locs)| locs.into_iter().map(move |l| (k, l)))
            .collect();
        add.sort_unstable_by_key(|a| (a.0, a.1.pack));
        let old = std::mem::take(&mut self.base);
        let mut out = Vec::with_capacity(old.len() + add.len());
        let (mut a, mut b) = (old.into_iter().peekable(), add.into_iter().peekable());
        loop {
            let next = match (a.peek(), b.peek()) {
                (Some(x), Some(y)) if (x.0, x.1.pack) <= (y.0, y.1.pack) => a.next(),
                (Some(_), Some(_)) | (None, Some(_)) => b.next(),
                (Some(_), None) => a.next(),
                (None, None) => break,
            };
            if let Some(r) = next.filter(|r| self.live(&r.1)) {
                out.push(r);
            }
        }
        self.base = out;
    }
}

impl PackIndex {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Table> {
        self.table.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Table> {
        self.table.write().unwrap_or_else(|p| p.into_inner())
    }

    /// True once the table was loaded from the store.
    pub fn loaded(&self) -> bool {
        self.read().loaded
    }

    /// Where blob `h` of `kind` lives, with its pack, as known now.
    pub fn lookup(&self, kind: Kind, h: &Hash) -> Option<(Loc, PackInfo)> {
        let t = self.read();
        let loc = t.lookup(&key(kind, h))?;
        Some((loc, t.packs[loc.pack as usize].clone()))
    }

    /// A pack's info by number.
    pub fn pack(&self, n: u32) -> Option<PackInfo> {
        self.read().packs.get(n as usize).cloned()
    }

    /// Adds a pack this process just made durable.
    pub fn add(&self, info: PackInfo, entries: &[Entry]) -> u32 {
        self.write().add(info, entries)
    }

    /// Marks pack `n` as deleted (a read found it missing).
    pub fn forget(&self, n: u32) {
        if let Some(p) = self.write().packs.get_mut(n as usize) {
            p.gone = true;
        }
    }

    /// Refreshes the table unless a refresh that began after `seen` (a value of
    /// [`PackIndex::epoch`] read before the caller's lookup) has finished meanwhile: many
    /// lookups missing at once share one refresh, and none misses a pack that was durable
    /// before it looked.
    ///
    /// # Errors
    /// Backend errors; a pack whose tail is damaged ([`Error::Corrupt`] naming it).
    pub async fn refresh_after(&self, objects: &Objects, seen: u64) -> Result<()> {
        let mut last = self.refreshing.lock().await;
        if *last > seen {
            return Ok(());
        }
        let me = self.started.fetch_add(1, Ordering::SeqCst) + 1;
        self.load(objects).await?;
        *last = me;
        Ok(())
    }

    /// Refreshes the table now.
    ///
    /// # Errors
    /// As [`PackIndex::refresh_after`].
    pub async fn refresh(&self, objects: &Objects) -> Result<()> {
        self.refresh_after(objects, self.epoch()).await
    }

    /// How many refreshes have begun, for [`PackIndex::refresh_after`].
    pub fn epoch(&self) -> u64 {
        self.started.load(Ordering::SeqCst)
    }

    /// Loads the table on first use.
    ///
    /// # Errors
    /// As [`PackIndex::refresh`].
    pub async fn ensure_loaded(&self, objects: &Objects) -> Result<()> {
        if self.loaded() {
            return Ok(());
        }
        let seen = self.epoch();
        let _last = self.refreshing.lock().await;
        if !self.loaded() {
            drop(_last);
            return self.refresh_after(objects, seen).await;
        }
        Ok(())
    }

    async fn load(&self, objects: &Objects) -> Result<()> {
        let known: HashSet<String> = self.read().by_id.keys().cloned().collect();
        let listed = objects.list(layout::PACKS).await?;
        let mut present = HashSet::new();
        let mut new = Vec::new();
        for m in listed {
            let Some(id) = layout::pack_id_of_path(&m.path) else {
                continue;
            };
            present.insert(id.to_string());
            if !known.contains(id) {
                new.push(PackInfo {
                    id: id.to_string(),
                    size: m.size,
                    modified: m.modified,
                    gone: false,
                });
            }
        }
        let read = fan_out(new, 16, |info| {
            let objects = objects.clone();
            async move {
                let entries = read_entries(&objects, &info.id, info.size).await?;
                Ok((info, entries))
            }
        })
        .await?;
        let mut t = self.write();
        for (info, entries) in read {
            if let Some(entries) = entries {
                t.add(info, &entries);
            }
        }
        for id in known.difference(&present) {
            if let Some(n) = t.by_id.get(id).copied() {
                t.packs[n as usize].gone = true;
            }
        }
        t.loaded = true;
        Ok(())
    }

    /// Every live pack with its entries (a collection's view).
    pub fn packs_with_entries(&self) -> Vec<(PackInfo, Vec<PackedBlob>)> {
        let t = self.read();
        let mut per: Vec<Vec<PackedBlob>> = vec![Vec::new(); t.packs.len()];
        let kind = |k: u8| {
            if k == Kind::Page as u8 {
                Kind::Page
            } else {
                Kind::Chunk
            }
        };
        let all = t.base.iter().map(|(k, l)| (*k, *l)).chain(
            t.recent
                .iter()
                .flat_map(|(k, ls)| ls.iter().map(move |l| (*k, *l))),
        );
        for (k, l) in all {
            per[l.pack as usize].push((kind(k.kind), Hash(k.hash), l.len));
        }
        t.packs
            .iter()
            .cloned()
            .zip(per)
            .filter(|(p, _)| !p.gone)
            .collect()
    }

    /// The distinct live blobs of `kind`.
    pub fn hashes(&self, kind: Kind) -> Vec<Hash> {
        let t = self.read();
        let mut seen = HashSet::new();
        let all = t.base.iter().map(|(k, l)| (*k, *l)).chain(
            t.recent
                .iter()
                .flat_map(|(k, ls)| ls.iter().map(move |l| (*k, *l))),
        );
        for (k, l) in all {
            if k.kind == kind as u8 && t.live(&l) {
                seen.insert(Hash(k.hash));
            }
        }
        seen.into_iter().collect()
    }
}

/// A pack's entries, read from its tail (`None` when it vanished meanwhile).
///
/// # Errors
/// Backend errors; [`Error::Corrupt`] for a damaged tail.
pub async fn read_entries(objects: &Objects, id: &str, size: u64) -> Result<Option<Vec<Entry>>> {
    let path = layout::pack(id);
    let mut want = pack::TAIL_GUESS.min(size);
    loop {
        let Some(tail) = objects.get_range(&path, size - want, want).await? else {
            return Ok(None);
        };
        match pack::parse_tail(&path, size, &tail)? {
            Tail::Entries(e) => return Ok(Some(e)),
            Tail::Need(n) if n > want => want = n,
            Tail::Need(_) => {
                return Err(Error::Corrupt {
                    path,
                    reason: "pack tail does not hold its entries".into(),
                });
            }
        }
    }
}

/// A blob in a pack: what it is, its name, its frame's length.
pub type PackedBlob = (Kind, Hash, u32);

/// Shared handle.
pub type Shared = Arc<PackIndex>;
