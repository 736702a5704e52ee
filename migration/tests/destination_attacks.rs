//! Each hole of the destination side written as the attack, by the identity that would
//! really send it, with only the rights docs/migration.md tells an admin to grant: a
//! tenant's pair account on the destination (ferry-migration-destination bound in the
//! tenant's namespace there, ferry-migration-pair cluster-wide). The stand-in API server
//! authorises every request for its identity from manifests/rbac.yaml and those bindings
//! (403 as the real server answers), evaluates the CRDs' CEL rules on update, and keeps
//! the destination controller (running as its own service account) to its own roles.
//!
//! The victim is namespace `shop`, migrated for real; the attacker is namespace `evil`,
//! whose pair account on the destination is `evil:pair-remote`.

mod common;

use common::{FERRY_NS, World, digest, pair_account_on, patch_as, post_as};
use ferry_kubefake::Identity;
use ferry_migration::crd::{ImportPhase, ItemStatus, VolumeImport};
use ferry_migration::destination::volume_import::Imports;
use serde_json::{Value, json};

const VICTIM: &str = "shop";
const EVIL: &str = "evil";

/// What the victim's migration left on the destination.
struct Victim {
    /// The source volume id and the snapshot its last run exported.
    source: (String, String),
    /// The destination volume holding its data, and that data's digest.
    volume: String,
    digest: String,
    /// The transfer Secret its imports read (in shop).
    secret: String,
}

/// shop migrated to the destination for real, and evil's pair account bound there as the
/// docs say (its namespace made by the destination's admin).
async fn world() -> (World, Victim, Identity) {
    let w = World::new().await;
    w.pair(VICTIM, "remote", true);
    w.src
        .seed(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": VICTIM}}));
    let src_vol = w.ferry_claim(VICTIM, "data", 4, 11).await;
    w.migration(
        VICTIM,
        "m1",
        json!({"clusterPair": "remote", "namespaces": [VICTIM]}),
    );
    let st = w.drive(VICTIM, "m1").await;
    assert_eq!(st.status, ItemStatus::Successful, "{st:?}");
    let v = &st.volumes[0];
    let volume = w.destination_volume_id(v);
    let digest = digest(&w.dst_store, &volume).await;
    let secret = w
        .dst
        .all("/secrets")
        .into_iter()
        .find(|s| {
            s["metadata"]["namespace"] == VICTIM
                && s["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("ferry-transfer-"))
        })
        .and_then(|s| s["metadata"]["name"].as_str().map(str::to_string))
        .expect("the victim's transfer Secret");
    pair_account_on(&w.dst, EVIL, "remote", &["ferry-migration-destination"]);
    let attacker = Identity::service_account(EVIL, "pair-remote");
    (
        w,
        Victim {
            source: (src_vol, v.snapshot_handle.clone().expect("snapshot")),
            volume,
            digest,
            secret,
        },
        attacker,
    )
}

fn volume_import(ns: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "VolumeImport",
        "metadata": {"name": name, "namespace": ns}, "spec": spec})
}

/// Runs the destination controller over VolumeImport `ns/name` a few times (what its
/// runtime would do), and returns it.
async fn reconcile_import(w: &World, ns: &str, name: &str) -> VolumeImport {
    for _ in 0..3 {
        let Some(v) = w.dst.get("ferry.dev/volumeimports", Some(ns), name) else {
            break;
        };
        let vi: VolumeImport = serde_json::from_value(v).expect("parse");
        if let Ok(Some(wait)) = ferry_migration::runtime::pass::<Imports>(&w.dst_ctx, &vi).await {
            w.clock.advance(wait);
        }
    }
    serde_json::from_value(
        w.dst
            .get("ferry.dev/volumeimports", Some(ns), name)
            .expect("vi"),
    )
    .expect("parse")
}

/// The victim's data is as its migration left it.
async fn victim_untouched(w: &World, v: &Victim) {
    assert_eq!(digest(&w.dst_store, &v.volume).await, v.digest);
}

/// No PV anywhere is bound to a claim of `ns`.
fn no_pv_for(w: &World, ns: &str) {
    let pvs: Vec<Value> = w
        .dst
        .all("/persistentvolumes")
        .into_iter()
        .filter(|pv| pv["spec"]["claimRef"]["namespace"] == ns)
        .collect();
    assert!(pvs.is_empty(), "{pvs:?}");
}

