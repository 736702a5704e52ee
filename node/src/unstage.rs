//! NodeUnstageVolume: unmount the staging path, detach the loop device, stop the volume
//! server (which flushes on its way out), give the lease back. A volume that is not staged
//! here is fine: the call is idempotent.

use crate::servers::Servers;
use crate::{NodeService, loopdev, mounts, need};
use ferry_csi::Error;
use ferry_proto::v1::{NodeUnstageVolumeRequest, NodeUnstageVolumeResponse};
use std::path::Path;

/// How long unstaging waits for detached loop devices to let go of the volume's image.
const DETACH_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

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
        for dev in loopdev::find(&dir.disk()) {
            loopdev::detach(&dev).await?;
        }
        // The kernel lets go of a detached device's backing file asynchronously: wait (a
        // bounded time) until no loop device names it, so the server's unmount finds it free.
        let started = std::time::Instant::now();
        while !loopdev::find(&dir.disk()).is_empty() && started.elapsed() < DETACH_WAIT {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        Servers::stop(&dir).await?;
        // The server released the lease after its last flush; this covers a server that
        // died, whose unflushed writes were never acknowledged by an fsync.
        self.node
            .store
            .release_lease(id, &self.node.config.node_id)
            .await?;
        dir.remove()?;
        tracing::info!(volume.id = %id, staging, "unstaged");
        Ok(NodeUnstageVolumeResponse {})
    }
}
