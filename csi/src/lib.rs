//! The core of ferry's CSI driver: the Identity service, unix-socket serving, request
//! validation shared by the services, and the one mapping of errors to `tonic::Status`.

pub mod authority;
pub mod error;
pub mod guard;
pub mod identity;
pub mod metrics;
pub mod serve;
pub mod validate;

pub use error::{Error, Result};
pub use identity::{DRIVER_NAME, IdentityService};
