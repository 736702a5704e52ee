//! Ferry's transfer engine: the data half of a migration, usable without Kubernetes.
//!
//! [`export`] copies a snapshot's chunks and tree pages from a chunk store into a transfer
//! store (any opendal service) in packs, then writes a commit; [`import`] fetches what a
//! destination chunk store lacks, checks every hash, and creates (or moves) a volume to the
//! commit's root. Transfer stores may be encrypted ([`Key`]). [`Progress`] is readable while
//! either runs; each ends with a [`Report`]. Layout: [`layout`].

pub mod bounds;
mod crypto;
mod error;
mod estimate;
mod export;
pub mod gc;
mod import;
pub mod index;
pub mod layout;
mod pack;
mod progress;
mod target;
mod verify;

pub use crypto::Key;
pub use error::{Error, Result};
pub use estimate::{Estimate, estimate};
pub use export::{Tuning, export};
pub use gc::{Contents, GcOptions, GcReport, gc};
pub use import::{TransferPages, import, import_gated};
pub use progress::{Progress, ProgressSnapshot, Report};
pub use target::{Commit, Index, TransferStore};
pub use verify::verify;
