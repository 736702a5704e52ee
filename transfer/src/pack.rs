//! Packing blobs into large objects: a pack is written, and only once it is durable, its
//! index. Several packs upload at once; memory stays bounded by their number and size.

use crate::error::{Error, Result};
use crate::layout;
use crate::progress::Progress;
use crate::target::{Entry, PackIndex, TRANSFER_FORMAT, TransferStore};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use tokio::task::JoinSet;

/// Fills packs and uploads them.
pub struct PackWriter {
    store: TransferStore,
    progress: Arc<Progress>,
    target_bytes: usize,
    in_flight: usize,
    buf: Vec<u8>,
    entries: Vec<Entry>,
    /// Volume bytes and chunks the current pack covers, for progress.
    covers: (u64, u64),
    uploads: JoinSet<Result<u64>>,
    /// Bytes written so far (packs and indexes).
    pub written: u64,
}

impl PackWriter {
    /// A writer of packs of about `target_bytes`, at most `in_flight` uploading at once.
    pub fn new(
        store: TransferStore,
        progress: Arc<Progress>,
        target_bytes: usize,
        in_flight: usize,
    ) -> Self {
        PackWriter {
            store,
            progress,
            target_bytes,
            in_flight: in_flight.max(1),
            buf: Vec::new(),
            entries: Vec::new(),
            covers: (0, 0),
            uploads: JoinSet::new(),
            written: 0,
        }
    }

    /// Adds a blob (its stored frame) under `name`; `chunks` and `volume_bytes` are what it
    /// counts for in progress once its pack is durable.
    ///
    /// # Errors
    /// A failed pack upload.
    pub async fn add(
        &mut self,
        name: String,
        kind: u8,
        frame: Vec<u8>,
        chunks: u64,
        volume_bytes: u64,
    ) -> Result<()> {
        let sealed = self.store.seal(&name, frame)?;
        self.entries.push(Entry {
            name,
            offset: self.buf.len() as u64,
            len: sealed.len() as u64,
            kind,
        });
        self.buf.extend_from_slice(&sealed);
        self.covers.0 += chunks;
        self.covers.1 += volume_bytes;
        if self.buf.len() >= self.target_bytes {
            self.cut().await?;
        }
        Ok(())
    }

    async fn cut(&mut self) -> Result<()> {
        if self.entries.is_empty() {
            return Ok(());
        }
        while self.uploads.len() >= self.in_flight {
            self.join_one().await?;
        }
        self.progress.pack_slot().await;
        let buf = std::mem::take(&mut self.buf);
        let entries = std::mem::take(&mut self.entries);
        let (chunks, volume_bytes) = std::mem::take(&mut self.covers);
        let store = self.store.clone();
        let progress = self.progress.clone();
        self.uploads.spawn(async move {
            let id = hex::encode(Sha256::digest(&buf));
            let n = buf.len() as u64;
            store
                .objects()
                .put(&layout::pack(&id), buf)
                .await
                .map_err(Error::Target)?;
            let index = PackIndex {
                format: TRANSFER_FORMAT,
                pack: id.clone(),
                entries,
            };
            let path = layout::index(&id);
            let plain = serde_json::to_vec(&index)
                .map_err(|e| Error::Invalid(format!("encoding pack index {path}: {e}")))?;
            let bytes = store.seal(&path, plain)?;
            let m = bytes.len() as u64;
            store
                .objects()
                .put(&path, bytes)
                .await
                .map_err(Error::Target)?;
            progress.done(chunks, volume_bytes);
            progress.stored(n + m);
            Ok(n + m)
        });
        Ok(())
    }

    async fn join_one(&mut self) -> Result<()> {
        if let Some(r) = self.uploads.join_next().await {
            self.written += r.map_err(crate::target::task_failed)??;
        }
        Ok(())
    }

    /// Uploads what is buffered and waits for every upload.
    ///
    /// # Errors
    /// The first failed upload.
    pub async fn finish(&mut self) -> Result<u64> {
        self.cut().await?;
        while !self.uploads.is_empty() {
            self.join_one().await?;
        }
        Ok(self.written)
    }
}
