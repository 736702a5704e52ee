//! A transfer store: any opendal service, holding packs of blobs, their indexes, and commits.

use crate::bounds;
use crate::crypto::Key;
use crate::error::{Error, Result};
use crate::index::{self, IndexBuilder};
use crate::layout;
use base64::Engine;
use ferry_store::{Frame, Kind, Objects};
use ferry_store::{Hash, StoreConfig, VolumeOptions};
use serde::{Deserialize, Serialize};

/// Transfer store format written by this build.
pub const TRANSFER_FORMAT: u32 = 1;
const KEY_CHECK: &[u8] = b"ferry transfer store key check";

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Marker {
    kind: String,
    format: u32,
    encrypted: bool,
    key_check: Option<String>,
}

/// One blob in a pack.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Entry {
    /// The blob's name (its hash, or its keyed name when encrypted).
    pub name: String,
    /// Offset in the pack.
    pub offset: u64,
    /// Stored length (sealed when encrypted).
    pub len: u64,
    /// 1 chunk, 2 tree page.
    pub kind: u8,
}

/// What a pack holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PackIndex {
    /// Format.
    pub format: u32,
    /// The pack's id.
    pub pack: String,
    /// Its blobs.
    pub entries: Vec<Entry>,
}

pub use crate::index::{Index, Location};

/// One exported snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Commit {
    /// Format.
    pub format: u32,
    /// The exported volume.
    pub volume_id: String,
    /// The exported snapshot (the commit's id).
    pub snapshot_id: String,
    /// Root of the chunk tree.
    pub root: Hash,
    /// Volume size.
    pub size_bytes: u64,
    /// Chunk size and codec of the volume.
    pub options: VolumeOptions,
    /// When the export finished, Unix milliseconds.
    pub created_ms: u64,
}

impl Commit {
    /// `<volume id>/<snapshot id>`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.volume_id, self.snapshot_id)
    }
}

fn describe(h: &Hash, kind: Kind) -> String {
    match kind {
        Kind::Chunk => format!("chunk {h}"),
        Kind::Page => format!("tree page {h}"),
    }
}

/// An opened transfer store.
#[derive(Clone, Debug)]
pub struct TransferStore {
    objects: Objects,
    key: Option<Key>,
}

impl TransferStore {
    /// Opens (and on first use marks) the transfer store at `config`, encrypted when `key`
    /// is given.
    ///
    /// # Errors
    /// [`Error::Key`] when the key is missing, wrong, or given for an unencrypted store;
    /// backend errors.
    pub async fn open(config: &StoreConfig, key: Option<Key>) -> Result<TransferStore> {
        let objects = Objects::open(config, 32).map_err(Error::Target)?;
        let store = TransferStore { objects, key };
        store.check_marker().await?;
        Ok(store)
    }

    /// Writes, reads back and deletes a small object named after `who`: proof that the store
    /// accepts writes and serves reads with these credentials.
    ///
    /// # Errors
    /// The backend's error, or [`Error::Invalid`] when the read returns other bytes.
    pub async fn probe(&self, who: &str) -> Result<()> {
        // Unique per call: two checks of one pair may run at once.
        let name = format!("probe/{who}-{:016x}", rand::random::<u64>());
        let body = format!("ferry probe {who}").into_bytes();
        self.objects
            .put(&name, body.clone())
            .await
            .map_err(Error::Target)?;
        let back = self.objects.get(&name).await.map_err(Error::Target)?;
        self.objects.delete(&name).await.map_err(Error::Target)?;
        if back.as_deref() != Some(&body[..]) {
            return Err(Error::Invalid(format!(
                "the transfer store returned other bytes for {name} than were written"
            )));
        }
        Ok(())
    }

    /// Opens the transfer store at `config` without writing to it: `None` when it holds no
    /// marker yet (nothing was ever exported there). For a dry run, which must not write.
    ///
    /// # Errors
    /// As [`TransferStore::open`].
    pub async fn open_existing(
        config: &StoreConfig,
        key: Option<Key>,
    ) -> Result<Option<TransferStore>> {
        let objects = Objects::open(config, 32).map_err(Error::Target)?;
        let store = TransferStore { objects, key };
        match store
            .objects
            .get(layout::MARKER)
            .await
            .map_err(Error::Target)?
        {
            Some(bytes) => {
                store.check_marker_bytes(&bytes)?;
                Ok(Some(store))
            }
            None => Ok(None),
        }
    }

