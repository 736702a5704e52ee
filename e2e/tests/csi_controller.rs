//! The CSI Identity and Controller services of the real `ferry` binary, called over its unix
//! socket with a tonic client: one test per behaviour the CSI specification asks of a call.

use ferry_e2e::Plugin;
use ferry_proto::v1::controller_client::ControllerClient;
use ferry_proto::v1::plugin_capability::{Type as PluginCap, service};
use ferry_proto::v1::volume_capability::{
    AccessMode, AccessType, BlockVolume, MountVolume, access_mode::Mode,
};
use ferry_proto::v1::volume_content_source::{SnapshotSource, Type, VolumeSource};
use ferry_proto::v1::*;
use ferry_testkit::{Kind, TestServer};
use tonic::Code;
use tonic::transport::Channel;

fn mount(fs: &str, mode: Mode) -> VolumeCapability {
    VolumeCapability {
        access_type: Some(AccessType::Mount(MountVolume {
            fs_type: fs.into(),
            ..Default::default()
        })),
        access_mode: Some(AccessMode { mode: mode as i32 }),
    }
}

fn block() -> VolumeCapability {
    VolumeCapability {
        access_type: Some(AccessType::Block(BlockVolume {})),
        access_mode: Some(AccessMode {
            mode: Mode::SingleNodeWriter as i32,
        }),
    }
}

fn create_req(name: &str, bytes: i64) -> CreateVolumeRequest {
    CreateVolumeRequest {
        name: name.into(),
        capacity_range: Some(CapacityRange {
            required_bytes: bytes,
            limit_bytes: 0,
        }),
        volume_capabilities: vec![mount("ext4", Mode::SingleNodeWriter)],
        ..Default::default()
    }
}

fn from_snapshot(name: &str, snap: &str) -> CreateVolumeRequest {
    CreateVolumeRequest {
        volume_content_source: Some(VolumeContentSource {
            r#type: Some(Type::Snapshot(SnapshotSource {
                snapshot_id: snap.into(),
            })),
        }),
        ..create_req(name, 0)
    }
}

async fn create(c: &mut ControllerClient<Channel>, name: &str, bytes: i64) -> Volume {
    c.create_volume(create_req(name, bytes))
        .await
        .expect("CreateVolume")
        .into_inner()
        .volume
        .expect("volume in response")
}

async fn snapshot(c: &mut ControllerClient<Channel>, name: &str, vol: &str) -> Snapshot {
    c.create_snapshot(CreateSnapshotRequest {
        source_volume_id: vol.into(),
        name: name.into(),
        ..Default::default()
    })
    .await
    .expect("CreateSnapshot")
    .into_inner()
    .snapshot
    .expect("snapshot in response")
}

fn code<T: std::fmt::Debug>(r: Result<T, tonic::Status>) -> (Code, String) {
    let s = r.expect_err("call should fail");
    (s.code(), s.message().to_string())
}

