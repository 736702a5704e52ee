//! A writer that streams blobs into packs: frames are added as they come, a pack is cut at
//! its target size and uploaded in the background (a bounded number at once), and
//! [`PackWriter::flush`] returns once everything added is durable. What an import uses, so
//! that a GiB imported is a few dozen objects however it arrives.

use super::{Frame, Layout, Store};
use crate::error::{Error, Result};
use crate::pack::Builder;
use tokio::task::JoinSet;

/// Streams frames into packs of a store.
pub struct PackWriter {
    store: Store,
    target: usize,
    in_flight: usize,
    loose: bool,
    cur: Builder,
    frames: Vec<Frame>,
    uploads: JoinSet<Result<u64>>,
    written: u64,
}

impl Store {
    /// A writer of packs of about `target` bytes, at most `in_flight` uploading at once. In
    /// a format-1 store it writes each blob as its own object instead, in batches.
    ///
    /// # Errors
    /// Backend errors reading the store's format.
    pub async fn pack_writer(&self, target: usize, in_flight: usize) -> Result<PackWriter> {
        let loose = self.blobs().layout().await? == Layout::Loose;
        Ok(PackWriter {
            store: self.clone(),
            target: target.max(1 << 20),
            in_flight: in_flight.max(1),
            loose,
            cur: Builder::default(),
            frames: Vec::new(),
            uploads: JoinSet::new(),
            written: 0,
        })
    }
}

impl PackWriter {
    /// Adds a checked frame; may wait for an upload to finish first.
    ///
    /// # Errors
    /// The first failed upload.
    pub async fn add(&mut self, frame: Frame) -> Result<()> {
        if self.loose {
            let full = self.frames.iter().map(|f| f.bytes().len()).sum::<usize>() >= 8 << 20;
            self.frames.push(frame);
            if full {
                self.cut().await?;
            }
            return Ok(());
        }
        self.cur.push(frame.kind(), *frame.hash(), frame.bytes());
        if self.cur.len() >= self.target {
            self.cut().await?;
        }
        Ok(())
    }

    async fn cut(&mut self) -> Result<()> {
        while self.uploads.len() >= self.in_flight {
            self.join_one().await?;
        }
        let store = self.store.clone();
        if self.loose {
            let frames = std::mem::take(&mut self.frames);
            if !frames.is_empty() {
                self.uploads
                    .spawn(async move { store.blobs().write_frames(frames).await });
            }
            return Ok(());
        }
        let b = std::mem::take(&mut self.cur);
        if !b.is_empty() {
            self.uploads
                .spawn(async move { store.blobs().upload_pack(b).await });
        }
        Ok(())
    }

    async fn join_one(&mut self) -> Result<()> {
        if let Some(r) = self.uploads.join_next().await {
            self.written += r.map_err(|e| Error::Internal(format!("pack upload task: {e}")))??;
        }
        Ok(())
    }

    /// Uploads what is buffered and waits until every pack is durable. Returns the bytes
    /// written since the writer was made.
    ///
    /// # Errors
    /// The first failed upload.
    pub async fn flush(&mut self) -> Result<u64> {
        self.cut().await?;
        while !self.uploads.is_empty() {
            self.join_one().await?;
        }
        Ok(self.written)
    }
}
