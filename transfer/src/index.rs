//! The transfer store's index in the reader: where each blob lives, sorted by name.
//!
//! Every pack index's entries become fixed 48-byte records (the blob's 32-byte name, a pack
//! number, offset and length). Up to a budget of records they stay in one sorted vector; past
//! it, sorted runs of that size go to unnamed temporary files (`TMPDIR`, removed by the
//! system even when the process dies) and are merged into one sorted file, of which only the
//! first name of every 4 KiB block stays in memory. A lookup is then a search of those names
//! and one read of a block (from the page cache, mostly). So what an export or import holds
//! for the index is the budget plus 32 bytes per 85 blobs, whatever the transfer store holds.

use crate::error::{Error, Result};
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

/// Records kept in memory before the index spills to temporary files (12 MiB of records).
pub const DEFAULT_BUDGET: usize = 1 << 18;

const REC: usize = 48;
/// Records per block of the spilled file (a block is one read of 4 080 bytes).
const BLOCK: usize = 85;

/// A blob's 32-byte name: its hash, or its keyed name when the store is encrypted.
pub type Name = [u8; 32];

/// Where a blob lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// The pack's id.
    pub pack: Arc<str>,
    /// Offset in the pack.
    pub offset: u64,
    /// Stored length.
    pub len: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Rec {
    name: Name,
    pack: u32,
    len: u32,
    offset: u64,
}

impl Rec {
    fn encode(&self, out: &mut [u8]) {
        out[..32].copy_from_slice(&self.name);
        out[32..36].copy_from_slice(&self.pack.to_le_bytes());
        out[36..40].copy_from_slice(&self.len.to_le_bytes());
        out[40..48].copy_from_slice(&self.offset.to_le_bytes());
    }

    fn decode(b: &[u8]) -> Rec {
        let mut name = [0u8; 32];
        name.copy_from_slice(&b[..32]);
        let word = |r: std::ops::Range<usize>| {
            let mut w = [0u8; 4];
            w.copy_from_slice(&b[r]);
            u32::from_le_bytes(w)
        };
        let mut off = [0u8; 8];
        off.copy_from_slice(&b[40..48]);
        Rec {
            name,
            pack: word(32..36),
            len: word(36..40),
            offset: u64::from_le_bytes(off),
        }
    }
}

enum Table {
    Memory(Vec<Rec>),
    Spilled {
        file: File,
        /// The first name of each block.
        fences: Vec<Name>,
        records: u64,
    },
}

struct Inner {
    packs: Vec<Arc<str>>,
    table: Table,
}

/// Every indexed blob of a transfer store, by name. Cheap to clone.
#[derive(Clone)]
pub struct Index {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("blobs", &self.len())
            .field("packs", &self.inner.packs.len())
            .field("spilled", &self.spilled())
            .finish()
    }
}

fn io(what: &str, e: std::io::Error) -> Error {
    Error::Store(ferry_store::Error::Internal(format!(
        "the transfer index's temporary file ({what}): {e}; set TMPDIR to a writable folder"
    )))
}

/// The 32 bytes a blob name of 64 hex digits stands for (`None` for anything else).
pub fn name_bytes(hex_name: &str) -> Option<Name> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_name, &mut out).ok()?;
    Some(out)
}

impl Index {
    /// The number of distinct blobs indexed.
    pub fn len(&self) -> u64 {
        match &self.inner.table {
            Table::Memory(v) => v.len() as u64,
            Table::Spilled { records, .. } => *records,
        }
    }

    /// True when nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when the records live in a temporary file rather than in memory.
    pub fn spilled(&self) -> bool {
        matches!(self.inner.table, Table::Spilled { .. })
    }

    fn location(&self, r: &Rec) -> Location {
        Location {
            pack: self.inner.packs[r.pack as usize].clone(),
            offset: r.offset,
            len: r.len as u64,
        }
    }

