//! CSI names to ids. The first create of a name claims `names/<kind>s/<sha256(name)>.json`
//! with create-if-absent, recording the request; a retry of the same request gets the same
//! id, a different request `AlreadyExists`. Deleting the object frees the name.

use crate::error::{Error, Result};
use crate::records::{self, NameRecord, RECORD_FORMAT};
use crate::store::Store;
use crate::torn::Unreadable;
use std::time::Duration;

/// What a name is for.
#[derive(Clone, Copy, Debug)]
pub(crate) enum NameKind {
    Volume,
    Snapshot,
    GroupSnapshot,
}

impl NameKind {
    fn word(self) -> &'static str {
        match self {
            NameKind::Volume => "volume",
            NameKind::Snapshot => "snapshot",
            NameKind::GroupSnapshot => "group snapshot",
        }
    }

    fn new_id(self) -> String {
        let prefix = match self {
            NameKind::Volume => "vol-",
            NameKind::Snapshot => "snap-",
            NameKind::GroupSnapshot => "group-",
        };
        format!("{prefix}{}", uuid::Uuid::new_v4().simple())
    }
}

impl Store {
    /// The id `name` maps to for `request`: the recorded one when an identical request
    /// claimed the name before, a new one claimed now when the name is free.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`] when the name was claimed by another request;
    /// [`Error::Conflict`] when a concurrent claim does not settle; backend errors.
    pub(crate) async fn claim_name(
        &self,
        kind: NameKind,
        path: &str,
        name: &str,
        request: &serde_json::Value,
    ) -> Result<String> {
        for _ in 0..20 {
            if let Some(bytes) = self.objects().get(path).await? {
                let rec = match records::decode::<NameRecord>(path, &bytes) {
                    Ok(r) => r,
                    Err(e @ Error::Corrupt { .. }) => {
                        match self.unreadable(path, &bytes, e).await? {
                            // Torn by a create that died before answering: claim it again.
                            Unreadable::Torn { young: false } => {
                                self.objects().delete(path).await?
                            }
                            // Another create of this name is writing it right now.
                            Unreadable::Torn { young: true } => {
                                tokio::time::sleep(Duration::from_millis(50)).await
                            }
                            Unreadable::Refused(e) => return Err(e),
                        }
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                if &rec.request != request {
                    return Err(Error::AlreadyExists(format!(
                        "{0} name {name:?} is already used by {0} {1}, created by a request \
                         with other parameters or source",
                        kind.word(),
                        rec.id
                    )));
                }
                return Ok(rec.id);
            }
            let rec = NameRecord {
                format: RECORD_FORMAT,
                name: name.to_string(),
                id: kind.new_id(),
                request: request.clone(),
            };
            if self
                .objects()
                .put_if_absent(path, records::encode(&rec)?)
                .await?
            {
                return Ok(rec.id);
            }
        }
        Err(Error::Conflict(format!(
            "{} name {name:?} is being created concurrently; retry",
            kind.word()
        )))
    }

    /// Frees the name at `path` if it still maps to `id`.
    ///
    /// # Errors
    /// Backend errors.
    pub(crate) async fn release_name(&self, path: &str, id: &str) -> Result<()> {
        if let Some(bytes) = self.objects().get(path).await?
            && records::decode::<NameRecord>(path, &bytes).is_ok_and(|n| n.id == id)
        {
            self.objects().delete(path).await?;
        }
        Ok(())
    }
}
