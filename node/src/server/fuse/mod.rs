//! A small FUSE server loop over a `/dev/fuse` connection, written for a volume server's
//! filesystem (one folder, two files), and able to do what a general FUSE library cannot:
//! serve a connection another process initialised and left (its requests stay queued in the
//! kernel), ask the kernel to send again the requests a dead server read but never answered
//! (`FUSE_NOTIFY_RESEND`), and stop reading on request with every request it read answered,
//! so that another server can take the connection over without an unmount.
//!
//! The loop reads one request at a time and hands it, parsed, to a [`Filesystem`]; the
//! filesystem answers through a [`Reply`], at once or later from another thread. A reply
//! dropped without an answer answers EIO, so no request is left hanging.

pub mod abi;

use abi::{Attr, InHeader, InitIn, InitOut, Out};
use rustix::event::{PollFd, PollFlags, poll};
use rustix::mount::MountFlags;
use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Largest write the kernel sends in one request (and read it asks for).
pub const MAX_IO: u32 = 1 << 20;
/// Room for a request: its headers and the largest write.
const BUFFER: usize = MAX_IO as usize + 8192;

/// Opens `/dev/fuse` and mounts a FUSE filesystem named `fsname` (type `fuse.ferry`) at
/// `target` over it; the returned descriptor is the connection. The filesystem is not served
/// until someone reads the descriptor: the kernel queues the INIT request and every request
/// after it.
///
/// # Errors
/// When `/dev/fuse` cannot be opened or the mount is refused.
pub fn mount(target: &Path, fsname: &str, read_only: bool) -> io::Result<OwnedFd> {
    let dev = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")?;
    let fd: OwnedFd = dev.into();
    let data = format!("fd={},rootmode=40000,user_id=0,group_id=0", fd.as_raw_fd());
    let data = std::ffi::CString::new(data).map_err(io::Error::other)?;
    let mut flags = MountFlags::NOSUID | MountFlags::NODEV;
    if read_only {
        flags |= MountFlags::RDONLY;
    }
    rustix::mount::mount(fsname, target, "fuse.ferry", flags, data.as_c_str())?;
    Ok(fd)
}

/// Requests read and not yet answered, so a server can wait until it owes the kernel nothing.
#[derive(Default)]
pub struct InFlight {
    count: Mutex<usize>,
    idle: Condvar,
}

impl InFlight {
    fn enter(self: &Arc<Self>) -> Flight {
        *self.count.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        Flight(self.clone())
    }

    /// Requests not yet answered.
    pub fn count(&self) -> usize {
        *self.count.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until every request read has been answered, for at most `limit`; true when so.
    pub fn wait_idle(&self, limit: Duration) -> bool {
        let guard = self.count.lock().unwrap_or_else(|p| p.into_inner());
        let (guard, _) = self
            .idle
            .wait_timeout_while(guard, limit, |n| *n > 0)
            .unwrap_or_else(|p| p.into_inner());
        *guard == 0
    }
}

struct Flight(Arc<InFlight>);

impl Drop for Flight {
    fn drop(&mut self) {
        let mut n = self.0.count.lock().unwrap_or_else(|p| p.into_inner());
        *n = n.saturating_sub(1);
        if *n == 0 {
            self.0.idle.notify_all();
        }
    }
}

/// One FUSE connection: the `/dev/fuse` descriptor its requests are read from and its
/// replies written to.
pub struct Connection {
    fd: OwnedFd,
    in_flight: Arc<InFlight>,
}

impl Connection {
    /// Serves the connection `fd` (one mounted with [`mount`], or handed over).
    pub fn new(fd: OwnedFd) -> Arc<Connection> {
        Arc::new(Connection {
            fd,
            in_flight: Arc::default(),
        })
    }

    /// Requests read and not yet answered.
    pub fn in_flight(&self) -> &InFlight {
        &self.in_flight
    }

    /// Asks the kernel to queue again every request that was read from this connection and
    /// not answered (by this process or one before it): `FUSE_NOTIFY_RESEND`.
    ///
    /// # Errors
    /// When the kernel refuses the notification (before Linux 6.9: ENOSYS or EINVAL).
    pub fn resend(&self) -> io::Result<()> {
        let h = abi::notify_header(abi::NOTIFY_RESEND);
        rustix::io::write(&self.fd, &h)?;
        Ok(())
    }

    fn send(&self, unique: u64, error: i32, parts: &[&[u8]]) {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let header = abi::out_header(unique, error, len);
        let mut slices = Vec::with_capacity(parts.len() + 1);
        slices.push(IoSlice::new(&header));
        slices.extend(parts.iter().map(|p| IoSlice::new(p)));
        match rustix::io::writev(&self.fd, &slices) {
            Ok(_) => {}
            // The request was interrupted or the connection ended: nobody waits for it.
            Err(e) if e == rustix::io::Errno::NOENT || e == rustix::io::Errno::NODEV => {}
            Err(e) => tracing::warn!(error = %e, unique, "FUSE reply not accepted"),
        }
    }
}

/// The answer to one request; answers EIO if dropped unanswered.
pub struct Reply {
    conn: Arc<Connection>,
    unique: u64,
    sent: bool,
    _flight: Flight,
}

impl Reply {
    fn send(mut self, error: i32, parts: &[&[u8]]) {
        self.sent = true;
        self.conn.send(self.unique, error, parts);
    }