/// Attack 1: read another tenant's data. The attacker's pair account may not write a
/// VolumeImport in the victim's namespace (403), and one in its own namespace copied from
/// the victim's (same commit, same Secret name) reads Secrets of its own namespace only:
/// the victim's transfer Secret is never read, nothing is imported, no PV is made.
#[tokio::test]
async fn an_import_cannot_read_another_namespaces_transfer_secret() {
    let (w, v, attacker) = world().await;
    let spec = json!({"source": {"volumeId": v.source.0, "snapshotId": v.source.1},
        "transferSecret": v.secret, "persistentVolume": {"claimName": "loot", "capacity": "1Mi"}});
    let (code, body) = post_as(
        &w.dst,
        &attacker,
        &volume_import(VICTIM, "grab", spec.clone()),
    );
    assert_eq!(code, 403, "{body}");
    let before = w.dst.log().len();
    let (code, body) = post_as(&w.dst, &attacker, &volume_import(EVIL, "grab", spec));
    assert_eq!(code, 201, "{body}");
    let vi = reconcile_import(&w, EVIL, "grab").await;
    let st = vi.status.expect("status");
    assert_eq!(st.phase, ImportPhase::Failed, "{st:?}");
    let reason = st.reason.unwrap_or_default();
    assert!(
        reason.contains(&format!("Secret {EVIL}/{}", v.secret)) && reason.contains("not found"),
        "{reason}"
    );
    let read_victim_secret = w.dst.log()[before..]
        .iter()
        .any(|l| l.path.contains(&format!("/namespaces/{VICTIM}/secrets")));
    assert!(!read_victim_secret, "the victim's Secrets were read");
    no_pv_for(&w, EVIL);
    victim_untouched(&w, &v).await;
}

/// Attack 2: overwrite another tenant's volume, by naming it as the volume to update in
/// place (`existingVolume`, its id) with a claim of the same name, or by naming the import
/// after the victim's volume: the in-place update is refused (the volume's PV is bound to
/// the victim's claim, whatever the import names), and an import's volume is named by the
/// controller from its own namespace and claim, so no name reaches the victim's.
#[tokio::test]
async fn an_import_cannot_overwrite_another_namespaces_volume() {
    let (w, v, attacker) = world().await;
    let landing = ferry_migration::names::landing(VICTIM, "data");
    for (name, extra) in [
        ("into", json!({"existingVolume": v.volume})),
        (landing.as_str(), json!({})),
    ] {
        let mut spec = json!({"source": {"volumeId": v.source.0, "snapshotId": v.source.1},
            "transferSecret": "t", "persistentVolume": {"claimName": "data", "capacity": "1Mi"}});
        if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
            s.extend(e.clone());
        }
        let (code, body) = post_as(&w.dst, &attacker, &volume_import(EVIL, name, spec));
        assert_eq!(code, 201, "{body}");
        let vi = reconcile_import(&w, EVIL, name).await;
        let st = vi.status.expect("status");
        assert_eq!(st.phase, ImportPhase::Failed, "{name}: {st:?}");
        if name == "into" {
            let reason = st.reason.unwrap_or_default();
            assert!(
                reason.contains("is not overwritten") && reason.contains("shop/data"),
                "{reason}"
            );
        }
        victim_untouched(&w, &v).await;
    }
    // The attacker's claim would land in a volume of its own.
    assert_ne!(ferry_migration::names::landing(EVIL, "data"), landing);
    no_pv_for(&w, EVIL);
}

/// Attack 3: roll a volume back by changing an import's snapshot. The attacker may not
/// patch the victim's VolumeImport (403); its own pair's patch of a spec is refused by the
/// CRD's rule (422); and an import whose spec changed anyway (a server without the rule)
/// imports nothing more.
#[tokio::test]
async fn an_import_spec_cannot_change() {
    let (w, v, attacker) = world().await;
    let owner = Identity::service_account(VICTIM, "pair-remote");
    let spec = json!({"source": {"volumeId": v.source.0, "snapshotId": v.source.1},
        "transferSecret": v.secret, "persistentVolume": {"claimName": "data", "capacity": "1Mi"}});
    let obj = volume_import(VICTIM, "again", spec);
    let (code, body) = post_as(&w.dst, &owner, &obj);
    assert_eq!(code, 201, "{body}");
    let older = json!({"spec": {"source": {"snapshotId": "snap-older"}}});
    let (code, body) = patch_as(&w.dst, &attacker, &obj, &older);
    assert_eq!(code, 403, "{body}");
    // Not even a cluster admin may: the CRD's rule holds for every writer.
    let (code, body) = patch_as(&w.dst, &Identity::admin(), &obj, &older);
    assert_eq!(code, 422, "{body}");
    assert!(body.to_string().contains("immutable"), "{body}");

    // Accepted by the controller, then changed behind the rule's back.
    let vi = reconcile_import(&w, VICTIM, "again").await;
    let accepted = vi.status.clone().expect("status");
    assert!(accepted.accepted_spec.is_some());
    let mut changed = w
        .dst
        .get("ferry.dev/volumeimports", Some(VICTIM), "again")
        .expect("vi");
    changed["spec"]["source"]["snapshotId"] = json!("snap-older");
    changed["status"]["phase"] = json!("InProgress");
    changed["status"]["snapshotId"] = Value::Null;
    w.dst
        .remove("ferry.dev/volumeimports", Some(VICTIM), "again");
    w.dst.seed(changed);
    let vi = reconcile_import(&w, VICTIM, "again").await;
    let st = vi.status.expect("status");
    assert_eq!(st.phase, ImportPhase::Failed, "{st:?}");
    assert!(
        st.reason
            .unwrap_or_default()
            .contains("spec changed after it was accepted")
    );
    victim_untouched(&w, &v).await;
}

