//! Whether the workload can run on the node it is moved to, checked before anything is
//! scaled down, and the pin that puts it there.

use crate::Result;
use k8s_openapi::api::core::v1::{
    Node, NodeSelectorRequirement, NodeSelectorTerm, PersistentVolume, PodSpec, Taint, Toleration,
};
use k8s_openapi::api::storage::v1::CSINode;
use kube::Api;
use serde_json::{Value, json};

/// The node label kubelet sets to the node's host name.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

/// Checks that `node` exists, is schedulable and Ready, has ferry's node plugin registered,
/// and satisfies the pod template's nodeSelector (all but the host-name label, which the pin
/// replaces) and tolerations. Returns the node.
///
/// # Errors
/// Text naming the first thing that stands in the way.
pub async fn check_node(client: &kube::Client, node: &str, pod: &PodSpec) -> Result<Node> {
    let n = Api::<Node>::all(client.clone())
        .get_opt(node)
        .await?
        .ok_or_else(|| format!("node {node} not found"))?;
    let spec = n.spec.clone().unwrap_or_default();
    if spec.unschedulable == Some(true) {
        return Err(format!("node {node} is cordoned: uncordon it before moving onto it").into());
    }
    let ready = n
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    if !ready {
        return Err(format!("node {node} is not Ready").into());
    }
    let registered = Api::<CSINode>::all(client.clone())
        .get_opt(node)
        .await?
        .is_some_and(|c| {
            c.spec
                .drivers
                .iter()
                .any(|d| d.name == ferry_csi::DRIVER_NAME)
        });
    if !registered {
        return Err(format!(
            "node {node} has no ferry node plugin registered (its CSINode lists no {} driver): \
             is the ferry-node DaemonSet running there?",
            ferry_csi::DRIVER_NAME
        )
        .into());
    }
    let labels = n.metadata.labels.clone().unwrap_or_default();
    for (k, v) in pod.node_selector.iter().flatten() {
        if k != HOSTNAME_LABEL && labels.get(k) != Some(v) {
            return Err(format!(
                "node {node} lacks the label {k}={v} that the workload's nodeSelector asks for"
            )
            .into());
        }
    }
    let tolerations = pod.tolerations.as_deref().unwrap_or_default();
    for t in spec.taints.iter().flatten() {
        if matches!(t.effect.as_str(), "NoSchedule" | "NoExecute")
            && !tolerations.iter().any(|tol| tolerates(tol, t))
        {
            return Err(format!(
                "node {node} has the taint {}{}:{} that the workload does not tolerate",
                t.key,
                t.value
                    .as_deref()
                    .map(|v| format!("={v}"))
                    .unwrap_or_default(),
                t.effect
            )
            .into());
        }
    }
    Ok(n)
}

/// Checks that each of the workload's PVs may be used on `node` (a PV's nodeAffinity, as
/// local volumes have).
///
/// # Errors
/// Text naming the PV that cannot follow.
pub fn check_volume_affinity(pvs: &[PersistentVolume], node: &Node) -> Result<()> {
    let name = node.metadata.name.as_deref().unwrap_or_default();
    for pv in pvs {
        let Some(required) = pv
            .spec
            .as_ref()
            .and_then(|s| s.node_affinity.as_ref())
            .and_then(|a| a.required.as_ref())
        else {
            continue;
        };
        if !required
            .node_selector_terms
            .iter()
            .any(|t| term_matches(t, node))
        {
            return Err(format!(
                "PV {} may not be used on node {name} (its nodeAffinity excludes it): its data \
                 cannot follow the workload there",
                pv.metadata.name.as_deref().unwrap_or("?")
            )
            .into());
        }
    }
    Ok(())
}

/// Does toleration `tol` tolerate `taint` (the API's matching rules)?
fn tolerates(tol: &Toleration, taint: &Taint) -> bool {
    let effect = tol.effect.as_deref().unwrap_or_default();
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = tol.key.as_deref().unwrap_or_default();
    match tol.operator.as_deref().unwrap_or("Equal") {
        "Exists" => key.is_empty() || key == taint.key,
        "Equal" => {
            key == taint.key
                && tol.value.as_deref().unwrap_or_default()
                    == taint.value.as_deref().unwrap_or_default()
        }
        _ => false,
    }
}

/// Does `term` select `node`? A term without requirements selects nothing, as in the API.
pub fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let name = node.metadata.name.clone().unwrap_or_default();
    exprs
        .iter()
        .all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
        && fields
            .iter()
            .all(|r| r.key == "metadata.name" && requirement_matches(r, Some(name.as_str())))
}

fn requirement_matches(r: &NodeSelectorRequirement, have: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    let number = |s: &str| s.parse::<i64>().ok();
    match r.operator.as_str() {
        "In" => have.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => have.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => have.is_some(),
        "DoesNotExist" => have.is_none(),
        "Gt" | "Lt" => {
            let (Some(have), Some(bound)) = (
                have.and_then(number),
                values.first().and_then(|v| number(v)),
            ) else {
                return false;
            };
            if r.operator == "Gt" {
                have > bound
            } else {
                have < bound
            }
        }
        _ => false,
    }
}

