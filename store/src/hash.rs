//! Content names: SHA-256 of an object's uncompressed bytes.

use sha2::{Digest, Sha256};
use std::fmt;

/// A SHA-256 digest naming a chunk or a tree page. The all-zero value is reserved: it stands
/// for "all zeros" (a hole) and is never stored.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// The hole: an all-zero chunk or an all-hole subtree.
    pub const ZERO: Hash = Hash([0; 32]);

    /// Hashes `data`.
    pub fn of(data: &[u8]) -> Hash {
        Hash(Sha256::digest(data).into())
    }

    /// True for the hole.
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 32]
    }

    /// Lower-case hex, 64 characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex characters.
    ///
    /// # Errors
    /// `None` when `s` is not 64 hex digits.
    pub fn from_hex(s: &str) -> Option<Hash> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Hash(out))
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", &self.to_hex()[..16])
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl serde::Serialize for Hash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for Hash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Hash::from_hex(&s).ok_or_else(|| serde::de::Error::custom("expected 64 hex digits"))
    }
}

/// True when every byte of `data` is zero.
pub fn is_all_zero(data: &[u8]) -> bool {
    let mut words = data.chunks_exact(16);
    let body = words
        .by_ref()
        .all(|w| <[u8; 16]>::try_from(w).is_ok_and(|a| u128::from_ne_bytes(a) == 0));
    body && words.remainder().iter().all(|&b| b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_zero() {
        let h = Hash::of(b"ferry");
        assert_eq!(Hash::from_hex(&h.to_hex()), Some(h));
        assert!(Hash::ZERO.is_zero());
        assert!(!h.is_zero());
        assert_eq!(Hash::from_hex("xyz"), None);
    }

    #[test]
    fn zero_detection() {
        assert!(is_all_zero(&[0u8; 4099]));
        let mut v = vec![0u8; 4099];
        v[4098] = 1;
        assert!(!is_all_zero(&v));
        v[4098] = 0;
        v[3] = 1;
        assert!(!is_all_zero(&v));
    }
}
