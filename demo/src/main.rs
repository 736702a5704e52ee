//! `ferry-demo` (run by `hack/demo.sh`): a local walk-through on an embedded default store
//! (a temporary folder). It serves volumes with the `ferry` binary built beside it, and
//! stands in for the two clusters' API servers with `ferry-kubefake`, which is why it is a
//! binary of its own: the shipped `ferry` never links the stand-in.
//!
//! As root, with the node tools present, it serves the whole CSI plugin (controller and
//! node) on a socket, provisions a volume, stages and mounts it as ext4, writes files, takes
//! a snapshot while the volume is mounted, restores the snapshot as a new volume, mounts
//! that too and shows the files match. Without root it says why and walks through the same
//! steps with data written through the chunk-store API instead of a mount. Both end with a
//! local migration: the snapshot exported to an encrypted transfer store, imported into a
//! second chunk store, and the bytes compared.

mod migrate;
mod mounted;
mod store_api;

use clap::Parser;
use ferry_controller::ControllerService;
use ferry_csi::IdentityService;
use ferry_csi::serve::{connect_unix, serve_unix};
use ferry_node::{NodeConfig, NodeService};
use ferry_proto::v1::controller_client::ControllerClient;
use ferry_proto::v1::volume_capability::{AccessMode, AccessType, MountVolume, access_mode::Mode};
use ferry_proto::v1::*;
use ferry_store::{Store, StoreConfig, StoreOptions};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tonic::transport::Channel;

/// Flags of `ferry-demo`.
#[derive(Parser, Debug)]
#[command(
    name = "ferry-demo",
    about = "Ferry's local walk-through: volume, data, snapshot, restore, verify, migrate"
)]
pub struct DemoArgs {
    /// Keep the store in this folder instead of a temporary one.
    #[arg(long, env = "FERRY_DEMO_DIR")]
    pub dir: Option<PathBuf>,
    /// Size of the demo volume in MiB.
    #[arg(long, default_value_t = 256)]
    pub size_mib: u64,
}

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // The demo prints its own steps; its logs stay quiet unless RUST_LOG asks.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(DemoArgs::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The `ferry` binary beside this one: volume servers are its `volume-server` command.
fn ferry_binary() -> Result<PathBuf, BoxError> {
    let exe = std::env::current_exe()?.with_file_name("ferry");
    if exe.exists() {
        Ok(exe)
    } else {
        Err(format!(
            "{} is missing: the demo serves volumes with it; build it with `cargo build \
             --release -p ferry -p ferry-demo` (hack/demo.sh does)",
            exe.display()
        )
        .into())
    }
}

/// Runs the walk-through, printing each step.
///
/// # Errors
/// Any failed step.
pub async fn run(args: DemoArgs) -> Result<(), BoxError> {
    let tmp = tempfile::tempdir()?;
    let dir = args.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    let mounted = match mount_blocker() {
        None => true,
        Some(why) => {
            println!("note             {why}: writing through the store API instead of a mount");
            false
        }
    };
    let plugin = DemoPlugin::start(&dir, mounted).await?;
    let result = if mounted {
        mounted::run(&plugin, &dir, args.size_mib << 20).await
    } else {
        store_api::run(&plugin, &dir, args.size_mib << 20).await
    };
    plugin.stop().await?;
    result
}

/// Why this machine cannot run the mounted walk-through, if it cannot.
fn mount_blocker() -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return Some("not root, so no mounts".into());
    }
    for tool in ["losetup", "mkfs.ext4", "mount", "blkid"] {
        let found = std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()));
        if !found {
            return Some(format!(
                "{tool} is missing (run hack/install-node-tools.sh)"
            ));
        }
    }
    if !Path::new("/dev/fuse").exists() {
        return Some("/dev/fuse is missing".into());
    }
    None
}

/// The CSI plugin served in this process on a socket in the demo folder.
pub(crate) struct DemoPlugin {
    pub store: Store,
    pub channel: Channel,
    pub socket: PathBuf,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<Result<(), String>>,
}

impl DemoPlugin {
    async fn start(dir: &Path, with_node: bool) -> Result<Self, BoxError> {
        let store_dir = dir.join("store");
        let socket = dir.join("csi.sock");
        let config = StoreConfig::fs(store_dir.to_string_lossy());
        let store = Store::open(&config, StoreOptions::default()).await?;
        println!("chunk store      {}", store_dir.display());
        let mut router = ferry_csi::serve::server()
            .add_service(ferry_proto::v1::identity_server::IdentityServer::new(
                IdentityService::new(store.clone(), true),
            ))
            .add_service(ferry_proto::v1::controller_server::ControllerServer::new(
                ControllerService::new(store.clone()),
            ));
        if with_node {
            let state_dir = dir.join("node");
            let store_config = state_dir.join("store.json");
            ferry_node::state::write_atomic(&store_config, &serde_json::to_vec(&config)?)?;
            let node = NodeConfig {
                node_id: "demo-node".into(),
                state_dir,
                max_volumes: 16,
                lease_ttl: Duration::from_secs(30),
                exe: ferry_binary()?,
                store_config,
                cache_mib: 256,
            };
            router = router.add_service(ferry_proto::v1::node_server::NodeServer::new(
                NodeService::new(store.clone(), node),
            ));
        }
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let sock = socket.clone();
        let server = tokio::spawn(async move {
            serve_unix(router, &sock, async {
                let _ = stop_rx.await;
            })
            .await
            .map_err(|e| e.to_string())
        });
        let channel = connect_with_retry(&socket).await?;
        Ok(DemoPlugin {
            store,
            channel,
            socket,
            stop,
            server,
        })
    }

    async fn stop(self) -> Result<(), BoxError> {
        let _ = self.stop.send(());
        self.server.await?.map_err(|e| format!("plugin: {e}"))?;
        Ok(())
    }
}

/// CreateVolume for an ext4 single-writer volume.
pub(crate) async fn create_volume(
    ctl: &mut ControllerClient<Channel>,
    mut req: CreateVolumeRequest,
) -> Result<Volume, BoxError> {
    req.volume_capabilities = vec![mount_capability()];
    let vol = ctl.create_volume(req).await?.into_inner().volume;
    Ok(vol.ok_or("CreateVolume returned no volume")?)
}

/// CreateVolume of the demo's data volume, `size` bytes, printing what it made.
pub(crate) async fn create_data_volume(
    ctl: &mut ControllerClient<Channel>,
    size: u64,
) -> Result<Volume, BoxError> {
    let t = std::time::Instant::now();
    let vol = create_volume(
        ctl,
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
    Ok(vol)
}

/// CreateVolume of the demo's restore: a new volume from snapshot `snapshot_id`.
pub(crate) async fn restore_volume(
    ctl: &mut ControllerClient<Channel>,
    snapshot_id: &str,
) -> Result<Volume, BoxError> {
    use ferry_proto::v1::volume_content_source::{SnapshotSource, Type};
    create_volume(
        ctl,
        CreateVolumeRequest {
            name: "demo-restore".into(),
            volume_content_source: Some(VolumeContentSource {
                r#type: Some(Type::Snapshot(SnapshotSource {
                    snapshot_id: snapshot_id.to_string(),
                })),
            }),
            ..Default::default()
        },
    )
    .await
}

pub(crate) fn mount_capability() -> VolumeCapability {
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

pub(crate) fn digest(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

async fn connect_with_retry(path: &Path) -> Result<Channel, BoxError> {
    for _ in 0..100 {
        if path.exists()
            && let Ok(c) = connect_unix(path).await
        {
            return Ok(c);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(format!("plugin socket {} did not come up", path.display()).into())
}