    /// Fails the request with `errno`.
    pub fn error(self, errno: i32) {
        self.send(errno, &[]);
    }

    /// Succeeds with no data.
    pub fn ok(self) {
        self.send(0, &[]);
    }

    /// Succeeds with `data` (READ, READDIR).
    pub fn data(self, data: &[u8]) {
        self.send(0, &[data]);
    }

    /// LOOKUP's answer: the entry and its attributes, both valid for `ttl`.
    pub fn entry(self, attr: &Attr, ttl: Duration) {
        let mut o = Out::default();
        o.u64(attr.ino)
            .u64(0)
            .u64(ttl.as_secs())
            .u64(ttl.as_secs())
            .u32(ttl.subsec_nanos())
            .u32(ttl.subsec_nanos());
        attr.encode(&mut o);
        self.send(0, &[&o.0]);
    }

    /// GETATTR's and SETATTR's answer.
    pub fn attr(self, attr: &Attr, ttl: Duration) {
        let mut o = Out::default();
        o.u64(ttl.as_secs()).u32(ttl.subsec_nanos()).u32(0);
        attr.encode(&mut o);
        self.send(0, &[&o.0]);
    }

    /// OPEN's answer: handle 0 and `flags` (`FOPEN_*`).
    pub fn opened(self, flags: u32) {
        let mut o = Out::default();
        o.u64(0).u32(flags).u32(0);
        self.send(0, &[&o.0]);
    }

    /// WRITE's answer: `size` bytes written.
    pub fn written(self, size: u32) {
        let mut o = Out::default();
        o.u32(size).u32(0);
        self.send(0, &[&o.0]);
    }

    /// STATFS's answer for a filesystem of `blocks` 4 KiB blocks and `files` files.
    pub fn statfs(self, blocks: u64, files: u64) {
        let mut o = Out::default();
        o.u64(blocks)
            .u64(0)
            .u64(0)
            .u64(files)
            .u64(0)
            .u32(4096)
            .u32(255)
            .u32(4096)
            .u32(0)
            .zeros(24);
        self.send(0, &[&o.0]);
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        if !self.sent {
            self.sent = true;
            self.conn.send(self.unique, libc::EIO, &[]);
        }
    }
}

/// A request, parsed.
#[derive(Debug)]
pub enum Op<'a> {
    Lookup {
        parent: u64,
        name: &'a [u8],
    },
    Getattr {
        ino: u64,
    },
    Setattr {
        ino: u64,
        size: Option<u64>,
    },
    Open {
        ino: u64,
        flags: u32,
    },
    Opendir {
        ino: u64,
    },
    Read {
        ino: u64,
        offset: u64,
        size: u32,
    },
    Readdir {
        ino: u64,
        offset: u64,
        size: u32,
    },
    Write {
        ino: u64,
        offset: u64,
        data: &'a [u8],
    },
    Fsync {
        ino: u64,
    },
    Fallocate {
        ino: u64,
        offset: u64,
        length: u64,
        mode: u32,
    },
    Statfs,
    /// FLUSH, RELEASE, RELEASEDIR, FSYNCDIR: nothing to do but answer.
    Done,
}