    async fn check_marker(&self) -> Result<()> {
        let marker = match self
            .objects
            .get(layout::MARKER)
            .await
            .map_err(Error::Target)?
        {
            Some(bytes) => bytes,
            None => {
                let key_check = match &self.key {
                    Some(k) => Some(
                        base64::engine::general_purpose::STANDARD
                            .encode(k.seal(layout::MARKER.as_bytes(), KEY_CHECK)?),
                    ),
                    None => None,
                };
                let m = Marker {
                    kind: "ferry-transfer".into(),
                    format: TRANSFER_FORMAT,
                    encrypted: self.key.is_some(),
                    key_check,
                };
                let bytes = serde_json::to_vec_pretty(&m)
                    .map_err(|e| Error::Invalid(format!("encoding the marker: {e}")))?;
                self.objects
                    .put_if_absent(layout::MARKER, bytes)
                    .await
                    .map_err(Error::Target)?;
                self.objects
                    .get(layout::MARKER)
                    .await
                    .map_err(Error::Target)?
                    .ok_or_else(|| Error::Invalid("transfer store marker vanished".into()))?
            }
        };
        self.check_marker_bytes(&marker)
    }

    /// Checks a marker's format and that the key (or its absence) fits it.
    fn check_marker_bytes(&self, marker: &[u8]) -> Result<()> {
        let m: Marker = serde_json::from_slice(marker).map_err(|e| {
            Error::Invalid(format!(
                "{} is not a ferry transfer marker: {e}",
                layout::MARKER
            ))
        })?;
        if m.kind != "ferry-transfer" || m.format != TRANSFER_FORMAT {
            return Err(Error::Invalid(format!(
                "transfer store format {} ({}) is not supported by this build (knows {TRANSFER_FORMAT})",
                m.format, m.kind
            )));
        }
        match (&self.key, m.encrypted) {
            (None, true) => Err(Error::Key(
                "the transfer store is encrypted: give its key (a key file, or the Secret)".into(),
            )),
            (Some(_), false) => Err(Error::Key(
                "the transfer store is not encrypted, but a key was given; drop the key or use \
                 another store"
                    .into(),
            )),
            (Some(k), true) => {
                let sealed = m
                    .key_check
                    .and_then(|c| base64::engine::general_purpose::STANDARD.decode(c).ok())
                    .unwrap_or_default();
                match k.open(layout::MARKER.as_bytes(), &sealed, "key check") {
                    Ok(v) if v == KEY_CHECK => Ok(()),
                    _ => Err(Error::Key(
                        "the key does not open this transfer store (wrong key)".into(),
                    )),
                }
            }
            (None, false) => Ok(()),
        }
    }

    /// The object layer.
    pub fn objects(&self) -> &Objects {
        &self.objects
    }

    /// True when everything is encrypted.
    pub fn encrypted(&self) -> bool {
        self.key.is_some()
    }

    /// The name content hash `h` has here.
    pub fn name(&self, h: &Hash) -> String {
        match &self.key {
            Some(k) => k.name(h),
            None => h.to_hex(),
        }
    }

    /// Seals `plain` for the object `aad` (identity when not encrypted).
    ///
    /// # Errors
    /// The cipher's refusal.
    pub fn seal(&self, aad: &str, plain: Vec<u8>) -> Result<Vec<u8>> {
        match &self.key {
            Some(k) => k.seal(aad.as_bytes(), &plain),
            None => Ok(plain),
        }
    }

    fn open_sealed(&self, aad: &str, sealed: Vec<u8>, what: &str) -> Result<Vec<u8>> {
        match &self.key {
            Some(k) => k.open(aad.as_bytes(), &sealed, what),
            None => Ok(sealed),
        }
    }

    /// Every indexed blob, with at most [`index::DEFAULT_BUDGET`] records in memory (the
    /// rest in temporary files; see [`index`]). Each index is checked before use
    /// ([`bounds`]): its name and the pack it names are 64 hex digits, and every entry's
    /// name, kind, offset and length are within the format's limits.
    ///
    /// # Errors
    /// [`Error::Tampered`] for an index that does not open, parse or pass the checks; backend
    /// errors; a temporary folder that cannot be written.
    pub async fn load_index(&self) -> Result<Index> {
        self.load_index_within(index::DEFAULT_BUDGET).await
    }

