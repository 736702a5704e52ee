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
        // One listing of the nodes' reports for the whole page (usually empty).
        // A failed read of the reports makes no entry abnormal and fails no listing.
        let reports = self.store.abnormal_volumes().await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read the nodes' volume health reports");
            Default::default()
        });
        Ok(ListVolumesResponse {
            entries: page
                .iter()
                .map(|v| list_volumes_response::Entry {
                    volume: Some(convert::volume(v)),
                    status: Some(list_volumes_response::VolumeStatus {
                        published_node_ids: Vec::new(),
                        volume_condition: Some(reported_condition(
                            reports.get(v.id()).map(Vec::as_slice).unwrap_or_default(),
                        )),
                    }),
                })
                .collect(),
            next_token: next.unwrap_or_default(),
        })
    }

    /// Spec "ControllerGetVolume": the volume and its condition; abnormal when a node
    /// reported that the volume failed there (its server died and its connection was
    /// aborted) or when the root of its content cannot be read back from the store.
    pub(crate) async fn get_volume_inner(
        &self,
        req: ControllerGetVolumeRequest,
    ) -> Result<ControllerGetVolumeResponse> {
        if req.volume_id.is_empty() {
            return Err(required("volume_id"));
        }
        let v = self.store.get_volume(&req.volume_id).await?;
        let reports = self.store.volume_health(&req.volume_id).await?;
        let condition = match v.head.root.is_zero() {
            _ if !reports.is_empty() => reported_condition(&reports),
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

/// The condition the nodes' reports give: abnormal with each node's words, or normal.
fn reported_condition(reports: &[ferry_store::VolumeHealthNote]) -> VolumeCondition {
    if reports.is_empty() {
        return VolumeCondition {
            abnormal: false,
            message: "no node reported a problem with this volume".into(),
        };
    }
    VolumeCondition {
        abnormal: true,
        message: reports
            .iter()
            .map(|r| format!("on node {}: {}", r.node, r.message))
            .collect::<Vec<_>>()
            .join("; "),
    }
}
