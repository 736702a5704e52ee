//! The source side: reconcilers of what a cluster migrates from (or copies within itself).
//!
//! - [`cluster_pair`]: readiness of a pair's destination and transfer store.
//! - [`migrate`]: a Migration's stages (validate, Volumes, Application, Final).
//! - [`migration_schedule`], [`schedule_policy`]: scheduled runs and a policy's verdict.
//! - [`transformation`]: a ResourceTransformation's verdict.
//! - [`application_clone`]: a namespace copied within this cluster.
//! - [`trigger`]: the `ferry.dev/migrate-to` annotation.
//! - [`exec_rules`]: a Migration's pre and post exec Rules.

pub mod application_clone;
pub mod cluster_pair;
pub mod exec_rules;
pub mod migrate;
pub mod migration_schedule;
pub mod schedule_policy;
pub mod transformation;
pub mod trigger;
