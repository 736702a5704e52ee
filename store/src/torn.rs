//! Telling a torn create-if-absent record from one that must not be skipped.
//!
//! Generation records, lease steps, name records and journal records are created with
//! create-if-absent. On S3, Azure Blob, GCS and in memory such a write lands whole or not at
//! all, so a record there that does not decode is damaged. On a local folder the `O_EXCL`
//! create writes in place, so a writer that died while writing leaves a prefix of its bytes
//! (or nothing) under the name: that record was never acknowledged and is debris once old
//! enough (a young one may still be being written). A record that decodes as JSON but names
//! a format this build does not know was written by a newer build: it is neither debris nor
//! damage, and skipping it would act on an older state than the store holds.
//!
//! Every reader of such records asks [`Store::unreadable`] what an undecodable one is, and
//! skips only what it calls torn.

use crate::error::{Error, Result};
use crate::records::RECORD_FORMAT;
use crate::store::Store;
use std::time::Duration;

/// Age after which a torn record is a dead writer's, not one being written.
pub(crate) const TORN_AFTER: Duration = Duration::from_secs(60);

/// What a record that does not decode is.
#[derive(Debug)]
pub(crate) enum Unreadable {
    /// A prefix left by a writer that died while creating it on a local folder: never
    /// acknowledged. `young` while it may still be being written.
    Torn {
        /// Written less than [`TORN_AFTER`] ago (or at an unknown time).
        young: bool,
    },
    /// Damaged, or written by a newer build: the error says which and names the record.
    Refused(Error),
}

impl Store {
    /// Classifies the record at `path`, whose `bytes` failed to decode with `err`.
    ///
    /// # Errors
    /// Backend errors reading the record's age.
    pub(crate) async fn unreadable(
        &self,
        path: &str,
        bytes: &[u8],
        err: Error,
    ) -> Result<Unreadable> {
        if let Some(format) = newer_format(bytes) {
            return Ok(Unreadable::Refused(Error::Corrupt {
                path: path.to_string(),
                reason: format!(
                    "record format {format} was written by a newer build (this one knows \
                     {RECORD_FORMAT}); run a build that reads it"
                ),
            }));
        }
        if self.objects().fs_root().is_none() || !looks_torn(bytes) {
            return Ok(Unreadable::Refused(err));
        }
        let old = self.objects().older_than(path, TORN_AFTER).await?;
        Ok(Unreadable::Torn { young: !old })
    }
}

/// The `format` of a JSON record when it parses and names one this build does not write.
fn newer_format(bytes: &[u8]) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let f = v.get("format")?.as_u64()?;
    (f != u64::from(RECORD_FORMAT)).then_some(f)
}

/// True for what an interrupted in-place write leaves: nothing, zeros (a size extended
/// before its data reached the disk), or a prefix of a JSON document.
pub(crate) fn looks_torn(bytes: &[u8]) -> bool {
    if bytes.iter().all(|b| *b == 0) {
        return true;
    }
    match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(_) => false,
        Err(e) => e.is_eof(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_torn_and_other_damage_is_not() {
        let whole = br#"{"format": 1, "volumeId": "vol-1", "generation": 3}"#;
        for cut in [0, 1, 10, whole.len() - 1] {
            assert!(looks_torn(&whole[..cut]), "prefix of {cut} bytes");
        }
        assert!(looks_torn(&[0u8; 40]));
        assert!(!looks_torn(b"{\"format\": 1, \"volumeId\": 12}"));
        assert!(!looks_torn(b"garbage"));
        assert!(!looks_torn(whole));
        assert_eq!(newer_format(br#"{"format": 2}"#), Some(2));
        assert_eq!(newer_format(br#"{"format": 1}"#), None);
        assert_eq!(newer_format(b"{\"format\": 2"), None);
    }
}
