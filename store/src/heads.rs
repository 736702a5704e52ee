//! A volume's root pointer: numbered generations, each created with create-if-absent, so two
//! writers that start from the same generation can never both commit.

use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::journal::JournalPos;
use crate::layout;
use crate::records::{self, GenRecord, RECORD_FORMAT};
use crate::store::Store;
use crate::torn::Unreadable;

impl Store {
    /// The newest valid generation of volume `id`.
    ///
    /// # Errors
    /// [`Error::NotFound`] when the volume has no generation; backend errors.
    pub async fn head(&self, id: &str) -> Result<GenRecord> {
        // Commits prune older generations, so every generation a listing names may be gone
        // by the time it is read: list again rather than call an existing volume missing.
        for _ in 0..HEAD_ATTEMPTS {
            let mut gens = self.gen_numbers(id).await?;
            if gens.is_empty() {
                return Err(Error::NotFound(format!("volume {id} does not exist")));
            }
            gens.sort_unstable_by(|a, b| b.cmp(a));
            let mut vanished = false;
            for g in gens {
                let path = layout::gen_path(id, g);
                let Some(bytes) = self.objects().get(&path).await? else {
                    vanished = true; // pruned between list and read
                    continue;
                };
                match records::decode::<GenRecord>(&path, &bytes) {
                    Ok(rec) => return Ok(rec),
                    Err(e @ Error::Corrupt { .. }) => {
                        match self.unreadable(&path, &bytes, e).await? {
                            // A writer that died before its commit returned.
                            Unreadable::Torn { .. } => continue,
                            // Damaged, or a newer build's: the volume is not older than it.
                            Unreadable::Refused(e) => return Err(e),
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
            if !vanished {
                // Only torn records: the volume was never committed.
                return Err(Error::NotFound(format!("volume {id} does not exist")));
            }
        }
        Err(Error::Unavailable(format!(
            "volume {id}: its generations kept changing while being read; try again"
        )))
    }

    /// Generation `generation` of volume `id`, while the store keeps it: a commit prunes all
    /// but the generation before it, so older ones are gone (`None`), as is a torn record.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn generation(&self, id: &str, generation: u64) -> Result<Option<GenRecord>> {
        let path = layout::gen_path(id, generation);
        let Some(bytes) = self.objects().get(&path).await? else {
            return Ok(None);
        };
        match records::decode::<GenRecord>(&path, &bytes) {
            Ok(rec) => Ok(Some(rec)),
            Err(e @ Error::Corrupt { .. }) => match self.unreadable(&path, &bytes, e).await? {
                Unreadable::Torn { .. } => Ok(None),
                Unreadable::Refused(e) => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// The generation numbers volume `id` holds now.
    async fn gen_numbers(&self, id: &str) -> Result<Vec<u64>> {
        Ok(self
            .objects()
            .list_names(&layout::gens(id))
            .await?
            .iter()
            .filter_map(|n| layout::gen_of_name(n))
            .collect())
    }

    /// Writes the first generation of a new volume; a retry finds it there.
    pub(crate) async fn init_head(
        &self,
        id: &str,
        root: Hash,
        size: u64,
        chunk: u32,
    ) -> Result<()> {
        let rec = gen_record(id, 0, root, size, chunk, None);
        self.objects()
            .put_if_absent(&layout::gen_path(id, 0), records::encode(&rec)?)
            .await?;
        Ok(())
    }

    /// Commits `root` and `size` as the generation after `base`.
    ///
    /// # Errors
    /// [`Error::Conflict`] when another writer committed after `base`; backend errors.
    pub async fn commit(&self, base: &GenRecord, root: Hash, size: u64) -> Result<GenRecord> {
        self.commit_as(base, root, size, None).await
    }

    /// Like [`Store::commit`], recording `writer` (a lease's tag) as the committer.
    ///
    /// # Errors
    /// As [`Store::commit`].
    pub async fn commit_as(
        &self,
        base: &GenRecord,
        root: Hash,
        size: u64,
        writer: Option<&str>,
    ) -> Result<GenRecord> {
        self.commit_with(base, root, size, writer, base.journal.clone())
            .await
    }

    /// Like [`Store::commit_as`], naming where the root stands in a journal (`None`: the
    /// root stands alone, as after an import replaced the content).
    pub(crate) async fn commit_with(
        &self,
        base: &GenRecord,
        root: Hash,
        size: u64,
        writer: Option<&str>,
        journal: Option<JournalPos>,
    ) -> Result<GenRecord> {
        let id = &base.volume_id;
        let mut target = base.generation + 1;
        for _ in 0..4 {
            let mut rec = gen_record(id, target, root, size, base.chunk_size, writer);
            rec.journal = journal.clone();
            let path = layout::gen_path(id, target);
            if self
                .objects()
                .put_if_absent(&path, records::encode(&rec)?)
                .await?
            {
                return self.confirm(rec).await;
            }
            match self.objects().get(&path).await? {
                Some(bytes) => match records::decode::<GenRecord>(&path, &bytes) {
                    // Our own write, whose answer was lost: the commit happened.
                    Ok(found)
                        if found.root == root
                            && found.size_bytes == size
                            && found.writer.as_deref() == writer
                            && found.journal == journal =>
                    {
                        return self.confirm(found).await;
                    }
                    // Skip a torn record only when old: a young one may be a concurrent
                    // writer's commit still in progress.
                    Err(e @ Error::Corrupt { .. }) => {
                        match self.unreadable(&path, &bytes, e).await? {
                            Unreadable::Torn { young: false } => target += 1,
                            Unreadable::Torn { young: true } => return Err(conflict(id, target)),
                            Unreadable::Refused(e) => return Err(e),
                        }
                    }
                    _ => return Err(conflict(id, target)),
                },
                None => return Err(conflict(id, target)),
            }
        }
        Err(conflict(id, target))
    }

    /// Checks that no higher generation exists (a stale writer could otherwise re-create a
    /// pruned number), then prunes all but the previous generation.
    async fn confirm(&self, rec: GenRecord) -> Result<GenRecord> {
        let id = &rec.volume_id;
        let gens = self.gen_numbers(id).await?;
        if gens.iter().any(|&g| g > rec.generation) {
            self.objects()
                .delete(&layout::gen_path(id, rec.generation))
                .await?;
            return Err(conflict(id, rec.generation));
        }
        for g in gens.into_iter().filter(|&g| g + 1 < rec.generation) {
            if let Err(e) = self.objects().delete(&layout::gen_path(id, g)).await {
                tracing::warn!(volume.id = %id, generation = g, error = %e, "pruning an old generation failed");
            }
        }
        Ok(rec)
    }
}

/// Listings of a volume's generations tried before giving up on a moving head.
const HEAD_ATTEMPTS: usize = 16;

fn gen_record(
    id: &str,
    generation: u64,
    root: Hash,
    size: u64,
    chunk: u32,
    writer: Option<&str>,
) -> GenRecord {
    GenRecord {
        format: RECORD_FORMAT,
        volume_id: id.to_string(),
        generation,
        root,
        size_bytes: size,
        chunk_size: chunk,
        committed_ms: records::now_ms(),
        writer: writer.map(str::to_string),
        journal: None,
    }
}

fn conflict(id: &str, generation: u64) -> Error {
    Error::Conflict(format!(
        "volume {id}: generation {generation} was committed by another writer"
    ))
}
