//! The FUSE filesystem a volume server mounts: one folder holding `disk`, the volume as a
//! file that a loop device attaches to, and `status`, a JSON health report the node plugin
//! reads for NodeGetVolumeStats.
//!
//! The session thread only dispatches: each read, write, fsync and discard runs as a task
//! on the tokio runtime and replies when done, so requests run concurrently. A write is
//! acknowledged once it is in the volume's write-back buffer; an fsync (which is what a
//! FLUSH reaching the loop device becomes) writes one journal record of the blocks written
//! since the last before it is acknowledged (see `ferry_store::handle`).

use super::status::Status;
use ferry_store::VolumeHandle;
use fuser::consts::{FOPEN_DIRECT_IO, FUSE_ASYNC_DIO, FUSE_ASYNC_READ, FUSE_MAX_PAGES};
use fuser::{
    FileAttr, FileType, Filesystem, KernelConfig, ReplyAttr, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyWrite, Request, TimeOrNow,
};
use std::ffi::OsStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::runtime::Handle;

const ROOT: u64 = 1;
const DISK: u64 = 2;
const STATUS: u64 = 3;
/// Name of the image file.
pub const DISK_NAME: &str = "disk";
/// Name of the status file.
pub const STATUS_NAME: &str = "status";
/// Largest single read or write the kernel sends.
const MAX_IO: u32 = 1 << 20;
/// Attributes may be cached this long; `disk`'s size changes only through this server.
const TTL: Duration = Duration::from_secs(1);

/// The served filesystem of one volume.
pub struct ImageFs {
    rt: Handle,
    volume: Arc<VolumeHandle>,
    status: Arc<Status>,
    read_only: bool,
    started: SystemTime,
}

impl ImageFs {
    /// Serves `volume`; writes are refused when `read_only`.
    pub fn new(
        rt: Handle,
        volume: Arc<VolumeHandle>,
        status: Arc<Status>,
        read_only: bool,
    ) -> Self {
        ImageFs {
            rt,
            volume,
            status,
            read_only,
            started: SystemTime::now(),
        }
    }

    fn attr(&self, ino: u64) -> Option<FileAttr> {
        let (kind, perm, size) = match ino {
            ROOT => (FileType::Directory, 0o755, 0),
            DISK => (
                FileType::RegularFile,
                if self.read_only { 0o400 } else { 0o600 },
                self.status.size(),
            ),
            STATUS => (FileType::RegularFile, 0o444, 4096),
            _ => return None,
        };
        Some(FileAttr {
            ino,
            size,
            blocks: size.div_ceil(512),
            atime: self.started,
            mtime: self.started,
            ctime: self.started,
            crtime: self.started,
            kind,
            perm,
            nlink: if kind == FileType::Directory { 2 } else { 1 },
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        })
    }
}

impl Filesystem for ImageFs {
    fn init(&mut self, _req: &Request<'_>, config: &mut KernelConfig) -> Result<(), libc::c_int> {
        // Each is a request to the kernel; a kernel without one still works, only slower.
        let _ = config.add_capabilities(FUSE_ASYNC_READ | FUSE_ASYNC_DIO | FUSE_MAX_PAGES);
        let _ = config.set_max_write(MAX_IO);
        let _ = config.set_max_readahead(MAX_IO);
        let _ = config.set_max_background(64);
        let _ = config.set_congestion_threshold(48);
        Ok(())
    }

