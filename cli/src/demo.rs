//! `ferry demo`: a local walk-through on an embedded default store. It serves the CSI
//! plugin on a socket in a temporary folder, provisions a volume through CSI, writes data
//! through the chunk-store API, snapshots it, restores the snapshot as a new volume, and
//! shows the restored data matches while the original moves on.

use clap::Args;
use ferry_controller::ControllerService;
use ferry_csi::IdentityService;
use ferry_csi::serve::{connect_unix, serve_unix};
use ferry_proto::v1::controller_client::ControllerClient;
use ferry_proto::v1::identity_client::IdentityClient;
use ferry_proto::v1::volume_capability::{AccessMode, AccessType, MountVolume, access_mode::Mode};
use ferry_proto::v1::volume_content_source::{SnapshotSource, Type};
use ferry_proto::v1::*;
use ferry_store::{Store, StoreConfig, StoreOptions};
use rand::{RngCore, SeedableRng};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::time::Instant;

/// Flags of `ferry demo`.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Keep the store in this folder instead of a temporary one.
    #[arg(long, env = "FERRY_DEMO_DIR")]
    pub dir: Option<PathBuf>,
    /// Size of the demo volume in MiB.
    #[arg(long, default_value_t = 64)]
    pub size_mib: u64,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Runs the walk-through, printing each step.
///
/// # Errors
/// Any failed step.
pub async fn run(args: DemoArgs) -> Result<(), BoxError> {
    let tmp = tempfile::tempdir()?;
    let dir = args.dir.unwrap_or_else(|| tmp.path().to_path_buf());
    let store_dir = dir.join("store");
    let socket = dir.join("csi.sock");
    let store = Store::open(
        &StoreConfig::fs(store_dir.to_string_lossy()),
        StoreOptions::default(),
    )
    .await?;
    println!("chunk store      {}", store_dir.display());

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let router = tonic::transport::Server::builder()
        .add_service(ferry_proto::v1::identity_server::IdentityServer::new(
            IdentityService::new(store.clone(), true),
        ))
        .add_service(ferry_proto::v1::controller_server::ControllerServer::new(
            ControllerService::new(store.clone()),
        ));
    let sock = socket.clone();
    let server = tokio::spawn(async move {
        serve_unix(router, &sock, async {
            let _ = stop_rx.await;
        })
        .await
        .map_err(|e| e.to_string())
    });
    let channel = connect_with_retry(&socket).await?;
    let mut identity = IdentityClient::new(channel.clone());
    let mut ctl = ControllerClient::new(channel);
    let info = identity
        .get_plugin_info(GetPluginInfoRequest {})
        .await?
        .into_inner();
    println!(
        "CSI plugin       {} {} on {}",
        info.name,
        info.vendor_version,
        socket.display()
    );

    let size = args.size_mib << 20;
    let t = Instant::now();
    let vol = create_volume(
        &mut ctl,
        CreateVolumeRequest {
            name: "demo-data".into(),
            capacity_range: Some(CapacityRange {
                required_bytes: size as i64,
                limit_bytes: 0,
            }),
            ..Default::default()
        },
    )
    .await?;
    println!(
        "CreateVolume     {} ({} MiB) in {:.1?}",
        vol.volume_id,
        vol.capacity_bytes >> 20,
        t.elapsed()
    );

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
    let restored = create_volume(
        &mut ctl,
        CreateVolumeRequest {
            name: "demo-restore".into(),
            volume_content_source: Some(VolumeContentSource {
                r#type: Some(Type::Snapshot(SnapshotSource {
                    snapshot_id: snap.snapshot_id.clone(),
                })),
            }),
            ..Default::default()
        },
    )
    .await?;
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
    let _ = stop_tx.send(());
    server.await?.map_err(|e| format!("plugin: {e}"))?;
    if ok {
        println!("OK: the restored volume holds exactly the snapshot's data");
        Ok(())
    } else {
        Err("restored data does not match the snapshot".into())
    }
}

/// CreateVolume for an ext4 single-writer volume.
async fn create_volume(
    ctl: &mut ControllerClient<tonic::transport::Channel>,
    mut req: CreateVolumeRequest,
) -> Result<Volume, BoxError> {
    req.volume_capabilities = vec![mount_capability()];
    let vol = ctl.create_volume(req).await?.into_inner().volume;
    Ok(vol.ok_or("CreateVolume returned no volume")?)
}

fn mount_capability() -> VolumeCapability {
    VolumeCapability {
        access_type: Some(AccessType::Mount(MountVolume {
            fs_type: "ext4".into(),
            ..Default::default()
        })),
        access_mode: Some(AccessMode {
            mode: Mode::SingleNodeWriter as i32,
        }),
    }
}

fn digest(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

async fn connect_with_retry(path: &std::path::Path) -> Result<tonic::transport::Channel, BoxError> {
    for _ in 0..100 {
        if path.exists()
            && let Ok(c) = connect_unix(path).await
        {
            return Ok(c);
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    Err(format!("plugin socket {} did not come up", path.display()).into())
}