    /// [`TransferStore::load_index`] keeping at most `budget` records in memory.
    ///
    /// # Errors
    /// As [`TransferStore::load_index`].
    pub async fn load_index_within(&self, budget: usize) -> Result<Index> {
        let mut index = IndexBuilder::new(budget);
        for name in self
            .objects
            .list_names(layout::INDEX)
            .await
            .map_err(Error::Target)?
        {
            let path = format!("{}{name}", layout::INDEX);
            let stem = name.strip_suffix(".json").unwrap_or_default();
            if !bounds::is_hex_name(stem) {
                return Err(Error::Tampered(format!(
                    "{path} is not a pack index name (64 hex digits and .json)"
                )));
            }
            let Some(bytes) = self.get_bounded(&path, bounds::MAX_INDEX_BYTES).await? else {
                continue;
            };
            let plain = self.open_sealed(&path, bytes, &format!("pack index {path}"))?;
            let idx: PackIndex = serde_json::from_slice(&plain)
                .map_err(|e| Error::Tampered(format!("pack index {path} does not parse: {e}")))?;
            if idx.pack != stem {
                return Err(Error::Tampered(format!(
                    "pack index {path} describes pack {:?}, not the pack its name says",
                    idx.pack
                )));
            }
            for e in &idx.entries {
                bounds::check_entry(&path, e)?;
            }
            let entries = idx.entries.into_iter().map(|e| (e.name, e.offset, e.len));
            // Building spills to temporary files past the budget: off the async threads.
            index = tokio::task::spawn_blocking(move || {
                index.add_pack(&idx.pack, entries).map(|()| index)
            })
            .await
            .map_err(task_failed)??;
        }
        tokio::task::spawn_blocking(move || index.finish())
            .await
            .map_err(task_failed)?
    }

    /// Those of `hashes` that `index` lacks, in order.
    ///
    /// # Errors
    /// Reading the index's temporary file.
    pub async fn unindexed(&self, index: &Index, hashes: Vec<Hash>) -> Result<Vec<Hash>> {
        let found = index
            .get_many(hashes.iter().map(|h| self.name(h)).collect())
            .await?;
        Ok(hashes
            .into_iter()
            .zip(found)
            .filter_map(|(h, l)| l.is_none().then_some(h))
            .collect())
    }

    /// Reads a whole metadata object, refusing one larger than `max` bytes before reading it.
    async fn get_bounded(&self, path: &str, max: u64) -> Result<Option<Vec<u8>>> {
        match self.objects.stat(path).await.map_err(Error::Target)? {
            None => return Ok(None),
            Some(m) if m.size > max => {
                return Err(Error::Tampered(format!(
                    "{path} holds {} bytes, more than the {max} its format allows",
                    m.size
                )));
            }
            Some(_) => {}
        }
        match self.objects.get(path).await.map_err(Error::Target)? {
            Some(b) if b.len() as u64 > max => Err(Error::Tampered(format!(
                "{path} holds {} bytes, more than the {max} its format allows",
                b.len()
            ))),
            other => Ok(other),
        }
    }

    /// Reads blob `h` of `kind` found at `loc`, authenticates and verifies it; returns the
    /// stored frame (for a chunk store) and the uncompressed bytes.
    ///
    /// # Errors
    /// [`Error::Missing`] when its pack is gone, [`Error::Tampered`] when it fails
    /// authentication or its hash, naming the chunk or page.
    pub async fn read_blob(
        &self,
        h: &Hash,
        kind: Kind,
        loc: &Location,
    ) -> Result<(Frame, Vec<u8>)> {
        let sealed = self
            .read_span(&loc.pack, loc.offset, loc.len, &describe(h, kind))
            .await?;
        let this = self.clone();
        let h = *h;
        tokio::task::spawn_blocking(move || this.open_blob(&h, kind, sealed))
            .await
            .map_err(task_failed)?
    }

    /// Reads `len` bytes at `offset` of pack `pack`; `what` names the blobs wanted there.
    ///
    /// # Errors
    /// [`Error::Missing`] when the pack is gone, [`Error::Tampered`] when it is short.
    pub async fn read_span(
        &self,
        pack: &str,
        offset: u64,
        len: u64,
        what: &str,
    ) -> Result<Vec<u8>> {
        if !bounds::is_hex_name(pack)
            || offset
                .checked_add(len)
                .is_none_or(|end| end > bounds::MAX_PACK_BYTES)
        {
            return Err(Error::Tampered(format!(
                "{what}: span {offset}+{len} of pack {pack:?} is outside the format"
            )));
        }
        match self
            .objects
            .get_range(&layout::pack(pack), offset, len)
            .await
        {
            Ok(Some(b)) => Ok(b),
            Ok(None) => Err(Error::Missing(format!(
                "{what} is missing from the transfer store: its pack {pack} is gone"
            ))),
            Err(ferry_store::Error::Corrupt { reason, .. }) => Err(Error::Tampered(format!(
                "{what}: pack {pack} is damaged ({reason})"
            ))),
            Err(e) => Err(Error::Target(e)),
        }
    }

