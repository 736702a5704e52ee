//! Whether a volume server holds acknowledged writes that are not yet durable, kept in a
//! small file beside the volume's state so that whoever finds the server dead can tell.
//!
//! A write is acknowledged to the kernel once it sits in the server's write-back buffer; it
//! is durable once a flush (a journal record) or a checkpoint covering it has completed. A
//! server that dies between the two leaves the filesystem above believing in writes nobody
//! holds: serving the connection on from the store would then hand back older data without
//! an error. So the file says `dirty` before the first such write is acknowledged, and
//! `clean` once a flush that started after the last acknowledged write has completed. It is
//! written only when that changes (about once per flush), and through the page cache: it
//! outlives the process, which is all it must outlive (a node that dies loses the
//! connection too).

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

const DIRTY: &[u8; 5] = b"dirty";
const CLEAN: &[u8; 5] = b"clean";

/// Name of the file in the volume's state folder.
pub const FILE_NAME: &str = "durability";

/// What the file said when read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found {
    /// Every acknowledged write was durable.
    Clean,
    /// Some acknowledged write may not be durable.
    Dirty,
    /// No file (a server that never acknowledged a write) or unreadable.
    Unknown,
}

/// Reads the marker of a (dead) server.
pub fn read(path: &Path) -> Found {
    match std::fs::read(path) {
        Ok(b) if b.as_slice() == CLEAN => Found::Clean,
        Ok(b) if b.as_slice() == DIRTY => Found::Dirty,
        Ok(_) => Found::Unknown,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Found::Unknown,
        Err(_) => Found::Unknown,
    }
}

struct State {
    acked: u64,
    durable: u64,
    marked_dirty: bool,
}

/// The live marker of a serving volume server.
pub struct Durability {
    file: std::fs::File,
    path: PathBuf,
    state: Mutex<State>,
}

impl Durability {
    /// Creates the marker at `path`, clean: the server starts with nothing acknowledged.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn create(path: &Path) -> std::io::Result<Durability> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(path)?;
        file.write_all_at(CLEAN, 0)?;
        Ok(Durability {
            file,
            path: path.to_path_buf(),
            state: Mutex::new(State {
                acked: 0,
                durable: 0,
                marked_dirty: false,
            }),
        })
    }

    fn mark(&self, what: &[u8; 5]) {
        if let Err(e) = self.file.write_all_at(what, 0) {
            tracing::error!(error = %e, path = %self.path.display(), "cannot write the durability marker");
        }
    }

    /// Call before acknowledging a write that changed the volume's content.
    pub fn before_ack(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.acked += 1;
        if !s.marked_dirty {
            self.mark(DIRTY);
            s.marked_dirty = true;
        }
    }

    /// Call before a flush or checkpoint starts; pass the value to [`Durability::flushed`]
    /// once it succeeded.
    pub fn flush_started(&self) -> u64 {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).acked
    }

    /// A flush that started at `upto` made everything acknowledged before it durable.
    pub fn flushed(&self, upto: u64) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.durable = s.durable.max(upto);
        if s.marked_dirty && s.acked == s.durable {
            self.mark(CLEAN);
            s.marked_dirty = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dirty_between_an_acknowledged_write_and_the_flush_after_it() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join(FILE_NAME);
        assert_eq!(read(&path), Found::Unknown);
        let d = Durability::create(&path).expect("create");
        assert_eq!(read(&path), Found::Clean);
        d.before_ack();
        assert_eq!(read(&path), Found::Dirty);
        let upto = d.flush_started();
        // A write acknowledged while the flush runs is not covered by it.
        d.before_ack();
        d.flushed(upto);
        assert_eq!(read(&path), Found::Dirty);
        let upto = d.flush_started();
        d.flushed(upto);
        assert_eq!(read(&path), Found::Clean);
    }
}