    /// Where the blob named `name` (64 hex digits) lives. Reads at most one block of the
    /// temporary file: cheap enough for the async threads when used a few at a time; use
    /// [`Index::get_many`] for batches.
    ///
    /// # Errors
    /// Reading the temporary file.
    pub fn get(&self, name: &str) -> Result<Option<Location>> {
        match name_bytes(name) {
            Some(n) => self.find(&n),
            None => Ok(None),
        }
    }

    fn find(&self, n: &Name) -> Result<Option<Location>> {
        let rec = match &self.inner.table {
            Table::Memory(v) => v.binary_search_by(|r| r.name.cmp(n)).ok().map(|i| v[i]),
            Table::Spilled {
                file,
                fences,
                records,
            } => {
                // The last block whose first name is at most `n`.
                let b = match fences.binary_search(n) {
                    Ok(b) => b,
                    Err(0) => return Ok(None),
                    Err(b) => b - 1,
                };
                let first = b as u64 * BLOCK as u64;
                let count = (*records - first).min(BLOCK as u64) as usize;
                let mut buf = vec![0u8; count * REC];
                file.read_exact_at(&mut buf, first * REC as u64)
                    .map_err(|e| io("reading", e))?;
                let recs: Vec<Rec> = buf.chunks_exact(REC).map(Rec::decode).collect();
                recs.binary_search_by(|r| r.name.cmp(n))
                    .ok()
                    .map(|i| recs[i])
            }
        };
        Ok(rec.map(|r| self.location(&r)))
    }

    /// Where each of `names` (64 hex digits each) lives, in order; off the async threads
    /// when the records are in a file.
    ///
    /// # Errors
    /// As [`Index::get`].
    pub async fn get_many(&self, names: Vec<String>) -> Result<Vec<Option<Location>>> {
        let this = self.clone();
        let look = move || {
            names
                .iter()
                .map(|n| this.get(n))
                .collect::<Result<Vec<_>>>()
        };
        if self.spilled() {
            tokio::task::spawn_blocking(look)
                .await
                .map_err(crate::target::task_failed)?
        } else {
            look()
        }
    }

    /// Calls `f` with every indexed blob's name (64 hex digits) and location, in name order.
    ///
    /// # Errors
    /// Reading the temporary file.
    pub fn scan(&self, mut f: impl FnMut(String, Location)) -> Result<()> {
        match &self.inner.table {
            Table::Memory(v) => {
                for r in v {
                    f(hex::encode(r.name), self.location(r));
                }
            }
            Table::Spilled { file, records, .. } => {
                let per_read = 4096u64;
                let mut at = 0u64;
                while at < *records {
                    let n = (*records - at).min(per_read) as usize;
                    let mut buf = vec![0u8; n * REC];
                    file.read_exact_at(&mut buf, at * REC as u64)
                        .map_err(|e| io("reading", e))?;
                    for r in buf.chunks_exact(REC).map(Rec::decode) {
                        f(hex::encode(r.name), self.location(&r));
                    }
                    at += n as u64;
                }
            }
        }
        Ok(())
    }
}

/// Collects pack indexes' entries into an [`Index`], spilling sorted runs past the budget.
pub struct IndexBuilder {
    budget: usize,
    packs: Vec<Arc<str>>,
    buf: Vec<Rec>,
    runs: Vec<(File, u64)>,
}

impl IndexBuilder {
    /// A builder that keeps at most `budget` records in memory (at least one block's worth).
    pub fn new(budget: usize) -> Self {
        IndexBuilder {
            budget: budget.max(BLOCK),
            packs: Vec::new(),
            buf: Vec::new(),
            runs: Vec::new(),
        }
    }

