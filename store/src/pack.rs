//! The pack format: many chunk and tree-page frames in one object, with the index of what it
//! holds at its end, so that a pack is written (and read back) whole in one request and
//! describes itself.
//!
//! ```text
//! offset  size    field
//! 0       ...     frames back to back (each the blob framing of `codec`)
//! T       44 * n  entries: name (32), offset u32 LE, length u32 LE, kind u8, 3 reserved
//! T+44n   4       n, u32 LE
//! +4      32      SHA-256 of the entries
//! +32     1       pack format (1)
//! +1      3       reserved
//! +3      4       magic "FRYP"
//! ```
//! The last 44 bytes are the footer; the entries sit right before it. A pack is named by a
//! random id (`packs/<p0p1>/<32 hex>`); what it holds is named by content, as loose blobs
//! are, and every frame read from it is checked against its name.

use crate::codec::Kind;
use crate::error::{Error, Result};
use crate::hash::Hash;

const MAGIC: &[u8; 4] = b"FRYP";
/// Version of the pack format written by this build.
pub const PACK_FORMAT: u8 = 1;
const ENTRY: usize = 44;
/// Bytes of the footer: count, entries' checksum, format, reserved, magic.
pub const FOOTER: usize = 4 + 32 + 1 + 3 + 4;
/// Pack size a writer cuts at (stored bytes): large enough that a GiB of volume writes is a
/// few dozen objects, small enough that a pack is one request and repacking one is cheap.
pub const TARGET: usize = 32 << 20;
/// Tail bytes read first when loading a pack's entries (one read covers ~2 900 entries).
pub const TAIL_GUESS: u64 = 128 << 10;

/// One blob in a pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The blob's name.
    pub hash: Hash,
    /// What it is.
    pub kind: Kind,
    /// Offset of its frame.
    pub offset: u32,
    /// Length of its frame.
    pub len: u32,
}

/// A pack being filled.
#[derive(Default)]
pub struct Builder {
    bytes: Vec<u8>,
    entries: Vec<Entry>,
}

impl Builder {
    /// Appends a frame.
    pub fn push(&mut self, kind: Kind, hash: Hash, frame: &[u8]) {
        self.entries.push(Entry {
            hash,
            kind,
            offset: self.bytes.len() as u32,
            len: frame.len() as u32,
        });
        self.bytes.extend_from_slice(frame);
    }

    /// Frame bytes so far.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// True when nothing was pushed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The pack's bytes and its entries.
    pub fn finish(mut self) -> (Vec<u8>, Vec<Entry>) {
        let start = self.bytes.len();
        for e in &self.entries {
            self.bytes.extend_from_slice(&e.hash.0);
            self.bytes.extend_from_slice(&e.offset.to_le_bytes());
            self.bytes.extend_from_slice(&e.len.to_le_bytes());
            self.bytes.push(e.kind as u8);
            self.bytes.extend_from_slice(&[0, 0, 0]);
        }
        let sum = Hash::of(&self.bytes[start..]);
        self.bytes
            .extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        self.bytes.extend_from_slice(&sum.0);
        self.bytes.push(PACK_FORMAT);
        self.bytes.extend_from_slice(&[0, 0, 0]);
        self.bytes.extend_from_slice(MAGIC);
        (self.bytes, self.entries)
    }
}

/// What the last bytes of a pack say.
pub enum Tail {
    /// The entries.
    Entries(Vec<Entry>),
    /// The tail read was too short: read this many bytes from the end instead.
    Need(u64),
}

