//! Retries, decided once for every reconciler: whether an error is temporary or permanent,
//! how long to wait before the next try, and the record of a run of failed tries that a
//! status carries ([`RetryStatus`]).
//!
//! - Temporary (a later try may pass): network trouble and refused connections, 5xx, 408,
//!   409, 429, a busy or unreachable store.
//! - Permanent: bad input, other 4xx, damaged or missing data, a full store.
//! - Authorization refusals (401, 403 other than an RBAC escalation refusal) are temporary
//!   for [`REFUSAL_GRACE`] from the first one in a run of failures, then permanent: a
//!   kube-apiserver that just restarted refuses requests until its authorizer has synced,
//!   and an aggregated ClusterRole is empty for a moment after it is rewritten, so a 403
//!   right after an outage or a role change is not yet an answer.
//!
//! Waits double from [`FIRST`] to [`CAP`] with each failed try in a row and are counted on
//! the controller's clock, never in reconciles: an object is tried again when its
//! `nextAttempt` comes, whatever events arrive meanwhile.

use crate::crd::RetryStatus;
use crate::error::Error;
use jiff::Timestamp;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// First wait after a failure.
pub const FIRST: Duration = Duration::from_secs(5);
/// Longest wait.
pub const CAP: Duration = Duration::from_secs(300);
/// How long authorization refusals stay temporary in a run of failures.
pub const REFUSAL_GRACE: Duration = Duration::from_secs(120);

/// How an error is handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Try again later.
    Temporary,
    /// Trying again will fail the same way: the item fails with the reason.
    Permanent,
}

/// The wait after the `attempt`th failure in a row (1-based).
pub fn delay(attempt: u32) -> Duration {
    (FIRST * 2u32.pow(attempt.saturating_sub(1).min(10))).min(CAP)
}

fn parse(t: &str) -> Option<Timestamp> {
    t.parse().ok()
}

/// RFC 3339 in UTC with seconds (a time that passed is never shown later than it was).
pub fn stamp(t: Timestamp) -> String {
    t.round(
        jiff::TimestampRound::new()
            .smallest(jiff::Unit::Second)
            .mode(jiff::RoundMode::Trunc),
    )
    .map(|t| t.to_string())
    .unwrap_or_else(|_| t.to_string())
}

/// Classifies `e`, given the run of failures it follows (`streak`) and the time now.
pub fn classify(e: &Error, streak: Option<&RetryStatus>, now: Timestamp) -> Class {
    if !e.is_permanent() {
        return Class::Temporary;
    }
    if e.is_refusal() {
        let since = streak
            .and_then(|s| s.refused_since.as_deref())
            .and_then(parse)
            .unwrap_or(now);
        let waited = now.duration_since(since).unsigned_abs();
        if waited < REFUSAL_GRACE {
            return Class::Temporary;
        }
    }
    Class::Permanent
}

/// The record after one more temporary failure `e` at `now`.
pub fn record(streak: Option<&RetryStatus>, e: &Error, now: Timestamp) -> RetryStatus {
    let attempt = streak.map_or(0, |s| s.attempt).saturating_add(1);
    let since = streak.map_or_else(|| stamp(now), |s| s.since.clone());
    let refused_since = if e.is_refusal() {
        Some(
            streak
                .and_then(|s| s.refused_since.clone())
                .unwrap_or_else(|| stamp(now)),
        )
    } else {
        None
    };
    let next = now.checked_add(delay(attempt)).unwrap_or(Timestamp::MAX);
    // Rounded up, so the wait is never shorter than the backoff.
    let next = next
        .round(
            jiff::TimestampRound::new()
                .smallest(jiff::Unit::Second)
                .mode(jiff::RoundMode::Ceil),
        )
        .unwrap_or(next);
    RetryStatus {
        attempt,
        since,
        next_attempt: stamp(next),
        cause: e.to_string(),
        refused_since,
    }
}

