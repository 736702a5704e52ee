//! ValidateVolumeCapabilities.

use crate::ControllerService;
use ferry_csi::error::{Result, required};
use ferry_csi::validate;
use ferry_proto::v1::validate_volume_capabilities_response::Confirmed;
use ferry_proto::v1::{ValidateVolumeCapabilitiesRequest, ValidateVolumeCapabilitiesResponse};

impl ControllerService {
    /// Spec "ValidateVolumeCapabilities": NOT_FOUND for an unknown volume; `confirmed` set
    /// only when every capability is supported, otherwise a message saying which is not.
    pub(crate) async fn validate_inner(
        &self,
        req: ValidateVolumeCapabilitiesRequest,
    ) -> Result<ValidateVolumeCapabilitiesResponse> {
        if req.volume_id.is_empty() {
            return Err(required("volume_id"));
        }
        if req.volume_capabilities.is_empty() {
            return Err(required("volume_capabilities"));
        }
        self.store.get_volume(&req.volume_id).await?;
        for cap in &req.volume_capabilities {
            if let Some(reason) = validate::capability(cap)? {
                return Ok(ValidateVolumeCapabilitiesResponse {
                    confirmed: None,
                    message: reason,
                });
            }
        }
        Ok(ValidateVolumeCapabilitiesResponse {
            confirmed: Some(Confirmed {
                volume_context: req.volume_context,
                volume_capabilities: req.volume_capabilities,
                parameters: req.parameters,
                mutable_parameters: Default::default(),
            }),
            message: String::new(),
        })
    }
}