    /// Adds pack `pack` and its entries (name, offset, length), already checked
    /// against the format's bounds.
    ///
    /// # Errors
    /// Writing a run to the temporary folder; a name that is not 64 hex digits or a length
    /// past 4 GiB (the caller's checks let neither through).
    pub fn add_pack(
        &mut self,
        pack: &str,
        entries: impl IntoIterator<Item = (String, u64, u64)>,
    ) -> Result<()> {
        let number = u32::try_from(self.packs.len())
            .map_err(|_| Error::Tampered("the transfer store indexes over 2^32 packs".into()))?;
        self.packs.push(pack.into());
        for (name, offset, len) in entries {
            let name_b = name_bytes(&name).ok_or_else(|| {
                Error::Tampered(format!("blob name {name:?} is not 64 hex digits"))
            })?;
            let len = u32::try_from(len)
                .map_err(|_| Error::Tampered(format!("blob {name} is longer than 4 GiB")))?;
            self.buf.push(Rec {
                name: name_b,
                pack: number,
                len,
                offset,
            });
            if self.buf.len() >= self.budget {
                self.spill()?;
            }
        }
        Ok(())
    }

    fn sorted(buf: &mut Vec<Rec>) {
        // Of a name found in two packs (an export killed after one pack and re-run), the
        // first pack added keeps it, here and in the merge, so both tables answer alike.
        buf.sort_unstable_by_key(|r| (r.name, r.pack, r.offset));
        buf.dedup_by(|later, first| later.name == first.name);
    }

    fn spill(&mut self) -> Result<()> {
        let mut buf = std::mem::take(&mut self.buf);
        Self::sorted(&mut buf);
        let file = tempfile::tempfile().map_err(|e| io("creating", e))?;
        let mut w = BufWriter::with_capacity(1 << 16, &file);
        let mut rec = [0u8; REC];
        for r in &buf {
            r.encode(&mut rec);
            w.write_all(&rec).map_err(|e| io("writing", e))?;
        }
        w.flush().map_err(|e| io("writing", e))?;
        drop(w);
        self.runs.push((file, buf.len() as u64));
        Ok(())
    }

    /// The index: in memory when everything fit the budget, else the runs merged into one
    /// sorted temporary file.
    ///
    /// # Errors
    /// Reading or writing the temporary files.
    pub fn finish(mut self) -> Result<Index> {
        if self.runs.is_empty() {
            let mut buf = std::mem::take(&mut self.buf);
            Self::sorted(&mut buf);
            return Ok(Index {
                inner: Arc::new(Inner {
                    packs: self.packs,
                    table: Table::Memory(buf),
                }),
            });
        }
        if !self.buf.is_empty() {
            self.spill()?;
        }
        let out = tempfile::tempfile().map_err(|e| io("creating", e))?;
        let (fences, records) = merge(&self.runs, &out)?;
        drop(self.runs);
        Ok(Index {
            inner: Arc::new(Inner {
                packs: self.packs,
                table: Table::Spilled {
                    file: out,
                    fences,
                    records,
                },
            }),
        })
    }
}

/// The head of one run in the merge: ordered so the heap pops the smallest name first.
struct Head {
    rec: Rec,
    run: usize,
}

