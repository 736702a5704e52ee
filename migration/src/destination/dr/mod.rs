//! Disaster recovery: failover to the standby copy a MigrationSchedule keeps on this cluster,
//! and failback to the source. Both are `Action`s on the destination cluster (so a failover
//! can run with the source gone), reached from there through a ClusterPair that points back
//! at the source.
//!
//! - [`action`]: the reconciler (plans the steps, runs the first unfinished one).
//! - [`steps`]: each step.
//! - [`remote`]: reaching the source, and deciding it is gone.
//! - [`workloads`]: parking and starting a namespace's workloads, waiting for their pods.

pub mod action;
pub mod remote;
pub mod steps;
pub mod workloads;

pub use action::Actions;
