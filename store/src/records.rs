//! The small JSON records of the store. Each carries `format`, so a reader refuses a record
//! written by a newer, incompatible build instead of misreading it.

use crate::config::VolumeOptions;
use crate::error::{Error, Result};
use crate::hash::Hash;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use std::collections::BTreeMap;

/// Version of the record formats written by this build.
pub const RECORD_FORMAT: u32 = 1;

/// Where a volume's first content came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind", content = "id")]
pub enum Source {
    /// Created from a snapshot.
    Snapshot(String),
    /// Cloned from a volume.
    Volume(String),
    /// Rehydrated from a transfer: a root whose pages and chunks were imported first.
    Import(ImportSource),
}

/// The content an import brought in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportSource {
    /// The transfer commit imported.
    pub commit: String,
    /// Its root; every page and chunk it reaches is in the store before the volume is made.
    pub root: Hash,
    /// Size of the exported volume.
    pub size_bytes: u64,
    /// Its chunk size.
    pub chunk_size: u32,
}

/// What a CreateVolume asked for; two requests for one name must agree on all of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSpec {
    /// The CSI name.
    pub name: String,
    /// Capacity given to the volume.
    pub capacity_bytes: u64,
    /// Chunk size and codec.
    pub options: VolumeOptions,
    /// StorageClass parameters as given.
    pub parameters: BTreeMap<String, String>,
    /// Content source, if any.
    pub source: Option<Source>,
}

/// A volume: its id and what it was created with. Its current content and size live in its
/// newest [`GenRecord`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeRecord {
    /// Record format.
    pub format: u32,
    /// Volume id.
    pub id: String,
    /// The request that created it.
    pub spec: VolumeSpec,
    /// Creation time, Unix milliseconds.
    pub created_ms: u64,
}

/// One generation of a volume's root pointer, written with create-if-absent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GenRecord {
    /// Record format.
    pub format: u32,
    /// Volume id.
    pub volume_id: String,
    /// Generation number; the volume's head is the highest valid one.
    pub generation: u64,
    /// Root page of the chunk tree ([`Hash::ZERO`] for an all-zero volume).
    pub root: Hash,
    /// Volume size in bytes.
    pub size_bytes: u64,
    /// Chunk size in bytes.
    pub chunk_size: u32,
    /// Commit time, Unix milliseconds.
    pub committed_ms: u64,
    /// Who committed: a node's lease (`<node>#<lease sequence>`) for data written through a
    /// staged volume; absent for the controller's commits (creation, expansion). A writer
    /// that finds another lease's commit after its own base has been fenced off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writer: Option<String>,
    /// The journal this root continues with: its records after `applied` are part of the
    /// volume's content (see `journal`). Absent when the volume has no journal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journal: Option<crate::journal::JournalPos>,
}

/// A snapshot: a copy of a volume's root at one moment. Immutable once written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotRecord {
    /// Record format.
    pub format: u32,
    /// Snapshot id.
    pub id: String,
    /// CSI name.
    pub name: String,
    /// Volume it was taken from (which may since have been deleted).
    pub source_volume_id: String,
    /// Generation of the source the snapshot copied.
    pub source_generation: u64,
    /// Root page of the chunk tree.
    pub root: Hash,
    /// Size of the volume when taken.
    pub size_bytes: u64,
    /// Chunk size of the tree.
    pub chunk_size: u32,
    /// Codec of the source volume, inherited by volumes made from the snapshot.
    pub options: VolumeOptions,
    /// Parameters given to CreateSnapshot.
    pub parameters: BTreeMap<String, String>,
    /// Creation time, Unix milliseconds.
    pub created_ms: u64,
    /// The group snapshot this one was taken in, with the others at the same instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_snapshot_id: Option<String>,
}

/// A group snapshot: snapshots of several volumes taken at one instant. Written after every
/// member's record, so its existence means the group is complete.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupSnapshotRecord {
    /// Record format.
    pub format: u32,
    /// Group snapshot id (`group-<32 hex>`).
    pub id: String,
    /// CSI name.
    pub name: String,
    /// The members' snapshot ids, in the order of `source_volume_ids`.
    pub snapshot_ids: Vec<String>,
    /// The volumes, as the request named them.
    pub source_volume_ids: Vec<String>,
    /// Parameters given to CreateVolumeGroupSnapshot.
    pub parameters: BTreeMap<String, String>,
    /// Creation time, Unix milliseconds.
    pub created_ms: u64,
}

/// Maps a CSI name to the id chosen for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NameRecord {
    /// Record format.
    pub format: u32,
    /// The CSI name.
    pub name: String,
    /// The id it maps to.
    pub id: String,
    /// The request that claimed the name, to tell a retry from a conflicting request.
    pub request: serde_json::Value,
}

/// One step of a volume's single-writer lease, written with create-if-absent; the highest
/// valid sequence number is the lease's current state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaseRecord {
    /// Record format.
    pub format: u32,
    /// Volume id.
    pub volume_id: String,
    /// Sequence number; each take, renewal and release writes the next one.
    pub seq: u64,
    /// The node holding (or, when released, last holding) the lease.
    pub holder: String,
    /// When the lease lapses unless renewed, Unix milliseconds.
    pub expires_ms: u64,
    /// Given back by its holder: free for anyone.
    pub released: bool,
    /// Time of writing, Unix milliseconds.
    pub written_ms: u64,
    /// Where the holder took the volume up: its fencing generation, recorded once that is
    /// committed and carried forward by every later step of the same holder. Absent before
    /// the fence and in steps of older nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<LeaseStart>,
}

/// The generation a lease holder took a volume up with: the root it opened, committed again
/// under its writer tag before it served a byte.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaseStart {
    /// The fencing generation.
    pub generation: u64,
    /// Its root (the root the holder opened).
    pub root: Hash,
    /// Its writer tag.
    pub writer: String,
}

impl LeaseRecord {
    /// The writer tag commits under this lease carry.
    pub fn writer(&self) -> String {
        format!("{}#{}", self.holder, self.seq)
    }
}

/// Records that carry a format number.
pub trait Versioned {
    /// The record's format.
    fn format(&self) -> u32;
}

macro_rules! versioned {
    ($($t:ty),*) => {$(impl Versioned for $t { fn format(&self) -> u32 { self.format } })*};
}
versioned!(
    VolumeRecord,
    GenRecord,
    GroupSnapshotRecord,
    SnapshotRecord,
    NameRecord,
    LeaseRecord
);

/// Encodes a record.
///
/// # Errors
/// [`Error::Internal`] if it does not serialise: never written as empty bytes.
pub fn encode<T: Serialize>(record: &T) -> Result<Vec<u8>> {
    serde_json::to_vec_pretty(record)
        .map_err(|e| Error::Internal(format!("encoding a store record: {e}")))
}

/// Decodes a record read from `path`, refusing unknown formats.
///
/// # Errors
/// [`Error::Corrupt`] when the bytes do not parse or the format is newer than this build.
pub fn decode<T: DeserializeOwned + Versioned>(path: &str, bytes: &[u8]) -> Result<T> {
    let rec: T = serde_json::from_slice(bytes).map_err(|e| Error::Corrupt {
        path: path.to_string(),
        reason: format!("record does not parse: {e}"),
    })?;
    if rec.format() != RECORD_FORMAT {
        return Err(Error::Corrupt {
            path: path.to_string(),
            reason: format!(
                "record format {} is not supported by this build (knows {RECORD_FORMAT})",
                rec.format()
            ),
        });
    }
    Ok(rec)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
