//! The workload a move acts on: a Deployment or a StatefulSet, read once, changed by merge
//! patches, and the pods it selects.

use crate::Result;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use serde_json::Value;
use std::collections::BTreeMap;

/// The replica count a move scaled down from, kept on the workload until it is scaled back:
/// a move that was interrupted continues from it.
pub const MOVE_REPLICAS: &str = "ferry.dev/moveReplicas";
/// The node an unfinished move is taking the workload to.
pub const MOVE_TO_NODE: &str = "ferry.dev/moveToNode";

/// The kinds that can be moved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// apps/v1 Deployment.
    Deployment,
    /// apps/v1 StatefulSet.
    StatefulSet,
}

impl Kind {
    /// Parses `deployment/NAME` or `statefulset/NAME` (kubectl's short names and plurals too).
    ///
    /// # Errors
    /// Text naming the accepted forms.
    pub fn parse(s: &str) -> Result<(Kind, String)> {
        let (kind, name) = s.split_once('/').ok_or_else(|| {
            format!("{s:?}: name the workload as deployment/NAME or statefulset/NAME")
        })?;
        let kind = match kind.to_ascii_lowercase().as_str() {
            "deployment" | "deployments" | "deploy" | "deployment.apps" => Kind::Deployment,
            "statefulset" | "statefulsets" | "sts" | "statefulset.apps" => Kind::StatefulSet,
            other => {
                return Err(format!(
                    "{other:?} cannot be moved: name a deployment/NAME or a statefulset/NAME"
                )
                .into());
            }
        };
        if name.is_empty() || name.contains('/') {
            return Err(format!("{s:?}: the workload's name is missing or has a '/'").into());
        }
        Ok((kind, name.to_string()))
    }

    /// The lower-case name used in messages (`deployment/web`).
    pub fn word(self) -> &'static str {
        match self {
            Kind::Deployment => "deployment",
            Kind::StatefulSet => "statefulset",
        }
    }
}

/// What a move needs of the workload.
#[derive(Clone, Debug)]
pub struct Workload {
    /// Its kind.
    pub kind: Kind,
    /// Its name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// `spec.replicas` now (the API's default of 1 when unset).
    pub replicas: i32,
    /// Its annotations.
    pub annotations: BTreeMap<String, String>,
    /// The pods it owns are the ones this selects.
    pub selector: LabelSelector,
    /// Its pod template.
    pub template: PodTemplateSpec,
    /// A StatefulSet's volumeClaimTemplates' names.
    pub claim_templates: Vec<String>,
}

impl Workload {
    /// `deployment/web` for messages.
    pub fn label(&self) -> String {
        format!("{}/{}", self.kind.word(), self.name)
    }

    /// Reads the workload.
    ///
    /// # Errors
    /// Not found (naming it); API errors.
    pub async fn read(client: &kube::Client, ns: &str, kind: Kind, name: &str) -> Result<Workload> {
        let missing = || format!("{} {ns}/{name} not found", kind.word());
        let w = match kind {
            Kind::Deployment => {
                let d = Api::<Deployment>::namespaced(client.clone(), ns)
                    .get_opt(name)
                    .await?
                    .ok_or_else(missing)?;
                let spec = d.spec;
                Workload {
                    kind,
                    name: name.into(),
                    namespace: ns.into(),
                    replicas: spec.replicas.unwrap_or(1),
                    annotations: d.metadata.annotations.unwrap_or_default(),
                    selector: spec.selector,
                    template: spec.template,
                    claim_templates: Vec::new(),
                }
            }
            Kind::StatefulSet => {
                let s = Api::<StatefulSet>::namespaced(client.clone(), ns)
                    .get_opt(name)
                    .await?
                    .ok_or_else(missing)?;
                let spec = s.spec;
                Workload {
                    kind,
                    name: name.into(),
                    namespace: ns.into(),
                    replicas: spec.replicas.unwrap_or(1),
                    annotations: s.metadata.annotations.unwrap_or_default(),
                    selector: spec.selector,
                    template: spec.template,
                    claim_templates: spec
                        .volume_claim_templates
                        .unwrap_or_default()
                        .into_iter()
                        .filter_map(|t| t.metadata.name)
                        .collect(),
                }
            }
        };
        Ok(w)
    }

