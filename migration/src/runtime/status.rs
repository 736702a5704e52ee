//! Writing the status of ferry's resources: one saver for every CRD.
//!
//! A [`StatusWriter`] starts from the object as a reconcile read it and sends only what
//! changed, as a JSON merge patch (RFC 7386) of the status subresource:
//! - fields that were cleared are sent as `null`, so they are removed (a merge patch that
//!   merely leaves a field out keeps it);
//! - nothing is sent when nothing changed, so a reconcile that finds the same state writes
//!   nothing and causes no watch event, hence no new reconcile;
//! - every write carries the `resourceVersion` the writer last saw, so an older view of the
//!   object never overwrites a newer one (the API answers 409 Conflict, and the reconcile
//!   runs again from a fresh read).

use crate::error::{Error, Result};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde::Serialize;
use serde_json::{Map, Value, json};

/// Saves the status of one object, starting from the copy a reconcile read.
pub struct StatusWriter<K> {
    api: Api<K>,
    name: String,
    last: Value,
    resource_version: Option<String>,
}

impl<K: crate::runtime::finalizer::Object> StatusWriter<K> {
    /// A writer for `obj` (namespaced), which must be the copy just read from the API.
    ///
    /// # Errors
    /// None in practice: the object serialises.
    pub fn new(client: &kube::Client, obj: &K) -> Result<Self> {
        let api = Api::namespaced(client.clone(), &obj.namespace().unwrap_or_default());
        Self::for_api(api, obj)
    }
}

impl<K> StatusWriter<K>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + Serialize
        + std::fmt::Debug,
{
    /// A writer for `obj` through `api` (namespaced or cluster-scoped), which must be the
    /// copy just read from the API.
    ///
    /// # Errors
    /// None in practice: the object serialises.
    pub fn for_api(api: Api<K>, obj: &K) -> Result<Self> {
        Ok(StatusWriter {
            api,
            name: obj.name_any(),
            last: status_of(obj)?,
            resource_version: obj.resource_version(),
        })
    }

    /// Takes the resourceVersion of `written`, a write of the object's spec or metadata made
    /// since it was read, so the next status write goes on top of it.
    pub fn rebase(&mut self, written: &K) {
        self.resource_version = written.resource_version();
    }

    /// Writes `status` if it differs from the last one seen; returns whether it wrote.
    ///
    /// # Errors
    /// API errors, 409 Conflict when the object changed since it was read.
    pub async fn save<S: Serialize>(&mut self, status: &S) -> Result<bool> {
        let next = serde_json::to_value(status).map_err(|e| Error::Unexpected(e.to_string()))?;
        let Some(diff) = merge_patch(&self.last, &next) else {
            return Ok(false);
        };
        let mut body = json!({ "status": diff });
        if let Some(rv) = &self.resource_version {
            body["metadata"] = json!({ "resourceVersion": rv });
        }
        let written = self
            .api
            .patch_status(&self.name, &PatchParams::default(), &Patch::Merge(&body))
            .await?;
        self.last = status_of(&written)?;
        self.resource_version = written.resource_version();
        Ok(true)
    }
}

fn status_of<K: Serialize>(obj: &K) -> Result<Value> {
    let v = serde_json::to_value(obj).map_err(|e| Error::Unexpected(e.to_string()))?;
    Ok(v.get("status").cloned().unwrap_or(Value::Null))
}

/// The JSON merge patch that turns `old` into `new`, or `None` when they are equal: members
/// gone from `new` become `null`, objects are patched member by member, anything else is
/// replaced whole (arrays included, as RFC 7386 does).
pub fn merge_patch(old: &Value, new: &Value) -> Option<Value> {
    if old == new {
        return None;
    }
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let mut out = Map::new();
            for (k, av) in a {
                match b.get(k) {
                    None => {
                        out.insert(k.clone(), Value::Null);
                    }
                    Some(bv) => {
                        if let Some(d) = merge_patch(av, bv) {
                            out.insert(k.clone(), d);
                        }
                    }
                }
            }
            for (k, bv) in b {
                if !a.contains_key(k) {
                    out.insert(k.clone(), bv.clone());
                }
            }
            Some(Value::Object(out))
        }
        // A null inside `new` would delete on the server; a merge patch cannot set null.
        (_, b) => Some(b.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleared_fields_become_null_and_equal_ones_are_left_out() {
        let old = json!({"a": 1, "reason": "down", "nested": {"x": 1, "y": 2}, "list": [1, 2]});
        let new = json!({"a": 1, "nested": {"x": 1, "y": 3}, "list": [1], "fresh": true});
        assert_eq!(
            merge_patch(&old, &new),
            Some(json!({"reason": null, "nested": {"y": 3}, "list": [1], "fresh": true}))
        );
        assert_eq!(merge_patch(&new, &new), None);
        assert_eq!(
            merge_patch(&Value::Null, &json!({"a": 1})),
            Some(json!({"a": 1}))
        );
    }
}
