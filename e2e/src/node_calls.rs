//! The kubelet's side of CSI, for tests that play the kubelet: node plugins over a shared
//! store folder, staging and publishing at the paths a kubelet would use, and files written
//! and checked through a mount.

use crate::Plugin;
use ferry_proto::v1::volume_capability::access_mode::Mode;
use ferry_proto::v1::volume_capability::{AccessMode, AccessType, BlockVolume, MountVolume};
use ferry_proto::v1::*;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A node plugin (controller too) over the store folder `store`, as node `id`.
pub async fn node(store: &Path, id: &str, lease_ttl: &str) -> Plugin {
    node_with(store, id, lease_ttl, &[]).await
}

/// As [`node`], with more environment for the plugin and the volume servers it starts.
pub async fn node_with(store: &Path, id: &str, lease_ttl: &str, env: &[(&str, &str)]) -> Plugin {
    let dir = tempfile::tempdir().unwrap();
    let store = store.to_string_lossy().into_owned();
    let mut all = vec![
        ("FERRY_STORE_BACKEND", "fs"),
        ("FERRY_STORE_ROOT", store.as_str()),
        ("NODE_ID", id),
        ("FERRY_LEASE_TTL_SECS", lease_ttl),
    ];
    all.extend_from_slice(env);
    Plugin::start(dir, &all).await
}

/// A filesystem capability (`fs` empty: the plugin's default) with access `mode`.
pub fn mount_cap(fs: &str, mode: Mode) -> VolumeCapability {
    VolumeCapability {
        access_mode: Some(AccessMode { mode: mode as i32 }),
        access_type: Some(AccessType::Mount(MountVolume {
            fs_type: fs.into(),
            ..Default::default()
        })),
    }
}

/// A raw block capability, single writer.
pub fn block_cap() -> VolumeCapability {
    VolumeCapability {
        access_mode: Some(AccessMode {
            mode: Mode::SingleNodeWriter as i32,
        }),
        access_type: Some(AccessType::Block(BlockVolume {})),
    }
}

/// Creates volume `name` of `bytes` through the Controller service; its id.
pub async fn create(p: &Plugin, name: &str, bytes: u64) -> String {
    let r = p
        .controller()
        .await
        .create_volume(CreateVolumeRequest {
            name: name.into(),
            capacity_range: Some(CapacityRange {
                required_bytes: bytes as i64,
                limit_bytes: 0,
            }),
            volume_capabilities: vec![mount_cap("", Mode::SingleNodeWriter)],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    r.volume.unwrap().volume_id
}

/// Where the kubelet would stage volume `id` on `p`'s node.
pub fn staging(p: &Plugin, id: &str) -> PathBuf {
    p.dir.path().join("kubelet/staging").join(id)
}

/// Where the kubelet would publish volume `id` for pod number `n`.
pub fn target(p: &Plugin, id: &str, n: u32) -> PathBuf {
    p.dir.path().join(format!("kubelet/pods/{n}/{id}"))
}

/// NodeStageVolume at [`staging`].
pub async fn stage(p: &Plugin, id: &str, cap: VolumeCapability) -> Result<(), tonic::Status> {
    p.node()
        .await
        .node_stage_volume(NodeStageVolumeRequest {
            volume_id: id.into(),
            staging_target_path: staging(p, id).to_string_lossy().into(),
            volume_capability: Some(cap),
            ..Default::default()
        })
        .await
        .map(drop)
}

/// NodePublishVolume from [`staging`] to [`target`] for pod `n`; the target.
pub async fn publish(
    p: &Plugin,
    id: &str,
    cap: VolumeCapability,
    n: u32,
    readonly: bool,
) -> PathBuf {
    let t = target(p, id, n);
    p.node()
        .await
        .node_publish_volume(NodePublishVolumeRequest {
            volume_id: id.into(),
            staging_target_path: staging(p, id).to_string_lossy().into(),
            target_path: t.to_string_lossy().into(),
            volume_capability: Some(cap),
            readonly,
            ..Default::default()
        })
        .await
        .unwrap();
    t
}

/// NodeUnpublishVolume of pod `n`'s target.
pub async fn unpublish(p: &Plugin, id: &str, n: u32) {
    p.node()
        .await
        .node_unpublish_volume(NodeUnpublishVolumeRequest {
            volume_id: id.into(),
            target_path: target(p, id, n).to_string_lossy().into(),
        })
        .await
        .unwrap();
}

/// NodeUnstageVolume at [`staging`].
pub async fn unstage(p: &Plugin, id: &str) {
    p.node()
        .await
        .node_unstage_volume(NodeUnstageVolumeRequest {
            volume_id: id.into(),
            staging_target_path: staging(p, id).to_string_lossy().into(),
        })
        .await
        .unwrap();
}

/// Writes `n` files of assorted sizes with random content under `dir`, fsyncs each and the
/// folder; returns their names and contents.
pub fn write_files(dir: &Path, seed: u64, n: usize) -> Vec<(String, Vec<u8>)> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut out = Vec::new();
    for i in 0..n {
        let len = [1usize, 4095, 65536, 300_000, 2_000_000][i % 5] + rng.random_range(0..100);
        let mut data = vec![0u8; len];
        rng.fill(&mut data[..]);
        let name = format!("file-{seed}-{i}");
        let mut f = std::fs::File::create(dir.join(&name)).unwrap();
        f.write_all(&data).unwrap();
        f.sync_all().unwrap();
        out.push((name, data));
    }
    std::fs::File::open(dir).unwrap().sync_all().unwrap();
    out
}

pub fn check_files(dir: &Path, files: &[(String, Vec<u8>)]) {
    for (name, data) in files {
        let got = std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("reading {name}: {e}"));
        assert!(got == *data, "{name} differs after the round trip");
    }
}

