//! The CSI Node service of ferry, and the data path that puts a volume on a node.
//!
//! A staged volume is served by a volume server process ([`server`]) as a file on a FUSE
//! mount; a loop device attaches to that file, and the filesystem (or, for block access,
//! the raw device) sits on the loop device. Each RPC lives in a module named for it; this
//! file holds the service, its capabilities, and the tonic adapter that converts each
//! handler's error to a status in one place.

mod expand;
pub mod filesystem;
mod health_reports;
pub mod host;
pub mod loopdev;
pub mod mounts;
mod publish;
pub mod server;
pub mod servers;
mod stage;
pub mod state;
mod stats;
pub mod store_folder;
pub mod system;
mod unstage;

use ferry_csi::Error;
use ferry_csi::guard::InFlight;
use ferry_proto::v1::node_server::Node;
use ferry_proto::v1::node_service_capability::{Rpc, Type as CapType, rpc::Type as Rpc_};
use ferry_proto::v1::*;
use ferry_store::Store;
use servers::Servers;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tonic::{Request, Response, Status};

/// Topology key naming the node a volume is staged on.
pub const TOPOLOGY_NODE_KEY: &str = "topology.ferry.csi.dev/node";

/// Settings of the Node service.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// This node's id (the lease holder name).
    pub node_id: String,
    /// Folder for per-volume state.
    pub state_dir: PathBuf,
    /// Most volumes this node stages (0: no limit).
    pub max_volumes: i64,
    /// How long a lease lasts without renewal.
    pub lease_ttl: Duration,
    /// The `ferry` binary that runs volume servers.
    pub exe: PathBuf,
    /// The store settings file handed to volume servers.
    pub store_config: PathBuf,
    /// Read cache of each volume server, MiB.
    pub cache_mib: usize,
}

/// The Node service.
#[derive(Clone)]
pub struct NodeService {
    node: Arc<NodeInner>,
}

struct NodeInner {
    config: NodeConfig,
    store: Store,
    servers: Servers,
    in_flight: InFlight,
}

impl NodeService {
    /// A Node service over `store` that starts a volume host when none answers (a plugin
    /// run by hand; see [`NodeService::with_host`]).
    pub fn new(store: Store, config: NodeConfig) -> Self {
        Self::with_host(store, config, true)
    }

    /// A Node service over `store`; `start_host` lets it start a volume host when none
    /// answers on the state folder's socket (off in Kubernetes, where the host is a
    /// DaemonSet of its own and one started from the plugin's container would die with it).
    pub fn with_host(store: Store, config: NodeConfig, start_host: bool) -> Self {
        let servers = Servers {
            exe: config.exe.clone(),
            store_config: config.store_config.clone(),
            state_dir: config.state_dir.clone(),
            node_id: config.node_id.clone(),
            lease_ttl: config.lease_ttl,
            cache_mib: config.cache_mib,
            start_host,
        };
        NodeService {
            node: Arc::new(NodeInner {
                config,
                store,
                servers,
                in_flight: InFlight::default(),
            }),
        }
    }

    fn dir(&self, volume_id: &str) -> Result<state::VolumeDir, Error> {
        state::VolumeDir::new(&self.node.config.state_dir, volume_id)
    }
}

/// The RPCs this Node offers (spec "NodeGetCapabilities").
pub const CAPABILITIES: [Rpc_; 4] = [
    Rpc_::StageUnstageVolume,
    Rpc_::GetVolumeStats,
    Rpc_::ExpandVolume,
    Rpc_::VolumeCondition,
];

fn reply<T>(r: Result<T, Error>) -> Result<Response<T>, Status> {
    r.map(Response::new).map_err(Status::from)
}

#[tonic::async_trait]
impl Node for NodeService {
    #[tracing::instrument(skip_all, err(level = "warn"), fields(volume.id = %req.get_ref().volume_id))]
    async fn node_stage_volume(
        &self,
        req: Request<NodeStageVolumeRequest>,
    ) -> Result<Response<NodeStageVolumeResponse>, Status> {
        reply(self.stage(req.into_inner()).await)
    }

