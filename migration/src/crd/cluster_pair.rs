//! `ClusterPair`: how to reach a destination cluster and the transfer store between the two.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A destination cluster and the transfer store used to reach it.
///
/// The Secret holds the destination's kubeconfig (`kubeconfig`, optional `context`) and the
/// transfer store's settings (`backend`, `bucket`, `root`, `endpoint`, `region`, credentials,
/// optional `encryptionKey`); see docs/migration.md for the keys.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "ferry.dev",
    version = "v1alpha1",
    kind = "ClusterPair",
    namespaced,
    status = "ClusterPairStatus",
    shortname = "cp",
    doc = "A destination cluster for migrations and the transfer store between the clusters",
    printcolumn(
        name = "Storage-Status",
        type_ = "string",
        json_path = ".status.storageStatus"
    ),
    printcolumn(
        name = "Scheduler-Status",
        type_ = "string",
        json_path = ".status.schedulerStatus"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterPairSpec {
    /// The Secret with the destination kubeconfig and the transfer store settings.
    pub secret_ref: SecretRef,
    /// Free-form options, kept for Stork compatibility; ferry reads none today.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
    /// What the transfer store keeps after each successful migration through this pair.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer_retention: Option<TransferRetention>,
}

/// Retention of a transfer store, applied by the migration controller after each
/// successful migration (and by `ferryctl transfer gc`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TransferRetention {
    /// Commits kept per volume, newest first; at least 1 (the base of the next incremental
    /// migration). Default 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub keep_commits: Option<u32>,
    /// Seconds between the run that finds a pack unreferenced and the run that may remove
    /// it; 0 removes it at once. Default 600.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_seconds: Option<u64>,
}

/// A Secret by name, in the ClusterPair's namespace unless `namespace` is given.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SecretRef {
    /// Secret name.
    pub name: String,
    /// Secret namespace; the referring object's own when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// Readiness of each side of a pair.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PairState {
    /// Not checked yet.
    #[default]
    Pending,
    /// Checked and working.
    Ready,
    /// Checked and failing; the reason says why.
    Error,
}

impl std::fmt::Display for PairState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PairState::Pending => "Pending",
            PairState::Ready => "Ready",
            PairState::Error => "Error",
        })
    }
}

/// What the last check of a pair found.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterPairStatus {
    /// Destination API reachable and ferry installed there.
    #[serde(default)]
    pub scheduler_status: PairState,
    /// Why the scheduler side is not Ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler_reason: Option<String>,
    /// Transfer store accepts a write and a read.
    #[serde(default)]
    pub storage_status: PairState,
    /// Why the storage side is not Ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_reason: Option<String>,
    /// When the pair was last checked (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_checked: Option<String>,
    /// Checks in a row that found the pair not Ready (the next check backs off with it).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failed_checks: u32,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl ClusterPairStatus {
    /// Both sides Ready.
    pub fn ready(&self) -> bool {
        self.scheduler_status == PairState::Ready && self.storage_status == PairState::Ready
    }

    /// The reasons of the sides not Ready, each said once (one refusal, of the pair's
    /// Secret say, is both sides' reason).
    pub fn reasons(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for r in [&self.scheduler_reason, &self.storage_reason]
            .into_iter()
            .flatten()
        {
            if !out.contains(&r.as_str()) {
                out.push(r);
            }
        }
        out
    }
}
