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
    /// default 60, at most 600. A ferry extension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self <= 600",
        "message": "timeoutSeconds is at most 600 (10 minutes): a command that needs longer runs in the background"
    }]))]
    pub timeout_seconds: Option<u64>,
}

/// The longest `timeoutSeconds` an action may ask for: the controller serves every tenant,
/// and a command it waits on holds a migration's snapshots back.
pub const MAX_TIMEOUT_SECONDS: u64 = 600;

impl RuleSpec {
    /// Checks what the CRD's rules check, for Rules stored before them: every action's
    /// `timeoutSeconds` at most [`MAX_TIMEOUT_SECONDS`].
    ///
    /// # Errors
    /// The field at fault, its value and the limit.
    pub fn check(&self) -> Result<(), String> {
        for (i, item) in self.rules.iter().enumerate() {
            for (j, a) in item.actions.iter().enumerate() {
                if let Some(t) = a.timeout_seconds
                    && t > MAX_TIMEOUT_SECONDS
                {
                    return Err(format!(
                        "spec.rules[{i}].actions[{j}].timeoutSeconds is {t}: at most \
                         {MAX_TIMEOUT_SECONDS} (10 minutes); lower it, or run the command in \
                         the background (background: true) and let it print a line once ready"
                    ));
                }
            }
        }
        Ok(())
    }
}

fn command() -> String {
    "command".into()
}
