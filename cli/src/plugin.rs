//! `ferry plugin`: serve the CSI services on a unix socket, as controller, node, or both.

use crate::store_args::StoreArgs;
use clap::{Args, ValueEnum};
use ferry_controller::ControllerService;
use ferry_csi::IdentityService;
use ferry_csi::serve::{serve_unix, socket_path, termination};
use ferry_node::{NodeConfig, NodeService};
use ferry_proto::v1::controller_server::ControllerServer;
use ferry_proto::v1::group_controller_server::GroupControllerServer;
use ferry_proto::v1::identity_server::IdentityServer;
use ferry_proto::v1::node_server::NodeServer;
use ferry_store::{Backend, Error as StoreError, Objects, Store};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

/// Which CSI services the plugin serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Identity and Controller (the controller Deployment).
    Controller,
    /// Identity and Node (the node DaemonSet).
    Node,
    /// All three (one machine, the local demo).
    All,
}

/// Flags of `ferry plugin`.
#[derive(Args, Debug)]
pub struct PluginArgs {
    /// CSI endpoint, a unix socket: unix:///csi/csi.sock.
    #[arg(long, env = "CSI_ENDPOINT", default_value = "unix:///csi/csi.sock")]
    pub endpoint: String,
    /// This node's id (Kubernetes node name); the lease holder name of staged volumes.
    #[arg(long, env = "NODE_ID")]
    pub node_id: String,
    /// The services to serve.
    #[arg(long, env = "FERRY_MODE", value_enum, default_value_t = Mode::All)]
    pub mode: Mode,
    /// Node state: volume servers' mounts, pids, logs and stage records.
    #[arg(long, env = "FERRY_STATE_DIR", default_value = "/var/lib/ferry/node")]
    pub state_dir: PathBuf,
    /// Most volumes the node stages (0: no limit).
    #[arg(long, env = "FERRY_MAX_VOLUMES", default_value_t = 256)]
    pub max_volumes: i64,
    /// Seconds a node's lease on a staged volume lasts without renewal; another node may
    /// take the volume over after that.
    #[arg(long, env = "FERRY_LEASE_TTL_SECS", default_value_t = 30.0)]
    pub lease_ttl_secs: f64,
    /// Read cache of each staged volume's server, MiB (see docs/benchmarks.md).
    #[arg(long, env = "FERRY_VOLUME_CACHE_MIB", default_value_t = 256)]
    pub volume_cache_mib: usize,
    /// Start a volume host (`ferry volume-host`, detached) when none answers on the state
    /// folder's socket. For a node plugin run by hand; the Kubernetes manifests run the host
    /// as a DaemonSet of its own and turn this off, since a host started from the plugin's
    /// container dies with it.
    #[arg(long, env = "FERRY_START_VOLUME_HOST", default_value_t = true, action = clap::ArgAction::Set)]
    pub start_volume_host: bool,
    /// Post Events on the claim and the pods of a volume whose server failed on this node
    /// (node service; needs API credentials, otherwise off).
    #[arg(long, env = "FERRY_HEALTH_EVENTS", default_value_t = true, action = clap::ArgAction::Set)]
    pub health_events: bool,
    /// Seconds between garbage-collection passes over the chunk store, run by the
    /// controller; 0 turns scheduled collection off (`ferry gc` still runs a pass).
    #[arg(long, env = "FERRY_GC_INTERVAL_SECS", default_value_t = 3600)]
    pub gc_interval_secs: u64,
    /// Serve Prometheus metrics (`/metrics`) on this address, for example 0.0.0.0:9808.
    #[arg(long, env = "FERRY_METRICS_ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// Runs the plugin until SIGTERM or SIGINT.
///
/// # Errors
/// Bad settings, a socket that cannot be bound.
pub async fn run(args: PluginArgs) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let config = args.store.config()?;
    let options = args.store.options();
    let store = match Store::open(&config, options.clone()).await {
        Ok(s) => s,
        // Serve anyway: Probe and every call then report the backend's reason, and the
        // store is used as soon as it answers.
        Err(e @ (StoreError::Unavailable(_) | StoreError::Config(_))) => {
            tracing::warn!(error = %e, "chunk store not reachable at start");
            Store::with_objects(Objects::open(&config, options.concurrency)?, options)
        }
        Err(e) => return Err(e.into()),
    };
    tracing::info!(node.id = %args.node_id, mode = ?args.mode, store = ?config, "ferry plugin starting");
    let path = socket_path(&args.endpoint)?;
    let controller = args.mode != Mode::Node;
    if let Some(addr) = args.metrics_addr {
        ferry_csi::metrics::serve(addr).await?;
    }
    let mut router = ferry_csi::serve::server().add_service(IdentityServer::new(
        IdentityService::new(store.clone(), controller),
    ));
    if controller {
        let service = ControllerService::new(store.clone());
        router = router
            .add_service(ControllerServer::new(service.clone()))
            .add_service(GroupControllerServer::new(service));
    }
    let _gc = (controller && args.gc_interval_secs > 0).then(|| {
        let every = std::time::Duration::from_secs(args.gc_interval_secs);
        tracing::info!(interval = ?every, "scheduled garbage collection on");
        AbortOnDrop(tokio::spawn(ferry_controller::scheduled_gc::run(
            store.clone(),
            every,
        )))
    });
    let (mut _health, mut _reports) = (None, None);
    if args.mode != Mode::Controller {
        let node = node_config(&args, &config)?;
        if args.health_events
            && let Some(client) = crate::health_events::client().await
        {
            _health = Some(AbortOnDrop(tokio::spawn(crate::health_events::run(
                client,
                node.state_dir.clone(),
                node.node_id.clone(),
            ))));
        }
        let service = NodeService::with_host(store, node, args.start_volume_host);
        // Failed volumes reported in the store, where the controller's ControllerGetVolume
        // and ListVolumes read them (the external-health-monitor's path).
        _reports = Some(AbortOnDrop(tokio::spawn(
            service.clone().report_health_forever(),
        )));
        router = router.add_service(NodeServer::new(service));
    }
    serve_unix(router, &path, termination()).await
}

