//! Snapshots: a copy of a volume's root hash at one moment. Creating one copies no chunk, so
//! it costs the same for any volume size; records are immutable and so cached for good.

use crate::error::{Error, Result};
use crate::layout;
use crate::names::NameKind;
use crate::records::{self, RECORD_FORMAT, SnapshotRecord};
use crate::store::Store;
use crate::volumes::{Page, valid_id};
use std::collections::BTreeMap;

/// Which snapshots a listing returns.
#[derive(Clone, Debug, Default)]
pub struct SnapshotFilter {
    /// Only this snapshot.
    pub snapshot_id: Option<String>,
    /// Only snapshots of this volume.
    pub source_volume_id: Option<String>,
}

impl Store {
    /// Takes snapshot `name` of volume `source`, or returns it when an identical request
    /// took it before (even if the volume changed since).
    ///
    /// # Errors
    /// [`Error::AlreadyExists`] when the name was used for another volume or parameters,
    /// [`Error::NotFound`] when the volume does not exist, backend errors.
    pub async fn create_snapshot(
        &self,
        name: &str,
        source: &str,
        parameters: BTreeMap<String, String>,
    ) -> Result<SnapshotRecord> {
        let path = layout::snapshot_name(name);
        let request = serde_json::json!({ "sourceVolumeId": source, "parameters": parameters });
        if !self.objects().exists(&path).await? {
            // Fail before claiming a free name when the volume does not exist.
            self.get_volume(source).await?;
        }
        let id = self
            .claim_name(NameKind::Snapshot, &path, name, &request)
            .await?;
        self.finish_snapshot(&id, name, source, parameters).await
    }

    async fn finish_snapshot(
        &self,
        id: &str,
        name: &str,
        source: &str,
        parameters: BTreeMap<String, String>,
    ) -> Result<SnapshotRecord> {
        if let Some(s) = self.try_get_snapshot(id).await? {
            return Ok(s);
        }
        let mut attempt = 0;
        loop {
            let vol = self.get_volume(source).await?;
            // Every write flushed before the call: the head and its journal's records.
            let (head, root, held) = self.content_now(source).await?;
            let rec = SnapshotRecord {
                format: RECORD_FORMAT,
                id: id.to_string(),
                name: name.to_string(),
                source_volume_id: source.to_string(),
                source_generation: head.generation,
                root,
                size_bytes: head.size_bytes,
                chunk_size: head.chunk_size,
                options: vol.record.spec.options,
                parameters: parameters.clone(),
                created_ms: records::now_ms(),
                group_snapshot_id: None,
            };
            let bytes = records::encode(&rec)?;
            let owner = format!("snapshot {id}");
            let written = self
                .with_root_held(
                    &owner,
                    rec.root,
                    self.gen_exists(source, rec.source_generation),
                    self.objects().put(&layout::snapshot(id), bytes),
                )
                .await;
            if let Some(h) = held {
                h.release().await;
            }
            match written {
                Ok(()) => return Ok(rec),
                // The generation was pruned while a sweep ran: take the volume's newer one.
                Err(Error::Conflict(_)) if attempt < 8 => attempt += 1,
                Err(e) => return Err(e),
            }
        }
    }

    /// The snapshot `id`.
    ///
    /// # Errors
    /// [`Error::NotFound`] when it does not exist, backend errors.
    pub async fn get_snapshot(&self, id: &str) -> Result<SnapshotRecord> {
        self.try_get_snapshot(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("snapshot {id} does not exist")))
    }

    pub(crate) async fn try_get_snapshot(&self, id: &str) -> Result<Option<SnapshotRecord>> {
        if !valid_id(id, "snap-") {
            return Ok(None);
        }
        let path = layout::snapshot(id);
        match self.objects().get(&path).await? {
            Some(bytes) => Ok(Some(records::decode(&path, &bytes)?)),
            None => Ok(None),
        }
    }

    /// Deletes snapshot `id`; deleting a missing snapshot succeeds. Volumes created from it
    /// keep their data: they hold their own roots.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn delete_snapshot(&self, id: &str) -> Result<()> {
        let Some(rec) = self.try_get_snapshot(id).await? else {
            return Ok(());
        };
        if let Some(g) = &rec.group_snapshot_id
            && self.try_get_group_snapshot(g).await?.is_some()
        {
            return Err(Error::Held(format!(
                "snapshot {id} belongs to group snapshot {g}: delete the group snapshot, \
                 which deletes its members"
            )));
        }
        self.release_name(&layout::snapshot_name(&rec.name), id)
            .await?;
        self.objects().delete(&layout::snapshot(id)).await
    }

    /// Snapshots in id order matching `filter`, at most `max` (0: all), after token `start`.
    ///
    /// # Errors
    /// [`Error::InvalidToken`] for a token this store did not hand out; backend errors.
    pub async fn list_snapshots(
        &self,
        filter: &SnapshotFilter,
        start: Option<&str>,
        max: usize,
    ) -> Result<Page<SnapshotRecord>> {
        if let Some(t) = start
            && !valid_id(t, "snap-")
        {
            return Err(Error::InvalidToken(format!(
                "starting token {t:?} is not a snapshot listing token"
            )));
        }
        if let Some(id) = &filter.snapshot_id {
            let one = self.try_get_snapshot(id).await?.filter(|s| {
                filter
                    .source_volume_id
                    .as_ref()
                    .is_none_or(|v| &s.source_volume_id == v)
            });
            return Ok((one.into_iter().collect(), None));
        }
        let names = self.objects().list_names(layout::SNAPSHOTS).await?;
        let mut out: Vec<SnapshotRecord> = Vec::new();
        for name in &names {
            let Some(id) = name.strip_suffix(".json") else {
                continue;
            };
            if start.is_some_and(|s| id <= s) {
                continue;
            }
            let Some(rec) = self.try_get_snapshot(id).await? else {
                continue;
            };
            if filter
                .source_volume_id
                .as_ref()
                .is_some_and(|v| &rec.source_volume_id != v)
            {
                continue;
            }
            if max > 0 && out.len() == max {
                let last = out.last().map(|s| s.id.clone());
                return Ok((out, last));
            }
            out.push(rec);
        }
        Ok((out, None))
    }
}
