//! Volumes: create (empty, from a snapshot, or as a clone), look up, list, expand, delete.

use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::holds::Hold;
use crate::layout;
use crate::names::NameKind;
use crate::records::{self, GenRecord, RECORD_FORMAT, Source, VolumeRecord, VolumeSpec};
use crate::store::Store;
use crate::tree;

/// A volume as stored: what created it and its current head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeInfo {
    /// The volume record.
    pub record: VolumeRecord,
    /// Its newest generation (current size and root).
    pub head: GenRecord,
}

impl VolumeInfo {
    /// The volume id.
    pub fn id(&self) -> &str {
        &self.record.id
    }

    /// Current size in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.head.size_bytes
    }
}

/// A page of a listing and the token for the next one.
pub type Page<T> = (Vec<T>, Option<String>);

impl Store {
    /// Creates the volume `spec.name` asks for, or returns it when an identical request
    /// created it before. The content source is resolved to a root hash: no chunk is copied.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`] when the name is taken with other parameters,
    /// [`Error::NotFound`] for a missing source, [`Error::OutOfRange`] for a capacity below
    /// the source's size or above the store's limit, backend errors.
    pub async fn create_volume(&self, spec: VolumeSpec) -> Result<VolumeInfo> {
        self.check_capacity(spec.capacity_bytes)?;
        let request = serde_json::to_value(&spec).map_err(|e| Error::Internal(e.to_string()))?;
        let path = layout::volume_name(&spec.name);
        let id = self
            .claim_name(NameKind::Volume, &path, &spec.name, &request)
            .await?;
        self.finish_volume(&id, &spec).await
    }

    fn check_capacity(&self, capacity: u64) -> Result<()> {
        let max = self.options().max_volume_bytes;
        if capacity == 0 {
            return Err(Error::OutOfRange(
                "volume capacity must be above zero".into(),
            ));
        }
        if capacity > max {
            return Err(Error::OutOfRange(format!(
                "capacity {capacity} bytes exceeds the largest volume this store accepts ({max} bytes)"
            )));
        }
        Ok(())
    }

    /// Resolves the content source to (root, size, chunk size, and the generation a volume
    /// source was read at).
    /// A volume source in use is read with its journal: the hold returned keeps a root built
    /// from it until the new volume's first generation names it.
    async fn resolve_source(
        &self,
        spec: &VolumeSpec,
    ) -> Result<(Hash, u64, u32, Option<u64>, Option<Hold>)> {
        let mut generation = None;
        let mut held = None;
        let (root, size, chunk) = match &spec.source {
            None => return Ok((Hash::ZERO, 0, spec.options.chunk_size, None, None)),
            Some(Source::Snapshot(id)) => {
                let s = self.get_snapshot(id).await?;
                (s.root, s.size_bytes, s.chunk_size)
            }
            Some(Source::Import(i)) => (i.root, i.size_bytes, i.chunk_size),
            Some(Source::Volume(id)) => {
                let (h, root, hold) = self.content_now(id).await.map_err(|e| match e {
                    Error::NotFound(_) => {
                        Error::NotFound(format!("source volume {id} does not exist"))
                    }
                    e => e,
                })?;
                generation = Some(h.generation);
                held = hold;
                (root, h.size_bytes, h.chunk_size)
            }
        };
        if spec.capacity_bytes < size {
            if let Some(h) = held {
                h.release().await;
            }
            return Err(Error::OutOfRange(format!(
                "capacity {} bytes is smaller than the content source ({size} bytes)",
                spec.capacity_bytes
            )));
        }
        Ok((root, size, chunk, generation, held))
    }

    async fn finish_volume(&self, id: &str, spec: &VolumeSpec) -> Result<VolumeInfo> {
        if let Some(info) = self.try_get_volume(id).await? {
            return Ok(info);
        }
        let mut attempt = 0;
        loop {
            match self.try_finish_volume(id, spec).await {
                // The source's generation was pruned while a sweep ran: read it again.
                Err(Error::Conflict(_)) if attempt < 8 => attempt += 1,
                other => return other,
            }
        }
    }

    async fn try_finish_volume(&self, id: &str, spec: &VolumeSpec) -> Result<VolumeInfo> {
        let (root, _, chunk, from_gen, held) = self.resolve_source(spec).await?;
        let made = self.finish_from(id, spec, root, chunk, from_gen).await;
        if let Some(h) = held {
            h.release().await;
        }
        made
    }

    async fn finish_from(
        &self,
        id: &str,
        spec: &VolumeSpec,
        root: Hash,
        chunk: u32,
        from_gen: Option<u64>,
    ) -> Result<VolumeInfo> {
        let mut spec = spec.clone();
        spec.options.chunk_size = chunk;
        let record = VolumeRecord {
            format: RECORD_FORMAT,
            id: id.to_string(),
            spec,
            created_ms: records::now_ms(),
        };
        if !self.objects().exists(&layout::volume(id)).await? {
            self.objects()
                .put(&layout::volume(id), records::encode(&record)?)
                .await?;
        }
        let source_exists = async {
            match (&record.spec.source, from_gen) {
                (Some(Source::Snapshot(s)), _) => self.objects().exists(&layout::snapshot(s)).await,
                (Some(Source::Volume(v)), Some(g)) => self.gen_exists(v, g).await,
                // No source, or an import: the importer holds its own tree.
                _ => Ok(true),
            }
        };
        self.with_root_held(
            &format!("volume {id}"),
            root,
            source_exists,
            self.init_head(id, root, record.spec.capacity_bytes, chunk),
        )
        .await?;
        self.get_volume(id).await
    }