/// The required node affinity that pins pods to `node` by name.
pub fn pin(node: &str) -> Value {
    json!({"nodeSelectorTerms": [{"matchFields": [
        {"key": "metadata.name", "operator": "In", "values": [node]}
    ]}]})
}

/// Is the pod template already pinned to `node` by [`pin`]?
pub fn pinned_to(pod: &PodSpec, node: &str) -> bool {
    let Some(required) = pod
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
    else {
        return false;
    };
    serde_json::to_value(required).is_ok_and(|v| v == pin(node))
}

/// The pod-template part of the patch that pins to `node`: the required node affinity
/// replaced by the pin, and a nodeSelector host name that names another host dropped (it
/// would keep the pods off `node`).
pub fn pin_patch(pod: &PodSpec, node: &Node) -> Value {
    let mut spec = json!({"affinity": {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": pin(node.metadata.name.as_deref().unwrap_or_default())
    }}});
    let host = node
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(HOSTNAME_LABEL));
    if let Some(want) = pod
        .node_selector
        .as_ref()
        .and_then(|s| s.get(HOSTNAME_LABEL))
        && Some(want) != host
    {
        spec["nodeSelector"] = json!({ HOSTNAME_LABEL: null });
    }
    spec
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn node(name: &str, labels: &[(&str, &str)]) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn req(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        }
    }

    #[test]
    fn node_selector_terms_follow_the_apis_rules() {
        let n = node("n1", &[("zone", "a"), ("cpus", "8")]);
        let term = |exprs: Vec<NodeSelectorRequirement>, fields: Vec<NodeSelectorRequirement>| {
            NodeSelectorTerm {
                match_expressions: Some(exprs),
                match_fields: Some(fields),
            }
        };
        assert!(term_matches(
            &term(vec![req("zone", "In", &["a", "b"])], vec![]),
            &n
        ));
        assert!(!term_matches(
            &term(vec![req("zone", "NotIn", &["a"])], vec![]),
            &n
        ));
        assert!(term_matches(
            &term(vec![req("cpus", "Gt", &["4"])], vec![]),
            &n
        ));
        assert!(!term_matches(
            &term(vec![req("cpus", "Lt", &["4"])], vec![]),
            &n
        ));
        assert!(term_matches(
            &term(vec![req("gpu", "DoesNotExist", &[])], vec![]),
            &n
        ));
        assert!(term_matches(
            &term(vec![], vec![req("metadata.name", "In", &["n1"])]),
            &n
        ));
        assert!(!term_matches(
            &term(vec![], vec![req("metadata.name", "In", &["n2"])]),
            &n
        ));
        // An empty term selects nothing.
        assert!(!term_matches(&term(vec![], vec![]), &n));
    }

    #[test]
    fn tolerations_match_taints_by_key_value_and_effect() {
        let taint = Taint {
            key: "dedicated".into(),
            value: Some("db".into()),
            effect: "NoSchedule".into(),
            time_added: None,
        };
        let tol =
            |key: Option<&str>, op: &str, value: Option<&str>, effect: Option<&str>| Toleration {
                key: key.map(str::to_string),
                operator: Some(op.into()),
                value: value.map(str::to_string),
                effect: effect.map(str::to_string),
                toleration_seconds: None,
            };
        assert!(tolerates(
            &tol(Some("dedicated"), "Equal", Some("db"), None),
            &taint
        ));
        assert!(!tolerates(
            &tol(Some("dedicated"), "Equal", Some("web"), None),
            &taint
        ));
        assert!(tolerates(
            &tol(Some("dedicated"), "Exists", None, Some("NoSchedule")),
            &taint
        ));
        assert!(!tolerates(
            &tol(Some("dedicated"), "Exists", None, Some("NoExecute")),
            &taint
        ));
        assert!(tolerates(&tol(None, "Exists", None, None), &taint));
    }

    #[test]
    fn the_pin_replaces_node_affinity_and_drops_another_hosts_selector() {
        let n = node("n2", &[(HOSTNAME_LABEL, "n2")]);
        let mut pod = PodSpec {
            node_selector: Some(
                [
                    (HOSTNAME_LABEL.to_string(), "n1".to_string()),
                    ("disk".to_string(), "ssd".to_string()),
                ]
                .into(),
            ),
            ..Default::default()
        };
        let patch = pin_patch(&pod, &n);
        assert_eq!(patch["nodeSelector"], json!({HOSTNAME_LABEL: null}));
        assert_eq!(
            patch["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"],
            pin("n2")
        );
        pod.node_selector = Some([(HOSTNAME_LABEL.to_string(), "n2".to_string())].into());
        assert!(pin_patch(&pod, &n).get("nodeSelector").is_none());
        assert!(!pinned_to(&pod, "n2"));
        pod.affinity = serde_json::from_value(json!({"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": pin("n2")}}))
        .unwrap();
        assert!(pinned_to(&pod, "n2"));
        assert!(!pinned_to(&pod, "n1"));
    }
}
