//! The part of the FUSE kernel protocol (`linux/fuse.h`) a one-folder, two-file filesystem
//! needs: request opcodes, the layouts of the requests it reads and the replies it writes.
//! Every field is little-endian on the platforms ferry runs on and read or written by offset,
//! so no layout depends on Rust's struct representation.

/// Protocol version this server speaks: 7.31 (Linux 5.4 and later).
pub const KERNEL_VERSION: u32 = 7;
/// Minor version this server answers INIT with.
pub const KERNEL_MINOR: u32 = 31;
/// Oldest minor version accepted from the kernel (the reply layouts below start there).
pub const MIN_KERNEL_MINOR: u32 = 23;

/// Size of a request header.
pub const IN_HEADER: usize = 40;
/// Size of a reply header.
pub const OUT_HEADER: usize = 16;
/// Size of `fuse_attr`.
pub const ATTR: usize = 88;

pub const LOOKUP: u32 = 1;
pub const FORGET: u32 = 2;
pub const GETATTR: u32 = 3;
pub const SETATTR: u32 = 4;
pub const OPEN: u32 = 14;
pub const READ: u32 = 15;
pub const WRITE: u32 = 16;
pub const STATFS: u32 = 17;
pub const RELEASE: u32 = 18;
pub const FSYNC: u32 = 20;
pub const FLUSH: u32 = 25;
pub const INIT: u32 = 26;
pub const OPENDIR: u32 = 27;
pub const READDIR: u32 = 28;
pub const RELEASEDIR: u32 = 29;
pub const FSYNCDIR: u32 = 30;
pub const INTERRUPT: u32 = 36;
pub const DESTROY: u32 = 38;
pub const BATCH_FORGET: u32 = 42;
pub const FALLOCATE: u32 = 43;

/// Notification asking the kernel to queue again every request a server read and did not
/// answer (Linux 6.9 and later).
pub const NOTIFY_RESEND: i32 = 7;

/// INIT flags this server asks for when the kernel offers them.
pub const ASYNC_READ: u32 = 1 << 0;
pub const BIG_WRITES: u32 = 1 << 5;
pub const ASYNC_DIO: u32 = 1 << 15;
pub const MAX_PAGES: u32 = 1 << 22;

/// `setattr` valid bit: the size is to change.
pub const FATTR_SIZE: u32 = 1 << 3;
/// Open reply flag: bypass the page cache for this file.
pub const FOPEN_DIRECT_IO: u32 = 1 << 0;

/// A request header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InHeader {
    /// Length of the whole request.
    pub len: u32,
    pub opcode: u32,
    /// The id its reply carries back.
    pub unique: u64,
    pub nodeid: u64,
}

/// Reads the little-endian `u32` at `at`, if the buffer holds it.
pub fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Reads the little-endian `u64` at `at`, if the buffer holds it.
pub fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

impl InHeader {
    /// The header at the start of `b`.
    pub fn parse(b: &[u8]) -> Option<InHeader> {
        Some(InHeader {
            len: u32_at(b, 0)?,
            opcode: u32_at(b, 4)?,
            unique: u64_at(b, 8)?,
            nodeid: u64_at(b, 16)?,
        })
    }
}

/// A reply header for `unique` carrying `payload` bytes, or the negated `error`.
pub fn out_header(unique: u64, error: i32, payload: usize) -> [u8; OUT_HEADER] {
    let mut h = [0u8; OUT_HEADER];
    h[0..4].copy_from_slice(&((OUT_HEADER + payload) as u32).to_le_bytes());
    h[4..8].copy_from_slice(&(-error).to_le_bytes());
    h[8..16].copy_from_slice(&unique.to_le_bytes());
    h
}

/// A notification header (unique 0, the code in the error field).
pub fn notify_header(code: i32) -> [u8; OUT_HEADER] {
    let mut h = [0u8; OUT_HEADER];
    h[0..4].copy_from_slice(&(OUT_HEADER as u32).to_le_bytes());
    h[4..8].copy_from_slice(&code.to_le_bytes());
    h
}

/// Little-endian writer of a reply body.
#[derive(Default)]
pub struct Out(pub Vec<u8>);

impl Out {
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn zeros(&mut self, n: usize) -> &mut Self {
        self.0.resize(self.0.len() + n, 0);
        self
    }
}

/// What a file looks like to the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attr {
    pub ino: u64,
    pub size: u64,
    /// Type and permission bits (`S_IFREG | 0o600`).
    pub mode: u32,
    pub nlink: u32,
    /// Seconds since the epoch, for atime, mtime and ctime.
    pub time: u64,
}

