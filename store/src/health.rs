//! What a node found wrong with a volume, kept in the store where the controller reads it:
//! ControllerGetVolume and ListVolumes carry it as the volume's condition (the path the CSI
//! external-health-monitor takes). `health/<volume id>/<node>.json`, written by the node whose
//! volume server died and whose connection the volume host had to abort, removed when that
//! node stages the volume again or unstages it, and with the volume. One top-level prefix, so
//! that ListVolumes learns every abnormal volume with one listing (none, most of the time).

use crate::layout;
use crate::records::{self, RECORD_FORMAT, Versioned};
use crate::store::Store;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// One node's report that a volume failed there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeHealthNote {
    /// The record's format.
    pub format: u32,
    /// The node that saw it.
    pub node: String,
    /// What happened and what to do, for a person.
    pub message: String,
    /// When, milliseconds since the epoch.
    pub at_ms: u64,
}

impl Versioned for VolumeHealthNote {
    fn format(&self) -> u32 {
        self.format
    }
}

/// The file name a node's note goes under: the node id where it is a plain name, else its
/// hash (a node id is the node's name, but nothing here lets it shape a path).
fn node_file(node: &str) -> String {
    let plain = !node.is_empty()
        && node.len() <= 200
        && !node.starts_with('.')
        && node
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if plain {
        format!("{node}.json")
    } else {
        format!("{}.json", hex::encode(Sha256::digest(node.as_bytes())))
    }
}

/// The report stored at `path`; one that does not parse (damaged, or written by a newer
/// build) is kept as a report that says so, so that one bad object neither hides a failed
/// volume nor fails a whole listing.
fn note_or_damage(path: &str, node_file_stem: &str, bytes: &[u8]) -> VolumeHealthNote {
    records::decode::<VolumeHealthNote>(path, bytes).unwrap_or_else(|e| VolumeHealthNote {
        format: RECORD_FORMAT,
        node: node_file_stem.to_string(),
        message: format!(
            "its health report cannot be read ({e}); see the node plugin's log on that node"
        ),
        at_ms: 0,
    })
}

fn check_id(volume_id: &str) -> Result<()> {
    if crate::volumes::valid_id(volume_id, "vol-") {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "{volume_id:?} is not a volume id of this store"
        )))
    }
}

impl Store {
    /// Records that `node` can no longer serve `volume_id` (its server died and the volume
    /// host aborted the connection), with what happened.
    ///
    /// # Errors
    /// An id this store does not hand out; backend errors.
    pub async fn report_volume_abnormal(
        &self,
        volume_id: &str,
        node: &str,
        message: &str,
        at_ms: u64,
    ) -> Result<()> {
        check_id(volume_id)?;
        let note = VolumeHealthNote {
            format: RECORD_FORMAT,
            node: node.to_string(),
            message: message.to_string(),
            at_ms,
        };
        let path = format!("{}{}", layout::health(volume_id), node_file(node));
        self.objects().put(&path, records::encode(&note)?).await
    }

    /// Forgets `node`'s report on `volume_id` (it staged the volume again, or let it go).
    /// Nothing to forget succeeds.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn clear_volume_health(&self, volume_id: &str, node: &str) -> Result<()> {
        if check_id(volume_id).is_err() {
            return Ok(());
        }
        let path = format!("{}{}", layout::health(volume_id), node_file(node));
        self.objects().delete(&path).await
    }

    /// Every node's report on `volume_id`, oldest first.
    ///
    /// # Errors
    /// Backend errors. A report that does not parse (damaged, or of a newer build) is still
    /// a report: it reads as one saying so.
    pub async fn volume_health(&self, volume_id: &str) -> Result<Vec<VolumeHealthNote>> {
        check_id(volume_id)?;
        let dir = layout::health(volume_id);
        let mut notes = Vec::new();
        for name in self.objects().list_names(&dir).await? {
            let path = format!("{dir}{name}");
            if let Some(bytes) = self.objects().get(&path).await? {
                notes.push(note_or_damage(
                    &path,
                    name.trim_end_matches(".json"),
                    &bytes,
                ));
            }
        }
        notes.sort_by_key(|n| n.at_ms);
        Ok(notes)
    }

    /// Every volume some node reported, with its reports (oldest first): one listing, then a
    /// read per report.
    ///
    /// # Errors
    /// Backend errors (a report that does not parse reads as one saying so).
    pub async fn abnormal_volumes(&self) -> Result<BTreeMap<String, Vec<VolumeHealthNote>>> {
        let mut out: BTreeMap<String, Vec<VolumeHealthNote>> = BTreeMap::new();
        for meta in self.objects().list(layout::HEALTH).await? {
            let Some(id) = meta
                .path
                .strip_prefix(layout::HEALTH)
                .and_then(|rest| rest.split_once('/'))
                .map(|(id, _)| id.to_string())
            else {
                continue;
            };
            if let Some(bytes) = self.objects().get(&meta.path).await? {
                let node = meta.path.rsplit('/').next().unwrap_or_default();
                let note = note_or_damage(&meta.path, node.trim_end_matches(".json"), &bytes);
                out.entry(id).or_default().push(note);
            }
        }
        for notes in out.values_mut() {
            notes.sort_by_key(|n| n.at_ms);
        }
        Ok(out)
    }

    /// Removes every report on `volume_id` (the volume is being deleted).
    pub(crate) async fn drop_volume_health(&self, volume_id: &str) -> Result<()> {
        let dir = layout::health(volume_id);
        for name in self.objects().list_names(&dir).await? {
            self.objects().delete(&format!("{dir}{name}")).await?;
        }
        Ok(())
    }
}
