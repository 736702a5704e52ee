//! Ferry's migration controller: moves namespaces, their resources and their volumes' data to
//! a paired cluster, as a sidecar beside the CSI controller.
//!
//! - [`crd`]: the ClusterPair, Migration and VolumeImport resources.
//! - [`resources`]: the pure rules of the Application stage (collect, transform, order).
//! - [`cluster_pair`], [`migrate`], [`volume_import`], [`trigger`]: one reconciler each.
//! - [`schedule`]: SchedulePolicy and MigrationSchedule; [`dr`]: failover and failback.
//! - [`run`]: the sidecar's main loop.

pub mod api;
pub mod backoff;
pub mod cluster_pair;
pub mod context;
pub mod crd;
pub mod dr;
mod error;
pub mod finalizer;
pub mod kinds_used;
pub mod leader;
pub mod migrate;
pub mod names;
pub mod namespace_clone;
pub mod pair;
pub mod resources;
pub mod rules;
pub mod run;
pub mod schedule;
pub mod status;
pub mod time;
pub mod transfers;
pub mod transformation;
pub mod trigger;
pub mod trust;
pub mod volume_import;

pub use context::Ctx;
pub use error::{Error, Result, destination_problem};
