//! What a transfer store's metadata may say, checked before it is used.
//!
//! Anyone who can write to the bucket can write an index or a commit. With a key, those are
//! authenticated; without one, they are only data. Either way nothing read from them builds a
//! path, sizes an allocation or enters arithmetic until it has passed these checks: names
//! have their one expected form (so none walks out of the store's root), lengths stay within
//! the format's limits, and sums cannot overflow.

use crate::error::{Error, Result};
use crate::target::{Commit, Entry};
use ferry_store::config::{MAX_CHUNK, MIN_CHUNK};

/// Largest stored blob: a whole chunk uncompressed, its frame header and the sealing overhead.
pub const MAX_BLOB_BYTES: u64 = MAX_CHUNK as u64 + 4096;
/// Largest pack (writers cut at 16 MiB and a blob; this leaves room for other tunings).
pub const MAX_PACK_BYTES: u64 = 1 << 32;
/// Largest pack index object.
pub const MAX_INDEX_BYTES: u64 = 64 << 20;
/// Largest commit object.
pub const MAX_COMMIT_BYTES: u64 = 64 << 10;
/// Largest volume a commit may describe (the chunk store's own limit).
pub const MAX_VOLUME_BYTES: u64 = 1 << 50;
/// Longest volume or snapshot id.
const MAX_ID: usize = 128;

/// True for the 64 lowercase hex digits of a SHA-256 (or an HMAC-SHA-256 name).
pub fn is_hex_name(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Checks a volume or snapshot id that becomes one segment of a path: 1 to 128 of
/// `A-Z a-z 0-9 . _ -`, not starting with a dot.
///
/// # Errors
/// [`Error::Invalid`] naming `what` and the id.
pub fn check_id(what: &str, id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "{what} {id:?} is not an id: use 1 to {MAX_ID} letters, digits, '.', '_' or '-', \
             not starting with '.'"
        )))
    }
}

/// Checks one index entry of pack index `path`.
///
/// # Errors
/// [`Error::Tampered`] saying which field is out of form.
pub fn check_entry(path: &str, e: &Entry) -> Result<()> {
    let bad = |why: String| Err(Error::Tampered(format!("pack index {path}: {why}")));
    if !is_hex_name(&e.name) {
        return bad(format!("blob name {:?} is not 64 hex digits", e.name));
    }
    if !matches!(e.kind, 1 | 2) {
        return bad(format!("blob {} has unknown kind {}", e.name, e.kind));
    }
    if e.len == 0 || e.len > MAX_BLOB_BYTES {
        return bad(format!(
            "blob {} has length {}, outside 1..={MAX_BLOB_BYTES}",
            e.name, e.len
        ));
    }
    match e.offset.checked_add(e.len) {
        Some(end) if end <= MAX_PACK_BYTES => Ok(()),
        _ => bad(format!(
            "blob {} at offset {} + {} ends past the largest pack ({MAX_PACK_BYTES} bytes)",
            e.name, e.offset, e.len
        )),
    }
}

/// Checks a commit read from `path` for the volume and snapshot it was asked for.
///
/// # Errors
/// [`Error::Tampered`] saying which field is out of form.
pub fn check_commit(path: &str, c: &Commit, volume: &str, snapshot: &str) -> Result<()> {
    let bad = |why: String| Err(Error::Tampered(format!("commit {path}: {why}")));
    if c.volume_id != volume || c.snapshot_id != snapshot {
        return bad(format!(
            "names {}/{}, not the {volume}/{snapshot} its path says",
            c.volume_id, c.snapshot_id
        ));
    }
    if c.size_bytes > MAX_VOLUME_BYTES {
        return bad(format!(
            "volume size {} exceeds {MAX_VOLUME_BYTES}",
            c.size_bytes
        ));
    }
    let cs = c.options.chunk_size;
    if !cs.is_power_of_two() || !(MIN_CHUNK..=MAX_CHUNK).contains(&cs) {
        return bad(format!(
            "chunk size {cs} is not a power of two from {MIN_CHUNK} to {MAX_CHUNK}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_single_safe_segments() {
        for ok in ["vol-0123abcd", "snap-1", "a.b_c-d"] {
            check_id("volume", ok).expect(ok);
        }
        for bad in [
            "",
            "..",
            "../x",
            "a/b",
            ".hidden",
            "x\0",
            "ü",
            &"x".repeat(129),
        ] {
            assert!(check_id("volume", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn entries_stay_inside_the_format() {
        let e = |name: &str, offset: u64, len: u64, kind: u8| Entry {
            name: name.into(),
            offset,
            len,
            kind,
        };
        let h = "ab".repeat(32);
        check_entry("i", &e(&h, 0, 100, 1)).expect("fine");
        for (bad, why) in [
            (e("../../etc/passwd", 0, 1, 1), "hex"),
            (e(&h, 0, 1 << 40, 1), "length"),
            (e(&h, u64::MAX, 10, 1), "offset"),
            (e(&h, 0, 10, 9), "kind"),
            (e(&h, 0, 0, 1), "length"),
        ] {
            let err = check_entry("i", &bad).expect_err(why);
            assert!(err.to_string().contains(why), "{why}: {err}");
        }
    }
}
