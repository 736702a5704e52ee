//! The CSI GroupController service: CreateVolumeGroupSnapshot, DeleteVolumeGroupSnapshot,
//! GetVolumeGroupSnapshot and its capabilities. Snapshots of several volumes at one
//! instant (see `ferry_store`'s group snapshots); like single snapshots they copy no data.

use crate::{ControllerService, convert, reply};
use ferry_csi::error::{Error, Result, required};
use ferry_proto::v1::group_controller_server::GroupController;
use ferry_proto::v1::group_controller_service_capability::{Rpc, Type as CapType, rpc::Type};
use ferry_proto::v1::*;
use tonic::{Request, Response, Status};

impl ControllerService {
    /// Spec "CreateVolumeGroupSnapshot": every source volume's snapshot at one instant,
    /// ready at once; the name makes it idempotent (the same volumes again get the same
    /// group, other volumes ALREADY_EXISTS), a missing volume NOT_FOUND.
    async fn create_group_inner(
        &self,
        req: CreateVolumeGroupSnapshotRequest,
    ) -> Result<CreateVolumeGroupSnapshotResponse> {
        if req.name.is_empty() {
            return Err(required("name"));
        }
        if req.source_volume_ids.is_empty() {
            return Err(required("source_volume_ids"));
        }
        let _guard = self
            .in_flight
            .claim(format!("group snapshot name {}", req.name))?;
        let (g, members) = self
            .store
            .create_group_snapshot(
                &req.name,
                &req.source_volume_ids,
                req.parameters.into_iter().collect(),
            )
            .await?;
        Ok(CreateVolumeGroupSnapshotResponse {
            group_snapshot: Some(convert::group_snapshot(&g, &members)),
        })
    }

    /// Spec "DeleteVolumeGroupSnapshot": the group and its member snapshots go; a group that
    /// does not exist is deleted already. Given `snapshot_ids` must be the group's.
    async fn delete_group_inner(
        &self,
        req: DeleteVolumeGroupSnapshotRequest,
    ) -> Result<DeleteVolumeGroupSnapshotResponse> {
        if req.group_snapshot_id.is_empty() {
            return Err(required("group_snapshot_id"));
        }
        let _guard = self
            .in_flight
            .claim(format!("group snapshot {}", req.group_snapshot_id))?;
        if !req.snapshot_ids.is_empty()
            && let Ok((g, _)) = self.store.get_group_snapshot(&req.group_snapshot_id).await
        {
            check_members(&g, &req.snapshot_ids)?;
        }
        self.store
            .delete_group_snapshot(&req.group_snapshot_id)
            .await?;
        Ok(DeleteVolumeGroupSnapshotResponse {})
    }

    /// Spec "GetVolumeGroupSnapshot": the group and its members; NOT_FOUND when absent.
    async fn get_group_inner(
        &self,
        req: GetVolumeGroupSnapshotRequest,
    ) -> Result<GetVolumeGroupSnapshotResponse> {
        if req.group_snapshot_id.is_empty() {
            return Err(required("group_snapshot_id"));
        }
        let (g, members) = self
            .store
            .get_group_snapshot(&req.group_snapshot_id)
            .await?;
        if !req.snapshot_ids.is_empty() {
            check_members(&g, &req.snapshot_ids)?;
        }
        Ok(GetVolumeGroupSnapshotResponse {
            group_snapshot: Some(convert::group_snapshot(&g, &members)),
        })
    }
}

/// The snapshot ids a request names must be exactly the group's.
fn check_members(g: &ferry_store::GroupSnapshotRecord, given: &[String]) -> Result<()> {
    let mut a: Vec<&String> = given.iter().collect();
    let mut b: Vec<&String> = g.snapshot_ids.iter().collect();
    a.sort();
    b.sort();
    if a != b {
        return Err(Error::InvalidArgument(format!(
            "snapshot_ids {given:?} are not the snapshots of group snapshot {} ({:?})",
            g.id, g.snapshot_ids
        )));
    }
    Ok(())
}

#[tonic::async_trait]
impl GroupController for ControllerService {
    async fn group_controller_get_capabilities(
        &self,
        _: Request<GroupControllerGetCapabilitiesRequest>,
    ) -> Result<Response<GroupControllerGetCapabilitiesResponse>, Status> {
        Ok(Response::new(GroupControllerGetCapabilitiesResponse {
            capabilities: vec![GroupControllerServiceCapability {
                r#type: Some(CapType::Rpc(Rpc {
                    r#type: Type::CreateDeleteGetVolumeGroupSnapshot as i32,
                })),
            }],
        }))
    }

    #[tracing::instrument(skip_all, err(level = "warn"), fields(name = %req.get_ref().name))]
    async fn create_volume_group_snapshot(
        &self,
        req: Request<CreateVolumeGroupSnapshotRequest>,
    ) -> Result<Response<CreateVolumeGroupSnapshotResponse>, Status> {
        reply(self.create_group_inner(req.into_inner()).await)
    }

    #[tracing::instrument(skip_all, err(level = "warn"), fields(group = %req.get_ref().group_snapshot_id))]
    async fn delete_volume_group_snapshot(
        &self,
        req: Request<DeleteVolumeGroupSnapshotRequest>,
    ) -> Result<Response<DeleteVolumeGroupSnapshotResponse>, Status> {
        reply(self.delete_group_inner(req.into_inner()).await)
    }

    #[tracing::instrument(skip_all, err(level = "warn"), fields(group = %req.get_ref().group_snapshot_id))]
    async fn get_volume_group_snapshot(
        &self,
        req: Request<GetVolumeGroupSnapshotRequest>,
    ) -> Result<Response<GetVolumeGroupSnapshotResponse>, Status> {
        reply(self.get_group_inner(req.into_inner()).await)
    }
}