/// Attack 4: land a PV with settings the StorageClass does not give (a class that does not
/// exist here, mount options and reclaim policy of the import's choosing, another claim
/// namespace): a class that is not this cluster's ferry class is refused, and the spec has
/// no field for the rest (they are the controller's, from the class; the claim is of the
/// import's own namespace).
#[tokio::test]
async fn an_import_cannot_choose_where_or_how_its_pv_lands() {
    let (w, v, attacker) = world().await;
    let spec = json!({"source": {"volumeId": v.source.0, "snapshotId": v.source.1},
        "transferSecret": "t",
        "persistentVolume": {"claimName": "data", "capacity": "1Mi", "storageClassName": "none-here",
            "claimNamespace": "kube-system", "name": "pv-anywhere",
            "mountOptions": ["nosuid=0"], "reclaimPolicy": "Retain"}});
    let (code, body) = post_as(&w.dst, &attacker, &volume_import(EVIL, "anywhere", spec));
    assert_eq!(code, 201, "{body}");
    let vi = reconcile_import(&w, EVIL, "anywhere").await;
    let st = vi.status.expect("status");
    assert_eq!(st.phase, ImportPhase::Failed, "{st:?}");
    assert!(
        st.reason
            .unwrap_or_default()
            .contains("StorageClass none-here does not exist on this cluster")
    );
    assert!(
        w.dst
            .get("/persistentvolumes", None, "pv-anywhere")
            .is_none()
    );
    no_pv_for(&w, "kube-system");
    no_pv_for(&w, EVIL);
    victim_untouched(&w, &v).await;
}

