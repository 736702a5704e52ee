//! `ferry migration`: the migration controller, run as a sidecar beside the CSI controller.

use crate::store_args::StoreArgs;
use clap::Args;
use ferry_store::Store;
use std::path::PathBuf;

/// Flags of `ferry migration`.
#[derive(Args, Debug)]
pub struct MigrationArgs {
    /// The namespace the sidecar runs in: VolumeImports are served here, and Migrations made
    /// here may move any namespace.
    #[arg(long, env = "POD_NAMESPACE", default_value = "ferry-system")]
    pub namespace: String,
    /// Kubeconfig to use instead of the in-cluster service account (for running outside a
    /// cluster).
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// The CSI controller's socket: the sidecar waits until the driver answers Probe on it
    /// before reconciling (unset: no wait).
    #[arg(long, env = "CSI_ENDPOINT")]
    pub csi_endpoint: Option<String>,
    /// Serve Prometheus metrics (`/metrics`) on this address.
    #[arg(long, env = "FERRY_METRICS_ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Seconds between looks at something in progress (snapshots, imports).
    #[arg(long, env = "FERRY_MIGRATION_POLL_SECS", default_value_t = 5.0)]
    pub poll_secs: f64,
    /// A folder (a mount shared with the other cluster) under which ClusterPairs and
    /// VolumeImports may keep a folder (`fs`) transfer store; repeat for several. None: folder
    /// transfer stores are refused.
    #[arg(
        long = "transfer-folder",
        env = "FERRY_TRANSFER_FOLDERS",
        value_delimiter = ','
    )]
    pub transfer_folders: Vec<PathBuf>,
    /// Reconcile only while holding the `ferry-migration` Lease in the namespace, so that of
    /// several replicas one works at a time.
    #[arg(long, env = "FERRY_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    /// Seconds a leader's Lease lasts without renewal (it renews every third of it).
    #[arg(long, env = "FERRY_LEADER_LEASE_SECS", default_value_t = 15)]
    pub leader_lease_secs: u64,
    /// Transfers (exports and imports) this controller runs at once, over all migrations;
    /// more wait, queued, for a slot.
    #[arg(long, env = "FERRY_MAX_TRANSFERS", default_value_t = ferry_migration::transfers::DEFAULT_LIMIT)]
    pub max_transfers: usize,
    /// Volumes of one migration exported at once (within `--max-transfers`).
    #[arg(long, env = "FERRY_PARALLEL_VOLUMES", default_value_t = ferry_migration::transfers::DEFAULT_WIDTH)]
    pub parallel_volumes: usize,
    /// Publish Kubernetes Events for each step.
    #[arg(long, env = "FERRY_MIGRATION_EVENTS", default_value_t = true, action = clap::ArgAction::Set)]
    pub events: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// Runs the migration controller until SIGTERM or SIGINT.
///
/// # Errors
/// Bad settings; no Kubernetes API to talk to.
pub async fn run(args: MigrationArgs) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    if let Some(addr) = args.metrics_addr {
        ferry_csi::metrics::serve(addr).await?;
    }
    if let Some(ep) = &args.csi_endpoint {
        wait_for_driver(ep).await?;
    }
    let store = Store::open(&args.store.config()?, args.store.options()).await?;
    let config = match &args.kubeconfig {
        Some(p) => {
            let kc = kube::config::Kubeconfig::read_from(p)?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?
        }
        None => kube::Config::infer().await?,
    };
    let client = kube::Client::try_from(config)?;
    let mut ctx = ferry_migration::Ctx::new(client, store, args.namespace.clone(), args.events);
    ctx.poll = std::time::Duration::from_secs_f64(args.poll_secs.max(0.05));
    ctx.policy.transfer_folders = args.transfer_folders.clone();
    ctx.transfers = std::sync::Arc::new(ferry_migration::transfers::Transfers::new(
        args.max_transfers,
    ));
    ctx.volume_width = args.parallel_volumes.max(1);
    tracing::info!(namespace = %args.namespace, "migration controller starting");
    if !args.leader_elect {
        ferry_migration::run::run(ctx).await;
        return Ok(());
    }
    let me = std::env::var("POD_NAME").unwrap_or_else(|_| {
        format!(
            "{}-{}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "ferry-migration".into()),
            std::process::id()
        )
    });
    let leases = kube::Api::namespaced(ctx.client.clone(), &args.namespace);
    let ttl = std::time::Duration::from_secs(args.leader_lease_secs.max(3));
    ferry_migration::leader::run_while_leading(leases, me, ttl, ferry_migration::run::run(ctx))
        .await?;
    Ok(())
}

/// Waits until the CSI driver on `endpoint` answers Probe ready.
async fn wait_for_driver(endpoint: &str) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    use ferry_proto::v1::ProbeRequest;
    use ferry_proto::v1::identity_client::IdentityClient;
    let path = ferry_csi::serve::socket_path(endpoint)?;
    for attempt in 0u32.. {
        if let Ok(ch) = ferry_csi::serve::connect_unix(&path).await {
            let ready = IdentityClient::new(ch)
                .probe(ProbeRequest {})
                .await
                .ok()
                .and_then(|r| r.into_inner().ready)
                .unwrap_or(false);
            if ready {
                return Ok(());
            }
        }
        if attempt % 10 == 0 {
            tracing::info!(socket = %path.display(), "waiting for the CSI driver");
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    Ok(())
}
