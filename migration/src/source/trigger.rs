//! The annotation trigger: `ferry.dev/migrate-to: <clusterpair>` on a Namespace (or a PVC)
//! makes a Migration of that namespace (or of that claim only), so its status has one home.
//!
//! The ClusterPair must be in the annotated object's own namespace (for a Namespace, that
//! namespace); otherwise a Warning Event says so and nothing is made. The source object is
//! never written. Each trigger handled is recorded in the ConfigMap
//! [`HANDLED_CONFIGMAP`] in the sidecar's namespace, keyed by the object's uid and the pair,
//! so one annotation starts one migration, across restarts and re-lists.

use crate::crd::{ClusterPair, Migration, MigrationSpec};
use crate::error::Result;
use crate::runtime::{Next, Pass, Reconciler};
use crate::source::migrate::TRIGGER_ANNOTATION;
use crate::{Ctx, names};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ObjectReference, PersistentVolumeClaim};
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// ConfigMap recording the triggers already acted on.
pub const HANDLED_CONFIGMAP: &str = "ferry-migration-triggers";

/// What an annotated object asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trigger {
    /// The namespace to migrate.
    pub namespace: String,
    /// The one claim to migrate, for a PVC trigger.
    pub pvc: Option<String>,
    /// The ClusterPair named by the annotation.
    pub pair: String,
    /// The annotated object's uid.
    pub uid: String,
}

/// The trigger an object (Namespace or PVC, as JSON) carries, if any.
pub fn trigger_of(obj: &Value) -> Option<Trigger> {
    let pair = obj["metadata"]["annotations"][TRIGGER_ANNOTATION]
        .as_str()?
        .trim();
    if pair.is_empty() {
        return None;
    }
    let uid = obj["metadata"]["uid"].as_str()?.to_string();
    let name = obj["metadata"]["name"].as_str()?.to_string();
    match obj["kind"].as_str()? {
        "Namespace" => Some(Trigger {
            namespace: name,
            pvc: None,
            pair: pair.into(),
            uid,
        }),
        "PersistentVolumeClaim" => Some(Trigger {
            namespace: obj["metadata"]["namespace"].as_str()?.to_string(),
            pvc: Some(name),
            pair: pair.into(),
            uid,
        }),
        _ => None,
    }
}

/// A reference to an object given as JSON, for its Events.
fn object_ref(obj: &Value) -> ObjectReference {
    let s = |k: &str| obj["metadata"][k].as_str().map(str::to_string);
    ObjectReference {
        api_version: obj["apiVersion"].as_str().map(str::to_string),
        kind: obj["kind"].as_str().map(str::to_string),
        name: s("name"),
        namespace: s("namespace"),
        uid: s("uid"),
        resource_version: s("resourceVersion"),
        field_path: None,
    }
}

/// The key recording a trigger in [`HANDLED_CONFIGMAP`].
pub fn handled_key(t: &Trigger) -> String {
    let mut h = Sha256::new();
    h.update(t.uid.as_bytes());
    h.update([0]);
    h.update(t.pair.as_bytes());
    format!("t-{}", hex::encode(&h.finalize()[..12]))
}

/// The Migration a trigger asks for, in namespace `ns` (where its ClusterPair is).
pub fn migration_for(t: &Trigger, ns: &str) -> Migration {
    let name = names::triggered_migration(&t.namespace, t.pvc.as_deref(), &t.pair);
    let mut m = Migration::new(
        &name,
        MigrationSpec {
            cluster_pair: t.pair.clone(),
            admin_cluster_pair: None,
            namespaces: vec![t.namespace.clone()],
            include_resources: true,
            include_volumes: true,
            start_applications: false,
            selectors: Default::default(),
            exclude_selectors: Default::default(),
            exclude_resource_types: Vec::new(),
            include_optional_resource_types: Vec::new(),
            purge_deleted_resources: false,
            persistent_volume_claims: t.pvc.iter().cloned().collect(),
            namespace_mapping: Default::default(),
            storage_class_mapping: Default::default(),
            transform_specs: Vec::new(),
            dry_run: false,
            group_snapshot: None,
            pre_exec_rule: None,
            post_exec_rule: None,
        },
    );
    m.metadata.namespace = Some(ns.to_string());
    m.metadata.labels = Some(
        [(
            "ferry.dev/triggered-by".to_string(),
            match &t.pvc {
                Some(_) => "pvc".to_string(),
                None => "namespace".to_string(),
            },
        )]
        .into(),
    );
    m
}