impl PartialEq for Head {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Head {}
impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Head {
    fn cmp(&self, other: &Self) -> Ordering {
        (other.rec.name, other.run).cmp(&(self.rec.name, self.run))
    }
}

/// Merges sorted runs into `out`, dropping repeated names; returns the fences and the count.
fn merge(runs: &[(File, u64)], out: &File) -> Result<(Vec<Name>, u64)> {
    let mut readers: Vec<(BufReader<&File>, u64)> = Vec::with_capacity(runs.len());
    for (f, n) in runs {
        // Each run file was written from its start through its own handle; reading from
        // offset 0 with `read_at` would need its own cursor, so seek a fresh reader.
        let mut r = BufReader::with_capacity(1 << 16, f);
        std::io::Seek::seek(&mut r, std::io::SeekFrom::Start(0)).map_err(|e| io("reading", e))?;
        readers.push((r, *n));
    }
    let next = |readers: &mut Vec<(BufReader<&File>, u64)>, i: usize| -> Result<Option<Rec>> {
        let (r, left) = &mut readers[i];
        if *left == 0 {
            return Ok(None);
        }
        *left -= 1;
        let mut b = [0u8; REC];
        r.read_exact(&mut b).map_err(|e| io("reading", e))?;
        Ok(Some(Rec::decode(&b)))
    };
    let mut heap = BinaryHeap::new();
    for i in 0..readers.len() {
        if let Some(rec) = next(&mut readers, i)? {
            heap.push(Head { rec, run: i });
        }
    }
    let mut w = BufWriter::with_capacity(1 << 16, out);
    let mut fences = Vec::new();
    let mut written = 0u64;
    let mut last: Option<Name> = None;
    let mut b = [0u8; REC];
    while let Some(Head { rec, run }) = heap.pop() {
        if let Some(r) = next(&mut readers, run)? {
            heap.push(Head { rec: r, run });
        }
        if last == Some(rec.name) {
            continue;
        }
        last = Some(rec.name);
        if written.is_multiple_of(BLOCK as u64) {
            fences.push(rec.name);
        }
        rec.encode(&mut b);
        w.write_all(&b).map_err(|e| io("writing", e))?;
        written += 1;
    }
    w.flush().map_err(|e| io("writing", e))?;
    Ok((fences, written))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(i: u64) -> String {
        hex::encode(ferry_store::Hash::of(&i.to_le_bytes()).0)
    }

    fn build(budget: usize, packs: u64, per: u64, repeat_every: u64) -> Index {
        let mut b = IndexBuilder::new(budget);
        for p in 0..packs {
            let entries: Vec<_> = (0..per)
                .map(|j| {
                    let i = p * per + j;
                    // Some blobs appear in two packs (a re-copied blob): one is kept.
                    let i = if repeat_every > 0 && i % repeat_every == 7 {
                        i - 7
                    } else {
                        i
                    };
                    (name(i), j * 100, 100 + i % 7)
                })
                .collect();
            b.add_pack(&format!("{p:064x}"), entries).unwrap();
        }
        b.finish().unwrap()
    }

    #[test]
    fn spilled_and_in_memory_indexes_answer_alike() {
        let memory = build(1 << 20, 40, 250, 50);
        let spilled = build(300, 40, 250, 50);
        assert!(!memory.spilled());
        assert!(spilled.spilled(), "a budget of 300 records spills 10 000");
        assert_eq!(memory.len(), spilled.len());
        assert_eq!(memory.len(), 10_000 - 10_000 / 50);
        for i in 0..10_100 {
            let n = name(i);
            let (a, b) = (memory.get(&n).unwrap(), spilled.get(&n).unwrap());
            assert_eq!(a, b, "blob {i}");
            assert_eq!(a.is_some(), i < 10_000 && i % 50 != 7, "blob {i}");
        }
        let (mut x, mut y) = (Vec::new(), Vec::new());
        memory.scan(|n, l| x.push((n, l))).unwrap();
        spilled.scan(|n, l| y.push((n, l))).unwrap();
        assert_eq!(x.len() as u64, memory.len());
        assert!(x == y, "scans differ");
        assert!(x.windows(2).all(|w| w[0].0 < w[1].0), "in name order");
    }

    #[test]
    fn names_below_the_first_and_past_the_last_are_absent() {
        let spilled = build(100, 3, 200, 0);
        assert!(spilled.spilled());
        assert_eq!(spilled.get(&"0".repeat(64)).unwrap(), None);
        assert_eq!(spilled.get(&"f".repeat(64)).unwrap(), None);
        assert_eq!(spilled.get("not hex").unwrap(), None);
        let empty = IndexBuilder::new(10).finish().unwrap();
        assert!(empty.is_empty());
        assert_eq!(empty.get(&name(1)).unwrap(), None);
    }

    #[test]
    fn a_location_keeps_its_pack_offset_and_length() {
        let idx = build(90, 4, 100, 0);
        let l = idx.get(&name(250)).unwrap().unwrap();
        assert_eq!(&*l.pack, format!("{:064x}", 2).as_str());
        assert_eq!((l.offset, l.len), (50 * 100, 100 + 250 % 7));
    }
}
