//! DeleteVolume.

use crate::ControllerService;
use ferry_csi::error::{Result, required};
use ferry_proto::v1::{DeleteVolumeRequest, DeleteVolumeResponse};

impl ControllerService {
    /// Spec "DeleteVolume": deleting a volume that does not exist succeeds. Snapshots of the
    /// volume stay usable.
    pub(crate) async fn delete_volume_inner(
        &self,
        req: DeleteVolumeRequest,
    ) -> Result<DeleteVolumeResponse> {
        if req.volume_id.is_empty() {
            return Err(required("volume_id"));
        }
        let _guard = self.in_flight.claim(format!("volume {}", req.volume_id))?;
        self.store.delete_volume(&req.volume_id).await?;
        Ok(DeleteVolumeResponse {})
    }
}
