//! `ferry plugin`: serve the CSI Identity and Controller services on a unix socket.

use crate::store_args::StoreArgs;
use clap::Args;
use ferry_controller::ControllerService;
use ferry_csi::IdentityService;
use ferry_csi::serve::{serve_unix, socket_path, termination};
use ferry_proto::v1::controller_server::ControllerServer;
use ferry_proto::v1::identity_server::IdentityServer;
use ferry_store::{Error as StoreError, Store, objects::Objects};

/// Flags of `ferry plugin`.
#[derive(Args, Debug)]
pub struct PluginArgs {
    /// CSI endpoint, a unix socket: unix:///csi/csi.sock.
    #[arg(long, env = "CSI_ENDPOINT", default_value = "unix:///csi/csi.sock")]
    pub endpoint: String,
    /// This node's id (Kubernetes node name).
    #[arg(long, env = "NODE_ID")]
    pub node_id: String,
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
    tracing::info!(node.id = %args.node_id, store = ?config, "ferry plugin starting");
    let path = socket_path(&args.endpoint)?;
    let router = tonic::transport::Server::builder()
        .add_service(IdentityServer::new(IdentityService::new(
            store.clone(),
            true,
        )))
        .add_service(ControllerServer::new(ControllerService::new(store)));
    serve_unix(router, &path, termination()).await
}
