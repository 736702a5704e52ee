//! Thin helpers over kube's dynamic API: objects as JSON, addressed by [`Kind`].
//!
//! Writes use server-side apply (field manager [`FIELD_MANAGER`], forced) so a re-run
//! updates what an earlier run created instead of failing with 409; status goes through the
//! status subresource with a merge patch.

use crate::error::Result;
use crate::resources::Kind;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::ApiResource;
use serde_json::Value;

/// Field manager of every write the migration controller makes.
pub const FIELD_MANAGER: &str = "ferry-migration";

fn api(client: &kube::Client, ar: &ApiResource, ns: Option<&str>) -> Api<DynamicObject> {
    match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, ar),
        None => Api::all_with(client.clone(), ar),
    }
}

fn to_value(o: DynamicObject) -> Result<Value> {
    serde_json::to_value(o).map_err(|e| crate::Error::Unexpected(e.to_string()))
}

/// The object, or `None` when the API answers 404.
pub async fn get(
    client: &kube::Client,
    kind: &Kind,
    ns: Option<&str>,
    name: &str,
) -> Result<Option<Value>> {
    match api(client, &kind.api_resource(), ns).get_opt(name).await? {
        Some(o) => Ok(Some(to_value(o)?)),
        None => Ok(None),
    }
}

/// Every object of `kind` in `ns` (all namespaces or cluster-scoped when `None`), with
/// `apiVersion` and `kind` filled in (list items omit them).
pub async fn list(
    client: &kube::Client,
    kind: &Kind,
    ns: Option<&str>,
    labels: Option<&str>,
) -> Result<Vec<Value>> {
    let mut lp = ListParams::default();
    if let Some(l) = labels {
        lp = lp.labels(l);
    }
    let list = api(client, &kind.api_resource(), ns).list(&lp).await?;
    list.items
        .into_iter()
        .map(|o| {
            let mut v = to_value(o)?;
            v["apiVersion"] = Value::String(kind.api_version());
            v["kind"] = Value::String(kind.kind.clone());
            Ok(v)
        })
        .collect()
}

/// Server-side applies `obj` (which names its own apiVersion, kind, namespace and name).
pub async fn apply(client: &kube::Client, kind: &Kind, obj: &Value) -> Result<Value> {
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    let ns = obj["metadata"]["namespace"].as_str();
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    let o = api(client, &kind.api_resource(), ns)
        .patch(name, &pp, &Patch::Apply(obj))
        .await?;
    to_value(o)
}

/// Creates `obj` (which names its own apiVersion, kind, namespace and name); an object of
/// that name already there counts as created.
pub async fn create(client: &kube::Client, kind: &Kind, obj: &Value) -> Result<()> {
    let ns = obj["metadata"]["namespace"].as_str();
    let o: DynamicObject =
        serde_json::from_value(obj.clone()).map_err(|e| crate::Error::Unexpected(e.to_string()))?;
    match api(client, &kind.api_resource(), ns)
        .create(&kube::api::PostParams::default(), &o)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Merge-patches an object (not its status).
pub async fn merge(
    client: &kube::Client,
    kind: &Kind,
    ns: Option<&str>,
    name: &str,
    patch: &Value,
) -> Result<Value> {
    let o = api(client, &kind.api_resource(), ns)
        .patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await?;
    to_value(o)
}

/// Deletes an object; already gone counts as deleted.
pub async fn delete(
    client: &kube::Client,
    kind: &Kind,
    ns: Option<&str>,
    name: &str,
) -> Result<()> {
    match api(client, &kind.api_resource(), ns)
        .delete(name, &DeleteParams::default())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}
