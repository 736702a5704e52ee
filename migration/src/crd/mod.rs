//! The custom resources of group `ferry.dev`, version `v1alpha1`, and their CRD manifests.
//!
//! Field names follow Stork's (`stork.libopenstorage.org/v1alpha1`) so a Stork spec moves
//! over by changing its `apiVersion`. `manifests/crds/` holds what [`crd_yaml`] prints; a
//! test keeps the two equal (`hack/gen-crds.sh` rewrites them).

// Several `printcolumn(...)` entries repeat the key `type_`, which the lint takes for a
// repeated attribute.
#![allow(clippy::duplicated_attributes)]

mod action;
mod application_clone;
mod cluster_pair;
mod migration;
mod migration_schedule;
mod plan;
mod resource_transformation;
mod retry;
mod rule;
mod schedule_policy;
mod volume_import;

pub use action::{
    Action, ActionParameter, ActionSpec, ActionStatus, ActionStep, ActionType, FailbackParameter,
    FailoverParameter,
};
pub use application_clone::{
    ApplicationClone, ApplicationCloneSpec, ApplicationCloneStatus, ClonedVolume,
};
pub use cluster_pair::{ClusterPair, ClusterPairSpec, ClusterPairStatus, PairState, SecretRef};
pub use migration::{
    ItemStatus, Migration, MigrationSpec, MigrationStatus, ResourceInfo, Stage, Summary, VolumeInfo,
};
pub use migration_schedule::{
    MigrationSchedule, MigrationScheduleSpec, MigrationScheduleStatus, MigrationTemplate,
    ScheduleCondition, ScheduledMigration, SkippedRun,
};
pub use plan::{FieldChange, Plan, PlannedAction, PlannedResource, PlannedVolume};
pub use resource_transformation::{
    Operation, ResourcePath, ResourceTransformation, ResourceTransformationSpec,
    ResourceTransformationStatus, TransformSpec, ValueType,
};
pub use retry::RetryStatus;
pub use rule::{MAX_TIMEOUT_SECONDS, Rule, RuleAction, RuleItem, RuleSpec};
pub use schedule_policy::{
    Checked, DEFAULT_RETAIN, DailyPolicy, IntervalPolicy, MonthlyPolicy, SchedulePolicy,
    SchedulePolicyItem, SchedulePolicyStatus, WeeklyPolicy,
};
pub use volume_import::{
    ImportPhase, ImportSource, PersistentVolumeTemplate, VolumeImport, VolumeImportSpec,
    VolumeImportStatus,
};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// API group of ferry's resources.
pub const GROUP: &str = "ferry.dev";
/// API version of ferry's resources.
pub const VERSION: &str = "v1alpha1";

/// Ferry's CRDs, as installed from `manifests/crds/`.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        Action::crd(),
        ApplicationClone::crd(),
        ClusterPair::crd(),
        Migration::crd(),
        migration_schedule::crd(),
        ResourceTransformation::crd(),
        Rule::crd(),
        schedule_policy::crd(),
        VolumeImport::crd(),
    ]
    .into_iter()
    .map(known_formats)
    .collect()
}

/// Rewrites the integer formats schemars emits (`uint64`, `uint32`, `uint`, ...) to the ones
/// the API server knows (`int64`, `int32`); the `minimum: 0` beside them keeps them unsigned.
fn known_formats(crd: CustomResourceDefinition) -> CustomResourceDefinition {
    fn walk(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(serde_json::Value::String(f)) = m.get_mut("format") {
                    let known = match f.as_str() {
                        "uint64" | "uint" | "int" => Some("int64"),
                        "uint32" | "uint16" | "uint8" | "int16" | "int8" => Some("int32"),
                        _ => None,
                    };
                    if let Some(k) = known {
                        *f = k.to_string();
                    }
                }
                m.values_mut().for_each(walk);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(walk),
            _ => {}
        }
    }
    let Ok(mut v) = serde_json::to_value(&crd) else {
        return crd;
    };
    walk(&mut v);
    serde_json::from_value(v).unwrap_or(crd)
}

/// Each CRD's file name under `manifests/crds/` and its YAML.
///
/// # Errors
/// A CRD that does not serialise (not expected: they are built from the types).
pub fn crd_yaml() -> Result<Vec<(String, String)>, serde_yaml::Error> {
    crds()
        .into_iter()
        .map(|crd| {
            let file = format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or_default());
            let body = serde_yaml::to_string(&crd)?;
            Ok((
                file,
                format!(
                    "# Generated from the Rust types in migration/src/crd by hack/gen-crds.sh.\n---\n{body}"
                ),
            ))
        })
        .collect()
}
