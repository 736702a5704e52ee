//! The FUSE filesystem a volume server mounts: one folder holding `disk`, the volume as a
//! file that a loop device attaches to, and `status`, a JSON health report the node plugin
//! reads for NodeGetVolumeStats.
//!
//! The session thread only dispatches: each read, write, fsync and discard runs as a task
//! on the tokio runtime and replies when done, so requests run concurrently. A write is
//! acknowledged once it is in the volume's write-back buffer; an fsync (which is what a
//! FLUSH reaching the loop device becomes) writes one journal record of the blocks written
//! since the last before it is acknowledged (see `ferry_store::handle`).

use super::Durable;
use super::durability::Durability;
use super::fuse::abi::{self, Attr, InitIn, InitOut};
use super::fuse::{Filesystem, MAX_IO, Op, Reply};
use super::status::Status;
use ferry_store::VolumeHandle;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::runtime::Handle;

const ROOT: u64 = 1;
const DISK: u64 = DISK_INO;
/// Inode number of the image file.
pub const DISK_INO: u64 = 2;
const STATUS: u64 = 3;
/// Name of the image file.
pub const DISK_NAME: &str = "disk";
/// Name of the status file.
pub const STATUS_NAME: &str = "status";
/// Attributes may be cached this long; `disk`'s size changes only through this server.
const TTL: Duration = Duration::from_secs(1);

/// The served filesystem of one volume.
pub struct ImageFs {
    rt: Handle,
    volume: Arc<VolumeHandle>,
    status: Arc<Status>,
    /// `None` when serving read-only (nothing is ever acknowledged that is not durable).
    durability: Option<Arc<Durability>>,
    started: u64,
}

impl ImageFs {
    /// Serves `volume`; writes are refused when `durability` is `None` (read-only).
    pub fn new(
        rt: Handle,
        volume: Arc<VolumeHandle>,
        status: Arc<Status>,
        durability: Option<Arc<Durability>>,
    ) -> Self {
        let started = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        ImageFs {
            rt,
            volume,
            status,
            durability,
            started,
        }
    }

    fn read_only(&self) -> bool {
        self.durability.is_none()
    }

    fn attr(&self, ino: u64) -> Option<Attr> {
        let (mode, size) = match ino {
            ROOT => (libc::S_IFDIR | 0o755, 0),
            DISK => (
                libc::S_IFREG | if self.read_only() { 0o400 } else { 0o600 },
                self.status.size(),
            ),
            STATUS => (libc::S_IFREG | 0o444, 4096),
            _ => return None,
        };
        Some(Attr {
            ino,
            size,
            mode,
            nlink: if ino == ROOT { 2 } else { 1 },
            time: self.started,
        })
    }

    fn reply_attr(&self, ino: u64, reply: Reply) {
        match self.attr(ino) {
            Some(a) => reply.attr(&a, TTL),
            None => reply.error(libc::ENOENT),
        }
    }
}

impl Filesystem for ImageFs {
    fn init(&self, _kernel: &InitIn) -> InitOut {
        InitOut {
            max_readahead: MAX_IO,
            flags: abi::ASYNC_READ | abi::BIG_WRITES | abi::ASYNC_DIO | abi::MAX_PAGES,
            max_background: 64,
            congestion_threshold: 48,
            max_write: MAX_IO,
            max_pages: (MAX_IO / 4096) as u16,
        }
    }

    fn handle(&self, op: Op<'_>, reply: Reply) {
        match op {
            Op::Lookup { parent, name } => {
                let ino = match (parent, name) {
                    (ROOT, n) if n == DISK_NAME.as_bytes() => DISK,
                    (ROOT, n) if n == STATUS_NAME.as_bytes() => STATUS,
                    _ => return reply.error(libc::ENOENT),
                };
                match self.attr(ino) {
                    Some(a) => reply.entry(&a, TTL),
                    None => reply.error(libc::ENOENT),
                }
            }
            Op::Getattr { ino } => self.reply_attr(ino, reply),
            Op::Setattr { ino, size } => self.setattr(ino, size, reply),
            Op::Open { ino, flags } => self.open(ino, flags as i32, reply),
            Op::Opendir { ino } if ino == ROOT => reply.opened(0),
            Op::Opendir { .. } => reply.error(libc::ENOTDIR),
            Op::Read { ino, offset, size } => self.read(ino, offset, size, reply),
            Op::Readdir { ino, offset, size } => self.readdir(ino, offset, size, reply),
            Op::Write { ino, offset, data } => self.write(ino, offset, data, reply),
            Op::Fsync { ino } => self.fsync(ino, reply),
            Op::Fallocate {
                ino,
                offset,
                length,
                mode,
            } => self.fallocate(ino, offset, length, mode as i32, reply),
            Op::Statfs => reply.statfs(self.status.size().div_ceil(4096), 3),
            // close() is not a durability point; fsync is.
            Op::Done => reply.ok(),
        }
    }
}