    /// The volume `id`.
    ///
    /// # Errors
    /// [`Error::NotFound`] when it does not exist, backend errors.
    pub async fn get_volume(&self, id: &str) -> Result<VolumeInfo> {
        self.try_get_volume(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("volume {id} does not exist")))
    }

    async fn try_get_volume(&self, id: &str) -> Result<Option<VolumeInfo>> {
        if !valid_id(id, "vol-") {
            return Ok(None);
        }
        let path = layout::volume(id);
        let Some(bytes) = self.objects().get(&path).await? else {
            return Ok(None);
        };
        let record: VolumeRecord = records::decode(&path, &bytes)?;
        match self.head(id).await {
            Ok(head) => Ok(Some(VolumeInfo { record, head })),
            // Half created (or half deleted): not a usable volume.
            Err(Error::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The volume created under the CSI name `name`, if any.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn volume_by_name(&self, name: &str) -> Result<Option<VolumeInfo>> {
        let path = layout::volume_name(name);
        let Some(bytes) = self.objects().get(&path).await? else {
            return Ok(None);
        };
        let rec = records::decode::<crate::records::NameRecord>(&path, &bytes)?;
        self.try_get_volume(&rec.id).await
    }

    /// Moves volume `id` to `root` (an imported tree whose objects are all in the store),
    /// growing it to `size` if smaller: the incremental end of an import.
    ///
    /// # Errors
    /// [`Error::Held`] while a node has the volume staged for writing, [`Error::InvalidArgument`]
    /// for a tree of another chunk size, [`Error::Conflict`] when it keeps moving, backend
    /// errors.
    pub async fn set_root(
        &self,
        id: &str,
        root: Hash,
        size: u64,
        chunk_size: u32,
    ) -> Result<GenRecord> {
        crate::lease::check_unleased(self.lease(id).await?.as_ref())?;
        for _ in 0..8 {
            let head = self.get_volume(id).await?.head;
            if head.chunk_size != chunk_size {
                return Err(Error::InvalidArgument(format!(
                    "volume {id} has {} byte chunks, the import has {chunk_size}",
                    head.chunk_size
                )));
            }
            if head.root == root && head.size_bytes >= size {
                return Ok(head);
            }
            // The import replaces the content: a journal left by a node that died holds
            // writes to what is replaced, so the new root stands alone.
            let grown = head.size_bytes.max(size);
            match self.commit_with(&head, root, grown, None, None).await {
                Ok(rec) => return Ok(rec),
                Err(Error::Conflict(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::Conflict(format!(
            "volume {id} kept changing during the import; retry"
        )))
    }

    /// Volumes in id order, at most `max` (0: all), after the token `start`.
    ///
    /// # Errors
    /// [`Error::InvalidToken`] for a token this store did not hand out; backend errors.
    pub async fn list_volumes(&self, start: Option<&str>, max: usize) -> Result<Page<VolumeInfo>> {
        if let Some(t) = start
            && !valid_id(t, "vol-")
        {
            return Err(Error::InvalidToken(format!(
                "starting token {t:?} is not a volume listing token"
            )));
        }
        let ids = self.objects().list_names(layout::VOLUMES).await?;
        let mut out = Vec::new();
        for id in ids
            .iter()
            .filter(|id| start.is_none_or(|s| id.as_str() > s))
        {
            if max > 0 && out.len() == max {
                let last = out.last().map(|v: &VolumeInfo| v.record.id.clone());
                return Ok((out, last));
            }
            if let Some(v) = self.try_get_volume(id).await? {
                out.push(v);
            }
        }
        Ok((out, None))
    }

    /// Grows volume `id` to at least `size` bytes; returns the new size. Only the size moves:
    /// the tree's shape is fixed, so the root is unchanged.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::OutOfRange`] above the store's limit, backend errors.
    pub async fn expand_volume(&self, id: &str, size: u64) -> Result<u64> {
        self.check_capacity(size)?;
        for _ in 0..8 {
            let head = self.get_volume(id).await?.head;
            if head.size_bytes >= size {
                return Ok(head.size_bytes);
            }
            if size / head.chunk_size as u64 >= tree::MAX_CHUNKS {
                return Err(Error::OutOfRange(format!(
                    "{size} bytes is past the tree's reach"
                )));
            }
            match self.commit(&head, head.root, size).await {
                Ok(rec) => return Ok(rec.size_bytes),
                Err(Error::Conflict(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::Conflict(format!(
            "volume {id} kept changing while expanding; retry"
        )))
    }

    /// Deletes volume `id`, refusing with [`Error::Held`] while a node has it staged for
    /// writing. Its snapshots stay usable: they hold their own roots, and chunks
    /// are reclaimed only by GC once nothing reaches them. Deleting a missing volume succeeds.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn delete_volume(&self, id: &str) -> Result<()> {
        if !valid_id(id, "vol-") {
            return Ok(());
        }
        crate::lease::check_unleased(self.lease(id).await?.as_ref())?;
        let path = layout::volume(id);
        if let Some(bytes) = self.objects().get(&path).await?
            && let Ok(rec) = records::decode::<VolumeRecord>(&path, &bytes)
        {
            self.release_name(&layout::volume_name(&rec.spec.name), id)
                .await?;
        }
        for name in self.objects().list_names(&layout::gens(id)).await? {
            self.objects()
                .delete(&format!("{}{name}", layout::gens(id)))
                .await?;
        }
        self.journal_delete_all(id).await?;
        self.drop_leases(id).await?;
        self.drop_volume_health(id).await?;
        self.objects().delete(&path).await
    }
}

/// True when `id` looks like an id this store hands out with `prefix`.
pub(crate) fn valid_id(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix)
        .is_some_and(|rest| rest.len() == 32 && rest.bytes().all(|b| b.is_ascii_hexdigit()))
}
