//! Leader election against the in-memory API (standing in for a real server, which cannot
//! run here), with what the real server does to a Lease modelled: create answers 409 when it
//! exists, and a replace carrying an older resourceVersion answers 409.

use ferry_kubefake::FakeApi;
use ferry_migration::leader::{LEASE, try_hold};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::Timestamp;
use std::time::Duration;

fn at(s: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + s).expect("time")
}

#[tokio::test]
async fn one_replica_leads_and_another_takes_over_only_after_expiry() {
    let api = FakeApi::new();
    let leases: kube::Api<Lease> = kube::Api::namespaced(api.client(), "ferry-system");
    let ttl = Duration::from_secs(15);
    assert!(try_hold(&leases, "a", ttl, at(0)).await.expect("a"));
    assert!(
        !try_hold(&leases, "b", ttl, at(1)).await.expect("b"),
        "a holds it"
    );
    assert!(try_hold(&leases, "a", ttl, at(5)).await.expect("a renews"));
    assert!(
        !try_hold(&leases, "b", ttl, at(20)).await.expect("b"),
        "renewed at 5"
    );
    assert!(
        try_hold(&leases, "b", ttl, at(21))
            .await
            .expect("b takes over")
    );
    assert!(
        !try_hold(&leases, "a", ttl, at(22)).await.expect("a"),
        "a lost it"
    );
    let lease = leases.get(LEASE).await.expect("lease");
    let spec = lease.spec.expect("spec");
    assert_eq!(spec.holder_identity.as_deref(), Some("b"));
    assert_eq!(spec.lease_transitions, Some(1));
}

#[tokio::test]
async fn two_replicas_racing_for_a_free_lease_cannot_both_win() {
    let api = FakeApi::new();
    let leases: kube::Api<Lease> = kube::Api::namespaced(api.client(), "ferry-system");
    let ttl = Duration::from_secs(15);
    let (a, b) = tokio::join!(
        try_hold(&leases, "a", ttl, at(0)),
        try_hold(&leases, "b", ttl, at(0))
    );
    let won = [a.expect("a"), b.expect("b")];
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
}
