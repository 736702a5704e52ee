//! The CSI v1 protocol (`csi.v1`) as tonic services and prost messages.
//!
//! The messages are the wire types only: ferry's domain code converts them at the gRPC
//! adapters and never passes them further in.

#![allow(clippy::all, missing_docs)]

/// Generated from `proto/csi.proto`.
pub mod csi {
    pub mod v1 {
        tonic::include_proto!("csi.v1");
    }
}

pub use csi::v1;
