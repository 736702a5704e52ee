//! Where things live in a transfer store:
//!
//! ```text
//! ferry-transfer.json                  marker: format, whether encrypted, a key check
//! packs/<p0p1>/<pack id>               packs: blobs (sealed when encrypted) back to back
//! index/<pack id>.json                 what each pack holds (sealed when encrypted)
//! commits/<volume id>/<snapshot id>.json   one exported snapshot (sealed when encrypted)
//! exports/<uuid>.json                  a running export (see `gc`)
//! gc/sweeps/<uuid>.json                a running collection (see `gc`)
//! gc/condemned.json                    packs the last collection found unreferenced
//! ```
//!
//! A pack's index is written only once the pack is durable, and a commit only once every
//! pack its tree needs is indexed, so a commit never names a missing object. Packs without
//! an index (an export killed mid-pack) are ignored.

/// The marker.
pub const MARKER: &str = "ferry-transfer.json";
/// Folder of pack indexes.
pub const INDEX: &str = "index/";
/// Folder of commits.
pub const COMMITS: &str = "commits/";
/// Folder of packs.
pub const PACKS: &str = "packs/";
/// Folder of running exports' records.
pub const EXPORTS: &str = "exports/";
/// Folder of running collections' records.
pub const SWEEPS: &str = "gc/sweeps/";
/// Packs condemned by the last collection.
pub const CONDEMNED: &str = "gc/condemned.json";

/// A pack's path.
pub fn pack(id: &str) -> String {
    format!("packs/{}/{id}", &id[..2.min(id.len())])
}

/// A pack index's path.
pub fn index(id: &str) -> String {
    format!("{INDEX}{id}.json")
}

/// The folder of one volume's commits.
pub fn commits(volume: &str) -> String {
    format!("{COMMITS}{volume}/")
}

/// One commit's path.
pub fn commit(volume: &str, snapshot: &str) -> String {
    format!("{COMMITS}{volume}/{snapshot}.json")
}
