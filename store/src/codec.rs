//! The on-store framing of chunks and tree pages: a small versioned header, then the payload,
//! compressed (deflate or zstd) only where that saves space.
//!
//! ```text
//! offset  size  field
//! 0       4     magic "FRYB"
//! 4       1     format version (1)
//! 5       1     kind: 1 chunk, 2 tree page
//! 6       1     codec: 0 none, 1 deflate (raw RFC 1951), 2 zstd (one RFC 8878 frame)
//! 7       1     reserved, 0
//! 8       4     uncompressed length, little endian
//! 12      ...   payload
//! ```
//! The object's name is the SHA-256 of the uncompressed bytes; [`decode`] checks it.

use crate::error::{Error, Result};
use crate::hash::Hash;
use flate2::Compression;
use std::io::{Read, Write};

const MAGIC: &[u8; 4] = b"FRYB";
/// Version of the blob framing written by this build.
pub const BLOB_FORMAT: u8 = 1;
const HEADER: usize = 12;
/// Largest payload accepted on decode, so a corrupt length cannot make us allocate wildly.
const MAX_RAW: usize = 64 << 20;

/// What a blob holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A volume chunk.
    Chunk = 1,
    /// A tree page.
    Page = 2,
}

/// How the payload is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    /// Stored as is.
    None = 0,
    /// Raw deflate at the fastest level.
    Deflate = 1,
    /// A zstd frame at level [`ZSTD_LEVEL`].
    Zstd = 2,
}

/// The zstd level ferry writes: 1, its fastest standard level.
pub const ZSTD_LEVEL: i32 = 1;

/// Compression policy for writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CodecPolicy {
    /// Codec tried for each blob; `None` turns compression off.
    pub codec: Codec,
}

impl Default for CodecPolicy {
    fn default() -> Self {
        CodecPolicy {
            codec: Codec::Deflate,
        }
    }
}

/// Bytes of a sample compressed first to guess whether a blob will shrink.
const PROBE: usize = 4096;

/// Encodes `raw` as a blob of `kind`, compressing when that saves at least 1/32 of the size.
/// Returns the encoded bytes and the codec used.
pub fn encode(kind: Kind, raw: &[u8], policy: CodecPolicy) -> (Vec<u8>, Codec) {
    let codec = policy.codec;
    if codec != Codec::None
        && raw.len() > 64
        && probe_shrinks(raw)
        && let Some(packed) = compress(codec, raw)
        && packed.len() + raw.len() / 32 < raw.len()
    {
        return (frame(kind, codec, raw.len(), &packed), codec);
    }
    (frame(kind, Codec::None, raw.len(), raw), Codec::None)
}

fn compress(codec: Codec, raw: &[u8]) -> Option<Vec<u8>> {
    match codec {
        Codec::None => None,
        Codec::Deflate => deflate(raw),
        Codec::Zstd => zstd::bulk::compress(raw, ZSTD_LEVEL).ok(),
    }
}

