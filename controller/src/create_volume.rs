//! CreateVolume: provision a volume, empty, from a snapshot or as a clone.

use crate::ControllerService;
use crate::convert;
use ferry_csi::error::{Error, Result, required};
use ferry_csi::validate;
use ferry_proto::v1::volume_content_source::Type;
use ferry_proto::v1::{CreateVolumeRequest, CreateVolumeResponse};
use ferry_store::{Source, VolumeOptions, VolumeSpec};

/// Capacity given when the CO names none.
pub const DEFAULT_CAPACITY: u64 = 1 << 30;

impl ControllerService {
    /// Spec "CreateVolume": the name makes it idempotent (same name and request, same
    /// volume; same name, other request, ALREADY_EXISTS); a content source copies only a root;
    /// a capacity range that cannot be met is OUT_OF_RANGE; a missing source NOT_FOUND.
    pub(crate) async fn create_volume_inner(
        &self,
        req: CreateVolumeRequest,
    ) -> Result<CreateVolumeResponse> {
        validate::volume_name(&req.name)?;
        validate::capabilities(&req.volume_capabilities)?;
        let parameters = req.parameters.into_iter().collect();
        let options = VolumeOptions::from_params(&parameters)?;
        let source = match req.volume_content_source.and_then(|s| s.r#type) {
            None => None,
            Some(Type::Snapshot(s)) if s.snapshot_id.is_empty() => {
                return Err(required("volume_content_source.snapshot.snapshot_id"));
            }
            Some(Type::Volume(v)) if v.volume_id.is_empty() => {
                return Err(required("volume_content_source.volume.volume_id"));
            }
            Some(Type::Snapshot(s)) => Some(Source::Snapshot(s.snapshot_id)),
            Some(Type::Volume(v)) => Some(Source::Volume(v.volume_id)),
        };
        let _guard = self.in_flight.claim(format!("volume name {}", req.name))?;
        let source_size = match &source {
            None => 0,
            Some(Source::Snapshot(id)) => self.store.get_snapshot(id).await?.size_bytes,
            Some(Source::Volume(id)) => self.store.get_volume(id).await?.size_bytes(),
            // Not reachable from a CSI request: imports are made by the transfer engine.
            Some(Source::Import(i)) => i.size_bytes,
        };
        let capacity =
            validate::capacity(req.capacity_range.as_ref(), DEFAULT_CAPACITY, source_size)?;
        let spec = VolumeSpec {
            name: req.name,
            capacity_bytes: capacity,
            options,
            parameters,
            source,
        };
        let info = self.store.create_volume(spec).await.map_err(Error::from)?;
        tracing::info!(volume.id = %info.id(), capacity, "volume ready");
        Ok(CreateVolumeResponse {
            volume: Some(convert::volume(&info)),
        })
    }
}
