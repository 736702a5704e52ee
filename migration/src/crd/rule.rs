//! `Rule`: commands run in an application's pods around a migration's snapshots (Stork's
//! CR, named by a Migration's `preExecRule` and `postExecRule`).

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Commands to run in pods, before or after snapshots.
///
/// Stork keeps `rules` at the top level of the object; ferry keeps them under `spec`.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "ferry.dev",
    version = "v1alpha1",
    kind = "Rule",
    namespaced,
    doc = "Commands run in an application's pods before or after a migration's snapshots"
)]
#[serde(rename_all = "camelCase")]
pub struct RuleSpec {
    /// Each item: which pods, and what to run in them, in order.
    #[serde(default)]
    pub rules: Vec<RuleItem>,
}

/// The pods one item runs in, and its actions.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuleItem {
    /// Pods (in the Migration's namespace) carrying all these labels.
    pub pod_selector: BTreeMap<String, String>,
    /// The container to run in (default: the pod's first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// The actions, in order.
    pub actions: Vec<RuleAction>,
}

/// One command.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuleAction {
    /// `command` (the only kind).
    #[serde(default = "command", rename = "type")]
    pub action_type: String,
    /// The command, run with `sh -c`.
    pub value: String,
    /// Keep it running until the snapshots are taken, then end it (for a lock that holds
    /// only while its session lives, such as `FLUSH TABLES WITH READ LOCK`). It must print
    /// a line on stdout once it holds what it is for; the snapshots wait for that line.
    #[serde(default)]
    pub background: bool,
    /// Run in one of the selected pods only.
    #[serde(default)]
    pub run_in_single_pod: bool,
    /// Seconds the command may take (for a background one: to print its first line);
    /// default 60. A ferry extension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
}

fn command() -> String {
    "command".into()
}
