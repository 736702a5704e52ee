//! Leader election over a `coordination.k8s.io/v1` Lease, so that of several replicas of the
//! migration controller (two during a rollout) only one reconciles at a time.
//!
//! The Lease `ferry-migration` in the controller's namespace names its holder and when it
//! last renewed. A replica takes it when it is free or when its holder has not renewed for a
//! whole lease duration; it renews every third of the duration; every write carries the
//! resourceVersion it read, so two replicas racing for it cannot both win. A leader that
//! cannot renew before its lease runs out stops reconciling at once (the process exits, and
//! its restart stands for election again).

use crate::error::{Error, Result};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use std::future::Future;
use std::time::Duration;

/// The Lease's name.
pub const LEASE: &str = "ferry-migration";

/// What a replica does with the Lease as it finds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// There is none: create it.
    Create,
    /// It is ours: renew it.
    Renew,
    /// Its holder let it expire: take it over.
    TakeOver,
    /// Someone else holds it.
    Wait(String),
}

/// The pure rule: what `me` does with `lease` at `now`.
pub fn decide(lease: Option<&Lease>, me: &str, now: Timestamp) -> Decision {
    let Some(spec) = lease.and_then(|l| l.spec.as_ref()) else {
        return if lease.is_some() {
            Decision::TakeOver
        } else {
            Decision::Create
        };
    };
    let holder = spec.holder_identity.clone().unwrap_or_default();
    if holder == me {
        return Decision::Renew;
    }
    if holder.is_empty() {
        return Decision::TakeOver;
    }
    let ttl = i64::from(spec.lease_duration_seconds.unwrap_or(15).max(1));
    let renewed = spec
        .renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .map(|t| t.0);
    match renewed {
        Some(t) if now.as_second() - t.as_second() <= ttl => Decision::Wait(holder),
        _ => Decision::TakeOver,
    }
}

/// One attempt to hold the Lease at `now`; true when `me` holds it afterwards.
///
/// # Errors
/// API errors other than losing a race (409), which is `Ok(false)`.
pub async fn try_hold(api: &Api<Lease>, me: &str, ttl: Duration, now: Timestamp) -> Result<bool> {
    let current = api.get_opt(LEASE).await?;
    let decision = decide(current.as_ref(), me, now);
    let ttl_secs = i32::try_from(ttl.as_secs()).unwrap_or(i32::MAX).max(1);
    let stamp = Some(MicroTime(now));
    let result = match (&decision, current) {
        (Decision::Wait(_), _) => return Ok(false),
        (Decision::Create, _) => {
            let mut lease = Lease::default();
            lease.metadata.name = Some(LEASE.into());
            lease.spec = Some(LeaseSpec {
                holder_identity: Some(me.into()),
                lease_duration_seconds: Some(ttl_secs),
                acquire_time: stamp.clone(),
                renew_time: stamp,
                lease_transitions: Some(0),
                ..Default::default()
            });
            api.create(&PostParams::default(), &lease).await
        }
        (Decision::Renew | Decision::TakeOver, Some(mut lease)) => {
            let spec = lease.spec.get_or_insert_with(Default::default);
            if decision == Decision::TakeOver {
                spec.holder_identity = Some(me.into());
                spec.acquire_time = stamp.clone();
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            }
            spec.lease_duration_seconds = Some(ttl_secs);
            spec.renew_time = stamp;
            // Carries the resourceVersion read: a concurrent writer makes this 409.
            api.replace(LEASE, &PostParams::default(), &lease).await
        }
        (Decision::Renew | Decision::TakeOver, None) => return Ok(false),
    };
    match result {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(Error::from(e)),
    }
}

/// Waits until `me` holds the Lease, then runs `work` for as long as it keeps it. Returns
/// when `work` ends or the lease is lost (then `work` is dropped: nothing more runs).
///
/// # Errors
/// [`Error::Invalid`] when the lease was lost.
pub async fn run_while_leading<F: Future<Output = ()>>(
    api: Api<Lease>,
    me: String,
    ttl: Duration,
    work: F,
) -> Result<()> {
    let every = ttl / 3;
    loop {
        match try_hold(&api, &me, ttl, Timestamp::now()).await {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "leader election: lease not readable"),
        }
        tokio::time::sleep(every).await;
    }
    tracing::info!(identity = %me, "leading: reconciling");
    let mut last_renewed = tokio::time::Instant::now();
    tokio::pin!(work);
    loop {
        tokio::select! {
            () = &mut work => return Ok(()),
            () = tokio::time::sleep(every) => {
                match try_hold(&api, &me, ttl, Timestamp::now()).await {
                    Ok(true) => last_renewed = tokio::time::Instant::now(),
                    Ok(false) => {
                        return Err(Error::Invalid(format!(
                            "lost the {LEASE} lease to another replica; stopping"
                        )));
                    }
                    Err(e) => tracing::warn!(error = %e, "leader election: renewal failed"),
                }
                // Stop before the lease can expire under us and another replica takes it.
                if last_renewed.elapsed() + every >= ttl {
                    return Err(Error::Invalid(format!(
                        "could not renew the {LEASE} lease for {:?}; stopping",
                        last_renewed.elapsed()
                    )));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: &str, renewed: i64, ttl: i32) -> Lease {
        Lease {
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                lease_duration_seconds: Some(ttl),
                renew_time: Some(MicroTime(Timestamp::from_second(renewed).expect("t"))),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_lease_is_taken_only_when_free_or_expired() {
        let at = |s| Timestamp::from_second(s).expect("t");
        assert_eq!(decide(None, "a", at(100)), Decision::Create);
        let held = lease("b", 100, 15);
        assert_eq!(
            decide(Some(&held), "a", at(110)),
            Decision::Wait("b".into())
        );
        assert_eq!(
            decide(Some(&held), "a", at(115)),
            Decision::Wait("b".into())
        );
        assert_eq!(decide(Some(&held), "a", at(116)), Decision::TakeOver);
        assert_eq!(decide(Some(&held), "b", at(500)), Decision::Renew);
        assert_eq!(
            decide(Some(&lease("", 0, 15)), "a", at(1)),
            Decision::TakeOver
        );
    }
}
