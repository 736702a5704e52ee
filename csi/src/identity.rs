//! The CSI Identity service: who the plugin is, what it offers, and whether it is healthy.

use crate::error::Error;
use ferry_proto::v1::identity_server::Identity;
use ferry_proto::v1::plugin_capability::{
    Service, Type, VolumeExpansion, service, volume_expansion,
};
use ferry_proto::v1::{
    GetPluginCapabilitiesRequest, GetPluginCapabilitiesResponse, GetPluginInfoRequest,
    GetPluginInfoResponse, PluginCapability, ProbeRequest, ProbeResponse,
};
use ferry_store::Store;
use tonic::{Request, Response, Status};

/// The CSI driver name.
pub const DRIVER_NAME: &str = "ferry.csi.dev";

/// Identity service of a plugin.
pub struct IdentityService {
    store: Store,
    controller: bool,
}

impl IdentityService {
    /// An Identity service; `controller` says whether this process serves the Controller
    /// service.
    pub fn new(store: Store, controller: bool) -> Self {
        IdentityService { store, controller }
    }
}

#[tonic::async_trait]
impl Identity for IdentityService {
    /// GetPluginInfo: the driver name and version (spec "GetPluginInfo").
    async fn get_plugin_info(
        &self,
        _: Request<GetPluginInfoRequest>,
    ) -> Result<Response<GetPluginInfoResponse>, Status> {
        Ok(Response::new(GetPluginInfoResponse {
            name: DRIVER_NAME.into(),
            vendor_version: env!("CARGO_PKG_VERSION").into(),
            manifest: Default::default(),
        }))
    }

    /// GetPluginCapabilities: the Controller and GroupController services (when served
    /// here) and online volume expansion.
    async fn get_plugin_capabilities(
        &self,
        _: Request<GetPluginCapabilitiesRequest>,
    ) -> Result<Response<GetPluginCapabilitiesResponse>, Status> {
        let mut capabilities = vec![PluginCapability {
            r#type: Some(Type::VolumeExpansion(VolumeExpansion {
                r#type: volume_expansion::Type::Online as i32,
            })),
        }];
        if self.controller {
            for t in [
                service::Type::ControllerService,
                service::Type::GroupControllerService,
            ] {
                capabilities.push(PluginCapability {
                    r#type: Some(Type::Service(Service { r#type: t as i32 })),
                });
            }
        }
        Ok(Response::new(GetPluginCapabilitiesResponse {
            capabilities,
        }))
    }

    /// Probe: healthy when the chunk store answers; otherwise FAILED_PRECONDITION with the
    /// backend's reason (spec "Probe": an unhealthy plugin returns an error).
    #[tracing::instrument(skip_all, err(level = "warn"))]
    async fn probe(&self, _: Request<ProbeRequest>) -> Result<Response<ProbeResponse>, Status> {
        match self.store.probe().await {
            Ok(()) => Ok(Response::new(ProbeResponse { ready: Some(true) })),
            Err(e) => Err(Status::from(Error::FailedPrecondition(format!(
                "chunk store not reachable: {e}"
            )))),
        }
    }
}
