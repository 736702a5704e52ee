//! ListVolumes and ControllerGetVolume.

use crate::ControllerService;
use crate::convert;
use ferry_csi::error::{Error, Result, required};
use ferry_proto::v1::{
    ControllerGetVolumeRequest, ControllerGetVolumeResponse, ListVolumesRequest,
    ListVolumesResponse, VolumeCondition, controller_get_volume_response, list_volumes_response,
};

impl ControllerService {
    /// Spec "ListVolumes": pages of at most `max_entries`, `next_token` for the rest; a token
    /// this plugin did not hand out is ABORTED.
    pub(crate) async fn list_volumes_inner(
        &self,
        req: ListVolumesRequest,
    ) -> Result<ListVolumesResponse> {
        if req.max_entries < 0 {
            return Err(Error::InvalidArgument(
                "max_entries must not be negative".into(),
            ));
        }
        let start = (!req.starting_token.is_empty()).then_some(req.starting_token.as_str());
        let (page, next) = self
            .store
            .list_volumes(start, req.max_entries as usize)
            .await?;
        Ok(ListVolumesResponse {
            entries: page
                .iter()
                .map(|v| list_volumes_response::Entry {
                    volume: Some(convert::volume(v)),
                    status: None,
                })
                .collect(),
            next_token: next.unwrap_or_default(),
        })
    }

    /// Spec "ControllerGetVolume": the volume and its condition; abnormal when the root of
    /// its content cannot be read back from the store.
    pub(crate) async fn get_volume_inner(
        &self,
        req: ControllerGetVolumeRequest,
    ) -> Result<ControllerGetVolumeResponse> {
        if req.volume_id.is_empty() {
            return Err(required("volume_id"));
        }
        let v = self.store.get_volume(&req.volume_id).await?;
        let condition = match v.head.root.is_zero() {
            true => VolumeCondition {
                abnormal: false,
                message: "volume is readable (no data written yet)".into(),
            },
            false => match self.store.blobs().get_page(&v.head.root).await {
                Ok(_) => VolumeCondition {
                    abnormal: false,
                    message: "volume root is readable".into(),
                },
                Err(e) => VolumeCondition {
                    abnormal: true,
                    message: format!("volume root cannot be read: {e}"),
                },
            },
        };
        Ok(ControllerGetVolumeResponse {
            volume: Some(convert::volume(&v)),
            status: Some(controller_get_volume_response::VolumeStatus {
                published_node_ids: Vec::new(),
                volume_condition: Some(condition),
            }),
        })
    }
}
