//! Deterministic names of what a migration creates, so a retry finds what a crashed try made.

use sha2::{Digest, Sha256};

fn short_hash(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..8])
}

/// The VolumeSnapshot a migration makes of a PVC (in the PVC's namespace).
pub fn snapshot(migration_ns: &str, migration: &str, pvc: &str) -> String {
    let base: String = format!("{migration}-{pvc}").chars().take(40).collect();
    format!(
        "{}-{}",
        base.trim_end_matches(['-', '.']),
        short_hash(&[migration_ns, migration, pvc])
    )
}

/// The chunk-store group snapshot a migration takes of its claims.
pub fn group_snapshot(migration_ns: &str, migration: &str, uid: &str) -> String {
    format!(
        "ferry-migration-{}",
        short_hash(&[migration_ns, migration, uid])
    )
}

/// What an ApplicationClone (uid `uid`) names in the chunk store and the cluster: the
/// group snapshot that gives its instant, and for each claim the copy volume and its PV.
pub fn clone_group(uid: &str) -> String {
    format!("ferry-clone-{}", short_hash(&[uid]))
}

/// The chunk-store volume an ApplicationClone makes for `claim`.
pub fn clone_volume(uid: &str, claim: &str) -> String {
    format!("ferry-clone-{}", short_hash(&[uid, claim]))
}

/// The PV an ApplicationClone makes for `claim`.
pub fn clone_pv(uid: &str, claim: &str) -> String {
    format!("ferry-clone-{}", short_hash(&[uid, claim, "pv"]))
}

/// The VolumeImport (and the PV it makes) on the destination for a source volume: one per
/// source volume, so a later migration of the same volume moves only what changed.
pub fn import(source_volume_id: &str) -> String {
    format!("ferry-import-{}", short_hash(&[source_volume_id]))
}

/// The VolumeImport for a source volume whose claim lands in `dest_ns`, mapped from
/// `source_ns`: [`import`] when the namespace is not mapped, so a mapped and an unmapped
/// migration of one volume never share (and overwrite) a destination volume.
pub fn import_into(source_volume_id: &str, source_ns: &str, dest_ns: &str) -> String {
    if source_ns == dest_ns {
        import(source_volume_id)
    } else {
        format!(
            "ferry-import-{}",
            short_hash(&[source_volume_id, "namespace", dest_ns])
        )
    }
}

/// The chunk-store volume (and the PV) a claim's imports land in on the destination: one per
/// claim (namespace and name), so each run of a schedule updates the same volume, and of a
/// form no provisioned volume, clone or other namespace's claim can have (the CSI driver
/// refuses `ferry-import-` names, and the hash covers the namespace).
pub fn landing(namespace: &str, claim: &str) -> String {
    let mut h = Sha256::new();
    h.update(namespace.as_bytes());
    h.update([0]);
    h.update(claim.as_bytes());
    format!("ferry-import-{}", hex::encode(&h.finalize()[..16]))
}

/// The VolumeImport a migration makes for one snapshot of a source volume landing in
/// namespace `dest_ns` (specs are immutable: each snapshot has its own).
pub fn import_of(source_volume_id: &str, dest_ns: &str, snapshot_id: &str) -> String {
    format!(
        "ferry-import-{}",
        short_hash(&[source_volume_id, dest_ns, snapshot_id])
    )
}

/// The Secret on the destination holding a pair's transfer settings for its imports.
pub fn transfer_secret(pair_ns: &str, pair: &str, pair_uid: &str) -> String {
    let base: String = format!("ferry-transfer-{pair}").chars().take(40).collect();
    format!(
        "{}-{}",
        base.trim_end_matches(['-', '.']),
        short_hash(&[pair_ns, pair, pair_uid])
    )
}

/// The Migration the annotation on a namespace (or a PVC) asks for.
pub fn triggered_migration(namespace: &str, pvc: Option<&str>, pair: &str) -> String {
    let base: String = match pvc {
        Some(p) => format!("{namespace}-{p}-to-{pair}"),
        None => format!("{namespace}-to-{pair}"),
    }
    .chars()
    .take(40)
    .collect();
    format!(
        "{}-{}",
        base.trim_end_matches(['-', '.']),
        short_hash(&[namespace, pvc.unwrap_or(""), pair])
    )
}

/// The Migration step `step` of Action `action` (uid `uid`) makes.
pub fn action_migration(action: &str, uid: &str, step: &str) -> String {
    let base: String = format!("{action}-{step}").chars().take(40).collect();
    format!(
        "{}-{}",
        base.trim_end_matches(['-', '.']),
        short_hash(&[action, uid, step])
    )
}

/// Checks that `name` is a DNS-1123 subdomain (what most object names must be): at most 253
/// characters of lowercase letters, digits, '-' and '.', starting and ending alphanumeric.
///
/// # Errors
/// [`crate::Error::Invalid`] naming `what`.
pub fn check_object_name(what: &str, name: &str) -> crate::Result<()> {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let b = name.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 253
        && b.iter().all(|&c| alnum(c) || c == b'-' || c == b'.')
        && alnum(b[0])
        && alnum(b[b.len() - 1]);
    if ok {
        Ok(())
    } else {
        Err(crate::Error::Invalid(format!(
            "{what} {name:?} is not a valid object name (lowercase letters, digits, '-' and \
             '.', at most 253)"
        )))
    }
}
