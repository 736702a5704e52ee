//! In-flight guards: a second call for the same object while one runs gets ABORTED, as the
//! CSI specification asks ("operation pending for volume").

use crate::error::Error;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// Keys of operations in flight.
#[derive(Clone, Default)]
pub struct InFlight {
    keys: Arc<Mutex<HashSet<String>>>,
}

/// Held while an operation runs; releases its key on drop.
pub struct Guard {
    keys: Arc<Mutex<HashSet<String>>>,
    key: String,
}

impl InFlight {
    /// Claims `key`.
    ///
    /// # Errors
    /// ABORTED when another call holds it.
    pub fn claim(&self, key: String) -> Result<Guard, Error> {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        if !keys.insert(key.clone()) {
            return Err(Error::Aborted(format!(
                "an operation on {key} is already in progress; retry later"
            )));
        }
        Ok(Guard {
            keys: self.keys.clone(),
            key,
        })
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_claim_is_aborted_until_released() {
        let f = InFlight::default();
        let g = f.claim("volume/a".into()).unwrap();
        assert!(f.claim("volume/a".into()).is_err());
        assert!(f.claim("volume/b".into()).is_ok());
        drop(g);
        assert!(f.claim("volume/a".into()).is_ok());
    }
}
