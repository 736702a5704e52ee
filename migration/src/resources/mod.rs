//! The pure half of the Application stage: which kinds to collect, which objects to keep,
//! how to transform each for the destination, in which order to apply, and how workload
//! replica counts are parked and restored. No API calls here; see `crate::apply` for those.

pub mod kinds;
pub mod mapping;
pub mod order;
pub mod replicas;
pub mod select;
pub mod transform;
pub mod transformations;

pub use kinds::Kind;

/// Annotation on a source Namespace or PVC that asks for a migration; stripped from every
/// copied object, so the destination's controller never starts a migration back.
pub const TRIGGER_ANNOTATION: &str = "ferry.dev/migrate-to";
/// Annotation holding a workload's source replica count while it is parked at zero.
pub const REPLICAS_ANNOTATION: &str = "ferry.dev/migrationReplicas";
/// Annotation holding a CronJob's source `suspend` value while it is suspended.
pub const SUSPEND_ANNOTATION: &str = "ferry.dev/migrationSuspend";
/// Node selector key that keeps a parked DaemonSet's pods off every node.
pub const PAUSED_NODE_SELECTOR: &str = "ferry.dev/migration-paused";
/// Label on every object a migration applied (for `purgeDeletedResources`).
pub const MIGRATED_LABEL: &str = "ferry.dev/migrated";
/// Annotation naming the migration (`namespace/name`) that last applied an object.
pub const MIGRATION_ANNOTATION: &str = "ferry.dev/migration";
