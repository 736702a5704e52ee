//! Reading back what a root reaches: every tree page, and on request every chunk, each
//! checked against its name. Used after a volume changes hands (a workload moved to another
//! node) to show that the committed root the next node starts from is whole.

use crate::codec::Kind;
use crate::error::Result;
use crate::fanout::fan_out;
use crate::hash::Hash;
use crate::store::Store;
use std::collections::HashSet;

/// Chunks read at once by [`Store::check_root`].
const CHUNK_READS: usize = 16;

/// What [`Store::check_root`] read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RootCheck {
    /// Tree pages read and checked.
    pub pages: u64,
    /// Chunk references in the tree (holes not counted), duplicates included.
    pub chunk_refs: u64,
    /// Distinct chunks read and checked (0 when chunks were not asked for).
    pub chunks_read: u64,
    /// Their stored (encoded) bytes.
    pub chunk_bytes_read: u64,
}

impl Store {
    /// Reads every page reachable from `root` and checks each against its hash; with
    /// `chunks`, also reads every chunk the tree names and checks it. Memory stays at one
    /// level of page names plus one page's chunks, whatever the volume's size.
    ///
    /// # Errors
    /// [`crate::Error::Corrupt`] for a missing or damaged page or chunk bytes that do not
    /// match their name, [`crate::Error::MissingChunk`] for an absent chunk; backend errors.
    pub async fn check_root(&self, root: Hash, chunks: bool) -> Result<RootCheck> {
        let mut out = RootCheck::default();
        let mut frontier = vec![root];
        let mut seen_pages = HashSet::new();
        // Distinct chunks seen so far are only counted per page: a set over the whole
        // volume would grow with it. A chunk shared by two pages is read twice.
        while !frontier.is_empty() {
            let mut next = Vec::new();
            for h in frontier {
                if h.is_zero() || !seen_pages.insert(h) {
                    continue;
                }
                let page = self.blobs().get_page(&h).await?;
                out.pages += 1;
                let live: Vec<Hash> = page
                    .entries
                    .iter()
                    .copied()
                    .filter(|e| !e.is_zero())
                    .collect();
                if page.level > 0 {
                    next.extend(live);
                    continue;
                }
                out.chunk_refs += live.len() as u64;
                if !chunks {
                    continue;
                }
                let distinct: HashSet<Hash> = live.into_iter().collect();
                let sizes = fan_out(distinct, CHUNK_READS, |c| {
                    let store = self.clone();
                    async move {
                        let (frame, _) = store.blobs().read_frame(Kind::Chunk, &c).await?;
                        Ok(frame.bytes().len() as u64)
                    }
                })
                .await?;
                out.chunks_read += sizes.len() as u64;
                out.chunk_bytes_read += sizes.iter().sum::<u64>();
            }
            frontier = next;
        }
        Ok(out)
    }
}