    #[tracing::instrument(skip_all, err(level = "warn"), fields(volume.id = %req.get_ref().volume_id))]
    async fn node_unstage_volume(
        &self,
        req: Request<NodeUnstageVolumeRequest>,
    ) -> Result<Response<NodeUnstageVolumeResponse>, Status> {
        reply(self.unstage(req.into_inner()).await)
    }

    #[tracing::instrument(skip_all, err(level = "warn"), fields(volume.id = %req.get_ref().volume_id))]
    async fn node_publish_volume(
        &self,
        req: Request<NodePublishVolumeRequest>,
    ) -> Result<Response<NodePublishVolumeResponse>, Status> {
        reply(self.publish(req.into_inner()).await)
    }

    #[tracing::instrument(skip_all, err(level = "warn"), fields(volume.id = %req.get_ref().volume_id))]
    async fn node_unpublish_volume(
        &self,
        req: Request<NodeUnpublishVolumeRequest>,
    ) -> Result<Response<NodeUnpublishVolumeResponse>, Status> {
        reply(self.unpublish(req.into_inner()).await)
    }

    #[tracing::instrument(skip_all, err(level = "warn"), fields(volume.id = %req.get_ref().volume_id))]
    async fn node_get_volume_stats(
        &self,
        req: Request<NodeGetVolumeStatsRequest>,
    ) -> Result<Response<NodeGetVolumeStatsResponse>, Status> {
        reply(self.stats(req.into_inner()).await)
    }

    #[tracing::instrument(skip_all, err(level = "warn"), fields(volume.id = %req.get_ref().volume_id))]
    async fn node_expand_volume(
        &self,
        req: Request<NodeExpandVolumeRequest>,
    ) -> Result<Response<NodeExpandVolumeResponse>, Status> {
        reply(self.expand(req.into_inner()).await)
    }

    async fn node_get_capabilities(
        &self,
        _: Request<NodeGetCapabilitiesRequest>,
    ) -> Result<Response<NodeGetCapabilitiesResponse>, Status> {
        let capabilities = CAPABILITIES
            .iter()
            .map(|r| NodeServiceCapability {
                r#type: Some(CapType::Rpc(Rpc { r#type: *r as i32 })),
            })
            .collect();
        Ok(Response::new(NodeGetCapabilitiesResponse { capabilities }))
    }

    /// NodeGetInfo: the node id, the volume limit, and the node as its topology segment.
    async fn node_get_info(
        &self,
        _: Request<NodeGetInfoRequest>,
    ) -> Result<Response<NodeGetInfoResponse>, Status> {
        let c = &self.node.config;
        Ok(Response::new(NodeGetInfoResponse {
            node_id: c.node_id.clone(),
            max_volumes_per_node: c.max_volumes,
            accessible_topology: Some(Topology {
                segments: [(TOPOLOGY_NODE_KEY.to_string(), c.node_id.clone())].into(),
            }),
        }))
    }
}

/// The request's volume capability, present and supported, or INVALID_ARGUMENT.
fn capability(cap: Option<&VolumeCapability>) -> Result<&VolumeCapability, Error> {
    let cap = cap.ok_or_else(|| ferry_csi::error::required("volume_capability"))?;
    if let Some(reason) = ferry_csi::validate::capability(cap)? {
        return Err(Error::InvalidArgument(reason));
    }
    Ok(cap)
}

impl NodeService {
    /// The state of volume `id` staged here, and its `path` checked to exist; NOT_FOUND
    /// otherwise.
    fn staged_at(
        &self,
        id: &str,
        path: &str,
    ) -> Result<(state::VolumeDir, state::StageRecord), Error> {
        let dir = self.dir(id)?;
        let Some(rec) = dir.load_stage() else {
            return Err(Error::NotFound(format!(
                "volume {id} is not staged on this node"
            )));
        };
        if !std::path::Path::new(path).exists() {
            return Err(Error::NotFound(format!(
                "volume path {path} does not exist on this node"
            )));
        }
        Ok((dir, rec))
    }
}

/// The request's string field, or INVALID_ARGUMENT naming it.
fn need<'a>(value: &'a str, field: &str) -> Result<&'a str, Error> {
    if value.is_empty() {
        return Err(ferry_csi::error::required(field));
    }
    Ok(value)
}
