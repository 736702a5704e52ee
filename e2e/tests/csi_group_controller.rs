//! The CSI GroupController service of the real `ferry` binary over its unix socket: what
//! csi-sanity's GroupController specs check (the service advertised, its capability, the
//! required fields, NOT_FOUND for an unknown group, deleting an unknown group succeeds), and
//! what a group snapshot must be: members of each volume, ready, listed with their group,
//! idempotent by name, restorable, deleted with the group and not without it.

use ferry_e2e::Plugin;
use ferry_proto::v1::plugin_capability::{Type as PluginCap, service};
use ferry_proto::v1::volume_capability::{AccessMode, AccessType, MountVolume, access_mode::Mode};
use ferry_proto::v1::volume_content_source::{SnapshotSource, Type};
use ferry_proto::v1::*;
use tonic::Code;

fn volume_req(name: &str) -> CreateVolumeRequest {
    CreateVolumeRequest {
        name: name.into(),
        capacity_range: Some(CapacityRange {
            required_bytes: 4 << 20,
            limit_bytes: 0,
        }),
        volume_capabilities: vec![VolumeCapability {
            access_type: Some(AccessType::Mount(MountVolume {
                fs_type: "ext4".into(),
                ..Default::default()
            })),
            access_mode: Some(AccessMode {
                mode: Mode::SingleNodeWriter as i32,
            }),
        }],
        ..Default::default()
    }
}

fn code<T: std::fmt::Debug>(r: Result<T, tonic::Status>) -> Code {
    r.expect_err("call should fail").code()
}

