//! A chunk store in a local folder shared by processes of different users: the node's
//! processes run as root (they mount), the controller and the migration controller as an
//! unprivileged user. They share it through a group, by design:
//!
//! - every `ferry` process runs with the file-creation mask [`UMASK`] (`002`), so what it
//!   creates is group-writable (files `0664`, folders `0775`; journal segments, which only
//!   their node appends to, stay `0644`);
//! - the store's folder belongs to the store group ([`DEFAULT_GROUP`], the image's `ferry`
//!   group, 65532) and has the set-group-id bit, which Linux passes on to every folder made
//!   in it, so everything below it belongs to that group whoever made it;
//! - a root process (the node plugin) makes the folder so, and on the first start after an
//!   older ferry made it root-owned, gives the whole tree to the group.
//!
//! A process of the store group (the controller runs as 65532:65532) can then create,
//! rename over and delete anything in it, which is all the store ever does to another
//! process's objects.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// The file-creation mask of every `ferry` process.
pub const UMASK: u32 = 0o002;
/// The group sharing a folder store, unless `FERRY_STORE_GROUP` says otherwise: the
/// image's `ferry` group, which the controller Deployments run as.
pub const DEFAULT_GROUP: u32 = 65532;
/// Mode bits the store folder and every folder in it have: set-group-id, group rwx.
pub const FOLDER_BITS: u32 = 0o2070;

/// Sets this process's file-creation mask to [`UMASK`].
pub fn set_umask() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(UMASK));
}

/// Makes `root` a store folder shared with group `gid`: created if missing; when this
/// process is root, owned by the group with [`FOLDER_BITS`] (the whole tree the first time);
/// otherwise, when it owns the folder, given the set-group-id bit.
///
/// # Errors
/// When the folder cannot be created or changed.
pub fn prepare(root: &Path, gid: u32) -> std::io::Result<()> {
    std::fs::create_dir_all(root)?;
    let meta = std::fs::metadata(root)?;
    let bits_ok = meta.mode() & FOLDER_BITS == FOLDER_BITS;
    if rustix::process::geteuid().is_root() {
        if meta.gid() != gid || !bits_ok {
            tracing::info!(folder = %root.display(), gid, "giving the store folder to its group");
            share_tree(root, gid)?;
        }
    } else if meta.uid() == rustix::process::geteuid().as_raw() && !bits_ok {
        let mode = meta.mode() | FOLDER_BITS | 0o700;
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(mode & 0o7777))?;
    }
    Ok(())
}

/// Gives `path` and everything below it to group `gid`: folders group rwx with
/// set-group-id, files group read-write.
fn share_tree(path: &Path, gid: u32) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    rustix::fs::chown(path, None, Some(rustix::fs::Gid::from_raw(gid)))?;
    let extra = if meta.is_dir() { FOLDER_BITS } else { 0o060 };
    // chown clears set-id bits: set the mode after it.
    std::fs::set_permissions(
        path,
        std::fs::Permissions::from_mode((meta.mode() | extra) & 0o7777),
    )?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            share_tree(&entry?.path(), gid)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_old_root_owned_tree_is_given_to_the_group() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: changing a folder's group needs root");
            return;
        }
        let dir = tempfile::tempdir().expect("tmp");
        let root = dir.path().join("store");
        std::fs::create_dir_all(root.join("gc/holds")).expect("mkdir");
        std::fs::write(root.join("gc/holds/h1"), b"x").expect("write");
        std::fs::set_permissions(
            root.join("gc/holds"),
            std::fs::Permissions::from_mode(0o755),
        )
        .expect("chmod");
        prepare(&root, 4242).expect("prepare");
        for p in [root.clone(), root.join("gc"), root.join("gc/holds")] {
            let m = std::fs::metadata(&p).expect("stat");
            assert_eq!(m.gid(), 4242, "{}", p.display());
            assert_eq!(m.mode() & 0o2070, 0o2070, "{}", p.display());
        }
        let f = std::fs::metadata(root.join("gc/holds/h1")).expect("stat");
        assert_eq!((f.gid(), f.mode() & 0o060), (4242, 0o060));
        // A folder made later inherits the group and the bit from its parent.
        std::fs::create_dir(root.join("chunks")).expect("mkdir");
        let m = std::fs::metadata(root.join("chunks")).expect("stat");
        assert_eq!((m.gid(), m.mode() & 0o2000), (4242, 0o2000));
    }
}
