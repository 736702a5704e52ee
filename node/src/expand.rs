//! NodeExpandVolume: after the controller committed the larger size, tell the volume server
//! (a size change on its image file), refresh the loop device, grow the filesystem online.

use crate::{NodeService, filesystem, loopdev, need};
use ferry_csi::Error;
use ferry_proto::v1::{NodeExpandVolumeRequest, NodeExpandVolumeResponse};
use std::path::Path;

impl NodeService {
    pub(crate) async fn expand(
        &self,
        req: NodeExpandVolumeRequest,
    ) -> Result<NodeExpandVolumeResponse, Error> {
        let id = need(&req.volume_id, "volume_id")?;
        let path = need(&req.volume_path, "volume_path")?;
        let _guard = self.node.in_flight.claim(format!("volume {id}"))?;
        let (dir, rec) = self.staged_at(id, path)?;
        let required = req
            .capacity_range
            .as_ref()
            .map_or(0, |r| r.required_bytes.max(0) as u64);
        let committed = self.node.store.get_volume(id).await?.head.size_bytes;
        if committed < required {
            return Err(Error::Store(ferry_store::Error::OutOfRange(format!(
                "volume {id} is {committed} bytes in the store, less than the {required} asked: \
                 ControllerExpandVolume must run first"
            ))));
        }
        let image = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.disk())
            .map_err(|e| Error::Internal(format!("cannot open {}: {e}", dir.disk().display())))?;
        image
            .set_len(committed)
            .map_err(|e| Error::Internal(format!("volume server refused the new size: {e}")))?;
        let Some(dev) = loopdev::find(&dir).await?.into_iter().next() else {
            return Err(Error::FailedPrecondition(format!(
                "volume {id} has no device on this node: stage it again"
            )));
        };
        loopdev::refresh_capacity(&dev).await?;
        if !rec.block {
            filesystem::grow(&dev, &rec.fs_type, Path::new(&rec.staging_path)).await?;
        }
        tracing::info!(volume.id = %id, bytes = committed, "expanded on node");
        Ok(NodeExpandVolumeResponse {
            capacity_bytes: committed as i64,
        })
    }
}
