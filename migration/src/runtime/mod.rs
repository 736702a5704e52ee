//! The one reconcile runtime every ferry resource goes through.

pub mod finalizer;
pub mod retry;
pub mod status;
