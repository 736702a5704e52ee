//! Authenticated encryption of everything written to an encrypted transfer store.
//!
//! One 32-byte key is split (HMAC-SHA256 with fixed labels) into a cipher key and a naming
//! key. Blobs, pack indexes and commit records are sealed with XChaCha20-Poly1305 under a
//! random 24-byte nonce, with the object's name as associated data, so a blob cannot be
//! swapped for another. Chunk and page names are HMAC-SHA256 of their content hash under the
//! naming key: without the key a name says nothing about the content.

use crate::error::{Error, Result};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use ferry_store::Hash;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

const NONCE: usize = 24;

/// A transfer store key.
#[derive(Clone)]
pub struct Key {
    cipher: XChaCha20Poly1305,
    naming: [u8; 32],
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    m.update(data);
    m.finalize().into_bytes().into()
}

impl Key {
    /// A key from 32 bytes.
    pub fn new(bytes: &[u8; 32]) -> Key {
        let enc = hmac(bytes, b"ferry transfer cipher key v1");
        Key {
            cipher: XChaCha20Poly1305::new((&enc).into()),
            naming: hmac(bytes, b"ferry transfer naming key v1"),
        }
    }

    /// A key from the text of a key file or a Secret value: 64 hex digits, or base64 of 32
    /// bytes, or exactly 32 raw bytes.
    ///
    /// # Errors
    /// [`Error::Invalid`] saying what a key must look like.
    pub fn parse(data: &[u8]) -> Result<Key> {
        use base64::Engine;
        let text = std::str::from_utf8(data).map(str::trim).unwrap_or("");
        let bytes: Option<Vec<u8>> = if text.len() == 64 {
            hex::decode(text).ok()
        } else if !text.is_empty() {
            base64::engine::general_purpose::STANDARD.decode(text).ok()
        } else {
            None
        };
        let bytes = match bytes {
            Some(b) if b.len() == 32 => b,
            _ if data.len() == 32 => data.to_vec(),
            _ => {
                return Err(Error::Invalid(
                    "a transfer key is 32 bytes: 64 hex digits, base64, or 32 raw bytes".into(),
                ));
            }
        };
        let mut k = [0u8; 32];
        k.copy_from_slice(&bytes);
        Ok(Key::new(&k))
    }

    /// A fresh random key, as 64 hex digits.
    pub fn generate_hex() -> String {
        let mut k = [0u8; 32];
        rand::rng().fill_bytes(&mut k);
        hex::encode(k)
    }

    /// The name a content hash gets in the transfer store.
    pub fn name(&self, h: &Hash) -> String {
        hex::encode(hmac(&self.naming, &h.0))
    }

    /// Encrypts `plain`, binding it to `aad` (the object's name).
    ///
    /// # Errors
    /// [`Error::Key`] when the cipher refuses (a message beyond its limit): never an empty
    /// ciphertext.
    pub fn seal(&self, aad: &[u8], plain: &[u8]) -> Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: plain, aad })
            .map_err(|e| Error::Key(format!("sealing {} bytes: {e}", plain.len())))?;
        let mut out = Vec::with_capacity(NONCE + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Decrypts what [`Key::seal`] made for the same `aad`.
    ///
    /// # Errors
    /// [`Error::Tampered`] naming `what` when the bytes were changed, belong to another
    /// object, or were sealed with another key.
    pub fn open(&self, aad: &[u8], sealed: &[u8], what: &str) -> Result<Vec<u8>> {
        if sealed.len() < NONCE {
            return Err(Error::Tampered(format!("{what}: too short to be sealed")));
        }
        let (nonce, body) = sealed.split_at(NONCE);
        self.cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: body, aad })
            .map_err(|_| {
                Error::Tampered(format!(
                    "{what} fails authentication: it was changed, or sealed with another key"
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_tamper_detection() {
        let k = Key::parse(Key::generate_hex().as_bytes()).unwrap();
        let s = k.seal(b"name", b"hello").expect("seal");
        assert_eq!(k.open(b"name", &s, "x").unwrap(), b"hello");
        assert!(k.open(b"other", &s, "x").is_err(), "bound to its name");
        let mut t = s.clone();
        t[30] ^= 1;
        assert!(k.open(b"name", &t, "x").is_err(), "a flipped bit is caught");
        let other = Key::parse(Key::generate_hex().as_bytes()).unwrap();
        assert!(
            other.open(b"name", &s, "x").is_err(),
            "another key cannot open it"
        );
    }

    #[test]
    fn names_hide_hashes_and_keys_parse_in_three_forms() {
        let raw = [7u8; 32];
        let k = Key::new(&raw);
        let h = Hash::of(b"data");
        assert_ne!(k.name(&h), h.to_hex());
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
        for form in [
            hex::encode(raw).into_bytes(),
            b64.into_bytes(),
            raw.to_vec(),
        ] {
            assert_eq!(Key::parse(&form).unwrap().name(&h), k.name(&h));
        }
        assert!(Key::parse(b"short").is_err());
    }
}
