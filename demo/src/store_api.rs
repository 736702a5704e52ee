//! The walk-through without mounts: data written and read through the chunk-store API.

use super::{BoxError, DemoPlugin, create_data_volume, digest, restore_volume};
use ferry_proto::v1::controller_client::ControllerClient;
use ferry_proto::v1::identity_client::IdentityClient;
use ferry_proto::v1::*;
use rand::{RngCore, SeedableRng};
use std::time::Instant;

/// Volume, data through the store API, snapshot, restore, sha256 compared.
///
/// # Errors
/// Any failed step.
pub async fn run(plugin: &DemoPlugin, dir: &std::path::Path, size: u64) -> Result<(), BoxError> {
    let mut identity = IdentityClient::new(plugin.channel.clone());
    let mut ctl = ControllerClient::new(plugin.channel.clone());
    let store = &plugin.store;
    let info = identity
        .get_plugin_info(GetPluginInfoRequest {})
        .await?
        .into_inner();
    println!(
        "CSI plugin       {} {} on {}",
        info.name,
        info.vendor_version,
        plugin.socket.display()
    );

    let vol = create_data_volume(&mut ctl, size).await?;

    // Database-like content: compressible rows, random blobs, and untouched zeros.
    let handle = store.open_volume(&vol.volume_id).await?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let rows: Vec<u8> = (0..size / 4)
        .flat_map(|i| format!("{i},customer-{},order,{}\n", i % 977, i * 31 % 10007).into_bytes())
        .take((size / 4) as usize)
        .collect();
    let mut random = vec![0u8; (size / 4) as usize];
    rng.fill_bytes(&mut random);
    let t = Instant::now();
    handle.write_at(0, &rows).await?;
    handle.write_at(size / 2, &random).await?;
    let report = handle.flush().await?;
    println!(
        "write + flush    {} MiB of data, {} chunks uploaded, {} KiB stored, generation {} in {:.1?}",
        (rows.len() + random.len()) >> 20,
        report.chunks_uploaded,
        report.bytes_stored >> 10,
        report.generation.unwrap_or(0),
        t.elapsed()
    );
    let original = digest(&handle.read_at(0, size as usize).await?);

    let t = Instant::now();
    let snap = ctl
        .create_snapshot(CreateSnapshotRequest {
            source_volume_id: vol.volume_id.clone(),
            name: "demo-snapshot".into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .snapshot
        .ok_or("CreateSnapshot returned no snapshot")?;
    println!(
        "CreateSnapshot   {} ready={} in {:.1?}",
        snap.snapshot_id,
        snap.ready_to_use,
        t.elapsed()
    );

    handle
        .write_at(0, b"this write comes after the snapshot")
        .await?;
    handle.flush().await?;

    let t = Instant::now();
    let restored = restore_volume(&mut ctl, &snap.snapshot_id).await?;
    println!(
        "restore (clone)  {} from {} in {:.1?}",
        restored.volume_id,
        snap.snapshot_id,
        t.elapsed()
    );

    let restored_handle = store.open_volume(&restored.volume_id).await?;
    let restored_sum = digest(&restored_handle.read_at(0, size as usize).await?);
    let now_sum = digest(&handle.read_at(0, size as usize).await?);
    println!("sha256 at snapshot   {original}");
    println!("sha256 of restore    {restored_sum}");
    println!("sha256 of original   {now_sum} (written after the snapshot)");
    let ok = original == restored_sum && original != now_sum;

    let listed = ctl
        .list_volumes(ListVolumesRequest::default())
        .await?
        .into_inner();
    println!("ListVolumes      {} volumes", listed.entries.len());
    if !ok {
        return Err("restored data does not match the snapshot".into());
    }
    println!("OK: the restored volume holds exactly the snapshot's data");
    if !super::migrate::run(store, ctl.clone(), &snap.snapshot_id, dir).await? {
        return Err("the imported volume differs from the snapshot".into());
    }
    println!(
        "OK: namespace shop kept on standby in B by a schedule and failed over; its volume on B holds exactly the bytes it had on A"
    );
    Ok(())
}
