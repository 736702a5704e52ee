//! Ferry's migration controller: moves namespaces, their resources and their volumes' data to
//! a paired cluster, as a sidecar beside the CSI controller.
//!
//! - [`crd`]: the resources' types.
//! - [`runtime`]: the one reconcile runtime: which events start a reconcile, per-object
//!   backoff and retry records, the status writer, finalizers, error classes.
//! - [`source`]: reconcilers of the source side (pairs, migrations, schedules, clones, the
//!   annotation trigger); [`destination`]: of the destination side (imports, failover and
//!   failback Actions).
//! - [`resources`] and [`schedule`]: the pure rules (what is copied and how it is
//!   transformed; when a schedule is due).
//! - [`run`]: the sidecar's main loop, every reconciler wired to the runtime.

pub mod api;
pub mod context;
pub mod crd;
pub mod destination;
mod error;
pub mod kinds_used;
pub mod leader;
pub mod names;
pub mod pair;
pub mod resources;
pub mod run;
pub mod runtime;
pub mod schedule;
pub mod source;
pub mod time;
pub mod transfers;
pub mod trust;

pub use context::Ctx;
pub use error::{Error, Result, destination_problem, kube_problem};
pub use ferry_store::store_problem;