#[tokio::test]
async fn identity_reports_name_capabilities_and_health() {
    let p = Plugin::start_fs().await;
    let mut id = p.identity().await;
    let info = id
        .get_plugin_info(GetPluginInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.name, "ferry.csi.dev");
    assert!(!info.vendor_version.is_empty());
    let caps = id
        .get_plugin_capabilities(GetPluginCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner()
        .capabilities;
    assert!(caps.iter().any(|c| matches!(&c.r#type,
        Some(PluginCap::Service(s)) if s.r#type == service::Type::ControllerService as i32)));
    assert!(
        caps.iter()
            .any(|c| matches!(&c.r#type, Some(PluginCap::VolumeExpansion(_))))
    );
    let probe = id.probe(ProbeRequest {}).await.unwrap().into_inner();
    assert_eq!(probe.ready, Some(true));
}

#[tokio::test]
async fn controller_capabilities_list_what_is_served() {
    let p = Plugin::start_fs().await;
    let caps = p
        .controller()
        .await
        .controller_get_capabilities(ControllerGetCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner()
        .capabilities;
    use controller_service_capability::rpc::Type as R;
    let types: Vec<i32> = caps
        .iter()
        .filter_map(|c| {
            c.r#type
                .as_ref()
                .map(|controller_service_capability::Type::Rpc(r)| r.r#type)
        })
        .collect();
    for t in [
        R::CreateDeleteVolume,
        R::CreateDeleteSnapshot,
        R::ListVolumes,
        R::ListSnapshots,
        R::CloneVolume,
        R::ExpandVolume,
        R::GetCapacity,
        R::GetVolume,
    ] {
        assert!(types.contains(&(t as i32)), "{t:?} advertised");
    }
    assert!(!types.contains(&(R::PublishUnpublishVolume as i32)));
}

#[tokio::test]
async fn create_volume_is_idempotent_and_a_changed_request_is_already_exists() {
    let p = Plugin::start_fs().await;
    let mut c = p.controller().await;
    let a = create(&mut c, "pvc-1", 10 << 20).await;
    let b = create(&mut c, "pvc-1", 10 << 20).await;
    assert_eq!(a, b, "same name and request: same volume");
    assert_eq!(a.capacity_bytes, 10 << 20);
    let (code, msg) = code(c.create_volume(create_req("pvc-1", 20 << 20)).await);
    assert_eq!(code, Code::AlreadyExists, "{msg}");
    assert!(msg.contains("pvc-1"), "{msg}");
    let blk = c
        .create_volume(CreateVolumeRequest {
            volume_capabilities: vec![block()],
            ..create_req("pvc-block", 1 << 20)
        })
        .await
        .unwrap();
    assert!(
        blk.into_inner().volume.is_some(),
        "block volumes are provisioned too"
    );
}

#[tokio::test]
async fn create_volume_names_the_missing_or_bad_field() {
    let p = Plugin::start_fs().await;
    let mut c = p.controller().await;
    let cases: Vec<(CreateVolumeRequest, &str)> = vec![
        (create_req("", 1 << 20), "name"),
        (
            CreateVolumeRequest {
                volume_capabilities: vec![],
                ..create_req("x", 1 << 20)
            },
            "volume_capabilities",
        ),
        (
            CreateVolumeRequest {
                volume_capabilities: vec![VolumeCapability {
                    access_type: None,
                    access_mode: Some(AccessMode { mode: 1 }),
                }],
                ..create_req("x", 1 << 20)
            },
            "access_type",
        ),
        (
            CreateVolumeRequest {
                volume_capabilities: vec![mount("ext4", Mode::Unknown)],
                ..create_req("x", 1 << 20)
            },
            "access_mode",
        ),
        (
            CreateVolumeRequest {
                volume_capabilities: vec![mount("vfat", Mode::SingleNodeWriter)],
                ..create_req("x", 1 << 20)
            },
            "vfat",
        ),
        (
            CreateVolumeRequest {
                parameters: [("chunksize".to_string(), "64Ki".to_string())].into(),
                ..create_req("x", 1 << 20)
            },
            "chunksize",
        ),
        (create_req("x", -5), "negative"),
        // Imports and clones share the chunk store's one name space with provisioned
        // volumes: no CreateVolume may take their form of name.
        (
            create_req("ferry-import-0123456789abcdef", 1 << 20),
            "ferry-import-",
        ),
        (
            create_req("ferry-clone-0123456789abcdef", 1 << 20),
            "ferry-clone-",
        ),
    ];
    for (req, field) in cases {
        let (code, msg) = code(c.create_volume(req).await);
        assert_eq!(code, Code::InvalidArgument, "{msg}");
        assert!(msg.contains(field), "message {msg:?} names {field}");
    }
}

#[tokio::test]
async fn a_killed_plugin_restarts_and_retries_return_the_same_objects() {
    let p = Plugin::start_fs().await;
    let mut c = p.controller().await;
    let v = create(&mut c, "survives", 2 << 20).await;
    let s = snapshot(&mut c, "survives-snap", &v.volume_id).await;
    let p = p.kill_and_restart().await;
    let mut c = p.controller().await;
    assert_eq!(
        create(&mut c, "survives", 2 << 20).await,
        v,
        "CreateVolume retried after a crash"
    );
    assert_eq!(snapshot(&mut c, "survives-snap", &v.volume_id).await, s);
    let listed = c
        .list_volumes(ListVolumesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.entries.len(), 1);
}

#[tokio::test]
async fn capacity_that_cannot_be_met_is_out_of_range() {
    let p = Plugin::start_fs().await;
    let mut c = p.controller().await;
    let mut req = create_req("big", 10 << 20);
    req.capacity_range = Some(CapacityRange {
        required_bytes: 10 << 20,
        limit_bytes: 5 << 20,
    });
    assert_eq!(code(c.create_volume(req).await).0, Code::OutOfRange);
    let v = create(&mut c, "src", 8 << 20).await;
    let s = snapshot(&mut c, "src-snap", &v.volume_id).await;
    let mut small = from_snapshot("too-small", &s.snapshot_id);
    small.capacity_range = Some(CapacityRange {
        required_bytes: 0,
        limit_bytes: 4 << 20,
    });
    let (code, msg) = code(c.create_volume(small).await);
    assert_eq!(code, Code::OutOfRange, "{msg}");
    let huge = create_req("huge", i64::MAX);
    assert_eq!(code_of(c.create_volume(huge).await), Code::OutOfRange);
}

fn code_of<T: std::fmt::Debug>(r: Result<T, tonic::Status>) -> Code {
    code(r).0
}

#[tokio::test]
async fn volumes_from_snapshots_and_clones() {
    let p = Plugin::start_fs().await;
    let mut c = p.controller().await;
    let v = create(&mut c, "orig", 4 << 20).await;
    let s = snapshot(&mut c, "orig-snap", &v.volume_id).await;
    assert!(s.ready_to_use);
    assert_eq!(s.size_bytes, 4 << 20);
    assert_eq!(s.source_volume_id, v.volume_id);
    let r = c
        .create_volume(from_snapshot("restored", &s.snapshot_id))
        .await
        .unwrap();
    let r = r.into_inner().volume.unwrap();
    assert_eq!(r.capacity_bytes, 4 << 20, "defaults to the snapshot's size");
    assert!(matches!(
        r.content_source.and_then(|s| s.r#type),
        Some(Type::Snapshot(_))
    ));
    let clone_req = CreateVolumeRequest {
        volume_content_source: Some(VolumeContentSource {
            r#type: Some(Type::Volume(VolumeSource {
                volume_id: v.volume_id.clone(),
            })),
        }),
        ..create_req("cloned", 8 << 20)
    };
    let cl = c
        .create_volume(clone_req)
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(
        cl.capacity_bytes,
        8 << 20,
        "a clone may be larger than its source"
    );
    let missing = from_snapshot("nope", "snap-00000000000000000000000000000000");
    assert_eq!(code_of(c.create_volume(missing).await), Code::NotFound);
    let missing_vol = CreateVolumeRequest {
        volume_content_source: Some(VolumeContentSource {
            r#type: Some(Type::Volume(VolumeSource {
                volume_id: "vol-00000000000000000000000000000000".into(),
            })),
        }),
        ..create_req("nope2", 1 << 20)
    };
    assert_eq!(code_of(c.create_volume(missing_vol).await), Code::NotFound);
}

#[tokio::test]
async fn deleting_a_volume_with_snapshots_keeps_them_and_deletes_are_idempotent() {
    let p = Plugin::start_fs().await;
    let mut c = p.controller().await;
    let v = create(&mut c, "doomed", 1 << 20).await;
    let s = snapshot(&mut c, "survivor", &v.volume_id).await;
    for _ in 0..2 {
        c.delete_volume(DeleteVolumeRequest {
            volume_id: v.volume_id.clone(),
            ..Default::default()
        })
        .await
        .expect("DeleteVolume succeeds, also for a volume already gone");
    }
    let got = c
        .controller_get_volume(ControllerGetVolumeRequest {
            volume_id: v.volume_id.clone(),
        })
        .await;
    assert_eq!(code_of(got), Code::NotFound);
    let listed = c
        .list_snapshots(ListSnapshotsRequest {
            snapshot_id: s.snapshot_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.entries.len(), 1, "the snapshot outlives its volume");
    c.create_volume(from_snapshot("from-orphan", &s.snapshot_id))
        .await
        .expect("a snapshot of a deleted volume still restores");
    for _ in 0..2 {
        c.delete_snapshot(DeleteSnapshotRequest {
            snapshot_id: s.snapshot_id.clone(),
            ..Default::default()
        })
        .await
        .expect("DeleteSnapshot succeeds, also when already gone");
    }
    let gone = c
        .create_volume(from_snapshot("from-deleted", &s.snapshot_id))
        .await;
    assert_eq!(
        code_of(gone),
        Code::NotFound,
        "creating from a deleted snapshot"
    );
    let empty_id = c.delete_volume(DeleteVolumeRequest::default()).await;
    assert_eq!(code_of(empty_id), Code::InvalidArgument);
    let empty_snap = c.delete_snapshot(DeleteSnapshotRequest::default()).await;
    assert_eq!(code_of(empty_snap), Code::InvalidArgument);
}

#[tokio::test]
async fn validate_volume_capabilities_confirms_only_supported_ones() {
    let p = Plugin::start_fs().await;
    let mut c = p.controller().await;
    let v = create(&mut c, "val", 1 << 20).await;
    let req = |caps: Vec<VolumeCapability>, id: &str| ValidateVolumeCapabilitiesRequest {
        volume_id: id.into(),
        volume_capabilities: caps,
        ..Default::default()
    };
    let ok = c
        .validate_volume_capabilities(req(
            vec![mount("xfs", Mode::SingleNodeWriter), block()],
            &v.volume_id,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.confirmed.unwrap().volume_capabilities.len(), 2);
    let no = c
        .validate_volume_capabilities(req(
            vec![mount("", Mode::MultiNodeMultiWriter)],
            &v.volume_id,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(no.confirmed.is_none());
    assert!(
        no.message.contains("MULTI_NODE_MULTI_WRITER"),
        "{}",
        no.message
    );
    let unknown = c
        .validate_volume_capabilities(req(vec![block()], "vol-00000000000000000000000000000000"))
        .await;
    assert_eq!(code_of(unknown), Code::NotFound);
    assert_eq!(
        code_of(
            c.validate_volume_capabilities(req(vec![], &v.volume_id))
                .await
        ),
        Code::InvalidArgument
    );
    assert_eq!(
        code_of(c.validate_volume_capabilities(req(vec![block()], "")).await),
        Code::InvalidArgument
    );
}

#[tokio::test]
async fn list_volumes_pages_with_tokens() {
    let p = Plugin::start_fs().await;
    let mut c = p.controller().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            create(&mut c, &format!("page-{i}"), 1 << 20)
                .await
                .volume_id,
        );
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let r = c
            .list_volumes(ListVolumesRequest {
                max_entries: 2,
                starting_token: token.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(r.entries.len() <= 2);
        seen.extend(r.entries.into_iter().map(|e| e.volume.unwrap().volume_id));
        if r.next_token.is_empty() {
            break;
        }
        token = r.next_token;
    }
    ids.sort();
    seen.sort();
    assert_eq!(seen, ids);
    let bad = c
        .list_volumes(ListVolumesRequest {
            max_entries: 0,
            starting_token: "not-a-token".into(),
        })
        .await;
    assert_eq!(code_of(bad), Code::Aborted);
    let neg = c
        .list_volumes(ListVolumesRequest {
            max_entries: -1,
            ..Default::default()
        })
        .await;
    assert_eq!(code_of(neg), Code::InvalidArgument);
}

#[tokio::test]
async fn snapshots_are_idempotent_filterable_and_paginated() {
    let p = Plugin::start_fs().await;
    let mut c = p.controller().await;
    let a = create(&mut c, "snap-src-a", 1 << 20).await;
    let b = create(&mut c, "snap-src-b", 1 << 20).await;
    let s1 = snapshot(&mut c, "s-a-1", &a.volume_id).await;
    assert_eq!(
        snapshot(&mut c, "s-a-1", &a.volume_id).await,
        s1,
        "retry gives the same snapshot"
    );
    let conflict = c
        .create_snapshot(CreateSnapshotRequest {
            source_volume_id: b.volume_id.clone(),
            name: "s-a-1".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(code_of(conflict), Code::AlreadyExists);
    snapshot(&mut c, "s-a-2", &a.volume_id).await;
    snapshot(&mut c, "s-b-1", &b.volume_id).await;
    let missing = c
        .create_snapshot(CreateSnapshotRequest {
            source_volume_id: "vol-00000000000000000000000000000000".into(),
            name: "s-x".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(code_of(missing), Code::NotFound);
    let no_name = c
        .create_snapshot(CreateSnapshotRequest {
            source_volume_id: a.volume_id.clone(),
            ..Default::default()
        })
        .await;
    assert_eq!(code_of(no_name), Code::InvalidArgument);

    let list = |req: ListSnapshotsRequest| {
        let mut c = c.clone();
        async move { c.list_snapshots(req).await.unwrap().into_inner() }
    };
    let by_a = list(ListSnapshotsRequest {
        source_volume_id: a.volume_id.clone(),
        ..Default::default()
    })
    .await;
    assert_eq!(by_a.entries.len(), 2);
    let by_id = list(ListSnapshotsRequest {
        snapshot_id: s1.snapshot_id.clone(),
        ..Default::default()
    })
    .await;
    assert_eq!(
        by_id.entries[0].snapshot.as_ref().unwrap().snapshot_id,
        s1.snapshot_id
    );
    let unknown = list(ListSnapshotsRequest {
        snapshot_id: "snap-00000000000000000000000000000000".into(),
        ..Default::default()
    })
    .await;
    assert!(unknown.entries.is_empty(), "an unknown id lists nothing");
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let r = list(ListSnapshotsRequest {
            max_entries: 2,
            starting_token: token.clone(),
            ..Default::default()
        })
        .await;
        all.extend(r.entries);
        if r.next_token.is_empty() {
            break;
        }
        token = r.next_token;
    }
    assert_eq!(all.len(), 3);
    let bad = c
        .list_snapshots(ListSnapshotsRequest {
            starting_token: "zzz".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(code_of(bad), Code::Aborted);
}

#[tokio::test]
async fn expansion_grows_never_shrinks() {
    let p = Plugin::start_fs().await;
    let mut c = p.controller().await;
    let v = create(&mut c, "grow", 1 << 20).await;
    let req = |bytes: i64, id: &str| ControllerExpandVolumeRequest {
        volume_id: id.into(),
        capacity_range: Some(CapacityRange {
            required_bytes: bytes,
            limit_bytes: 0,
        }),
        ..Default::default()
    };
    let r = c
        .controller_expand_volume(req(3 << 20, &v.volume_id))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.capacity_bytes, 3 << 20);
    assert!(r.node_expansion_required);
    let again = c
        .controller_expand_volume(req(2 << 20, &v.volume_id))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        again.capacity_bytes,
        3 << 20,
        "a smaller request leaves the size"
    );
    let got = c
        .controller_get_volume(ControllerGetVolumeRequest {
            volume_id: v.volume_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.volume.unwrap().capacity_bytes, 3 << 20);
    let cond = got.status.unwrap().volume_condition.unwrap();
    assert!(!cond.abnormal, "{}", cond.message);
    let missing = c
        .controller_expand_volume(req(3 << 20, "vol-00000000000000000000000000000000"))
        .await;
    assert_eq!(code_of(missing), Code::NotFound);
    let no_range = c
        .controller_expand_volume(ControllerExpandVolumeRequest {
            volume_id: v.volume_id.clone(),
            ..Default::default()
        })
        .await;
    assert_eq!(code_of(no_range), Code::InvalidArgument);
}

#[tokio::test]
async fn get_capacity_reports_free_space() {
    let p = Plugin::start_fs().await;
    let r = p
        .controller()
        .await
        .get_capacity(GetCapacityRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(r.available_capacity > 0);
    assert!(r.maximum_volume_size.unwrap() > 0);
}

#[tokio::test]
async fn unreachable_store_is_unavailable_with_the_backends_reason() {
    let Some(mut server) = TestServer::start(Kind::S3).await else {
        return;
    };
    let settings = server.bucket("ferry-e2e").await;
    let env: Vec<(String, String)> = [
        ("FERRY_STORE_BACKEND", "backend"),
        ("FERRY_STORE_BUCKET", "bucket"),
        ("FERRY_STORE_ENDPOINT", "endpoint"),
        ("FERRY_STORE_REGION", "region"),
        ("FERRY_STORE_ACCESS_KEY_ID", "accessKeyId"),
        ("FERRY_STORE_SECRET_ACCESS_KEY", "secretAccessKey"),
    ]
    .iter()
    .map(|(k, s)| (k.to_string(), settings[*s].clone()))
    .collect();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let p = Plugin::start(tempfile::tempdir().unwrap(), &env).await;
    let mut c = p.controller().await;
    create(&mut c, "on-s3", 1 << 20).await;
    server.stop();
    let (code, msg) = code(c.create_volume(create_req("after-stop", 1 << 20)).await);
    assert_eq!(code, Code::Unavailable, "{msg}");
    assert!(msg.contains("unavailable"), "{msg}");
    let probe = p.identity().await.probe(ProbeRequest {}).await;
    assert_eq!(code_of(probe), Code::FailedPrecondition);
}

#[tokio::test]
async fn full_store_is_resource_exhausted() {
    if ferry_testkit::skip_unless_root("mounting a small tmpfs") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    std::fs::create_dir_all(&store).unwrap();
    let status = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=512k", "ferry-full"])
        .arg(&store)
        .status()
        .unwrap();
    assert!(status.success(), "mounting tmpfs");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(store.clone());
    let s = store.to_string_lossy().into_owned();
    let p = Plugin::start(
        dir,
        &[("FERRY_STORE_BACKEND", "fs"), ("FERRY_STORE_ROOT", &s)],
    )
    .await;
    // Fill the filesystem.
    let _ = std::fs::write(store.join("filler"), vec![1u8; 1 << 20]);
    let (code, msg) = code(
        p.controller()
            .await
            .create_volume(create_req("no-room", 1 << 20))
            .await,
    );
    assert_eq!(code, Code::ResourceExhausted, "{msg}");
}
