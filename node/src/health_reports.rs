//! The node's reports of failed volumes, kept in the chunk store for the controller: for
//! each volume whose connection the volume host aborted (`<state>/volumes/<id>/health.json`
//! abnormal), a report under `health/<id>/<node>.json` (`Store::report_volume_abnormal`),
//! which ControllerGetVolume and ListVolumes carry as the volume's condition, the path the
//! CSI external-health-monitor reads. The report goes when the volume is served again here
//! (the host took it up with a new server) or unstaged. `health.stored` in the volume's
//! folder holds the time of the record last reported, so each is written once, also across
//! plugin restarts. Needs only the store, no API credentials.

use crate::NodeService;
use crate::state::{VolumeDir, volume_dirs};
use std::path::PathBuf;
use std::time::Duration;

/// How often the state folder is looked at.
const EVERY: Duration = Duration::from_secs(5);

fn stored_file(dir: &VolumeDir) -> PathBuf {
    dir.root().join("health.stored")
}

/// The time of the record this node last reported for the volume, if it did.
pub(crate) fn stored(dir: &VolumeDir) -> Option<u64> {
    std::fs::read_to_string(stored_file(dir))
        .ok()
        .and_then(|t| t.trim().parse().ok())
}

impl NodeService {
    /// Brings the store's reports in line with the state folder once: reports each
    /// abnormal record not reported yet, withdraws the report of a volume served again.
    /// How many reports it wrote or withdrew.
    pub async fn sync_health_reports(&self) -> usize {
        let node = &self.node.config.node_id;
        let mut changed = 0;
        for (id, dir) in volume_dirs(&self.node.config.state_dir) {
            let health = dir.load_health().filter(|h| h.abnormal);
            let done = stored(&dir);
            match health {
                Some(h) if done != Some(h.at_ms) => {
                    match self
                        .node
                        .store
                        .report_volume_abnormal(&id, node, &h.message, h.at_ms)
                        .await
                    {
                        Ok(()) => {
                            let _ = std::fs::write(stored_file(&dir), h.at_ms.to_string());
                            changed += 1;
                        }
                        Err(e) => {
                            tracing::warn!(volume.id = %id, error = %e, "cannot record the volume's failure in the store; retrying")
                        }
                    }
                }
                None if done.is_some() => {
                    match self.node.store.clear_volume_health(&id, node).await {
                        Ok(()) => {
                            let _ = std::fs::remove_file(stored_file(&dir));
                            changed += 1;
                        }
                        Err(e) => {
                            tracing::warn!(volume.id = %id, error = %e, "cannot withdraw the volume's failure report; retrying")
                        }
                    }
                }
                _ => {}
            }
        }
        changed
    }

    /// [`NodeService::sync_health_reports`] every few seconds, until the task is dropped.
    pub async fn report_health_forever(self) {
        loop {
            self.sync_health_reports().await;
            tokio::time::sleep(EVERY).await;
        }
    }
}
