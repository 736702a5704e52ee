//! GetCapacity and ControllerExpandVolume.

use crate::ControllerService;
use ferry_csi::error::{Result, required};
use ferry_csi::validate;
use ferry_proto::v1::{
    ControllerExpandVolumeRequest, ControllerExpandVolumeResponse, GetCapacityRequest,
    GetCapacityResponse,
};

impl ControllerService {
    /// Spec "GetCapacity": free bytes of the store (a local folder's free space, or the
    /// configured capacity of an object store), and the largest volume accepted.
    pub(crate) async fn get_capacity_inner(
        &self,
        _req: GetCapacityRequest,
    ) -> Result<GetCapacityResponse> {
        let available = self.store.available_bytes().min(i64::MAX as u64) as i64;
        Ok(GetCapacityResponse {
            available_capacity: available,
            maximum_volume_size: Some(self.store.options().max_volume_bytes as i64),
            minimum_volume_size: Some(4096),
        })
    }

    /// Spec "ControllerExpandVolume": grows the volume (never shrinks); the root is
    /// unchanged, so this is instant for any size. The node then grows the device and
    /// filesystem, so `node_expansion_required` is true.
    pub(crate) async fn expand_inner(
        &self,
        req: ControllerExpandVolumeRequest,
    ) -> Result<ControllerExpandVolumeResponse> {
        if req.volume_id.is_empty() {
            return Err(required("volume_id"));
        }
        let range = req
            .capacity_range
            .as_ref()
            .ok_or_else(|| required("capacity_range"))?;
        if let Some(cap) = &req.volume_capability
            && let Some(reason) = validate::capability(cap)?
        {
            return Err(ferry_csi::Error::InvalidArgument(reason));
        }
        let size = validate::capacity(Some(range), 0, 0)?;
        let _guard = self.in_flight.claim(format!("volume {}", req.volume_id))?;
        let current = self.store.get_volume(&req.volume_id).await?.size_bytes();
        let size = self
            .store
            .expand_volume(&req.volume_id, size.max(current))
            .await?;
        Ok(ControllerExpandVolumeResponse {
            capacity_bytes: size as i64,
            node_expansion_required: true,
        })
    }
}
