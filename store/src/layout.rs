//! Where each kind of object lives in the store. One function per path, so the layout can be
//! read in one place:
//!
//! ```text
//! ferry-store.json                      store marker: format version
//! packs/<p0p1>/<pack id>                packs of chunks and tree pages (format 2, immutable)
//! chunks/<h0h1>/<hash>                  chunk blobs, one object each (format 1, immutable)
//! trees/<h0h1>/<hash>                   tree page blobs, one object each (format 1)
//! volumes/<id>/volume.json              volume record
//! volumes/<id>/gens/<generation>.json   root pointer generations (compare-and-swap)
//! volumes/<id>/lease/<sequence>.json    single-writer lease steps (compare-and-swap)
//! snapshots/<id>.json                   snapshot records (immutable)
//! group-snapshots/<id>.json             group snapshot records (after their members)
//! names/volumes/<sha256(name)>.json     CSI name -> volume id (create-if-absent)
//! names/snapshots/<sha256(name)>.json   CSI name -> snapshot id (create-if-absent)
//! names/group-snapshots/<sha256>.json   CSI name -> group snapshot id (create-if-absent)
//! gc/policy.json                        grace period and hold lifetime every process uses
//! gc/condemned.json                     objects the last GC run found unreachable
//! gc/holds/<uuid>.json                  what an unfinished writer holds (see `holds`)
//! gc/sweeps/<uuid>.json                 a GC run that may be deleting (see `holds`)
//! tmp/<uuid>                            files being renamed into place (local folders)
//! ```

use crate::hash::Hash;

/// The store marker.
pub const MARKER: &str = "ferry-store.json";
/// Folder of packs.
pub const PACKS: &str = "packs/";
/// Folder of chunks stored one object each (format 1).
pub const CHUNKS: &str = "chunks/";
/// Folder of tree pages.
pub const TREES: &str = "trees/";
/// Folder of volumes.
pub const VOLUMES: &str = "volumes/";
/// Folder of snapshots.
pub const SNAPSHOTS: &str = "snapshots/";
/// Folder of temporary files.
pub const TMP: &str = "tmp/";
/// Nodes' reports of volumes that failed there (see `health`).
pub const HEALTH: &str = "health/";
/// GC state.
pub const GC_CONDEMNED: &str = "gc/condemned.json";
/// The store's GC policy.
pub const GC_POLICY: &str = "gc/policy.json";
/// Folder of holds.
pub const GC_HOLDS: &str = "gc/holds/";
/// Folder of sweeps.
pub const GC_SWEEPS: &str = "gc/sweeps/";

/// A hold's record.
pub fn hold(id: &str) -> String {
    format!("{GC_HOLDS}{id}.json")
}

/// A sweep's record.
pub fn sweep(id: &str) -> String {
    format!("{GC_SWEEPS}{id}.json")
}

/// A pack's path.
pub fn pack(id: &str) -> String {
    format!("{PACKS}{}/{id}", &id[..2.min(id.len())])
}

/// The pack id in a path under [`PACKS`] (32 hex digits).
pub fn pack_id_of_path(path: &str) -> Option<&str> {
    let id = path.strip_prefix(PACKS)?.rsplit('/').next()?;
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(id)
}

/// A chunk's path.
pub fn chunk(h: &Hash) -> String {
    let x = h.to_hex();
    format!("{CHUNKS}{}/{x}", &x[..2])
}

/// A tree page's path.
pub fn page(h: &Hash) -> String {
    let x = h.to_hex();
    format!("{TREES}{}/{x}", &x[..2])
}

/// Parses the hash out of a chunk or page path.
pub fn hash_of_path(path: &str) -> Option<Hash> {
    Hash::from_hex(path.rsplit('/').next()?)
}

/// A volume's record.
pub fn volume(id: &str) -> String {
    format!("{VOLUMES}{id}/volume.json")
}

/// The folder of a volume's root generations.
pub fn gens(id: &str) -> String {
    format!("{VOLUMES}{id}/gens/")
}

/// One root generation; zero-padded so names sort by number.
pub fn gen_path(id: &str, generation: u64) -> String {
    format!("{VOLUMES}{id}/gens/{generation:020}.json")
}

/// Parses a generation number from a file name in [`gens`].
pub fn gen_of_name(name: &str) -> Option<u64> {
    name.strip_suffix(".json")?.parse().ok()
}

/// The folder of a volume's journals (see `journal`).
pub fn journals(id: &str) -> String {
    format!("{VOLUMES}{id}/journal/")
}

/// One journal of a volume.
pub fn journal(id: &str, name: &str) -> String {
    format!("{VOLUMES}{id}/journal/{name}/")
}

/// One journal record; zero-padded so names sort by number.
pub fn journal_record(id: &str, name: &str, seq: u64) -> String {
    format!("{VOLUMES}{id}/journal/{name}/{seq:020}")
}

/// The folder of the nodes' reports on a volume's health.
pub fn health(id: &str) -> String {
    format!("{HEALTH}{id}/")
}

/// The folder of a volume's lease steps.
pub fn leases(id: &str) -> String {
    format!("{VOLUMES}{id}/lease/")
}

/// One lease step; zero-padded so names sort by number.
pub fn lease_path(id: &str, seq: u64) -> String {
    format!("{VOLUMES}{id}/lease/{seq:020}.json")
}

/// A snapshot's record.
pub fn snapshot(id: &str) -> String {
    format!("{SNAPSHOTS}{id}.json")
}

/// Group snapshot records.
pub const GROUP_SNAPSHOTS: &str = "group-snapshots/";

/// A group snapshot's record.
pub fn group_snapshot(id: &str) -> String {
    format!("{GROUP_SNAPSHOTS}{id}.json")
}

/// The name record of a group snapshot name.
pub fn group_snapshot_name(name: &str) -> String {
    format!(
        "names/group-snapshots/{}.json",
        Hash::of(name.as_bytes()).to_hex()
    )
}

/// The name record of a volume name.
pub fn volume_name(name: &str) -> String {
    format!("names/volumes/{}.json", Hash::of(name.as_bytes()).to_hex())
}

/// The name record of a snapshot name.
pub fn snapshot_name(name: &str) -> String {
    format!(
        "names/snapshots/{}.json",
        Hash::of(name.as_bytes()).to_hex()
    )
}
