//! The CSI Controller service of ferry: volumes and snapshots in the shared chunk store.
//!
//! Each RPC lives in a module named for it; this file holds the service, its capabilities,
//! and the tonic adapter that converts each handler's error to a status in one place.

mod capacity;
mod convert;
mod create_volume;
mod delete_volume;
mod group_snapshots;
mod list_volumes;
pub mod scheduled_gc;
mod snapshots;
mod validate_capabilities;

pub use create_volume::DEFAULT_CAPACITY;

use ferry_csi::Error;
use ferry_csi::guard::InFlight;
use ferry_proto::v1::controller_server::Controller;
use ferry_proto::v1::controller_service_capability::{Rpc, Type as CapType, rpc::Type as Rpc_};
use ferry_proto::v1::*;
use ferry_store::Store;
use tonic::{Request, Response, Status};

/// The Controller service.
#[derive(Clone)]
pub struct ControllerService {
    store: Store,
    in_flight: InFlight,
}

impl ControllerService {
    /// A Controller service over `store`.
    pub fn new(store: Store) -> Self {
        ControllerService {
            store,
            in_flight: InFlight::default(),
        }
    }
}

/// The RPCs this Controller offers (spec "ControllerGetCapabilities").
pub const CAPABILITIES: [Rpc_; 9] = [
    Rpc_::CreateDeleteVolume,
    Rpc_::ListVolumes,
    Rpc_::GetCapacity,
    Rpc_::CreateDeleteSnapshot,
    Rpc_::ListSnapshots,
    Rpc_::CloneVolume,
    Rpc_::ExpandVolume,
    Rpc_::GetVolume,
    Rpc_::VolumeCondition,
];

pub(crate) fn reply<T>(r: Result<T, Error>) -> Result<Response<T>, Status> {
    r.map(Response::new).map_err(Status::from)
}

#[tonic::async_trait]
impl Controller for ControllerService {
    #[tracing::instrument(skip_all, err(level = "warn"), fields(name = %req.get_ref().name))]
    async fn create_volume(
        &self,
        req: Request<CreateVolumeRequest>,
    ) -> Result<Response<CreateVolumeResponse>, Status> {
        reply(self.create_volume_inner(req.into_inner()).await)
    }

    #[tracing::instrument(skip_all, err(level = "warn"), fields(volume.id = %req.get_ref().volume_id))]
    async fn delete_volume(
        &self,
        req: Request<DeleteVolumeRequest>,
    ) -> Result<Response<DeleteVolumeResponse>, Status> {
        reply(self.delete_volume_inner(req.into_inner()).await)
    }

    /// Not offered: ferry volumes need no attach step (the CSIDriver sets attachRequired
    /// false), so PUBLISH_UNPUBLISH_VOLUME is not advertised.
    async fn controller_publish_volume(
        &self,
        _: Request<ControllerPublishVolumeRequest>,
    ) -> Result<Response<ControllerPublishVolumeResponse>, Status> {
        reply(Err(not_offered(
            "ControllerPublishVolume",
            "PUBLISH_UNPUBLISH_VOLUME",
        )))
    }

    /// Not offered, as ControllerPublishVolume.
    async fn controller_unpublish_volume(
        &self,
        _: Request<ControllerUnpublishVolumeRequest>,
    ) -> Result<Response<ControllerUnpublishVolumeResponse>, Status> {
        reply(Err(not_offered(
            "ControllerUnpublishVolume",
            "PUBLISH_UNPUBLISH_VOLUME",
        )))
    }

    #[tracing::instrument(skip_all, err(level = "warn"), fields(volume.id = %req.get_ref().volume_id))]
    async fn validate_volume_capabilities(
        &self,
        req: Request<ValidateVolumeCapabilitiesRequest>,
    ) -> Result<Response<ValidateVolumeCapabilitiesResponse>, Status> {
        reply(self.validate_inner(req.into_inner()).await)
    }

    #[tracing::instrument(skip_all, err(level = "warn"))]
    async fn list_volumes(
        &self,
        req: Request<ListVolumesRequest>,
    ) -> Result<Response<ListVolumesResponse>, Status> {
        reply(self.list_volumes_inner(req.into_inner()).await)
    }

    #[tracing::instrument(skip_all, err(level = "warn"))]
    async fn get_capacity(
        &self,
        req: Request<GetCapacityRequest>,
    ) -> Result<Response<GetCapacityResponse>, Status> {
        reply(self.get_capacity_inner(req.into_inner()).await)
    }

    async fn controller_get_capabilities(
        &self,
        _: Request<ControllerGetCapabilitiesRequest>,
    ) -> Result<Response<ControllerGetCapabilitiesResponse>, Status> {
        let capabilities = CAPABILITIES
            .iter()
            .map(|t| ControllerServiceCapability {
                r#type: Some(CapType::Rpc(Rpc { r#type: *t as i32 })),
            })
            .collect();
        Ok(Response::new(ControllerGetCapabilitiesResponse {
            capabilities,
        }))
    }

    #[tracing::instrument(skip_all, err(level = "warn"), fields(name = %req.get_ref().name))]
    async fn create_snapshot(
        &self,
        req: Request<CreateSnapshotRequest>,
    ) -> Result<Response<CreateSnapshotResponse>, Status> {
        reply(self.create_snapshot_inner(req.into_inner()).await)
    }

    #[tracing::instrument(skip_all, err(level = "warn"), fields(snapshot.id = %req.get_ref().snapshot_id))]
    async fn delete_snapshot(
        &self,
        req: Request<DeleteSnapshotRequest>,
    ) -> Result<Response<DeleteSnapshotResponse>, Status> {
        reply(self.delete_snapshot_inner(req.into_inner()).await)
    }

    #[tracing::instrument(skip_all, err(level = "warn"))]
    async fn list_snapshots(
        &self,
        req: Request<ListSnapshotsRequest>,
    ) -> Result<Response<ListSnapshotsResponse>, Status> {
        reply(self.list_snapshots_inner(req.into_inner()).await)
    }

    #[tracing::instrument(skip_all, err(level = "warn"), fields(volume.id = %req.get_ref().volume_id))]
    async fn controller_expand_volume(
        &self,
        req: Request<ControllerExpandVolumeRequest>,
    ) -> Result<Response<ControllerExpandVolumeResponse>, Status> {
        reply(self.expand_inner(req.into_inner()).await)
    }

    #[tracing::instrument(skip_all, err(level = "warn"), fields(volume.id = %req.get_ref().volume_id))]
    async fn controller_get_volume(
        &self,
        req: Request<ControllerGetVolumeRequest>,
    ) -> Result<Response<ControllerGetVolumeResponse>, Status> {
        reply(self.get_volume_inner(req.into_inner()).await)
    }

    /// Not offered: ferry has no mutable volume parameters, so MODIFY_VOLUME is not
    /// advertised.
    async fn controller_modify_volume(
        &self,
        _: Request<ControllerModifyVolumeRequest>,
    ) -> Result<Response<ControllerModifyVolumeResponse>, Status> {
        reply(Err(not_offered("ControllerModifyVolume", "MODIFY_VOLUME")))
    }
}

fn not_offered(rpc: &str, capability: &str) -> Error {
    Error::Unsupported(format!(
        "{rpc} is not offered by ferry: it does not advertise the {capability} capability"
    ))
}
