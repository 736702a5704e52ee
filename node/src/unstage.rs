//! NodeUnstageVolume: unmount the staging path, detach the loop device, stop the volume
//! server (which flushes on its way out), give the lease back. A volume that is not staged
//! here is fine: the call is idempotent.

use crate::{NodeService, loopdev, mounts, need};
use ferry_csi::Error;
use ferry_proto::v1::{NodeUnstageVolumeRequest, NodeUnstageVolumeResponse};
use std::path::Path;

impl NodeService {
    pub(crate) async fn unstage(
        &self,
        req: NodeUnstageVolumeRequest,
    ) -> Result<NodeUnstageVolumeResponse, Error> {
        let id = need(&req.volume_id, "volume_id")?;
        let staging = need(&req.staging_target_path, "staging_target_path")?;
        let _guard = self.node.in_flight.claim(format!("volume {id}"))?;
        let dir = self.dir(id)?;
        if let Some(rec) = dir.load_stage()
            && rec.staging_path != staging
        {
            return Err(Error::FailedPrecondition(format!(
                "volume {id} is staged at {}, not {staging}",
                rec.staging_path
            )));
        }
        mounts::unmount_all(Path::new(staging)).await?;
        loopdev::detach_all(&dir).await?;
        self.node.servers.stop(id).await?;
        // The server released the lease after its last flush; this covers a server that
        // died, whose unflushed writes were never acknowledged by an fsync.
        self.node
            .store
            .release_lease(id, &self.node.config.node_id)
            .await?;
        // Whatever this node reported of the volume goes with it (a report may have landed
        // after the marker was last read, so the delete is not made to depend on it). The
        // volume is already let go: a store that refuses only leaves a stale report.
        if let Err(e) = self
            .node
            .store
            .clear_volume_health(id, &self.node.config.node_id)
            .await
        {
            tracing::warn!(volume.id = %id, error = %e, "cannot withdraw this node's health report of the volume");
        }
        dir.remove()?;
        tracing::info!(volume.id = %id, staging, "unstaged");
        Ok(NodeUnstageVolumeResponse {})
    }
}