    /// Applies a JSON merge patch to the workload.
    ///
    /// # Errors
    /// API errors.
    pub async fn patch(&self, client: &kube::Client, patch: Value) -> Result<()> {
        let pp = PatchParams::default();
        match self.kind {
            Kind::Deployment => {
                Api::<Deployment>::namespaced(client.clone(), &self.namespace)
                    .patch(&self.name, &pp, &Patch::Merge(&patch))
                    .await?;
            }
            Kind::StatefulSet => {
                Api::<StatefulSet>::namespaced(client.clone(), &self.namespace)
                    .patch(&self.name, &pp, &Patch::Merge(&patch))
                    .await?;
            }
        }
        Ok(())
    }

    /// The claims its pods mount: the template's persistentVolumeClaim volumes, and for a
    /// StatefulSet each claim template's `<template>-<name>-<ordinal>` for the ordinals
    /// below `replicas`.
    pub fn claims(&self, replicas: i32) -> Vec<String> {
        let mut out: Vec<String> = self
            .template
            .spec
            .iter()
            .flat_map(|s| s.volumes.iter().flatten())
            .filter_map(|v| v.persistent_volume_claim.as_ref())
            .map(|c| c.claim_name.clone())
            .collect();
        for t in &self.claim_templates {
            for i in 0..replicas.max(0) {
                out.push(format!("{t}-{}-{i}", self.name));
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// The pods the workload's selector picks, terminating ones included.
    ///
    /// # Errors
    /// API errors.
    pub async fn pods(&self, client: &kube::Client) -> Result<Vec<Pod>> {
        let equality = self
            .selector
            .match_labels
            .iter()
            .flatten()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        let lp = ListParams::default().labels(&equality);
        let pods = Api::<Pod>::namespaced(client.clone(), &self.namespace)
            .list(&lp)
            .await?;
        Ok(pods
            .items
            .into_iter()
            .filter(|p| selects(&self.selector, p.metadata.labels.as_ref()))
            .collect())
    }
}

/// Does `selector` pick an object with `labels` (matchLabels and matchExpressions)?
pub fn selects(selector: &LabelSelector, labels: Option<&BTreeMap<String, String>>) -> bool {
    let empty = BTreeMap::new();
    let labels = labels.unwrap_or(&empty);
    let equal = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let expressions = selector.match_expressions.iter().flatten().all(|e| {
        let have = labels.get(&e.key);
        let values = e.values.as_deref().unwrap_or_default();
        match e.operator.as_str() {
            "In" => have.is_some_and(|v| values.contains(v)),
            "NotIn" => have.is_none_or(|v| !values.contains(v)),
            "Exists" => have.is_some(),
            "DoesNotExist" => have.is_none(),
            _ => false,
        }
    });
    equal && expressions
}

/// Is the pod counted as up: not terminating, and its Ready condition true?
pub fn ready(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// `name (phase on node)` for a pod, for messages.
pub fn describe(p: &Pod) -> String {
    let name = p.metadata.name.as_deref().unwrap_or("?");
    let phase = p
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending");
    let terminating = if p.metadata.deletion_timestamp.is_some() {
        ", terminating"
    } else {
        ""
    };
    match p.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
        Some(n) => format!("{name} ({phase} on {n}{terminating})"),
        None => format!("{name} ({phase}, not scheduled{terminating})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    #[test]
    fn kinds_parse_with_kubectls_names() {
        assert_eq!(
            Kind::parse("deploy/web").unwrap(),
            (Kind::Deployment, "web".into())
        );
        assert_eq!(
            Kind::parse("StatefulSet/db").unwrap(),
            (Kind::StatefulSet, "db".into())
        );
        assert!(Kind::parse("web").is_err());
        assert!(Kind::parse("daemonset/x").is_err());
        assert!(Kind::parse("deployment/").is_err());
    }

    #[test]
    fn selectors_match_labels_and_expressions() {
        let labels: BTreeMap<String, String> =
            [("app".into(), "db".into()), ("tier".into(), "data".into())].into();
        let mut sel = LabelSelector {
            match_labels: Some([("app".to_string(), "db".to_string())].into()),
            match_expressions: None,
        };
        assert!(selects(&sel, Some(&labels)));
        sel.match_expressions = Some(vec![LabelSelectorRequirement {
            key: "tier".into(),
            operator: "NotIn".into(),
            values: Some(vec!["data".into()]),
        }]);
        assert!(!selects(&sel, Some(&labels)));
        sel.match_expressions = Some(vec![LabelSelectorRequirement {
            key: "canary".into(),
            operator: "DoesNotExist".into(),
            values: None,
        }]);
        assert!(selects(&sel, Some(&labels)));
        assert!(!selects(&sel, None));
    }
}
