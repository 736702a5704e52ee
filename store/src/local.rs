//! The local-folder backend's hot paths, done with plain file calls in one trip to tokio's
//! blocking pool each (opendal's `fs` service takes several per call). Same guarantees:
//! `put` writes a temporary file, syncs it, renames it into place and syncs the folder;
//! `create_new` is an `O_EXCL` create, synced before it reports success.

use crate::error::{Error, Result};
use crate::objects::ObjectMeta;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

/// Runs `f` on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("file task: {e}")))?
}

/// Classifies a file error met on `path` while doing `op`.
pub(crate) fn io_error(op: &str, path: &Path, e: std::io::Error) -> Error {
    let text = format!("{op} {}: {e}", path.display());
    match e.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => Error::StoreFull(text),
        Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::EROFS) => Error::Config(text),
        _ if e.kind() == ErrorKind::NotFound => Error::NotFound(text),
        _ => Error::Unavailable(text),
    }
}

/// Reads a whole file; `None` when absent.
pub(crate) fn read(file: &Path) -> Result<Option<Vec<u8>>> {
    match std::fs::read(file) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error("read", file, e)),
    }
}

/// Reads `len` bytes at `offset`; `None` when the file is absent.
pub(crate) fn read_range(file: &Path, offset: u64, len: u64) -> Result<Option<Vec<u8>>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = match std::fs::File::open(file) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error("open", file, e)),
    };
    let mut buf = vec![0u8; len as usize];
    f.seek(SeekFrom::Start(offset))
        .and_then(|_| f.read_exact(&mut buf))
        .map_err(|e| match e.kind() {
            ErrorKind::UnexpectedEof => Error::Corrupt {
                path: file.display().to_string(),
                reason: format!("{len} bytes at {offset} asked, the file is shorter"),
            },
            _ => io_error("read", file, e),
        })?;
    Ok(Some(buf))
}

/// Metadata of a file; `None` when absent.
pub(crate) fn stat(file: &Path, path: &str) -> Result<Option<ObjectMeta>> {
    match std::fs::metadata(file) {
        Ok(m) => Ok(Some(ObjectMeta {
            path: path.to_string(),
            size: m.len(),
            modified: m.modified().ok(),
        })),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error("stat", file, e)),
    }
}

/// Writes `data` to `tmp`, syncs it, renames it to `file` and syncs `file`'s folder, so the
/// name is as durable as the bytes (a filesystem without a journal keeps a rename only in
/// memory until its folder is written back).
pub(crate) fn put(file: &Path, tmp: &Path, data: &[u8]) -> Result<()> {
    let written = write_synced(tmp, data, false).and_then(|_| {
        parent_dir(file)?;
        std::fs::rename(tmp, file).map_err(|e| io_error("rename", file, e))?;
        match file.parent() {
            Some(dir) => std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| io_error("sync", dir, e)),
            None => Ok(()),
        }
    });
    if written.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    written
}

/// Writes each `(file, data)` with two syncs of the whole filesystem in all, not one sync
/// per file: every blob goes to its own temporary file unsynced, one `syncfs` makes them
/// durable, they are renamed into place, and a second `syncfs` makes the renames durable
/// before this returns. A crash at any point leaves each final name absent or whole (its
/// data was durable before its name appeared), and temporary files the collector removes.
pub(crate) fn put_batch(root: &Path, items: Vec<(PathBuf, Vec<u8>)>) -> Result<()> {
    let tmp_dir = root.join(crate::layout::TMP);
    let tmps: Vec<PathBuf> = items
        .iter()
        .map(|_| tmp_dir.join(uuid::Uuid::new_v4().simple().to_string()))
        .collect();
    let done = (|| {
        for ((_, data), tmp) in items.iter().zip(&tmps) {
            write_unsynced(tmp, data)?;
        }
        sync_filesystem(root)?;
        for ((file, _), tmp) in items.iter().zip(&tmps) {
            parent_dir(file)?;
            std::fs::rename(tmp, file).map_err(|e| io_error("rename", file, e))?;
        }
        sync_filesystem(root)
    })();
    if done.is_err() {
        for tmp in &tmps {
            let _ = std::fs::remove_file(tmp);
        }
    }
    done
}

