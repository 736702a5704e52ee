//! The migration half of the walk-through: the snapshot exported to an encrypted transfer
//! store (a local folder), imported into a second chunk store, and the two compared.

use super::{BoxError, digest};
use ferry_store::{Source, Store, StoreConfig, StoreOptions, VolumeSpec};
use ferry_transfer::{Key, Progress, Report, TransferStore, Tuning};
use std::path::Path;
use std::sync::Arc;

/// Exports `snapshot` of store `a`, imports it into a new store beside it, and checks the
/// imported volume holds the snapshot's bytes. Returns whether they match.
///
/// # Errors
/// A failed step.
pub async fn run(a: &Store, snapshot: &str, dir: &Path) -> Result<bool, BoxError> {
    let key = Key::parse(Key::generate_hex().as_bytes())?;
    let transfer_dir = dir.join("transfer");
    let transfer =
        TransferStore::open(&StoreConfig::fs(transfer_dir.to_string_lossy()), Some(key)).await?;
    let exported = ferry_transfer::export(
        a,
        snapshot,
        &transfer,
        Arc::new(Progress::default()),
        Tuning::default(),
    )
    .await?;
    line(
        "export",
        &exported,
        &format!("to {} (encrypted)", transfer_dir.display()),
    );

    let b_dir = dir.join("store-b");
    let b = Store::open(
        &StoreConfig::fs(b_dir.to_string_lossy()),
        StoreOptions::default(),
    )
    .await?;
    let snap = a.get_snapshot(snapshot).await?;
    let commit = transfer
        .find_commit(&format!("{}/{}", snap.source_volume_id, snap.id))
        .await?;
    let imported = ferry_transfer::import(
        &transfer,
        &commit,
        &b,
        "demo-data",
        Arc::new(Progress::default()),
        Tuning::default(),
    )
    .await?;
    let b_vol = imported.volume_id.clone().unwrap_or_default();
    line(
        "import",
        &imported,
        &format!("into {} as {b_vol}", b_dir.display()),
    );

    // The snapshot's bytes on A, read through an unmounted clone of it.
    let check = a
        .create_volume(VolumeSpec {
            name: "demo-check".into(),
            capacity_bytes: snap.size_bytes,
            options: snap.options,
            parameters: Default::default(),
            source: Some(Source::Snapshot(snap.id.clone())),
        })
        .await?;
    let src_sum = whole(a, check.id()).await?;
    let dst_sum = whole(&b, &b_vol).await?;
    println!("sha256 source      {src_sum}  (snapshot on store A)");
    println!("sha256 destination {dst_sum}  (imported on store B)");
    Ok(src_sum == dst_sum)
}

async fn whole(store: &Store, id: &str) -> Result<String, BoxError> {
    let h = store.open_volume(id).await?;
    let size = h.size().await;
    Ok(digest(&h.read_at(0, size as usize).await?))
}

fn line(verb: &str, r: &Report, place: &str) {
    println!(
        "{verb:<16} {} chunks copied, {} present, {} pages, {} KiB written in {:.1?} {place}",
        r.chunks_copied,
        r.chunks_skipped,
        r.pages_copied,
        r.bytes_written >> 10,
        r.duration
    );
}