/// Reads the entries from `tail`, the last bytes of the pack at `path` of `size` bytes.
///
/// # Errors
/// [`Error::Corrupt`] for a pack whose footer, entries or checksum do not hold up.
pub fn parse_tail(path: &str, size: u64, tail: &[u8]) -> Result<Tail> {
    let corrupt = |reason: String| Error::Corrupt {
        path: path.to_string(),
        reason,
    };
    if tail.len() < FOOTER || &tail[tail.len() - 4..] != MAGIC {
        return Err(corrupt("not a ferry pack (no footer)".into()));
    }
    let f = &tail[tail.len() - FOOTER..];
    let count = u32::from_le_bytes([f[0], f[1], f[2], f[3]]) as u64;
    if f[36] != PACK_FORMAT {
        return Err(corrupt(format!(
            "pack format {} is not supported by this build (knows {PACK_FORMAT})",
            f[36]
        )));
    }
    let need = count
        .checked_mul(ENTRY as u64)
        .and_then(|n| n.checked_add(FOOTER as u64))
        .filter(|n| *n <= size)
        .ok_or_else(|| corrupt(format!("{count} entries do not fit in {size} bytes")))?;
    if (tail.len() as u64) < need {
        return Ok(Tail::Need(need));
    }
    let table = &tail[tail.len() - need as usize..tail.len() - FOOTER];
    if Hash::of(table).0 != f[4..36] {
        return Err(corrupt("pack entries fail their checksum".into()));
    }
    let body = size - need;
    let mut out = Vec::with_capacity(count as usize);
    for e in table.chunks_exact(ENTRY) {
        let mut h = [0u8; 32];
        h.copy_from_slice(&e[..32]);
        let offset = u32::from_le_bytes([e[32], e[33], e[34], e[35]]);
        let len = u32::from_le_bytes([e[36], e[37], e[38], e[39]]);
        let kind = match e[40] {
            1 => Kind::Chunk,
            2 => Kind::Page,
            k => return Err(corrupt(format!("pack entry of unknown kind {k}"))),
        };
        if u64::from(offset) + u64::from(len) > body {
            return Err(corrupt(format!(
                "pack entry {} lies past the frames ({offset}+{len} of {body})",
                Hash(h)
            )));
        }
        out.push(Entry {
            hash: Hash(h),
            kind,
            offset,
            len,
        });
    }
    Ok(Tail::Entries(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{self, CodecPolicy};

    fn pack_of(blobs: &[&[u8]]) -> (Vec<u8>, Vec<Entry>) {
        let mut b = Builder::default();
        for raw in blobs {
            let (frame, _) = codec::encode(Kind::Chunk, raw, CodecPolicy::default());
            b.push(Kind::Chunk, Hash::of(raw), &frame);
        }
        b.finish()
    }

    #[test]
    fn entries_read_back_from_any_tail_long_enough() {
        let (bytes, entries) = pack_of(&[b"one", b"two two", &[7u8; 5000]]);
        let size = bytes.len() as u64;
        let Tail::Entries(got) = parse_tail("p", size, &bytes).unwrap() else {
            panic!("whole pack read as short")
        };
        assert_eq!(got, entries);
        match parse_tail("p", size, &bytes[bytes.len() - FOOTER..]).unwrap() {
            Tail::Need(n) => assert_eq!(n, (FOOTER + 3 * ENTRY) as u64),
            Tail::Entries(_) => panic!("a footer alone holds no entries"),
        }
        for e in &got {
            let frame = &bytes[e.offset as usize..(e.offset + e.len) as usize];
            codec::decode("p", e.kind, &e.hash, frame).unwrap();
        }
    }

    #[test]
    fn damage_to_the_entries_or_footer_is_caught() {
        let (bytes, _) = pack_of(&[b"alpha", b"beta"]);
        let size = bytes.len() as u64;
        let mut bad = bytes.clone();
        let at = bad.len() - FOOTER - 10;
        bad[at] ^= 1;
        assert!(parse_tail("p", size, &bad).is_err());
        let mut bad = bytes.clone();
        let n = bad.len();
        bad[n - 1] = b'X';
        assert!(parse_tail("p", size, &bad).is_err());
        let mut newer = bytes;
        let n = newer.len();
        newer[n - 8] = 2;
        let err = parse_tail("p", size, &newer).err().unwrap();
        assert!(err.to_string().contains("pack format 2"), "{err}");
    }

    /// Golden fixture: the pack framing must not change without a format bump.
    #[test]
    fn golden_pack() {
        let (bytes, _) = pack_of(&[b"hello"]);
        assert_eq!(
            hex::encode(&bytes),
            concat!(
                "46525942010100000500000068656c6c6f",
                "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
                "00000000",
                "11000000",
                "01",
                "000000",
                "01000000",
                "928207d80affb59016e535e85d72e793e30e2bfa89c5487683d7d9e469829e19",
                "01000000",
                "46525950"
            )
        );
    }
}
