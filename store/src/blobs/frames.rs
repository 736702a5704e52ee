//! The two forms a blob takes on its way into the store: a chunk hashed and encoded
//! ([`Encoded`]), and a stored frame checked against its name ([`Frame`]).

use crate::codec::{self, CodecPolicy, Kind};
use crate::error::Result;
use crate::hash::Hash;
use std::sync::Arc;

/// A chunk hashed and encoded, not stored yet.
pub struct Encoded {
    /// Its name.
    pub hash: Hash,
    raw: Arc<Vec<u8>>,
    blob: Vec<u8>,
}

impl Encoded {
    /// Hashes and encodes `raw` (CPU work: call it off the async threads).
    pub(crate) fn new(raw: Vec<u8>, policy: CodecPolicy) -> Encoded {
        let hash = Hash::of(&raw);
        let (blob, _) = codec::encode(Kind::Chunk, &raw, policy);
        Encoded {
            hash,
            raw: Arc::new(raw),
            blob,
        }
    }

    /// The chunk's bytes (shared with the read cache once stored).
    pub fn raw(&self) -> Arc<Vec<u8>> {
        self.raw.clone()
    }

    /// Bytes its frame takes in the store.
    pub(crate) fn stored_len(&self) -> u64 {
        self.blob.len() as u64
    }

    /// Its frame: made here from the bytes it names, so checked by construction.
    pub(crate) fn into_frame(self) -> Frame {
        Frame::trusted(Kind::Chunk, self.hash, self.blob)
    }
}

/// A stored frame (the codec's bytes of a chunk or page) whose content was checked against
/// its name: only [`Frame::verify`] makes one outside this crate, so only checked bytes can
/// be stored.
#[derive(Clone)]
pub struct Frame {
    kind: Kind,
    hash: Hash,
    bytes: Vec<u8>,
}

impl Frame {
    /// Checks that `bytes` frame a blob of `kind` whose content hashes to `hash`, returning
    /// the frame and the content. `what` names the bytes in errors.
    ///
    /// # Errors
    /// [`crate::Error::Corrupt`] when the framing is bad or the content does not match its
    /// name.
    pub fn verify(what: &str, kind: Kind, hash: &Hash, bytes: Vec<u8>) -> Result<(Frame, Vec<u8>)> {
        let raw = codec::decode(what, kind, hash, &bytes)?;
        Ok((
            Frame {
                kind,
                hash: *hash,
                bytes,
            },
            raw,
        ))
    }

    /// A frame this crate encoded itself from the content `hash` names.
    pub(crate) fn trusted(kind: Kind, hash: Hash, bytes: Vec<u8>) -> Frame {
        Frame { kind, hash, bytes }
    }

    /// What the frame holds.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The content's name.
    pub fn hash(&self) -> &Hash {
        &self.hash
    }

    /// The stored bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The stored bytes, owned.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}