#[tokio::test]
async fn the_group_controller_is_advertised_and_checks_its_inputs() {
    let p = Plugin::start_fs().await;
    let caps = p
        .identity()
        .await
        .get_plugin_capabilities(GetPluginCapabilitiesRequest {})
        .await
        .expect("caps")
        .into_inner()
        .capabilities;
    assert!(caps.iter().any(|c| matches!(&c.r#type,
        Some(PluginCap::Service(s)) if s.r#type == service::Type::GroupControllerService as i32)));
    let mut g = p.group_controller().await;
    let gc = g
        .group_controller_get_capabilities(GroupControllerGetCapabilitiesRequest {})
        .await
        .expect("group caps")
        .into_inner()
        .capabilities;
    use group_controller_service_capability::{Type as T, rpc::Type as R};
    let types: Vec<i32> = gc
        .iter()
        .filter_map(|c| c.r#type.as_ref().map(|T::Rpc(r)| r.r#type))
        .collect();
    assert_eq!(types, vec![R::CreateDeleteGetVolumeGroupSnapshot as i32]);

    // csi-sanity's cases.
    let no_name = g
        .create_volume_group_snapshot(CreateVolumeGroupSnapshotRequest::default())
        .await;
    assert_eq!(code(no_name), Code::InvalidArgument);
    let no_sources = g
        .create_volume_group_snapshot(CreateVolumeGroupSnapshotRequest {
            name: "g".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(code(no_sources), Code::InvalidArgument);
    let no_id = g
        .get_volume_group_snapshot(GetVolumeGroupSnapshotRequest::default())
        .await;
    assert_eq!(code(no_id), Code::InvalidArgument);
    let unknown = g
        .get_volume_group_snapshot(GetVolumeGroupSnapshotRequest {
            group_snapshot_id: "fake-volume-id".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(code(unknown), Code::NotFound);
    let no_id = g
        .delete_volume_group_snapshot(DeleteVolumeGroupSnapshotRequest::default())
        .await;
    assert_eq!(code(no_id), Code::InvalidArgument);
    g.delete_volume_group_snapshot(DeleteVolumeGroupSnapshotRequest {
        group_snapshot_id: "fake-volume-id".into(),
        ..Default::default()
    })
    .await
    .expect("deleting an unknown group succeeds");
    let missing_volume = g
        .create_volume_group_snapshot(CreateVolumeGroupSnapshotRequest {
            name: "g".into(),
            source_volume_ids: vec!["vol-00000000000000000000000000000000".into()],
            ..Default::default()
        })
        .await;
    assert_eq!(code(missing_volume), Code::NotFound);
}

#[tokio::test]
async fn a_group_snapshot_snapshots_each_volume_and_goes_with_its_members() {
    let p = Plugin::start_fs().await;
    let mut c = p.controller().await;
    let mut g = p.group_controller().await;
    let mut ids = Vec::new();
    for n in ["db-0", "db-1", "db-2"] {
        let v = c
            .create_volume(volume_req(n))
            .await
            .expect("volume")
            .into_inner()
            .volume
            .expect("volume");
        ids.push(v.volume_id);
    }
    let req = CreateVolumeGroupSnapshotRequest {
        name: "db-at-noon".into(),
        source_volume_ids: ids.clone(),
        ..Default::default()
    };
    let group = g
        .create_volume_group_snapshot(req.clone())
        .await
        .expect("create")
        .into_inner()
        .group_snapshot
        .expect("group");
    assert!(group.ready_to_use && group.creation_time.is_some());
    assert_eq!(group.snapshots.len(), 3);
    for (s, id) in group.snapshots.iter().zip(&ids) {
        assert_eq!(&s.source_volume_id, id);
        assert_eq!(s.group_snapshot_id, group.group_snapshot_id);
        assert!(s.ready_to_use);
    }
    // Idempotent by name; the same name over other volumes is ALREADY_EXISTS.
    let again = g
        .create_volume_group_snapshot(req.clone())
        .await
        .expect("again")
        .into_inner()
        .group_snapshot
        .expect("group");
    assert_eq!(again.group_snapshot_id, group.group_snapshot_id);
    let other = g
        .create_volume_group_snapshot(CreateVolumeGroupSnapshotRequest {
            source_volume_ids: ids[..2].to_vec(),
            ..req.clone()
        })
        .await;
    assert_eq!(code(other), Code::AlreadyExists);
    // Get, with and without the member ids; wrong member ids are refused.
    let member_ids: Vec<String> = group
        .snapshots
        .iter()
        .map(|s| s.snapshot_id.clone())
        .collect();
    let got = g
        .get_volume_group_snapshot(GetVolumeGroupSnapshotRequest {
            group_snapshot_id: group.group_snapshot_id.clone(),
            snapshot_ids: member_ids.clone(),
            ..Default::default()
        })
        .await
        .expect("get")
        .into_inner()
        .group_snapshot
        .expect("group");
    assert_eq!(got.snapshots.len(), 3);
    let wrong = g
        .get_volume_group_snapshot(GetVolumeGroupSnapshotRequest {
            group_snapshot_id: group.group_snapshot_id.clone(),
            snapshot_ids: member_ids[..1].to_vec(),
            ..Default::default()
        })
        .await;
    assert_eq!(code(wrong), Code::InvalidArgument);
    // Members are listed with their group, restore like any snapshot, and do not go alone.
    let listed = c
        .list_snapshots(ListSnapshotsRequest {
            snapshot_id: member_ids[0].clone(),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .entries;
    assert_eq!(
        listed[0]
            .snapshot
            .as_ref()
            .map(|s| s.group_snapshot_id.clone()),
        Some(group.group_snapshot_id.clone())
    );
    c.create_volume(CreateVolumeRequest {
        volume_content_source: Some(VolumeContentSource {
            r#type: Some(Type::Snapshot(SnapshotSource {
                snapshot_id: member_ids[1].clone(),
            })),
        }),
        ..volume_req("restored")
    })
    .await
    .expect("restore a member");
    let alone = c
        .delete_snapshot(DeleteSnapshotRequest {
            snapshot_id: member_ids[0].clone(),
            ..Default::default()
        })
        .await;
    assert_eq!(code(alone), Code::FailedPrecondition);
    g.delete_volume_group_snapshot(DeleteVolumeGroupSnapshotRequest {
        group_snapshot_id: group.group_snapshot_id.clone(),
        snapshot_ids: member_ids.clone(),
        ..Default::default()
    })
    .await
    .expect("delete");
    for m in &member_ids {
        let left = c
            .list_snapshots(ListSnapshotsRequest {
                snapshot_id: m.clone(),
                ..Default::default()
            })
            .await
            .expect("list")
            .into_inner()
            .entries;
        assert!(left.is_empty(), "member {m} deleted with its group");
    }
    let gone = g
        .get_volume_group_snapshot(GetVolumeGroupSnapshotRequest {
            group_snapshot_id: group.group_snapshot_id.clone(),
            ..Default::default()
        })
        .await;
    assert_eq!(code(gone), Code::NotFound);
}