impl<'a> Op<'a> {
    /// The operation of a request with `header` and `body`; `None` for an opcode this
    /// server does not implement or a request too short for its opcode.
    fn parse(h: &InHeader, body: &'a [u8]) -> Option<Op<'a>> {
        let ino = h.nodeid;
        Some(match h.opcode {
            abi::LOOKUP => Op::Lookup {
                parent: ino,
                name: body.split(|b| *b == 0).next()?,
            },
            abi::GETATTR => Op::Getattr { ino },
            abi::SETATTR => {
                let valid = abi::u32_at(body, 0)?;
                let size = abi::u64_at(body, 16)?;
                Op::Setattr {
                    ino,
                    size: (valid & abi::FATTR_SIZE != 0).then_some(size),
                }
            }
            abi::OPEN => Op::Open {
                ino,
                flags: abi::u32_at(body, 0)?,
            },
            abi::OPENDIR => Op::Opendir { ino },
            abi::READ | abi::READDIR => {
                let offset = abi::u64_at(body, 8)?;
                let size = abi::u32_at(body, 16)?;
                if h.opcode == abi::READ {
                    Op::Read { ino, offset, size }
                } else {
                    Op::Readdir { ino, offset, size }
                }
            }
            abi::WRITE => {
                let offset = abi::u64_at(body, 8)?;
                let size = abi::u32_at(body, 16)? as usize;
                Op::Write {
                    ino,
                    offset,
                    data: body.get(40..40 + size)?,
                }
            }
            abi::FSYNC => Op::Fsync { ino },
            abi::FALLOCATE => Op::Fallocate {
                ino,
                offset: abi::u64_at(body, 8)?,
                length: abi::u64_at(body, 16)?,
                mode: abi::u32_at(body, 24)?,
            },
            abi::STATFS => Op::Statfs,
            abi::FLUSH | abi::RELEASE | abi::RELEASEDIR | abi::FSYNCDIR => Op::Done,
            _ => return None,
        })
    }
}

/// What a served filesystem does.
pub trait Filesystem {
    /// Settings for INIT, given what the kernel offers.
    fn init(&self, kernel: &InitIn) -> InitOut;
    /// Handles one request; answer through `reply`, now or later.
    fn handle(&self, op: Op<'_>, reply: Reply);
}

/// Why serving ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// The filesystem was unmounted (or the connection aborted).
    Unmounted,
    /// The stop descriptor became readable: reading stopped, requests not yet read stay
    /// queued in the kernel for whoever serves the connection next.
    Stopped,
}

/// Serves `conn` with `fs` until it is unmounted or `stop` becomes readable.
///
/// # Errors
/// A read from the connection that fails for another reason than an unmount.
pub fn serve(
    conn: &Arc<Connection>,
    fs: &dyn Filesystem,
    stop: Option<&OwnedFd>,
) -> io::Result<Ended> {
    let mut buf = vec![0u8; BUFFER];
    loop {
        if let Some(stop) = stop {
            let mut fds = [
                PollFd::new(&conn.fd, PollFlags::IN),
                PollFd::new(stop, PollFlags::IN),
            ];
            match poll(&mut fds, None) {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
            if !fds[1].revents().is_empty() {
                return Ok(Ended::Stopped);
            }
            if fds[0].revents().is_empty() {
                continue;
            }
        }
        let n = match rustix::io::read(conn.fd.as_fd(), &mut buf[..]) {
            Ok(n) => n,
            // Interrupted before it was read, or nothing after all: read again.
            Err(rustix::io::Errno::NOENT | rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => {
                continue;
            }
            Err(rustix::io::Errno::NODEV) => return Ok(Ended::Unmounted),
            Err(e) => return Err(e.into()),
        };
        let req = &buf[..n];
        let Some(h) = InHeader::parse(req) else {
            tracing::warn!(bytes = n, "short FUSE request ignored");
            continue;
        };
        let body = &req[abi::IN_HEADER.min(n)..];
        match h.opcode {
            // No answer is expected to these.
            abi::FORGET | abi::BATCH_FORGET | abi::INTERRUPT => continue,
            _ => {}
        }
        let reply = Reply {
            conn: conn.clone(),
            unique: h.unique,
            sent: false,
            _flight: conn.in_flight.enter(),
        };
        match h.opcode {
            abi::INIT => init(fs, body, reply),
            abi::DESTROY => {
                reply.ok();
                return Ok(Ended::Unmounted);
            }
            _ => match Op::parse(&h, body) {
                Some(op) => fs.handle(op, reply),
                None => reply.error(libc::ENOSYS),
            },
        }
    }
}

fn init(fs: &dyn Filesystem, body: &[u8], reply: Reply) {
    let Some(kernel) = InitIn::parse(body) else {
        return reply.error(libc::EINVAL);
    };
    if kernel.major != abi::KERNEL_VERSION || kernel.minor < abi::MIN_KERNEL_MINOR {
        tracing::error!(
            major = kernel.major,
            minor = kernel.minor,
            "the kernel's FUSE protocol is too old (7.23 or later is needed)"
        );
        return reply.error(libc::EPROTO);
    }
    let mut out = fs.init(&kernel);
    out.flags &= kernel.flags;
    reply.send(0, &[&out.encode()]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(opcode: u32, len: usize) -> InHeader {
        InHeader {
            len: len as u32,
            opcode,
            unique: 4,
            nodeid: 2,
        }
    }

    #[test]
    fn parses_a_write_and_a_lookup() {
        let mut body = vec![0u8; 40];
        body[8..16].copy_from_slice(&8192u64.to_le_bytes());
        body[16..20].copy_from_slice(&3u32.to_le_bytes());
        body.extend_from_slice(b"abc");
        match Op::parse(&header(abi::WRITE, 83), &body) {
            Some(Op::Write { ino, offset, data }) => {
                assert_eq!((ino, offset, data), (2, 8192, &b"abc"[..]));
            }
            other => panic!("{other:?}"),
        }
        match Op::parse(&header(abi::LOOKUP, 45), b"disk\0") {
            Some(Op::Lookup { name, .. }) => assert_eq!(name, b"disk"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_short_request_is_not_an_operation() {
        assert!(Op::parse(&header(abi::WRITE, 50), &[0u8; 10]).is_none());
        // A write whose data is shorter than it says.
        let mut body = vec![0u8; 40];
        body[16..20].copy_from_slice(&100u32.to_le_bytes());
        assert!(Op::parse(&header(abi::WRITE, 80), &body).is_none());
        assert!(Op::parse(&header(9999, 40), &[]).is_none());
    }
}
