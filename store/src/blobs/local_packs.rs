//! A local folder's packs read with `pread` through a small cache of open files, so a read
//! of one chunk is one system call, not an open, a read and a close. A file deleted while
//! open still reads as it was: its blobs are content-addressed and checked, so what it
//! returns is right (a collection deletes a pack only once its live blobs are elsewhere).

use crate::codec::{self, Kind};
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::layout;
use crate::local::io_error;
use lru::LruCache;
use std::fs::File;
use std::num::NonZeroUsize;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Open pack files kept.
const OPEN_FILES: usize = 64;

/// Open pack files by path.
#[derive(Clone)]
pub(crate) struct Files {
    open: Arc<Mutex<LruCache<PathBuf, Arc<File>>>>,
}

impl Default for Files {
    fn default() -> Self {
        let n = NonZeroUsize::new(OPEN_FILES).unwrap_or(NonZeroUsize::MIN);
        Files {
            open: Arc::new(Mutex::new(LruCache::new(n))),
        }
    }
}

impl Files {
    /// The file of pack `id` under `root`.
    pub(crate) fn path(&self, root: &Path, id: &str) -> PathBuf {
        root.join(layout::pack(id))
    }

    /// `len` bytes at `off` of `file`; `None` when it does not exist. Blocks.
    pub(crate) fn read(&self, file: &Path, off: u64, len: u64) -> Result<Option<Vec<u8>>> {
        let cached = super::lock(&self.open).get(file).cloned();
        let f = match cached {
            Some(f) => f,
            None => match File::open(file) {
                Ok(f) => {
                    let f = Arc::new(f);
                    super::lock(&self.open).put(file.to_path_buf(), f.clone());
                    f
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(io_error("open", file, e)),
            },
        };
        let mut buf = vec![0u8; len as usize];
        f.read_exact_at(&mut buf, off).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => Error::Corrupt {
                path: file.display().to_string(),
                reason: format!("{len} bytes at {off} asked, the pack is shorter"),
            },
            _ => io_error("read", file, e),
        })?;
        Ok(Some(buf))
    }

    /// Closes every cached file.
    #[cfg(feature = "test-access")]
    pub(crate) fn clear(&self) {
        super::lock(&self.open).clear();
    }
}

/// Reads chunk `h` stored as its own file (format 1) under `root` and verifies it; `None`
/// when there is no such file. Blocks.
pub(crate) fn read_loose_chunk(root: &Path, h: &Hash) -> Option<Result<Vec<u8>>> {
    let path = layout::chunk(h);
    let file = root.join(&path);
    match std::fs::read(&file) {
        Ok(blob) => Some(codec::decode(&path, Kind::Chunk, h, &blob)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => Some(Err(Error::Unavailable(format!(
            "read {}: {e}",
            file.display()
        )))),
    }
}