/// Aborts a background task when the server stops.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The Node service's settings; writes the store settings its volume servers read.
fn node_config(
    args: &PluginArgs,
    config: &ferry_store::StoreConfig,
) -> Result<NodeConfig, Box<dyn std::error::Error + Send + Sync>> {
    if config.backend == Backend::Memory {
        return Err(
            "the node service needs a store its volume servers can share: \
                    the memory backend lives in one process; use fs or an object store"
                .into(),
        );
    }
    if args.node_id.is_empty() {
        return Err("--node-id (NODE_ID) is required for the node service".into());
    }
    if !(args.lease_ttl_secs.is_finite() && args.lease_ttl_secs >= 1.0) {
        return Err("--lease-ttl-secs must be at least 1".into());
    }
    std::fs::create_dir_all(&args.state_dir)
        .map_err(|e| format!("cannot create state dir {}: {e}", args.state_dir.display()))?;
    let store_config = args.state_dir.join("store.json");
    let json = serde_json::to_vec_pretty(config)?;
    ferry_node::state::write_atomic(&store_config, &json)?;
    std::fs::set_permissions(&store_config, std::fs::Permissions::from_mode(0o600))?;
    Ok(NodeConfig {
        node_id: args.node_id.clone(),
        state_dir: args.state_dir.clone(),
        max_volumes: args.max_volumes,
        lease_ttl: Duration::from_secs_f64(args.lease_ttl_secs),
        exe: std::env::current_exe()?,
        store_config,
        cache_mib: args.volume_cache_mib,
    })
}

/// Flags of `ferry volume-server` (started by the volume host, not by hand). Its standard
/// input is the volume's FUSE connection, its standard output a socket to the host.
#[derive(Args, Debug)]
pub struct VolumeServerArgs {
    /// The volume to serve.
    #[arg(long)]
    pub volume_id: String,
    /// The node it serves for (lease holder).
    #[arg(long)]
    pub node_id: String,
    /// The node plugin's state folder.
    #[arg(long)]
    pub state_dir: PathBuf,
    /// Lease duration in seconds.
    #[arg(long, default_value_t = 30.0)]
    pub lease_ttl_secs: f64,
    /// Serve read-only, without a lease.
    #[arg(long)]
    pub read_only: bool,
    /// A server before this one died on the connection: ask the kernel to send again what
    /// it read and did not answer.
    #[arg(long)]
    pub resend: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// Runs one volume server until its mount is removed or the host asks it to drain.
///
/// # Errors
/// As [`ferry_node::server::run`]; standard input that is not a FUSE connection.
pub async fn volume_server(
    args: VolumeServerArgs,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    use std::os::fd::AsFd;
    let fuse = std::io::stdin().as_fd().try_clone_to_owned()?;
    let out = std::io::stdout().as_fd().try_clone_to_owned()?;
    let control = is_socket(&out).then(|| std::os::unix::net::UnixStream::from(out));
    let store = Store::open(&args.store.config()?, args.store.options()).await?;
    let server = ferry_node::server::ServerArgs {
        volume_id: args.volume_id,
        node_id: args.node_id,
        state_dir: args.state_dir,
        read_only: args.read_only,
        lease_ttl: Duration::from_secs_f64(args.lease_ttl_secs.max(1.0)),
        resend: args.resend,
    };
    ferry_node::server::run(store, server, fuse, control).await?;
    Ok(())
}

fn is_socket(fd: &std::os::fd::OwnedFd) -> bool {
    use std::os::unix::fs::FileTypeExt;
    fd.try_clone()
        .map(std::fs::File::from)
        .and_then(|f| f.metadata())
        .is_ok_and(|m| m.file_type().is_socket())
}

/// Flags of `ferry volume-host`.
#[derive(Args, Debug)]
pub struct VolumeHostArgs {
    /// The node plugin's state folder (shared with the plugin).
    #[arg(long, env = "FERRY_STATE_DIR", default_value = "/var/lib/ferry/node")]
    pub state_dir: PathBuf,
    /// This host's instance, unique per start of a host (the pod's uid in Kubernetes);
    /// default: the process id and start time.
    #[arg(long, env = "POD_UID")]
    pub instance: Option<String>,
    /// Seconds a host asked to stop while it serves volumes waits for a new host to take
    /// them over (a rolling update starts the new one first).
    #[arg(long, env = "FERRY_HANDOVER_WAIT_SECS", default_value_t = 60)]
    pub handover_wait_secs: u64,
    /// Exit after this many seconds with no volume served and no request (0: never). A
    /// node plugin that starts its own host asks for this, so none is left behind.
    #[arg(long, default_value_t = 0)]
    pub idle_exit_secs: u64,
}

/// Runs the volume host until SIGTERM.
///
/// # Errors
/// As [`ferry_node::host::run`].
pub async fn volume_host(
    args: VolumeHostArgs,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let instance = args.instance.unwrap_or_else(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        format!("{}-{now}", std::process::id())
    });
    ferry_node::host::run(ferry_node::host::HostArgs {
        state_dir: args.state_dir,
        instance,
        handover_wait: Duration::from_secs(args.handover_wait_secs),
        idle_exit: (args.idle_exit_secs > 0).then(|| Duration::from_secs(args.idle_exit_secs)),
    })
    .await?;
    Ok(())
}
