//! `MigrationSchedule`: Migrations made from a template whenever a SchedulePolicy is due.

use super::MigrationSpec;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Migrations of a template, run when the named SchedulePolicy is due.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "ferry.dev",
    version = "v1alpha1",
    kind = "MigrationSchedule",
    namespaced,
    status = "MigrationScheduleStatus",
    shortname = "msched",
    doc = "Migrations of a template, run whenever a SchedulePolicy is due",
    printcolumn(
        name = "PolicyName",
        type_ = "string",
        json_path = ".spec.schedulePolicyName"
    ),
    printcolumn(
        name = "ClusterPair",
        type_ = "string",
        json_path = ".spec.template.spec.clusterPair"
    ),
    printcolumn(name = "Suspend", type_ = "boolean", json_path = ".spec.suspend"),
    printcolumn(
        name = "Last-Success-Time",
        type_ = "string",
        json_path = ".status.lastSuccessTime"
    ),
    printcolumn(
        name = "Last-Success-Duration",
        type_ = "string",
        json_path = ".status.lastSuccessDuration"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct MigrationScheduleSpec {
    /// The Migration each run makes.
    pub template: MigrationTemplate,
    /// The cluster-scoped SchedulePolicy saying when.
    pub schedule_policy_name: String,
    /// No run starts while true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
    /// Set `suspend` once the migrated applications run on the destination (activated
    /// there), as Stork does: a standby that took over must not be overwritten.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_suspend: Option<bool>,
}

/// A Migration template.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MigrationTemplate {
    /// The spec of each Migration made.
    pub spec: MigrationSpec,
}

/// One Migration a schedule made.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduledMigration {
    /// The Migration's name.
    pub name: String,
    /// When the schedule made it.
    pub creation_timestamp: String,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_timestamp: Option<String>,
    /// Its outcome so far (`Pending`, `InProgress`, `Successful`, `PartialSuccess`, `Failed`).
    pub status: String,
}

/// A due time that found a run still in progress.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SkippedRun {
    /// The policy type that was due.
    pub policy_type: String,
    /// When.
    pub time: String,
    /// The run in progress (empty when the reason is another).
    #[serde(default)]
    pub running: String,
    /// Why it was skipped, when not for a run in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What a schedule has done and will do.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MigrationScheduleStatus {
    /// The Migrations made, newest last, per policy type (`interval`, `daily`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub items: BTreeMap<String, Vec<ScheduledMigration>>,
    /// When each policy type is next due.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub next_due: BTreeMap<String, String>,
    /// The newest due times skipped because a run was in progress (the last 10).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<SkippedRun>,
    /// When the newest successful run started (the state it moved is that old).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_time: Option<String>,
    /// How long the newest successful run took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_duration: Option<String>,
    /// Why no run starts (a missing or invalid policy), when so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `RPOExceeded`: whether the newest successfully migrated state is older than twice
    /// the policy's shortest period.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<ScheduleCondition>,
    /// The last look failed for a reason a later try may cure: tried again at
    /// `nextAttempt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<super::RetryStatus>,
}

/// A condition of a schedule.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleCondition {
    /// The condition (`RPOExceeded`).
    #[serde(rename = "type")]
    pub type_: String,
    /// `True` or `False`.
    pub status: String,
    /// One word.
    pub reason: String,
    /// What it means.
    pub message: String,
    /// When `status` last changed.
    pub last_transition_time: String,
}

/// The CRD, without the Migration spec's immutability rule inside the template: a
/// schedule's template may be edited (each Migration it makes is frozen on its own).
pub fn crd()
-> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    use kube::CustomResourceExt;
    fn strip(v: &mut serde_json::Value) {
        if let Some(m) = v.as_object_mut() {
            m.remove("x-kubernetes-validations");
            m.values_mut().for_each(strip);
        }
    }
    let crd = MigrationSchedule::crd();
    let Ok(mut v) = serde_json::to_value(&crd) else {
        return crd;
    };
    if let Some(versions) = v["spec"]["versions"].as_array_mut() {
        for ver in versions {
            strip(
                &mut ver["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["template"],
            );
        }
    }
    serde_json::from_value(v).unwrap_or(crd)
}