    /// Authenticates (when encrypted) and verifies the stored bytes of blob `h`; returns the
    /// frame and the uncompressed bytes. CPU work: call it off the async threads.
    ///
    /// # Errors
    /// [`Error::Tampered`] naming the chunk or page.
    pub fn open_blob(&self, h: &Hash, kind: Kind, sealed: Vec<u8>) -> Result<(Frame, Vec<u8>)> {
        let what = describe(h, kind);
        let frame = self.open_sealed(&self.name(h), sealed, &what)?;
        Frame::verify(&what, kind, h, frame)
            .map_err(|e| Error::Tampered(format!("{what} in the transfer store is damaged: {e}")))
    }

    /// Writes `commit` (once; a second export of the same snapshot finds it).
    ///
    /// # Errors
    /// Backend errors.
    pub async fn put_commit(&self, commit: &Commit) -> Result<()> {
        bounds::check_id("volume", &commit.volume_id)?;
        bounds::check_id("snapshot", &commit.snapshot_id)?;
        let path = layout::commit(&commit.volume_id, &commit.snapshot_id);
        let plain = serde_json::to_vec_pretty(commit)
            .map_err(|e| Error::Invalid(format!("encoding commit {path}: {e}")))?;
        let bytes = self.seal(&path, plain)?;
        self.objects
            .put_if_absent(&path, bytes)
            .await
            .map_err(Error::Target)?;
        Ok(())
    }

    /// The commit of `snapshot` of `volume`, if exported.
    ///
    /// # Errors
    /// [`Error::Invalid`] for ids that are not ids; [`Error::Tampered`] for a commit that
    /// does not open, parse, or describe what its path says; backend errors.
    pub async fn get_commit(&self, volume: &str, snapshot: &str) -> Result<Option<Commit>> {
        bounds::check_id("volume", volume)?;
        bounds::check_id("snapshot", snapshot)?;
        let path = layout::commit(volume, snapshot);
        let Some(bytes) = self.get_bounded(&path, bounds::MAX_COMMIT_BYTES).await? else {
            return Ok(None);
        };
        let plain = self.open_sealed(&path, bytes, &format!("commit {volume}/{snapshot}"))?;
        let c: Commit = serde_json::from_slice(&plain)
            .map_err(|e| Error::Tampered(format!("commit {path} does not parse: {e}")))?;
        bounds::check_commit(&path, &c, volume, snapshot)?;
        Ok(Some(c))
    }

    /// The commit named `<volume id>/<snapshot id>`, or the newest of a volume when only
    /// `<volume id>` is given.
    ///
    /// # Errors
    /// [`Error::Invalid`] when there is none; backend errors.
    pub async fn find_commit(&self, id: &str) -> Result<Commit> {
        let found = match id.split_once('/') {
            Some((v, s)) => self.get_commit(v, s).await?,
            None => self.latest_commit(id).await?,
        };
        found.ok_or_else(|| {
            Error::Invalid(format!(
                "no commit {id:?} in the transfer store (export the snapshot first)"
            ))
        })
    }

    /// The newest commit of `volume`.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn latest_commit(&self, volume: &str) -> Result<Option<Commit>> {
        bounds::check_id("volume", volume)?;
        let mut best: Option<Commit> = None;
        for name in self
            .objects
            .list_names(&layout::commits(volume))
            .await
            .map_err(Error::Target)?
        {
            let Some(snap) = name.strip_suffix(".json") else {
                continue;
            };
            if bounds::check_id("snapshot", snap).is_err() {
                tracing::warn!(volume, name, "not a commit name; left alone");
                continue;
            }
            if let Some(c) = self.get_commit(volume, snap).await?
                && best.as_ref().is_none_or(|b| c.created_ms > b.created_ms)
            {
                best = Some(c);
            }
        }
        Ok(best)
    }
}

/// A background task that panicked or was cancelled: a fault here, not bad input, so it is
/// temporary (the work is tried again), never a reason to fail a volume for good.
pub(crate) fn task_failed(e: tokio::task::JoinError) -> Error {
    Error::Store(ferry_store::Error::Internal(format!(
        "a transfer task ended early: {e}"
    )))
}