impl Attr {
    /// `fuse_attr`.
    pub fn encode(&self, out: &mut Out) {
        out.u64(self.ino)
            .u64(self.size)
            .u64(self.size.div_ceil(512))
            .u64(self.time)
            .u64(self.time)
            .u64(self.time)
            .u32(0)
            .u32(0)
            .u32(0)
            .u32(self.mode)
            .u32(self.nlink)
            .u32(0) // uid
            .u32(0) // gid
            .u32(0) // rdev
            .u32(4096) // blksize
            .u32(0); // flags
    }
}

/// `fuse_init_in`: the kernel's version, readahead and the flags it offers.
#[derive(Clone, Copy, Debug)]
pub struct InitIn {
    pub major: u32,
    pub minor: u32,
    pub max_readahead: u32,
    pub flags: u32,
}

impl InitIn {
    pub fn parse(body: &[u8]) -> Option<InitIn> {
        Some(InitIn {
            major: u32_at(body, 0)?,
            minor: u32_at(body, 4)?,
            max_readahead: u32_at(body, 8)?,
            flags: u32_at(body, 12)?,
        })
    }
}

/// What this server answers INIT with.
#[derive(Clone, Copy, Debug)]
pub struct InitOut {
    pub max_readahead: u32,
    pub flags: u32,
    pub max_background: u16,
    pub congestion_threshold: u16,
    pub max_write: u32,
    pub max_pages: u16,
}

impl InitOut {
    /// `fuse_init_out` (64 bytes since 7.23).
    pub fn encode(&self) -> Vec<u8> {
        let mut o = Out::default();
        o.u32(KERNEL_VERSION)
            .u32(KERNEL_MINOR)
            .u32(self.max_readahead)
            .u32(self.flags)
            .u16(self.max_background)
            .u16(self.congestion_threshold)
            .u32(self.max_write)
            .u32(1) // time_gran: nanoseconds
            .u16(self.max_pages)
            .u16(0) // map_alignment
            .zeros(4 * 8); // flags2, max_stack_depth, unused[6]
        o.0
    }
}

/// `d_type` of a directory entry from a mode's type bits.
pub fn dirent_type(mode: u32) -> u32 {
    (mode & libc::S_IFMT) >> 12
}

/// Appends one `fuse_dirent` (padded to 8 bytes) if it fits in `max`; false when full.
pub fn push_dirent(
    out: &mut Vec<u8>,
    max: usize,
    ino: u64,
    off: u64,
    mode: u32,
    name: &str,
) -> bool {
    let len = 24 + name.len();
    let padded = len.div_ceil(8) * 8;
    if out.len() + padded > max {
        return false;
    }
    let mut o = Out(std::mem::take(out));
    o.u64(ino)
        .u64(off)
        .u32(name.len() as u32)
        .u32(dirent_type(mode));
    o.0.extend_from_slice(name.as_bytes());
    o.zeros(padded - len);
    *out = o.0;
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_layouts_have_the_kernel_sizes() {
        let mut o = Out::default();
        Attr {
            ino: 2,
            size: 4096,
            mode: libc::S_IFREG | 0o600,
            nlink: 1,
            time: 0,
        }
        .encode(&mut o);
        assert_eq!(o.0.len(), ATTR);
        let init = InitOut {
            max_readahead: 0,
            flags: 0,
            max_background: 0,
            congestion_threshold: 0,
            max_write: 0,
            max_pages: 0,
        };
        assert_eq!(init.encode().len(), 64);
        let h = out_header(9, libc::ENOENT, 0);
        assert_eq!(u32_at(&h, 0), Some(16));
        assert_eq!(u32_at(&h, 4).map(|v| v as i32), Some(-libc::ENOENT));
        assert_eq!(u64_at(&h, 8), Some(9));
    }

    #[test]
    fn dirents_are_padded_and_stop_when_full() {
        let mut out = Vec::new();
        assert!(push_dirent(&mut out, 64, 2, 1, libc::S_IFREG, "disk"));
        assert_eq!(out.len(), 32);
        assert_eq!(u32_at(&out, 20), Some(8), "DT_REG");
        assert!(!push_dirent(
            &mut out,
            64,
            3,
            2,
            libc::S_IFREG,
            "status-long-name"
        ));
        assert_eq!(out.len(), 32);
    }
}