/// How long until the record's next try is due (zero when it is due).
pub fn wait(r: &RetryStatus, now: Timestamp) -> Duration {
    match parse(&r.next_attempt) {
        Some(next) if next > now => next.duration_since(now).unsigned_abs(),
        _ => Duration::ZERO,
    }
}

/// A reason that says a step is being retried, with its cause.
pub fn reason(what: &str, r: &RetryStatus) -> String {
    format!(
        "{RETRYING}{what}{} (attempt {}, next try at {})",
        r.cause, r.attempt, r.next_attempt
    )
}

/// How a reason starts while a step is being retried.
pub const RETRYING: &str = "retrying: ";

/// Failed passes in a row of objects whose status keeps no retry record (or whose pass
/// failed before it could write one), for their waits.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16, message: &str) -> Error {
        Error::Kube(kube::Error::Api(Box::new(kube::core::Status {
            code,
            message: message.into(),
            reason: "Forbidden".into(),
            ..Default::default()
        })))
    }

    #[test]
    fn waits_double_up_to_the_cap() {
        let waits: Vec<u64> = (1..=8).map(|n| delay(n).as_secs()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(delay(u32::MAX), CAP);
        let b = Backoff::default();
        assert_eq!(b.failed("a").as_secs(), 5);
        assert_eq!(b.failed("a").as_secs(), 10);
        b.succeeded("a");
        assert_eq!(b.failed("a").as_secs(), 5);
    }

    #[test]
    fn a_refusal_is_temporary_for_a_bounded_time_then_final() {
        let t0: Timestamp = "2026-12-01T10:00:00Z".parse().expect("time");
        let e = api(
            403,
            "secrets is forbidden: User \"x\" cannot patch resource \"secrets\"",
        );
        assert_eq!(classify(&e, None, t0), Class::Temporary);
        let r1 = record(None, &e, t0);
        assert_eq!(r1.attempt, 1);
        assert_eq!(r1.refused_since.as_deref(), Some("2026-12-01T10:00:00Z"));
        let later = t0.checked_add(Duration::from_secs(60)).expect("time");
        assert_eq!(classify(&e, Some(&r1), later), Class::Temporary);
        let r2 = record(Some(&r1), &e, later);
        assert_eq!(r2.refused_since, r1.refused_since, "counted from the first");
        let past = t0.checked_add(REFUSAL_GRACE).expect("time");
        assert_eq!(classify(&e, Some(&r2), past), Class::Permanent);
        // An outage before the refusals does not count towards the grace.
        let down = Error::Kube(kube::Error::Service("connection refused".into()));
        let r0 = record(None, &down, t0);
        assert_eq!(r0.refused_since, None);
        assert_eq!(classify(&e, Some(&r0), past), Class::Temporary);
        // An escalation refusal is an answer at once.
        let esc = api(
            403,
            "rolebindings.rbac.authorization.k8s.io \"x\" is forbidden: user \"u\" (groups=[]) \
             is attempting to grant RBAC permissions not currently held",
        );
        assert_eq!(classify(&esc, None, t0), Class::Permanent);
        assert_eq!(classify(&api(404, "not found"), None, t0), Class::Permanent);
        assert_eq!(
            classify(&api(503, "down"), Some(&r2), past),
            Class::Temporary
        );
    }

    #[test]
    fn the_next_try_is_on_the_clock() {
        let t0: Timestamp = "2026-12-01T10:00:00Z".parse().expect("time");
        let e = api(503, "down");
        let r = record(None, &e, t0);
        assert_eq!(r.next_attempt, "2026-12-01T10:00:05Z");
        assert_eq!(wait(&r, t0), Duration::from_secs(5));
        let r = record(Some(&r), &e, t0);
        assert_eq!(wait(&r, t0), Duration::from_secs(10));
        assert_eq!(r.since, "2026-12-01T10:00:00Z");
        assert_eq!(
            wait(&r, "2026-12-01T11:00:00Z".parse().expect("time")),
            Duration::ZERO
        );
    }
}
