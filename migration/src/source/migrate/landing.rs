//! Where a migration lands on the destination, checked with the pair's own credentials
//! before anything is imported: the pair's account must be allowed to write each kind the
//! migration writes in each namespace it lands in, so a namespace mapping to a namespace
//! the tenant does not own (`{shop: kube-system}`) is refused before a volume is imported or
//! a PV pre-bound there. Namespaces are created on the destination only when absent, and
//! never changed.

use crate::error::Result;
use crate::resources::Kind;
use crate::{api, kinds_used};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::ResourceExt;
use kube::api::{Api, PostParams};

/// Creates the namespace a claim of source namespace `source_ns` lands in on the
/// destination, when it is absent, as the Application stage would (its labels, transformed
/// and mapped; no Pod Security labels for a tenant); an existing one is left as it is.
///
/// # Errors
/// API errors, with what to do when the pair may not create it.
pub async fn ensure_namespace(
    ctx: &crate::Ctx,
    mig: &crate::crd::Migration,
    dest: &kube::Client,
    source_ns: &str,
) -> Result<()> {
    let there = crate::resources::mapping::target(&mig.spec.namespace_mapping, source_ns);
    if let Some(n) = api::get(dest, &kinds_used::namespace(), None, there).await? {
        if !n["metadata"]["deletionTimestamp"].is_null() {
            return Err(crate::Error::Waiting(format!(
                "namespace {there} is being deleted on the destination: the migration goes on \
                 once it is gone (then it is made again)"
            )));
        }
        return Ok(());
    }
    let obj = super::application::namespace_object(ctx, mig, source_ns)
        .await?
        .unwrap_or_else(|| {
            serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": there}})
        });
    let tenant = ctx.trust(&mig.namespace().unwrap_or_default()) == crate::trust::Trust::Tenant;
    super::application::land_namespace(dest, obj, tenant)
        .await
        .map(|_| ())
        .map_err(|e| {
            e.context(format!(
                "namespace {there} does not exist on the destination and the pair's account \
                 could not create it: have the destination's admin create it and bind \
                 ferry-migration-destination there"
            ))
        })
}

/// One permission a migration needs on the destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Need {
    /// The verb.
    pub verb: &'static str,
    /// The API group.
    pub group: String,
    /// The resource (plural).
    pub resource: String,
    /// The namespace (`None`: cluster-scoped).
    pub namespace: Option<String>,
}

impl std::fmt::Display for Need {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = if self.group.is_empty() {
            self.resource.clone()
        } else {
            format!("{}.{}", self.resource, self.group)
        };
        match &self.namespace {
            Some(ns) => write!(f, "{} {what} in namespace {ns}", self.verb),
            None => write!(f, "{} {what} (cluster-wide)", self.verb),
        }
    }
}

/// What a migration writes in namespace `ns` of the destination: its VolumeImports and
/// their transfer Secret (when it moves volumes), the kinds it copies (create, and patch for
/// server-side apply; delete when it purges), and the namespace itself when it is absent.
pub fn needs(
    ns: &str,
    namespace_exists: bool,
    volumes: bool,
    resources: &[Kind],
    purge: bool,
) -> Vec<Need> {
    let need = |verb: &'static str, k: &Kind, namespaced: bool| Need {
        verb,
        group: k.group.clone(),
        resource: k.plural.clone(),
        namespace: namespaced.then(|| ns.to_string()),
    };
    let mut out = Vec::new();
    if !namespace_exists {
        out.push(need("create", &kinds_used::namespace(), false));
    }
    if volumes {
        let vi = kinds_used::volume_import();
        for verb in ["create", "get", "delete"] {
            out.push(need(verb, &vi, true));
        }
        for verb in ["create", "patch"] {
            out.push(need(verb, &kinds_used::secret(), true));
        }
    }
    for k in resources {
        out.push(need("create", k, true));
        out.push(need("patch", k, true));
        if purge {
            out.push(need("delete", k, true));
        }
    }
    out.dedup();
    out
}

/// Asks the destination, as the pair's account, whether it may do each of `needs`
/// (SelfSubjectAccessReview); returns those it may not.
///
/// # Errors
/// API errors (the review itself refused or the destination not answering).
pub async fn missing(dest: &kube::Client, needs: &[Need]) -> Result<Vec<Need>> {
    let api: Api<SelfSubjectAccessReview> = Api::all(dest.clone());
    let mut out = Vec::new();
    for n in needs {
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(n.verb.into()),
                    group: Some(n.group.clone()),
                    resource: Some(n.resource.clone()),
                    namespace: n.namespace.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let answer = api.create(&PostParams::default(), &review).await?;
        if !answer.status.is_some_and(|s| s.allowed) {
            out.push(n.clone());
        }
    }
    Ok(out)
}

/// The reason a migration is refused when the pair's account lacks `missing`.
pub fn refusal(missing: &[Need]) -> String {
    let list: Vec<String> = missing.iter().take(6).map(Need::to_string).collect();
    let more = missing.len().saturating_sub(6);
    format!(
        "the pair's account on the destination may not {}{}: nothing was imported; bind \
         ferry-migration-destination to it in each namespace the migration lands in (a \
         namespace it may not write is refused, whatever namespaceMapping asks)",
        list.join(", "),
        if more > 0 {
            format!(" (and {more} more)")
        } else {
            String::new()
        }
    )
}