fn write_unsynced(file: &Path, data: &[u8]) -> Result<()> {
    let open = || std::fs::File::create(file);
    let mut f = match open() {
        Err(e) if e.kind() == ErrorKind::NotFound => {
            parent_dir(file)?;
            open()
        }
        other => other,
    }
    .map_err(|e| io_error("create", file, e))?;
    f.write_all(data).map_err(|e| io_error("write", file, e))
}

/// Flushes everything written to the filesystem holding `root` (`syncfs(2)`).
fn sync_filesystem(root: &Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    let dir = std::fs::File::open(root).map_err(|e| io_error("open", root, e))?;
    // SAFETY: `dir` is an open descriptor for the duration of the call.
    if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
        return Err(io_error("syncfs", root, std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Creates `file` with `data` only if it does not exist; `false` when it did.
pub(crate) fn create_new(file: &Path, data: &[u8]) -> Result<bool> {
    match write_synced(file, data, true) {
        Ok(()) => Ok(true),
        Err(Error::AlreadyExists(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

fn write_synced(file: &Path, data: &[u8], exclusive: bool) -> Result<()> {
    let open = || {
        let mut o = std::fs::OpenOptions::new();
        o.write(true);
        if exclusive {
            o.create_new(true);
        } else {
            o.create(true).truncate(true);
        }
        o.open(file)
    };
    let mut f = match open() {
        Err(e) if e.kind() == ErrorKind::NotFound => {
            parent_dir(file)?;
            open()
        }
        other => other,
    }
    .map_err(|e| {
        if e.kind() == ErrorKind::AlreadyExists {
            Error::AlreadyExists(file.display().to_string())
        } else {
            io_error("create", file, e)
        }
    })?;
    f.write_all(data).map_err(|e| io_error("write", file, e))?;
    f.sync_all().map_err(|e| io_error("sync", file, e))
}

fn parent_dir(file: &Path) -> Result<()> {
    match file.parent() {
        Some(dir) => std::fs::create_dir_all(dir).map_err(|e| io_error("mkdir", dir, e)),
        None => Ok(()),
    }
}

/// Removes a file; one already gone is fine.
pub(crate) fn delete(file: &Path) -> Result<()> {
    match std::fs::remove_file(file) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error("delete", file, e)),
    }
}

/// The sorted names in a folder (files and sub-folders); none when it does not exist.
pub(crate) fn names(folder: &Path) -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(folder) {
        Ok(d) => d,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error("list", folder, e)),
    };
    let mut out = Vec::new();
    for e in entries {
        let e = e.map_err(|e| io_error("list", folder, e))?;
        out.push(e.file_name().to_string_lossy().into_owned());
    }
    out.sort();
    Ok(out)
}

/// `root` joined with the store path `path`.
pub(crate) fn join(root: &Path, path: &str) -> PathBuf {
    root.join(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp_files(root: &Path) -> Vec<String> {
        names(&root.join(crate::layout::TMP)).expect("list tmp")
    }

    #[test]
    fn a_batch_lands_whole_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let root = dir.path();
        let items: Vec<(PathBuf, Vec<u8>)> = (0..5u8)
            .map(|i| {
                (
                    root.join(format!("chunks/{i:02x}/c{i}")),
                    vec![i; 1000 + i as usize],
                )
            })
            .collect();
        put_batch(root, items.clone()).expect("batch");
        for (file, data) in &items {
            assert_eq!(read(file).expect("read").as_deref(), Some(data.as_slice()));
        }
        assert!(tmp_files(root).is_empty(), "{:?}", tmp_files(root));
    }

    #[test]
    fn a_failed_batch_leaves_no_temporary_file_and_no_torn_object() {
        let dir = tempfile::tempdir().expect("tmp");
        let root = dir.path();
        // A regular file where a folder must be: the second rename cannot happen.
        std::fs::write(root.join("blocked"), b"x").expect("file");
        let items = vec![
            (root.join("chunks/aa/one"), vec![1u8; 100]),
            (root.join("blocked/two"), vec![2u8; 100]),
        ];
        assert!(put_batch(root, items).is_err());
        assert!(tmp_files(root).is_empty(), "{:?}", tmp_files(root));
        // What did land is whole.
        if let Some(b) = read(&root.join("chunks/aa/one")).expect("read") {
            assert_eq!(b, vec![1u8; 100]);
        }
    }
}
