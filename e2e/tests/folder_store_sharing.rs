//! A folder store shared by a node plugin running as root and a controller running as an
//! unprivileged user (uid and group 65532), as the shipped manifests run them: the node
//! stages and writes a volume (journal records, chunks, holds of its uploads, all made by
//! root), then the controller snapshots it, restores the snapshot, deletes the snapshot
//! and collects garbage, each of which writes into folders the node made. As root; without
//! root this test prints why and returns.

use ferry_e2e::Plugin;
use ferry_e2e::node_calls::*;
use ferry_proto::v1::volume_capability::access_mode::Mode;
use ferry_proto::v1::*;
use std::os::unix::fs::PermissionsExt;

const MIB: u64 = 1 << 20;
const CONTROLLER_UID: u32 = 65532;

#[tokio::test(flavor = "multi_thread")]
async fn a_non_root_controller_writes_where_the_root_node_wrote() {
    if ferry_testkit::skip_unless_root("shared folder store (mount, setpriv)") {
        return;
    }
    let base = tempfile::tempdir().unwrap();
    std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let store = base.path().join("store");
    let root = store.to_string_lossy().into_owned();
    let env = [
        ("FERRY_STORE_BACKEND", "fs"),
        ("FERRY_STORE_ROOT", root.as_str()),
    ];
    let node = Plugin::start(tempfile::tempdir().unwrap(), &env).await;
    let id = create(&node, "shared", 64 * MIB).await;
    let cap = mount_cap("ext4", Mode::SingleNodeWriter);
    stage(&node, &id, cap.clone()).await.unwrap();
    let t = publish(&node, &id, cap.clone(), 1, false).await;
    let files = write_files(&t, 31, 4);
    // A checkpoint (chunks, pages, a commit and the holds of its uploads) by root.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;

    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(dir.path(), Some(CONTROLLER_UID), Some(CONTROLLER_UID)).unwrap();
    let mut ctl_env = env.to_vec();
    ctl_env.push(("FERRY_MODE", "controller"));
    let controller = Plugin::start_as(dir, CONTROLLER_UID, &ctl_env).await;
    let mut c = controller.controller().await;
    let snap = c
        .create_snapshot(CreateSnapshotRequest {
            source_volume_id: id.clone(),
            name: "shared-snap".into(),
            ..Default::default()
        })
        .await
        .expect("CreateSnapshot as uid 65532")
        .into_inner()
        .snapshot
        .unwrap();
    let restored = c
        .create_volume(restore_request(
            "shared-restored",
            64 * MIB,
            &snap.snapshot_id,
            cap.clone(),
        ))
        .await
        .expect("CreateVolume from the snapshot as uid 65532")
        .into_inner()
        .volume
        .unwrap();
    c.delete_snapshot(DeleteSnapshotRequest {
        snapshot_id: snap.snapshot_id,
        ..Default::default()
    })
    .await
    .expect("DeleteSnapshot as uid 65532");
    let gc = std::process::Command::new("setpriv")
        .args([
            format!("--reuid={CONTROLLER_UID}"),
            format!("--regid={CONTROLLER_UID}"),
            "--clear-groups".into(),
        ])
        .arg(ferry_e2e::ferry_bin())
        .args(["gc", "--store-backend", "fs", "--store-root", &root])
        .output()
        .unwrap();
    assert!(
        gc.status.success(),
        "ferry gc as uid 65532: {}",
        String::from_utf8_lossy(&gc.stderr)
    );

    // The node (root) takes up what the controller made.
    stage(&node, &restored.volume_id, cap.clone())
        .await
        .unwrap();
    let r = publish(&node, &restored.volume_id, cap.clone(), 2, false).await;
    check_files(&r, &files);
    unpublish(&node, &restored.volume_id, 2).await;
    unstage(&node, &restored.volume_id).await;
    unpublish(&node, &id, 1).await;
    unstage(&node, &id).await;
}
