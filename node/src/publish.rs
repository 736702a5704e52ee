//! NodePublishVolume and NodeUnpublishVolume: bind mounts from the staging path (or, for
//! block access, from the loop device) to the pod's target path.

use crate::stage::device;
use crate::{NodeService, capability, mounts, need};
use ferry_csi::Error;
use ferry_proto::v1::volume_capability::AccessType;
use ferry_proto::v1::{
    NodePublishVolumeRequest, NodePublishVolumeResponse, NodeUnpublishVolumeRequest,
    NodeUnpublishVolumeResponse,
};
use std::path::Path;

impl NodeService {
    pub(crate) async fn publish(
        &self,
        req: NodePublishVolumeRequest,
    ) -> Result<NodePublishVolumeResponse, Error> {
        let id = need(&req.volume_id, "volume_id")?;
        let staging = need(&req.staging_target_path, "staging_target_path")?;
        let target = need(&req.target_path, "target_path")?;
        let cap = capability(req.volume_capability.as_ref())?;
        let _guard = self.node.in_flight.claim(format!("volume {id}"))?;
        let dir = self.dir(id)?;
        let Some(rec) = dir.load_stage() else {
            if self.node.store.get_volume(id).await.is_err() {
                return Err(Error::NotFound(format!("volume {id} does not exist")));
            }
            return Err(Error::FailedPrecondition(format!(
                "volume {id} is not staged on this node: call NodeStageVolume first"
            )));
        };
        if rec.staging_path != staging {
            return Err(Error::FailedPrecondition(format!(
                "volume {id} is staged at {}, not {staging}",
                rec.staging_path
            )));
        }
        let block = matches!(cap.access_type, Some(AccessType::Block(_)));
        if block != rec.block {
            return Err(Error::Store(ferry_store::Error::AlreadyExists(format!(
                "volume {id} was staged for {} access, publish asks for {}",
                kind(rec.block),
                kind(block)
            ))));
        }
        let read_only = req.readonly || rec.read_only;
        let target_path = Path::new(target);
        if let Some(m) = mounts::at(target_path)? {
            if m.read_only() != read_only {
                return Err(Error::Store(ferry_store::Error::AlreadyExists(format!(
                    "volume {id} is already published at {target} {}",
                    if m.read_only() {
                        "read-only"
                    } else {
                        "read-write"
                    }
                ))));
            }
            if !mounts::is_dead(target_path) {
                return Ok(NodePublishVolumeResponse {});
            }
            mounts::unmount_all(target_path).await?;
        }
        let parent_fail =
            |e: std::io::Error| Error::Internal(format!("cannot create target path {target}: {e}"));
        if let Some(parent) = target_path.parent() {
            std::fs::create_dir_all(parent).map_err(parent_fail)?;
        }
        if block {
            let dev = device(&dir, rec.read_only).await?;
            if !target_path.exists() {
                std::fs::File::create(target_path).map_err(parent_fail)?;
            }
            mounts::bind(Path::new(&dev), target_path, read_only, &[]).await?;
        } else {
            if mounts::at(Path::new(staging))?.is_none() {
                return Err(Error::FailedPrecondition(format!(
                    "volume {id}'s staging path {staging} is not mounted: stage it again"
                )));
            }
            std::fs::create_dir_all(target_path).map_err(parent_fail)?;
            let flags = match &cap.access_type {
                Some(AccessType::Mount(m)) => m.mount_flags.clone(),
                _ => Vec::new(),
            };
            mounts::bind(Path::new(staging), target_path, read_only, &flags).await?;
        }
        tracing::info!(volume.id = %id, target, read_only, "published");
        Ok(NodePublishVolumeResponse {})
    }

    pub(crate) async fn unpublish(
        &self,
        req: NodeUnpublishVolumeRequest,
    ) -> Result<NodeUnpublishVolumeResponse, Error> {
        let id = need(&req.volume_id, "volume_id")?;
        let target = need(&req.target_path, "target_path")?;
        let _guard = self.node.in_flight.claim(format!("volume {id}"))?;
        let target_path = Path::new(target);
        mounts::unmount_all(target_path).await?;
        let removed = if target_path.is_dir() {
            std::fs::remove_dir(target_path)
        } else {
            std::fs::remove_file(target_path)
        };
        match removed {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Error::Internal(format!(
                    "cannot remove target path {target}: {e}"
                )));
            }
        }
        tracing::info!(volume.id = %id, target, "unpublished");
        Ok(NodeUnpublishVolumeResponse {})
    }
}

fn kind(block: bool) -> &'static str {
    if block { "block" } else { "mount" }
}
