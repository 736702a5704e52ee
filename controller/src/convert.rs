//! Store records to CSI messages. Domain types stop here.

use ferry_proto::v1::volume_content_source::{SnapshotSource, Type, VolumeSource};
use ferry_proto::v1::{Snapshot, Volume, VolumeContentSource};
use ferry_store::{SnapshotRecord, Source, VolumeInfo};

/// Volume context key holding the chunk size (static for a volume).
pub const CTX_CHUNK_SIZE: &str = "ferry.dev/chunkSize";

/// The CSI view of a volume.
pub fn volume(v: &VolumeInfo) -> Volume {
    // An imported volume has no CSI content source: its content came from another cluster.
    let content_source = v.record.spec.source.as_ref().and_then(|s| {
        let t = match s {
            Source::Snapshot(id) => Type::Snapshot(SnapshotSource {
                snapshot_id: id.clone(),
            }),
            Source::Volume(id) => Type::Volume(VolumeSource {
                volume_id: id.clone(),
            }),
            Source::Import(_) => return None,
        };
        Some(VolumeContentSource { r#type: Some(t) })
    });
    Volume {
        capacity_bytes: v.size_bytes() as i64,
        volume_id: v.id().to_string(),
        volume_context: [(
            CTX_CHUNK_SIZE.to_string(),
            v.record.spec.options.chunk_size.to_string(),
        )]
        .into(),
        content_source,
        accessible_topology: Vec::new(),
    }
}

/// The CSI view of a snapshot. Snapshots are ready when created: they copy a root.
pub fn snapshot(s: &SnapshotRecord) -> Snapshot {
    Snapshot {
        size_bytes: s.size_bytes as i64,
        snapshot_id: s.id.clone(),
        source_volume_id: s.source_volume_id.clone(),
        creation_time: Some(prost_types::Timestamp {
            seconds: (s.created_ms / 1000) as i64,
            nanos: ((s.created_ms % 1000) * 1_000_000) as i32,
        }),
        ready_to_use: true,
        group_snapshot_id: s.group_snapshot_id.clone().unwrap_or_default(),
    }
}

/// A group snapshot record and its members as the CSI message.
pub fn group_snapshot(
    g: &ferry_store::GroupSnapshotRecord,
    members: &[SnapshotRecord],
) -> ferry_proto::v1::VolumeGroupSnapshot {
    ferry_proto::v1::VolumeGroupSnapshot {
        group_snapshot_id: g.id.clone(),
        snapshots: members.iter().map(snapshot).collect(),
        creation_time: Some(prost_types::Timestamp {
            seconds: (g.created_ms / 1000) as i64,
            nanos: ((g.created_ms % 1000) * 1_000_000) as i32,
        }),
        ready_to_use: true,
    }
}