/// Runs the filesystem checker read-only on a block-staged volume; the volume must have
/// been mounted and cleanly unmounted since its last writer died (journal replayed).
pub async fn fsck(p: &Plugin, id: &str, fs: &str) {
    stage(p, id, block_cap()).await.unwrap();
    let dev = publish(p, id, block_cap(), 9, true).await;
    let out = match fs {
        "xfs" => std::process::Command::new("xfs_repair")
            .arg("-n")
            .arg(&dev)
            .output()
            .unwrap(),
        _ => std::process::Command::new("e2fsck")
            .args(["-n", "-f"])
            .arg(&dev)
            .output()
            .unwrap(),
    };
    assert!(
        out.status.success(),
        "{fs} check failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    unpublish(p, id, 9).await;
    unstage(p, id).await;
}

/// Stages `id` on `p` once the lease of a node that died has lapsed (FAILED_PRECONDITION
/// until then), trying for up to 20 s.
pub async fn stage_when_free(p: &Plugin, id: &str, cap: VolumeCapability) {
    for _ in 0..100 {
        match stage(p, id, cap.clone()).await {
            Ok(()) => return,
            Err(e) if e.code() == tonic::Code::FailedPrecondition => {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            Err(e) => panic!("stage: {e:?}"),
        }
    }
    panic!("the volume's lease never lapsed");
}

/// NodeGetVolumeStats of volume `id` at `path`.
pub async fn volume_stats(p: &Plugin, id: &str, path: &Path) -> NodeGetVolumeStatsResponse {
    p.node()
        .await
        .node_get_volume_stats(NodeGetVolumeStatsRequest {
            volume_id: id.into(),
            volume_path: path.to_string_lossy().into(),
            staging_target_path: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
}

/// CreateVolume of `name` restored from snapshot `snapshot_id`, of `bytes` (0: the
/// snapshot's size).
pub fn restore_request(
    name: &str,
    bytes: u64,
    snapshot_id: &str,
    cap: VolumeCapability,
) -> CreateVolumeRequest {
    CreateVolumeRequest {
        name: name.into(),
        capacity_range: (bytes > 0).then_some(CapacityRange {
            required_bytes: bytes as i64,
            limit_bytes: 0,
        }),
        volume_capabilities: vec![cap],
        volume_content_source: Some(VolumeContentSource {
            r#type: Some(volume_content_source::Type::Snapshot(
                volume_content_source::SnapshotSource {
                    snapshot_id: snapshot_id.into(),
                },
            )),
        }),
        ..Default::default()
    }
}
