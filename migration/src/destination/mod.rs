//! The destination side: reconcilers of what a cluster receives.
//!
//! - [`volume_import`]: an exported snapshot imported into this cluster's chunk store as a
//!   PV for a claim of the VolumeImport's own namespace.
//! - [`dr`]: failover and failback Actions.

pub mod dr;
pub mod volume_import;
