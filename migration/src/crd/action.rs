//! `Action`: a failover to, or a failback from, the cluster a MigrationSchedule keeps a
//! standby copy in. It lives on that destination cluster, so it can run when the source is
//! gone. Shaped as Stork's Action (`actionType`, `actionParameter.failoverParameter`, ...).

use super::ItemStatus;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A failover or a failback of the namespaces a MigrationSchedule migrates.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self == oldSelf",
    "message": "an Action's spec is immutable: create a new Action"
}]))]
#[kube(
    group = "ferry.dev",
    version = "v1alpha1",
    kind = "Action",
    namespaced,
    status = "ActionStatus",
    doc = "A failover to this cluster, or a failback from it, of a MigrationSchedule's namespaces",
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.actionType"),
    printcolumn(name = "Step", type_ = "string", json_path = ".status.currentStep"),
    printcolumn(name = "Status", type_ = "string", json_path = ".status.status"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ActionSpec {
    /// `failover` or `failback`.
    pub action_type: ActionType,
    /// The parameters of that type.
    pub action_parameter: ActionParameter,
}

/// What an Action does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ActionType {
    /// Start the standby copy here; stop the source if it answers.
    Failover,
    /// Move the namespaces back to the source and start them there.
    Failback,
}

/// Parameters, one block per action type (Stork's layout).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActionParameter {
    /// For `failover`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover_parameter: Option<FailoverParameter>,
    /// For `failback`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failback_parameter: Option<FailbackParameter>,
}

/// How to fail over.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailoverParameter {
    /// The MigrationSchedule, on the source, in the namespace of the same name as this
    /// Action's.
    pub migration_schedule_reference: String,
    /// The ClusterPair (in this Action's namespace, on this cluster) that reaches the source
    /// cluster; without it the source is treated as gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_pair: Option<String>,
    /// Namespaces to fail over; only an Action in ferry's own namespace may name others than
    /// its own. Default: this Action's namespace (the schedule's, when in ferry's namespace).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failover_namespaces: Vec<String>,
    /// After the source's applications stopped, run one last migration, so the standby has
    /// their final writes.
    #[serde(default)]
    pub sync_first: bool,
    /// Do not touch the source even if it answers (it is known to be gone or isolated).
    #[serde(default)]
    pub skip_source_operations: bool,
}

/// How to fail back.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailbackParameter {
    /// The MigrationSchedule, on the source, to resume at the end.
    pub migration_schedule_reference: String,
    /// The ClusterPair (in this Action's namespace, on this cluster) that reaches the source;
    /// the migrations back use it.
    pub cluster_pair: String,
    /// Namespaces to fail back; as `failoverNamespaces`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failback_namespaces: Vec<String>,
}

/// One recorded step of an Action.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActionStep {
    /// The step (`SuspendSchedule`, `DeactivateSource`, `SyncFirst`, `ActivateDestination`,
    /// `Migrate`, `DeactivateDestination`, `FinalMigrate`, `ActivateSource`, `ResumeSchedule`).
    pub name: String,
    /// `Pending`, `InProgress`, `Successful`, `Skipped` or `Failed`.
    pub status: ItemStatus,
    /// What it did, or what it waits for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The Migration it made, when it made one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration: Option<String>,
    /// When it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_timestamp: Option<String>,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_timestamp: Option<String>,
}

/// Progress of an Action: each step as it went.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActionStatus {
    /// `Pending`, `InProgress`, `Successful` or `Failed`.
    #[serde(default)]
    pub status: ItemStatus,
    /// The step under way (or the last one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_step: Option<String>,
    /// Why it failed, or what it is retrying.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The namespaces it acts on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// False once the source was found unreachable: the source's steps were skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_reachable: Option<bool>,
    /// Failed tries to reach the source in a row.
    #[serde(default)]
    pub source_attempts: u32,
    /// When the source first did not answer in this run of failed tries (RFC 3339): a
    /// failover counts it as gone once it has not answered for the stated time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_unreachable_since: Option<String>,
    /// The steps, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<ActionStep>,
    /// When it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_timestamp: Option<String>,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_timestamp: Option<String>,
    /// The current step failed for a reason a later try may cure: tried again at
    /// `nextAttempt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<super::RetryStatus>,
}

impl ActionSpec {
    fn failover(&self) -> Option<&FailoverParameter> {
        self.action_parameter.failover_parameter.as_ref()
    }

    fn failback(&self) -> Option<&FailbackParameter> {
        self.action_parameter.failback_parameter.as_ref()
    }

    /// The MigrationSchedule the Action is about (empty when its parameters are missing).
    pub fn schedule(&self) -> &str {
        match self.action_type {
            ActionType::Failover => self
                .failover()
                .map(|p| p.migration_schedule_reference.as_str()),
            ActionType::Failback => self
                .failback()
                .map(|p| p.migration_schedule_reference.as_str()),
        }
        .unwrap_or_default()
    }

    /// The ClusterPair that reaches the source, if one is named.
    pub fn cluster_pair(&self) -> Option<&str> {
        match self.action_type {
            ActionType::Failover => self.failover().and_then(|p| p.cluster_pair.as_deref()),
            ActionType::Failback => self.failback().map(|p| p.cluster_pair.as_str()),
        }
    }

    /// A failover with `syncFirst`.
    pub fn sync_first(&self) -> bool {
        self.action_type == ActionType::Failover && self.failover().is_some_and(|p| p.sync_first)
    }

    /// A failover with `skipSourceOperations`.
    pub fn skip_source(&self) -> bool {
        self.action_type == ActionType::Failover
            && self.failover().is_some_and(|p| p.skip_source_operations)
    }
}
