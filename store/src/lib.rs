//! Ferry's content-addressed chunk store.
//!
//! A volume is a fixed-size array of chunks named by the SHA-256 of their bytes, held in one
//! opendal `Operator` (a local folder, memory, S3, Azure Blob or GCS). A volume's content is
//! a root: the hash of a small tree of chunk names, so snapshots and clones copy one hash.
//! The root pointer moves by compare-and-swap; GC reclaims what no root reaches.
//!
//! This crate knows nothing of gRPC or Kubernetes.

pub mod blobs;
// Codec and layout are the store's own business; tests and benchmarks that inspect or
// damage a store on purpose reach them through the `test-access` feature.
#[cfg(feature = "test-access")]
pub mod codec;
#[cfg(not(feature = "test-access"))]
mod codec;
pub mod config;
pub mod diff_walk;
mod error;
mod fanout;
pub mod gc;
mod group_snapshots;
pub mod handle;
pub mod hash;
mod heads;
mod health;
pub mod holds;
pub mod journal;
mod journal_log;
#[cfg(feature = "test-access")]
pub mod layout;
#[cfg(not(feature = "test-access"))]
mod layout;
mod lease;
mod local;
mod names;
mod objects;
pub mod pack;
pub mod pack_index;
mod pause;
mod problem;
pub mod process_memory;
pub mod records;
mod repack;
mod root_check;
pub mod snapshots;
mod store;
mod torn;
pub mod tree;
pub mod volumes;

pub use blobs::{Encoded, Frame, PackWriter};
pub use codec::{Codec, CodecPolicy, Kind};
pub use config::{Backend, StoreConfig, StoreOptions, VolumeOptions};
pub use error::{Error, Result};
pub use gc::{GcOptions, GcReport};
pub use handle::{FlushReport, VolumeHandle};
pub use hash::Hash;
pub use health::VolumeHealthNote;
pub use holds::{Hold, Lifeline};
pub use journal::{JournalPos, JournalState};
pub use objects::{ObjectMeta, Objects, Requests};
pub use problem::store_problem;
pub use records::{
    GenRecord, GroupSnapshotRecord, ImportSource, LeaseRecord, LeaseStart, SnapshotRecord, Source,
    VolumeRecord, VolumeSpec,
};
pub use root_check::RootCheck;
pub use snapshots::SnapshotFilter;
pub use store::Store;
pub use store::{DEFAULT_HOLD_TTL, GcPolicy};
pub use volumes::VolumeInfo;

/// The store's futures must be `Send`: the gRPC services run them on tokio's thread pool.
#[cfg(test)]
mod send_check {
    fn is_send<T: Send>(_: T) {}

    #[allow(dead_code)]
    fn futures_are_send(s: super::Store, h: std::sync::Arc<super::VolumeHandle>) {
        is_send(h.read_at(0, 1));
        is_send(h.write_at(0, b""));
        is_send(h.flush());
        is_send(s.gc());
        is_send(s.open_volume("v"));
        is_send(s.create_snapshot("n", "v", Default::default()));
    }
}
