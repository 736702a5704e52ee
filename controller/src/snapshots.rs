//! CreateSnapshot, DeleteSnapshot and ListSnapshots.

use crate::ControllerService;
use crate::convert;
use ferry_csi::error::{Error, Result, required};
use ferry_proto::v1::{
    CreateSnapshotRequest, CreateSnapshotResponse, DeleteSnapshotRequest, DeleteSnapshotResponse,
    ListSnapshotsRequest, ListSnapshotsResponse, list_snapshots_response,
};
use ferry_store::SnapshotFilter;

impl ControllerService {
    /// Spec "CreateSnapshot": copies the volume's current root (every write flushed before
    /// the call is in it), ready at once; the name makes it idempotent, a name taken for
    /// another volume is ALREADY_EXISTS, an unknown volume NOT_FOUND.
    pub(crate) async fn create_snapshot_inner(
        &self,
        req: CreateSnapshotRequest,
    ) -> Result<CreateSnapshotResponse> {
        if req.name.is_empty() {
            return Err(required("name"));
        }
        if req.source_volume_id.is_empty() {
            return Err(required("source_volume_id"));
        }
        let _guard = self
            .in_flight
            .claim(format!("snapshot name {}", req.name))?;
        let snap = self
            .store
            .create_snapshot(
                &req.name,
                &req.source_volume_id,
                req.parameters.into_iter().collect(),
            )
            .await?;
        Ok(CreateSnapshotResponse {
            snapshot: Some(convert::snapshot(&snap)),
        })
    }

    /// Spec "DeleteSnapshot": deleting a snapshot that does not exist succeeds; volumes made
    /// from it keep their data.
    pub(crate) async fn delete_snapshot_inner(
        &self,
        req: DeleteSnapshotRequest,
    ) -> Result<DeleteSnapshotResponse> {
        if req.snapshot_id.is_empty() {
            return Err(required("snapshot_id"));
        }
        let _guard = self
            .in_flight
            .claim(format!("snapshot {}", req.snapshot_id))?;
        self.store.delete_snapshot(&req.snapshot_id).await?;
        Ok(DeleteSnapshotResponse {})
    }

    /// Spec "ListSnapshots": filters by snapshot id or source volume (an unknown id gives an
    /// empty list), pages with `next_token`; a foreign token is ABORTED.
    pub(crate) async fn list_snapshots_inner(
        &self,
        req: ListSnapshotsRequest,
    ) -> Result<ListSnapshotsResponse> {
        if req.max_entries < 0 {
            return Err(Error::InvalidArgument(
                "max_entries must not be negative".into(),
            ));
        }
        let filter = SnapshotFilter {
            snapshot_id: (!req.snapshot_id.is_empty()).then_some(req.snapshot_id),
            source_volume_id: (!req.source_volume_id.is_empty()).then_some(req.source_volume_id),
        };
        let start = (!req.starting_token.is_empty()).then_some(req.starting_token.as_str());
        let (page, next) = self
            .store
            .list_snapshots(&filter, start, req.max_entries as usize)
            .await?;
        Ok(ListSnapshotsResponse {
            entries: page
                .iter()
                .map(|s| list_snapshots_response::Entry {
                    snapshot: Some(convert::snapshot(s)),
                })
                .collect(),
            next_token: next.unwrap_or_default(),
        })
    }
}