fn frame(kind: Kind, codec: Codec, raw_len: usize, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(MAGIC);
    out.push(BLOB_FORMAT);
    out.push(kind as u8);
    out.push(codec as u8);
    out.push(0);
    out.extend_from_slice(&(raw_len as u32).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Compresses a sample from the middle of `raw`: incompressible data (media, encrypted or
/// already compressed files) is recognised at 1/16 of the cost of compressing it all.
fn probe_shrinks(raw: &[u8]) -> bool {
    if raw.len() <= PROBE * 2 {
        return true;
    }
    let start = (raw.len() / 2).saturating_sub(PROBE / 2);
    match deflate(&raw[start..start + PROBE]) {
        Some(p) => p.len() < PROBE * 15 / 16,
        None => false,
    }
}

fn deflate(raw: &[u8]) -> Option<Vec<u8>> {
    let mut enc =
        flate2::write::DeflateEncoder::new(Vec::with_capacity(raw.len() / 2), Compression::fast());
    enc.write_all(raw).ok()?;
    enc.finish().ok()
}

/// Decodes a blob read from `path`, checking magic, version, kind, length and that the
/// SHA-256 of the payload equals `expect`.
///
/// # Errors
/// [`Error::Corrupt`] naming the failed check.
pub fn decode(path: &str, kind: Kind, expect: &Hash, blob: &[u8]) -> Result<Vec<u8>> {
    let corrupt = |reason: String| Error::Corrupt {
        path: path.to_string(),
        reason,
    };
    if blob.len() < HEADER || &blob[..4] != MAGIC {
        return Err(corrupt("not a ferry blob (bad magic)".into()));
    }
    if blob[4] != BLOB_FORMAT {
        return Err(corrupt(format!(
            "blob format {} is not supported by this build (knows {BLOB_FORMAT})",
            blob[4]
        )));
    }
    if blob[5] != kind as u8 {
        return Err(corrupt(format!(
            "expected kind {kind:?}, found {}",
            blob[5]
        )));
    }
    let raw_len = u32::from_le_bytes([blob[8], blob[9], blob[10], blob[11]]) as usize;
    if raw_len > MAX_RAW {
        return Err(corrupt(format!("length {raw_len} exceeds {MAX_RAW}")));
    }
    let payload = &blob[HEADER..];
    let raw = match blob[6] {
        0 => payload.to_vec(),
        1 => {
            let mut out = Vec::with_capacity(raw_len);
            flate2::read::DeflateDecoder::new(payload)
                .take(raw_len as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| corrupt(format!("deflate stream: {e}")))?;
            out
        }
        // At most the header's length: a frame that claims more is refused, not allocated.
        2 => zstd::bulk::decompress(payload, raw_len)
            .map_err(|e| corrupt(format!("zstd frame: {e}")))?,
        c => return Err(corrupt(format!("unknown codec {c}"))),
    };
    if raw.len() != raw_len {
        return Err(corrupt(format!(
            "length {} does not match header {raw_len}",
            raw.len()
        )));
    }
    let got = Hash::of(&raw);
    if &got != expect {
        return Err(corrupt(format!(
            "content hash is {got}, name says {expect}"
        )));
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(n: usize) -> Vec<u8> {
        (0..n)
            .map(|i| b"id,name,value\n1,ferry,42\n"[i % 25])
            .collect()
    }

    #[test]
    fn compressible_data_is_deflated_and_round_trips() {
        let raw = text(65536);
        let (blob, codec) = encode(Kind::Chunk, &raw, CodecPolicy::default());
        assert_eq!(codec, Codec::Deflate);
        assert!(blob.len() < raw.len() / 4);
        assert_eq!(
            decode("p", Kind::Chunk, &Hash::of(&raw), &blob).unwrap(),
            raw
        );
    }

    #[test]
    fn zstd_round_trips_and_beside_deflate_each_blob_decodes_by_its_own_codec() {
        let raw = text(65536);
        let zstd = CodecPolicy { codec: Codec::Zstd };
        let (z, codec) = encode(Kind::Chunk, &raw, zstd);
        assert_eq!(codec, Codec::Zstd);
        assert_eq!(z[6], 2, "the header names the codec");
        assert!(z.len() < raw.len() / 4);
        let (d, _) = encode(Kind::Chunk, &raw, CodecPolicy::default());
        let h = Hash::of(&raw);
        assert_eq!(decode("z", Kind::Chunk, &h, &z).unwrap(), raw);
        assert_eq!(decode("d", Kind::Chunk, &h, &d).unwrap(), raw);
        // Pages too, and small blobs stay raw.
        let (p, codec) = encode(Kind::Page, &text(8192), zstd);
        assert_eq!(codec, Codec::Zstd);
        assert_eq!(
            decode("p", Kind::Page, &Hash::of(&text(8192)), &p).unwrap(),
            text(8192)
        );
        assert_eq!(encode(Kind::Chunk, b"tiny", zstd).1, Codec::None);
    }

    #[test]
    fn a_zstd_frame_longer_than_its_header_says_is_refused() {
        let raw = text(65536);
        let (mut z, _) = encode(Kind::Chunk, &raw, CodecPolicy { codec: Codec::Zstd });
        // Claim half the length: the frame decodes to more than that.
        z[8..12].copy_from_slice(&(32768u32).to_le_bytes());
        let err = decode("z", Kind::Chunk, &Hash::of(&raw), &z).unwrap_err();
        assert!(err.to_string().contains("zstd frame"), "{err}");
        let (mut z, _) = encode(Kind::Chunk, &raw, CodecPolicy { codec: Codec::Zstd });
        let n = z.len();
        z.truncate(n - 3);
        assert!(decode("z", Kind::Chunk, &Hash::of(&raw), &z).is_err());
    }

    #[test]
    fn random_data_is_stored_raw() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let raw: Vec<u8> = (0..65536)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        let (blob, codec) = encode(Kind::Chunk, &raw, CodecPolicy::default());
        assert_eq!(codec, Codec::None);
        assert_eq!(blob.len(), raw.len() + HEADER);
        assert_eq!(
            decode("p", Kind::Chunk, &Hash::of(&raw), &blob).unwrap(),
            raw
        );
    }

    #[test]
    fn compression_off_stores_raw() {
        let raw = text(8192);
        let policy = CodecPolicy { codec: Codec::None };
        let (_, codec) = encode(Kind::Page, &raw, policy);
        assert_eq!(codec, Codec::None);
    }

    #[test]
    fn flipped_byte_is_detected() {
        let raw = text(4096);
        let (mut blob, _) = encode(Kind::Chunk, &raw, CodecPolicy { codec: Codec::None });
        blob[HEADER + 7] ^= 1;
        let err = decode("chunks/x", Kind::Chunk, &Hash::of(&raw), &blob).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("content hash"));
    }

    #[test]
    fn wrong_kind_version_and_magic_are_rejected() {
        let raw = text(100);
        let h = Hash::of(&raw);
        let (blob, _) = encode(Kind::Chunk, &raw, CodecPolicy::default());
        assert!(decode("p", Kind::Page, &h, &blob).is_err());
        let mut v2 = blob.clone();
        v2[4] = 2;
        assert!(
            decode("p", Kind::Chunk, &h, &v2)
                .unwrap_err()
                .to_string()
                .contains("format 2")
        );
        let mut bad = blob;
        bad[0] = b'X';
        assert!(decode("p", Kind::Chunk, &h, &bad).is_err());
    }

    /// Golden fixture: the framing of a known blob must not change without a format bump.
    #[test]
    fn golden_frame() {
        let (blob, codec) = encode(Kind::Chunk, b"hello", CodecPolicy::default());
        assert_eq!(codec, Codec::None);
        assert_eq!(hex::encode(&blob), "46525942010100000500000068656c6c6f");
    }
}