    fn destroy(&mut self) {
        if self.read_only {
            return;
        }
        // Unmounting ends the session: make whatever is buffered durable first.
        let volume = self.volume.clone();
        let status = self.status.clone();
        let result = self.rt.block_on(async move { volume.checkpoint().await });
        status.flushed(&result);
    }

    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        let ino = match (parent, name.to_str()) {
            (ROOT, Some(DISK_NAME)) => DISK,
            (ROOT, Some(STATUS_NAME)) => STATUS,
            _ => return reply.error(libc::ENOENT),
        };
        match self.attr(ino) {
            Some(a) => reply.entry(&TTL, &a, 0),
            None => reply.error(libc::ENOENT),
        }
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, _fh: Option<u64>, reply: ReplyAttr) {
        match self.attr(ino) {
            Some(a) => reply.attr(&TTL, &a),
            None => reply.error(libc::ENOENT),
        }
    }

    /// A size change on `disk` is how the node plugin announces an expansion: the server
    /// picks up the size the controller committed, and never goes below it.
    fn setattr(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<u64>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<u32>,
        reply: ReplyAttr,
    ) {
        let Some(want) = size.filter(|_| ino == DISK) else {
            return match self.attr(ino) {
                Some(a) => reply.attr(&TTL, &a),
                None => reply.error(libc::ENOENT),
            };
        };
        let volume = self.volume.clone();
        let status = self.status.clone();
        let mut attr = self.attr(DISK);
        self.rt.spawn(async move {
            match volume.refresh_size().await {
                Ok(now) if now >= want => {
                    status.set_size(now);
                    if let Some(a) = attr.as_mut() {
                        a.size = now;
                        a.blocks = now.div_ceil(512);
                        reply.attr(&TTL, a);
                    }
                }
                Ok(now) => {
                    tracing::warn!(
                        want,
                        now,
                        "size change refused: the volume is not that large"
                    );
                    reply.error(libc::EINVAL);
                }
                Err(e) => {
                    status.error(&e);
                    reply.error(libc::EIO);
                }
            }
        });
    }

    fn open(&mut self, _req: &Request<'_>, ino: u64, flags: i32, reply: ReplyOpen) {
        match ino {
            DISK if self.read_only && (flags & libc::O_ACCMODE) != libc::O_RDONLY => {
                reply.error(libc::EROFS)
            }
            DISK => reply.opened(0, 0),
            STATUS => reply.opened(0, FOPEN_DIRECT_IO),
            _ => reply.error(libc::EISDIR),
        }
    }

    fn read(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        size: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyData,
    ) {
        let Ok(offset) = u64::try_from(offset) else {
            return reply.error(libc::EINVAL);
        };
        if ino == STATUS {
            let text = self.status.report();
            let start = (offset as usize).min(text.len());
            let end = (start + size as usize).min(text.len());
            return reply.data(&text.as_bytes()[start..end]);
        }
        let total = self.status.size();
        let len = (size as u64).min(total.saturating_sub(offset)) as usize;
        // Served here when it can be (nothing to fetch from a service, the state free): no
        // hand-off to the runtime and back.
        if let Some(r) = self.volume.read_now(offset, len) {
            return match r {
                Ok(data) => reply.data(&data),
                Err(e) => {
                    self.status.error(&e);
                    reply.error(libc::EIO)
                }
            };
        }
        let volume = self.volume.clone();
        let status = self.status.clone();
        self.rt.spawn(async move {
            match volume.read_at(offset, len).await {
                Ok(data) => reply.data(&data),
                Err(e) => {
                    status.error(&e);
                    reply.error(libc::EIO);
                }
            }
        });
    }

    fn write(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        data: &[u8],
        _write_flags: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyWrite,
    ) {
        if ino != DISK || self.read_only {
            return reply.error(libc::EROFS);
        }
        let Ok(offset) = u64::try_from(offset) else {
            return reply.error(libc::EINVAL);
        };
        match self.volume.write_now(offset, data) {
            Some(Ok(())) => return reply.written(data.len() as u32),
            Some(Err(ferry_store::Error::OutOfRange(_))) => return reply.error(libc::ENOSPC),
            Some(Err(e)) => {
                self.status.error(&e);
                return reply.error(libc::EIO);
            }
            None => {}
        }
        let data = data.to_vec();
        let volume = self.volume.clone();
        let status = self.status.clone();
        self.rt.spawn(async move {
            match volume.write_at(offset, &data).await {
                Ok(()) => reply.written(data.len() as u32),
                Err(ferry_store::Error::OutOfRange(_)) => reply.error(libc::ENOSPC),
                Err(e) => {
                    status.error(&e);
                    reply.error(libc::EIO);
                }
            }
        });
    }

    fn flush(&mut self, _req: &Request<'_>, _ino: u64, _fh: u64, _lock: u64, reply: ReplyEmpty) {
        // close() is not a durability point; fsync is.
        reply.ok();
    }

    fn fsync(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        if ino != DISK || self.read_only {
            return reply.ok();
        }
        let volume = self.volume.clone();
        let status = self.status.clone();
        self.rt.spawn(async move {
            let result = volume.flush().await;
            status.flushed(&result);
            match result {
                Ok(_) => reply.ok(),
                Err(_) => reply.error(libc::EIO),
            }
        });
    }

    /// Discards from the filesystem above (through the loop device) arrive as hole punches:
    /// whole chunks become holes that take no space in the store.
    fn fallocate(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        length: i64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        if ino != DISK || self.read_only {
            return reply.error(libc::EROFS);
        }
        let (Ok(offset), Ok(length)) = (u64::try_from(offset), u64::try_from(length)) else {
            return reply.error(libc::EINVAL);
        };
        let zeroing = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_ZERO_RANGE;
        if mode & zeroing == 0 {
            // Plain allocation: the store allocates on write, nothing to reserve.
            return if mode & !libc::FALLOC_FL_KEEP_SIZE == 0 {
                reply.ok()
            } else {
                reply.error(libc::EOPNOTSUPP)
            };
        }
        let length = length.min(self.status.size().saturating_sub(offset));
        let volume = self.volume.clone();
        let status = self.status.clone();
        self.rt.spawn(async move {
            match volume.zero_range(offset, length).await {
                Ok(()) => reply.ok(),
                Err(e) => {
                    status.error(&e);
                    reply.error(libc::EIO);
                }
            }
        });
    }

    fn readdir(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        mut reply: ReplyDirectory,
    ) {
        if ino != ROOT {
            return reply.error(libc::ENOTDIR);
        }
        let entries = [
            (ROOT, FileType::Directory, "."),
            (ROOT, FileType::Directory, ".."),
            (DISK, FileType::RegularFile, DISK_NAME),
            (STATUS, FileType::RegularFile, STATUS_NAME),
        ];
        for (i, (ino, kind, name)) in entries.iter().enumerate().skip(offset.max(0) as usize) {
            if reply.add(*ino, (i + 1) as i64, *kind, name) {
                break;
            }
        }
        reply.ok();
    }
}