impl ImageFs {
    /// A size change on `disk` is how the node plugin announces an expansion: the server
    /// picks up the size the controller committed, and never goes below it.
    fn setattr(&self, ino: u64, size: Option<u64>, reply: Reply) {
        let Some(want) = size.filter(|_| ino == DISK) else {
            return self.reply_attr(ino, reply);
        };
        let volume = self.volume.clone();
        let status = self.status.clone();
        let mut attr = self.attr(DISK);
        self.rt.spawn(async move {
            match volume.refresh_size().await {
                Ok(now) if now >= want => {
                    status.set_size(now);
                    match attr.as_mut() {
                        Some(a) => {
                            a.size = now;
                            reply.attr(a, TTL);
                        }
                        None => reply.error(libc::ENOENT),
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

    fn open(&self, ino: u64, flags: i32, reply: Reply) {
        match ino {
            DISK if self.read_only() && (flags & libc::O_ACCMODE) != libc::O_RDONLY => {
                reply.error(libc::EROFS)
            }
            DISK => reply.opened(0),
            STATUS => reply.opened(abi::FOPEN_DIRECT_IO),
            _ => reply.error(libc::EISDIR),
        }
    }

    fn read(&self, ino: u64, offset: u64, size: u32, reply: Reply) {
        if ino == STATUS {
            let text = self.status.report();
            let start = (offset as usize).min(text.len());
            let end = (start + size as usize).min(text.len());
            return reply.data(&text.as_bytes()[start..end]);
        }
        if ino != DISK {
            return reply.error(libc::EISDIR);
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

    fn write(&self, ino: u64, offset: u64, data: &[u8], reply: Reply) {
        let Some(durability) = self.durability.clone().filter(|_| ino == DISK) else {
            return reply.error(libc::EROFS);
        };
        let len = data.len() as u32;
        match self.volume.write_now(offset, data) {
            Some(Ok(())) => {
                durability.before_ack();
                return reply.written(len);
            }
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
                Ok(()) => {
                    durability.before_ack();
                    reply.written(len)
                }
                Err(ferry_store::Error::OutOfRange(_)) => reply.error(libc::ENOSPC),
                Err(e) => {
                    status.error(&e);
                    reply.error(libc::EIO);
                }
            }
        });
    }

    fn fsync(&self, ino: u64, reply: Reply) {
        let Some(durability) = self.durability.clone().filter(|_| ino == DISK) else {
            return reply.ok();
        };
        let volume = self.volume.clone();
        let status = self.status.clone();
        self.rt.spawn(async move {
            let r = super::make_durable(&volume, &status, Some(&durability), Durable::Journal);
            match r.await {
                Ok(_) => reply.ok(),
                Err(_) => reply.error(libc::EIO),
            }
        });
    }

    /// Discards from the filesystem above (through the loop device) arrive as hole punches:
    /// whole chunks become holes that take no space in the store.
    fn fallocate(&self, ino: u64, offset: u64, length: u64, mode: i32, reply: Reply) {
        let Some(durability) = self.durability.clone().filter(|_| ino == DISK) else {
            return reply.error(libc::EROFS);
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
                Ok(()) => {
                    durability.before_ack();
                    reply.ok()
                }
                Err(e) => {
                    status.error(&e);
                    reply.error(libc::EIO);
                }
            }
        });
    }

    fn readdir(&self, ino: u64, offset: u64, size: u32, reply: Reply) {
        if ino != ROOT {
            return reply.error(libc::ENOTDIR);
        }
        let entries = [
            (ROOT, libc::S_IFDIR, "."),
            (ROOT, libc::S_IFDIR, ".."),
            (DISK, libc::S_IFREG, DISK_NAME),
            (STATUS, libc::S_IFREG, STATUS_NAME),
        ];
        let mut out = Vec::new();
        for (i, (ino, mode, name)) in entries.iter().enumerate().skip(offset as usize) {
            if !abi::push_dirent(&mut out, size as usize, *ino, (i + 1) as u64, *mode, name) {
                break;
            }
        }
        reply.data(&out);
    }
}
