//! What each account a tenant can reach may do, from the roles in manifests/rbac.yaml and
//! the bindings docs/migration.md tells an admin to make, as the stand-in API server's RBAC
//! authorizer (modelled on the real one, with the bootstrap roles `edit`, `admin` and
//! `view` aggregating ferry's) decides it. Walks every rule those accounts hold and fails
//! if any lets them read a Secret outside their own namespaces, write in the controller's
//! namespace, or create a cluster-scoped object other than the ones the docs list
//! (Namespaces for an admin-bound pair only; CRDs with the opt-in role).

mod common;

use common::FERRY_NS;
use ferry_kubefake::{FakeApi, Identity, rbac};

const TENANT: &str = "shop";

/// Cluster-scoped resources (group, plural) a rule could name.
const CLUSTER_SCOPED: [(&str, &str); 14] = [
    ("", "namespaces"),
    ("", "nodes"),
    ("", "persistentvolumes"),
    ("apiextensions.k8s.io", "customresourcedefinitions"),
    ("rbac.authorization.k8s.io", "clusterroles"),
    ("rbac.authorization.k8s.io", "clusterrolebindings"),
    ("storage.k8s.io", "storageclasses"),
    ("storage.k8s.io", "csidrivers"),
    ("storage.k8s.io", "csinodes"),
    ("storage.k8s.io", "volumeattachments"),
    (
        "admissionregistration.k8s.io",
        "validatingwebhookconfigurations",
    ),
    (
        "admissionregistration.k8s.io",
        "mutatingwebhookconfigurations",
    ),
    ("ferry.dev", "schedulepolicies"),
    ("snapshot.storage.k8s.io", "volumesnapshotcontents"),
];

/// Every (group, resource) a rule of `who` names in namespace `ns` (wildcards as `*`).
fn named(api: &FakeApi, who: &Identity, ns: &str) -> Vec<(String, String)> {
    let review = rbac::rules_review(
        &api.objects(),
        who,
        &serde_json::json!({"spec": {"namespace": ns}}),
    );
    let mut out = Vec::new();
    for r in review["status"]["resourceRules"]
        .as_array()
        .into_iter()
        .flatten()
    {
        for g in r["apiGroups"].as_array().into_iter().flatten() {
            for res in r["resources"].as_array().into_iter().flatten() {
                out.push((
                    g.as_str().unwrap_or_default().to_string(),
                    res.as_str().unwrap_or_default().to_string(),
                ));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

fn check(api: &FakeApi, who: &Identity, may_create_cluster: &[(&str, &str)]) {
    for other in ["kube-system", FERRY_NS, "payroll"] {
        for verb in ["get", "list", "watch"] {
            assert!(
                !api.can(who, verb, "", "secrets", Some(other)),
                "{} may {verb} Secrets in {other}",
                who.user
            );
        }
    }
    for (g, r) in named(api, who, TENANT) {
        if g == "authorization.k8s.io" {
            // Access reviews store nothing: a question, not a write.
            continue;
        }
        let base = r.split('/').next().unwrap_or_default().to_string();
        if CLUSTER_SCOPED.contains(&(g.as_str(), base.as_str())) {
            continue; // checked below, at the cluster scope
        }
        for verb in ["create", "update", "patch", "delete", "deletecollection"] {
            assert!(
                !api.can(who, verb, &g, &base, Some(FERRY_NS)),
                "{} may {verb} {g}/{base} in {FERRY_NS}",
                who.user
            );
        }
    }
    for (g, r) in CLUSTER_SCOPED {
        let allowed = may_create_cluster.contains(&(g, r));
        assert_eq!(
            api.can(who, "create", g, r, None),
            allowed,
            "{} create {g}/{r} (cluster-scoped)",
            who.user
        );
    }
}

#[test]
fn no_tenant_reachable_account_reaches_beyond_its_namespaces() {
    let api = FakeApi::new();
    api.install_ferry_rbac(FERRY_NS);
    // A namespace user with edit (and one with admin) in their namespace.
    let alice = Identity::user("alice");
    api.bind("alice-edit", "edit", &alice, Some(TENANT));
    let bob = Identity::user("bob");
    api.bind("bob-admin", "admin", &bob, Some(TENANT));
    // A tenant's pair account on a destination, as docs/migration.md binds it, with the
    // opt-in CRD role; and the pair back to a source for DR.
    let pair = Identity::service_account(TENANT, "pair-remote");
    api.bind(
        "pair-dest",
        "ferry-migration-destination",
        &pair,
        Some(TENANT),
    );
    api.bind("pair-reads", "ferry-migration-pair", &pair, None);
    api.bind("pair-crds", "ferry-migration-destination-crds", &pair, None);
    let back = Identity::service_account(TENANT, "pair-back");
    api.bind(
        "back-dest",
        "ferry-migration-destination",
        &back,
        Some(TENANT),
    );
    api.bind("back-dr", "ferry-dr-source", &back, Some(TENANT));
    api.bind("back-reads", "ferry-migration-pair", &back, None);
    api.aggregate_now();

    check(&api, &alice, &[]);
    check(&api, &bob, &[]);
    check(
        &api,
        &pair,
        &[("apiextensions.k8s.io", "customresourcedefinitions")],
    );
    check(&api, &back, &[]);
    // What the pair is for, it may do in its namespace.
    for (verb, g, r) in [
        ("create", "ferry.dev", "volumeimports"),
        ("create", "", "secrets"),
        ("patch", "apps", "deployments"),
        ("get", "", "namespaces"),
    ] {
        assert!(api.can(&pair, verb, g, r, Some(TENANT)), "{verb} {g}/{r}");
    }
    // And never a Namespace's labels (a Pod Security level).
    assert!(!api.can(&pair, "patch", "", "namespaces", Some(TENANT)));
}
