//! Finalizers on ferry's resources: what deleting one must clean up first.
//!
//! - [`MIGRATION`] on a Migration: deleting it mid-run removes the VolumeSnapshots it made on
//!   the source and the VolumeImports on the destination that had not finished.
//! - [`PAIR`] on a ClusterPair: deleting it waits until no running Migration uses it.
//!
//! Both are added by the reconciler before it does anything else with the object, removed
//! when the cleanup is done, and the cleanup may run any number of times (and after an
//! add that never happened): each step treats "already gone" as done.

use crate::error::{Error, Result};
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

/// On a Migration: its snapshots and unfinished imports are removed before it goes.
pub const MIGRATION: &str = "ferry.dev/migration-cleanup";
/// On a ClusterPair: it goes only when no running Migration uses it.
pub const PAIR: &str = "ferry.dev/pair-in-use";
/// On a VolumeImport (destination): a deleted import stops its transfer and removes the
/// volume it had started and not yet handed over.
pub const IMPORT: &str = "ferry.dev/import-cleanup";

/// A namespaced resource the typed API can read and write.
pub trait Object:
    Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Serialize
    + std::fmt::Debug
{
}

impl<K> Object for K where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug
{
}

/// True when the object is being deleted.
pub fn deleting<K: Resource>(obj: &K) -> bool {
    obj.meta().deletion_timestamp.is_some()
}

/// True when the object carries `name`.
pub fn has<K: Resource>(obj: &K, name: &str) -> bool {
    obj.finalizers().iter().any(|f| f == name)
}

/// Adds `name` to the object's finalizers (guarded by its resourceVersion); returns the
/// object as written.
///
/// # Errors
/// API errors; 409 when the object changed since it was read.
pub async fn add<K: Object>(client: &kube::Client, obj: &K, name: &str) -> Result<K> {
    let mut list = obj.finalizers().to_vec();
    list.push(name.to_string());
    write(client, obj, list).await
}

/// Removes `name` from the object's finalizers; the API deletes an object being deleted
/// once its last finalizer is gone.
///
/// # Errors
/// API errors; 409 when the object changed since it was read.
pub async fn remove<K: Object>(client: &kube::Client, obj: &K, name: &str) -> Result<()> {
    let list: Vec<String> = obj
        .finalizers()
        .iter()
        .filter(|f| *f != name)
        .cloned()
        .collect();
    match write(client, obj, list).await {
        Ok(_) => Ok(()),
        Err(e) if e.api_code() == Some(404) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Adds `name` to the finalizers of `obj` through `api` (any scope).
///
/// # Errors
/// API errors; 409 when the object changed since it was read.
pub async fn add_with<K: super::Object>(api: &Api<K>, obj: &K, name: &str) -> Result<K> {
    let mut list = obj.finalizers().to_vec();
    list.push(name.to_string());
    write_with(api, obj, list).await
}

/// Removes `name` from the finalizers of `obj` through `api` (any scope); gone counts as
/// removed.
///
/// # Errors
/// API errors; 409 when the object changed since it was read.
pub async fn remove_with<K: super::Object>(api: &Api<K>, obj: &K, name: &str) -> Result<()> {
    let list: Vec<String> = obj
        .finalizers()
        .iter()
        .filter(|f| *f != name)
        .cloned()
        .collect();
    match write_with(api, obj, list).await {
        Ok(_) => Ok(()),
        Err(e) if e.api_code() == Some(404) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Removes `name` from the finalizers of `obj` (not being deleted) once it needs it no more;
/// returns the object as written, so a status write can go on top of it.
///
/// # Errors
/// API errors; 409 when the object changed since it was read.
pub async fn release<K: super::Object>(api: &Api<K>, obj: &K, name: &str) -> Result<Option<K>> {
    if !has(obj, name) {
        return Ok(None);
    }
    let list: Vec<String> = obj
        .finalizers()
        .iter()
        .filter(|f| *f != name)
        .cloned()
        .collect();
    write_with(api, obj, list).await.map(Some)
}

async fn write_with<K: super::Object>(api: &Api<K>, obj: &K, list: Vec<String>) -> Result<K> {
    let patch = json!({
        "metadata": { "finalizers": list, "resourceVersion": obj.resource_version() }
    });
    api.patch(
        &obj.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map_err(Error::from)
}

async fn write<K: Object>(client: &kube::Client, obj: &K, list: Vec<String>) -> Result<K> {
    let api: Api<K> = Api::namespaced(client.clone(), &obj.namespace().unwrap_or_default());
    let patch = json!({
        "metadata": { "finalizers": list, "resourceVersion": obj.resource_version() }
    });
    api.patch(
        &obj.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map_err(Error::from)
}
