//! Per-object backoff for reconciles that fail: 5 s, doubling with each failure in a row,
//! at most 5 minutes; a success starts the count again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// First delay after a failure.
const FIRST: Duration = Duration::from_secs(5);
/// Longest delay.
const CAP: Duration = Duration::from_secs(300);

/// Failures in a row, per object key.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    /// Records a failure of `key`; returns how long to wait before trying it again.
    pub fn failed(&self, key: &str) -> Duration {
        let mut m = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(key.to_string()).or_default();
        *n = n.saturating_add(1);
        delay(*n)
    }

    /// Records a success of `key`.
    pub fn succeeded(&self, key: &str) {
        let mut m = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        m.remove(key);
    }
}

/// The wait after `n` failures in a row.
pub fn delay(n: u32) -> Duration {
    (FIRST * 2u32.pow(n.saturating_sub(1).min(10))).min(CAP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_double_up_to_the_cap_and_success_resets() {
        let b = Backoff::default();
        let waits: Vec<u64> = (0..8).map(|_| b.failed("a").as_secs()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(b.failed("b").as_secs(), 5, "per object");
        b.succeeded("a");
        assert_eq!(b.failed("a").as_secs(), 5);
        assert_eq!(delay(u32::MAX), CAP);
    }
}