/// Attack 6: a namespaceMapping to a namespace the tenant does not own on the destination
/// (`kube-system`, or another tenant's). Checked with the pair's own credentials before
/// anything is snapshotted or imported: refused naming the namespace and the verb; no
/// VolumeImport, no PV, no object lands there, and the source keeps no snapshot.
#[tokio::test]
async fn a_mapping_into_a_namespace_the_tenant_does_not_own_is_refused() {
    let (w, _, _) = world().await;
    // Over an object store: a folder store is refused earlier for another namespace anyway.
    let Some(s3) = ferry_testkit::TestServer::start(ferry_testkit::Kind::S3).await else {
        return;
    };
    w.pair_over(EVIL, "own", &s3.bucket("evil").await);
    w.src
        .seed(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": EVIL}}));
    w.ferry_claim(EVIL, "data", 2, 5).await;
    for (name, target) in [("to-system", "kube-system"), ("to-shop", VICTIM)] {
        w.migration(
            EVIL,
            name,
            json!({"clusterPair": "own", "namespaces": [EVIL], "namespaceMapping": {EVIL: target}}),
        );
        let st = w.drive(EVIL, name).await;
        assert_eq!(st.status, ItemStatus::Failed, "{st:?}");
        let reason = st.reason.unwrap_or_default();
        assert!(
            reason.contains(&format!("in namespace {target}")) && reason.contains("create"),
            "{reason}"
        );
        assert!(st.volumes.iter().all(|v| v.volume_import.is_none()));
    }
    assert!(
        w.dst
            .all("ferry.dev/volumeimports")
            .iter()
            .all(|vi| vi["metadata"]["namespace"] != "kube-system")
    );
    no_pv_for(&w, "kube-system");
    assert!(
        w.dst
            .all("/configmaps")
            .iter()
            .all(|c| c["metadata"]["namespace"] != "kube-system")
    );
    assert!(
        w.src
            .all("snapshot.storage.k8s.io/volumesnapshots")
            .is_empty()
    );
}

/// Attack 8: relabel a Namespace's Pod Security level through a migration. A Namespace
/// the migration lands in is created when absent, never patched, and a tenant's migration
/// never brings Pod Security labels (neither the source's nor a transformation's), even
/// through a pair an admin bound too widely.
#[tokio::test]
async fn a_tenant_migration_never_sets_pod_security_labels() {
    let (w, _, _) = world().await;
    w.pair(EVIL, "wide", true);
    // The admin bound this pair cluster-wide by mistake: it may create Namespaces.
    w.dst.bind(
        "wide",
        "ferry-migration-destination",
        &Identity::service_account(EVIL, "pair-wide"),
        None,
    );
    w.dst.remove("/namespaces", None, EVIL);
    w.src.seed(
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": EVIL,
        "labels": {"pod-security.kubernetes.io/enforce": "privileged", "team": "evil"}}}),
    );
    w.src.seed(json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "ResourceTransformation",
        "metadata": {"name": "loosen", "namespace": EVIL},
        "spec": {"objects": [{"resource": "/v1/Namespace", "paths": [
            {"path": "metadata.labels", "value": "pod-security.kubernetes.io/audit:privileged", "type": "keypair", "operation": "add"}]}]}}));
    w.ferry_claim(EVIL, "data", 2, 5).await;
    w.migration(
        EVIL,
        "m1",
        json!({"clusterPair": "wide", "namespaces": [EVIL], "transformSpecs": ["loosen"]}),
    );
    let st = w.drive(EVIL, "m1").await;
    assert_eq!(st.status, ItemStatus::Successful, "{st:?}");
    let ns = w.dst.get("/namespaces", None, EVIL).expect("created");
    let labels = ns["metadata"]["labels"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    assert!(
        labels
            .keys()
            .all(|k| !k.starts_with("pod-security.kubernetes.io/")),
        "{labels:?}"
    );
    assert_eq!(labels.get("team"), Some(&json!("evil")));
    // The victim's Namespace there was never written by any migration.
    assert!(
        !w.dst
            .log()
            .iter()
            .any(|l| l.method != "GET" && l.path.ends_with(&format!("/namespaces/{VICTIM}"))),
        "a Namespace was patched"
    );
}

/// Attack 10: clone another tenant's volume through a claim that names its PV. A Pending
/// claim (or one the binder did not bind to it) whose `volumeName` is the victim's PV is
/// skipped with the reason; nothing is copied from the victim's volume. The same rule
/// holds for a Migration's claims.
#[tokio::test]
async fn a_claim_naming_another_tenants_pv_takes_nothing() {
    let w = World::new().await;
    let victim_vol = w.ferry_claim(VICTIM, "data", 2, 9).await;
    w.src
        .seed(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": EVIL}}));
    // The tenant's claim names the victim's PV; the binder never bound it (its claimRef names
    // the victim's claim).
    w.src.seed(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "steal", "namespace": EVIL},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "ferry", "volumeName": format!("pv-{VICTIM}-data"),
                 "resources": {"requests": {"storage": "1Mi"}}},
        "status": {"phase": "Pending"}}));
    w.src.bind(
        "ferry-clone",
        "ferry-clone",
        &Identity::service_account(FERRY_NS, "ferry-migration"),
        None,
    );
    w.src.seed(
        json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "ApplicationClone",
        "metadata": {"name": "copy", "namespace": FERRY_NS},
        "spec": {"sourceNamespace": EVIL, "destinationNamespace": "evil-copy"}}),
    );
    let ac: ferry_migration::crd::ApplicationClone = serde_json::from_value(
        w.src
            .get("ferry.dev/applicationclones", Some(FERRY_NS), "copy")
            .expect("clone"),
    )
    .expect("parse");
    ferry_migration::runtime::pass::<ferry_migration::source::application_clone::Clones>(
        &w.src_ctx, &ac,
    )
    .await
    .expect("clone");
    let st = w
        .src
        .get("ferry.dev/applicationclones", Some(FERRY_NS), "copy")
        .expect("clone")["status"]
        .clone();
    let steal = st["volumes"]
        .as_array()
        .and_then(|v| v.iter().find(|v| v["persistentVolumeClaim"] == "steal"))
        .cloned()
        .expect("an entry for the claim");
    assert_eq!(steal["status"], "Skipped", "{st}");
    assert!(steal["cloneVolume"].is_null(), "{steal}");
    assert!(
        w.src
            .all("/persistentvolumes")
            .iter()
            .all(|pv| pv["spec"]["csi"]["volumeHandle"] != victim_vol
                || pv["spec"]["claimRef"]["namespace"] == VICTIM),
        "a PV of the victim's volume for another claim"
    );
}
