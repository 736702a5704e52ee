//! The difference of two trees walked depth first and handed out in batches, so that what
//! is held at once does not grow with the volume: one page per level (with its counterpart
//! in the old tree), the batch being handed out, and a bounded window of chunk and page
//! names already handed out (a chunk seen twice within it is handed out once; one seen again
//! after it has left the window is handed out again, which costs a second copy, never a
//! missing one).
//!
//! Pages come out after everything they name that differs (post order), so a consumer
//! storing batches in order stores a page only after its chunks and the pages below it.

use crate::error::Result;
use crate::hash::Hash;
use crate::tree::{Page, PageSource};
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

/// Names remembered for handing out each chunk or page once, unless configured.
pub const DEFAULT_WINDOW: usize = 1 << 16;

/// One batch of a walk.
#[derive(Debug, Default)]
pub struct DiffBatch {
    /// Chunks of the new tree not at the same place in the old one (no holes).
    pub chunks: Vec<Hash>,
    /// Pages of the new tree not at the same place in the old one, with their level, each
    /// after everything it names that is in this or an earlier batch.
    pub pages: Vec<(Hash, u8)>,
}

/// See [`DiffWalk::finished`].
#[derive(Debug, Default)]
pub struct Finished {
    /// Roots of finished subtrees.
    pub pages: Vec<Hash>,
    /// Chunks handed out whose page is still open.
    pub chunks: Vec<Hash>,
}

struct Level {
    hash: Hash,
    page: Arc<Page>,
    old: Option<Arc<Page>>,
    next: usize,
}

/// A bounded set of the most recent names.
struct Window {
    set: HashSet<Hash>,
    order: VecDeque<Hash>,
    size: usize,
}

impl Window {
    fn insert(&mut self, h: Hash) -> bool {
        if self.size == 0 {
            return true;
        }
        if !self.set.insert(h) {
            return false;
        }
        self.order.push_back(h);
        if self.order.len() > self.size
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        true
    }
}

/// A walk of `new` against `old` (see the module docs).
pub struct DiffWalk<'a> {
    new_src: &'a dyn PageSource,
    old_src: &'a dyn PageSource,
    root: Option<(Hash, Hash)>,
    stack: Vec<Level>,
    seen: Window,
    peak: usize,
}

impl<'a> DiffWalk<'a> {
    /// A walk of `new` (pages from `new_src`) against `old` (pages from `old_src`;
    /// [`Hash::ZERO`] for none), remembering up to `window` names to hand each out once.
    pub fn new(
        new_src: &'a dyn PageSource,
        new: Hash,
        old_src: &'a dyn PageSource,
        old: Hash,
        window: usize,
    ) -> Self {
        DiffWalk {
            new_src,
            old_src,
            root: Some((new, old)),
            stack: Vec::new(),
            seen: Window {
                set: HashSet::new(),
                order: VecDeque::new(),
                size: window,
            },
            peak: 0,
        }
    }

    /// The most names this walk held at once: entries of the pages on its stack, the batch
    /// being filled and the window.
    pub fn peak_held(&self) -> usize {
        self.peak
    }

    /// The pages the walk has read and not handed out yet (the open pages, root first).
    pub fn open_pages(&self) -> impl Iterator<Item = Hash> + '_ {
        self.stack.iter().map(|l| l.hash)
    }

    /// What the walk has handed out so far, in few names: the differing children of the
    /// open pages it has finished (each a page whose whole differing subtree was handed
    /// out) and the differing chunks of the open level-0 page. With the old tree's root,
    /// these reach everything handed out so far: at most one page's entries per level, so a
    /// writer can name them in a GC hold instead of every blob it stored.
    pub fn finished(&self) -> Finished {
        let mut out = Finished::default();
        let open = self.stack.len();
        for (j, l) in self.stack.iter().enumerate() {
            // Below the top, the entry at `next - 1` is the page open one level down.
            let done = if j + 1 < open {
                l.next.saturating_sub(1)
            } else {
                l.next
            };
            for i in 0..done {
                let e = l.page.entries[i];
                let oe = l.old.as_ref().map_or(Hash::ZERO, |p| p.entry(i));
                if e.is_zero() || e == oe {
                    continue;
                }
                if l.page.level == 0 {
                    out.chunks.push(e);
                } else {
                    out.pages.push(e);
                }
            }
        }
        out
    }

    fn note_held(&mut self, batch: &DiffBatch) {
        let pages: usize = self
            .stack
            .iter()
            .map(|l| l.page.entries.len() + l.old.as_ref().map_or(0, |p| p.entries.len()))
            .sum();
        let held = pages + batch.chunks.len() + batch.pages.len() + self.seen.order.len();
        self.peak = self.peak.max(held);
    }

    async fn descend(&mut self, n: Hash, o: Hash) -> Result<()> {
        let page = self.new_src.page(&n).await?;
        let old = if o.is_zero() {
            None
        } else {
            Some(self.old_src.page(&o).await?)
        };
        self.stack.push(Level {
            hash: n,
            page,
            old,
            next: 0,
        });
        Ok(())
    }

    /// The next batch of at most about `max` chunks (and the pages that became complete
    /// with them); `None` once the walk is done.
    ///
    /// # Errors
    /// Missing or corrupt pages; backend errors. The walk may not be resumed after one.
    pub async fn next_batch(&mut self, max: usize) -> Result<Option<DiffBatch>> {
        let max = max.max(1);
        if let Some((n, o)) = self.root.take()
            && n != o
            && !n.is_zero()
        {
            self.descend(n, o).await?;
        }
        let mut batch = DiffBatch::default();
        while batch.chunks.len() < max {
            let Some(top) = self.stack.last_mut() else {
                break;
            };
            if top.next >= top.page.entries.len() {
                let (h, level) = (top.hash, top.page.level);
                self.note_held(&batch);
                self.stack.pop();
                if self.seen.insert(h) {
                    batch.pages.push((h, level));
                }
                continue;
            }
            let i = top.next;
            top.next += 1;
            let e = top.page.entries[i];
            let oe = top.old.as_ref().map_or(Hash::ZERO, |p| p.entry(i));
            if e.is_zero() || e == oe {
                continue;
            }
            if top.page.level == 0 {
                if self.seen.insert(e) {
                    batch.chunks.push(e);
                }
            } else {
                self.descend(e, oe).await?;
            }
        }
        self.note_held(&batch);
        if batch.chunks.is_empty() && batch.pages.is_empty() {
            return Ok(None);
        }
        Ok(Some(batch))
    }
}