/// Acts on an annotated object once: creates its Migration and records the trigger.
/// Returns the Migration's `namespace/name` when one was created now.
///
/// # Errors
/// API errors.
pub async fn handle(ctx: &Ctx, obj: &Value) -> Result<Option<String>> {
    let Some(t) = trigger_of(obj) else {
        return Ok(None);
    };
    let cms: kube::Api<ConfigMap> = kube::Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let key = handled_key(&t);
    if let Some(cm) = cms.get_opt(HANDLED_CONFIGMAP).await?
        && cm.data.as_ref().is_some_and(|d| d.contains_key(&key))
    {
        return Ok(None);
    }
    // Only a pair in the annotated object's own namespace: a tenant who may annotate a claim
    // must not borrow a pair (or the reach) of the controller's namespace.
    let ns = t.namespace.clone();
    let in_ns: kube::Api<ClusterPair> = kube::Api::namespaced(ctx.client.clone(), &ns);
    if in_ns.get_opt(&t.pair).await?.is_none() {
        let note = format!(
            "{TRIGGER_ANNOTATION} names ClusterPair {:?}, which is not in namespace {ns}: \
             create the pair there (a trigger never uses a pair of another namespace)",
            t.pair
        );
        tracing::warn!(namespace = %ns, pair = %t.pair, "trigger names no pair in its namespace");
        ctx.event_on(&object_ref(obj), true, "TriggerRefused", note)
            .await;
        return Ok(None);
    }
    let mig = migration_for(&t, &ns);
    let migs: kube::Api<Migration> = kube::Api::namespaced(ctx.client.clone(), &ns);
    let created = match migs.create(&PostParams::default(), &mig).await {
        Ok(_) => true,
        Err(kube::Error::Api(s)) if s.code == 409 => false,
        Err(e) => return Err(e.into()),
    };
    let what = match &t.pvc {
        Some(p) => format!("{}/{p} -> {}", t.namespace, t.pair),
        None => format!("{} -> {}", t.namespace, t.pair),
    };
    // A merge patch adds this key and keeps the others (an apply would drop them).
    let patch = json!({ "data": { key.clone(): what } });
    match cms
        .patch(
            HANDLED_CONFIGMAP,
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {
            let mut cm = ConfigMap::default();
            cm.metadata.name = Some(HANDLED_CONFIGMAP.into());
            cm.metadata.namespace = Some(ctx.namespace.clone());
            cm.data = Some([(key, what.clone())].into());
            match cms.create(&PostParams::default(), &cm).await {
                Ok(_) => {}
                // Made meanwhile by another worker: add the key to it.
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    cms.patch(
                        HANDLED_CONFIGMAP,
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(e) => return Err(e.into()),
    }
    let id = format!("{ns}/{}", mig.metadata.name.unwrap_or_default());
    if created {
        tracing::info!(migration = %id, trigger = %what, "migration created from annotation");
    }
    Ok(created.then_some(id))
}

/// What of an annotated object starts a look: its uid and the annotation's value.
fn annotation_fingerprint<K: kube::Resource>(o: &K) -> String {
    format!(
        "{}/{}",
        o.meta().uid.as_deref().unwrap_or_default(),
        o.meta()
            .annotations
            .as_ref()
            .and_then(|a| a.get(TRIGGER_ANNOTATION))
            .map(String::as_str)
            .unwrap_or_default()
    )
}

/// The trigger on Namespaces.
#[derive(Clone, Copy, Debug, Default)]
pub struct NamespaceTriggers;

impl Reconciler for NamespaceTriggers {
    type K = Namespace;
    type S = ();
    const KIND: &'static str = "Namespace";

    fn api(client: &kube::Client, _ns: Option<&str>) -> kube::Api<Namespace> {
        kube::Api::all(client.clone())
    }

    fn status(_obj: &Namespace) {}

    fn writes_status() -> bool {
        false
    }

    fn fingerprint(obj: &Namespace) -> String {
        annotation_fingerprint(obj)
    }

    async fn reconcile(&self, pass: &mut Pass<'_, Self>) -> Result<Next> {
        let v =
            serde_json::to_value(&pass.obj).map_err(|e| crate::Error::Unexpected(e.to_string()))?;
        handle(pass.ctx, &with_kind(v, "v1", "Namespace")).await?;
        Ok(Next::Idle)
    }
}

/// The trigger on PersistentVolumeClaims.
#[derive(Clone, Copy, Debug, Default)]
pub struct ClaimTriggers;

impl Reconciler for ClaimTriggers {
    type K = PersistentVolumeClaim;
    type S = ();
    const KIND: &'static str = "PersistentVolumeClaim";

    fn api(client: &kube::Client, ns: Option<&str>) -> kube::Api<PersistentVolumeClaim> {
        kube::Api::namespaced(client.clone(), ns.unwrap_or_default())
    }

    fn status(_obj: &PersistentVolumeClaim) {}

    fn writes_status() -> bool {
        false
    }

    fn fingerprint(obj: &PersistentVolumeClaim) -> String {
        annotation_fingerprint(obj)
    }

    async fn reconcile(&self, pass: &mut Pass<'_, Self>) -> Result<Next> {
        let v =
            serde_json::to_value(&pass.obj).map_err(|e| crate::Error::Unexpected(e.to_string()))?;
        handle(pass.ctx, &with_kind(v, "v1", "PersistentVolumeClaim")).await?;
        Ok(Next::Idle)
    }
}

/// Typed objects read through the API carry no apiVersion and kind in JSON: put them back.
fn with_kind(mut v: Value, api_version: &str, kind: &str) -> Value {
    v["apiVersion"] = json!(api_version);
    v["kind"] = json!(kind);
    v
}
