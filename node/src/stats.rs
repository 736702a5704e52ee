//! NodeGetVolumeStats: bytes and inodes of the mounted filesystem (or the size of a block
//! volume), and the volume's condition from its server's health.

use crate::servers::Servers;
use crate::{NodeService, loopdev, need};
use ferry_csi::Error;
use ferry_proto::v1::volume_usage::Unit;
use ferry_proto::v1::{
    NodeGetVolumeStatsRequest, NodeGetVolumeStatsResponse, VolumeCondition, VolumeUsage,
};

impl NodeService {
    pub(crate) async fn stats(
        &self,
        req: NodeGetVolumeStatsRequest,
    ) -> Result<NodeGetVolumeStatsResponse, Error> {
        let id = need(&req.volume_id, "volume_id")?;
        let path = need(&req.volume_path, "volume_path")?;
        let (dir, rec) = self.staged_at(id, path)?;
        let condition = condition(&dir);
        let usage = if rec.block {
            let size = match loopdev::find(&dir).await?.first() {
                Some(dev) => loopdev::size(dev).await?,
                None => 0,
            };
            vec![VolumeUsage {
                total: size as i64,
                unit: Unit::Bytes as i32,
                ..Default::default()
            }]
        } else {
            fs_usage(path)?
        };
        Ok(NodeGetVolumeStatsResponse {
            usage,
            volume_condition: Some(condition),
        })
    }
}

fn fs_usage(path: &str) -> Result<Vec<VolumeUsage>, Error> {
    let st =
        rustix::fs::statvfs(path).map_err(|e| Error::Internal(format!("statvfs {path}: {e}")))?;
    let frsize = st.f_frsize;
    let bytes = VolumeUsage {
        total: (st.f_blocks * frsize) as i64,
        available: (st.f_bavail * frsize) as i64,
        used: ((st.f_blocks - st.f_bfree) * frsize) as i64,
        unit: Unit::Bytes as i32,
    };
    let inodes = VolumeUsage {
        total: st.f_files as i64,
        available: st.f_favail as i64,
        used: (st.f_files - st.f_ffree) as i64,
        unit: Unit::Inodes as i32,
    };
    Ok(vec![bytes, inodes])
}

/// Abnormal when the server is gone, lost its lease, or its last I/O or flush failed.
fn condition(dir: &crate::state::VolumeDir) -> VolumeCondition {
    let abnormal = |message: String| VolumeCondition {
        abnormal: true,
        message,
    };
    match Servers::status(dir) {
        Err(why) => abnormal(why),
        Ok(r) => match (r.lease_lost, r.error) {
            (Some(l), _) => abnormal(format!("writes can no longer be committed: {l}")),
            (None, Some(e)) => abnormal(e),
            (None, None) => VolumeCondition {
                abnormal: false,
                message: match dir.load_health() {
                    // What the host did when a server before this one died.
                    Some(h) => format!(
                        "healthy; {} flushes, generation {}; {}",
                        r.flushes, r.generation, h.message
                    ),
                    None => format!(
                        "healthy; {} flushes, generation {}",
                        r.flushes, r.generation
                    ),
                },
            },
        },
    }
}
