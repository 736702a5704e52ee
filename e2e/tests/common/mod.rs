//! What the tests with two clusters share: a `ferry migration` sidecar process, the
//! csi-snapshotter's part played over CSI, the objects every cluster starts with, and a
//! volume's digest.

#![allow(dead_code)]

use ferry_kubefake::FakeApi;
use ferry_proto::v1::VolumeCapability;
use ferry_proto::v1::controller_client::ControllerClient;
use ferry_proto::v1::volume_capability::access_mode::Mode;
use ferry_proto::v1::volume_capability::{AccessMode, AccessType, MountVolume};
use ferry_proto::v1::{CreateSnapshotRequest, DeleteSnapshotRequest};
use ferry_store::Store;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::path::Path;
use std::process::{Child, Command, Stdio};

pub const FERRY_NS: &str = "ferry-system";

/// A running `ferry migration`; killed when dropped.
pub struct Sidecar(pub Child);

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn sidecar(
    kubeconfig: &Path,
    store: &Path,
    csi: Option<&Path>,
    metrics: u16,
    log: &Path,
) -> Sidecar {
    let mut c = Command::new(ferry_e2e::ferry_bin());
    c.arg("migration")
        .env("KUBECONFIG", kubeconfig)
        .env("POD_NAMESPACE", FERRY_NS)
        .env("FERRY_STORE_BACKEND", "fs")
        .env("FERRY_STORE_ROOT", store)
        .env("FERRY_MIGRATION_POLL_SECS", "0.2")
        .env("FERRY_METRICS_ADDR", format!("127.0.0.1:{metrics}"))
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("log file"));
    if let Some(sock) = csi {
        c.env("CSI_ENDPOINT", format!("unix://{}", sock.display()));
    }
    Sidecar(c.spawn().expect("starting ferry migration"))
}

pub async fn http_get(port: u16, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("metrics port");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    out
}

pub async fn digest(store: &Store, id: &str) -> String {
    let h = store.open_volume(id).await.expect("open");
    let size = h.size().await;
    hex::encode(Sha256::digest(
        h.read_at(0, size as usize).await.expect("read"),
    ))
}

/// Plays csi-snapshotter once: CreateSnapshot over CSI for each new VolumeSnapshot, and
/// DeleteSnapshot for each content whose VolumeSnapshot is gone (deletionPolicy Delete).
pub async fn snapshotter(
    api: &FakeApi,
    csi: &ControllerClient<tonic::transport::Channel>,
    made: &mut Vec<String>,
) {
    let new = api
        .play_snapshotter(
            |volume, name| {
                let mut c = csi.clone();
                async move {
                    let req = CreateSnapshotRequest {
                        source_volume_id: volume,
                        name,
                        ..Default::default()
                    };
                    let r = c.create_snapshot(req).await.map_err(|e| e.to_string())?;
                    Ok::<_, String>(r.into_inner().snapshot.unwrap_or_default().snapshot_id)
                }
            },
            |snapshot_id| {
                let mut c = csi.clone();
                async move {
                    let req = DeleteSnapshotRequest {
                        snapshot_id,
                        ..Default::default()
                    };
                    c.delete_snapshot(req)
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                }
            },
        )
        .await
        .expect("snapshotter");
    made.extend(new);
}

pub fn seed_cluster(api: &FakeApi) {
    api.seed(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": FERRY_NS}}));
    api.seed(json!({"apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver", "metadata": {"name": "ferry.csi.dev"}, "spec": {"attachRequired": false}}));
    api.seed(json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "ferry"}, "provisioner": "ferry.csi.dev", "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate"}));
    api.seed(json!({"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotClass", "metadata": {"name": "ferry"}, "driver": "ferry.csi.dev", "deletionPolicy": "Delete"}));
}

/// A single-writer filesystem volume of `bytes` made through CSI CreateVolume; its id.
pub async fn csi_volume(
    csi: &mut ControllerClient<tonic::transport::Channel>,
    name: &str,
    bytes: i64,
) -> String {
    csi.create_volume(ferry_proto::v1::CreateVolumeRequest {
        name: name.into(),
        capacity_range: Some(ferry_proto::v1::CapacityRange {
            required_bytes: bytes,
            limit_bytes: 0,
        }),
        volume_capabilities: vec![VolumeCapability {
            access_mode: Some(AccessMode {
                mode: Mode::SingleNodeWriter as i32,
            }),
            access_type: Some(AccessType::Mount(MountVolume::default())),
        }],
        ..Default::default()
    })
    .await
    .expect("CreateVolume")
    .into_inner()
    .volume
    .expect("volume")
    .volume_id
}

/// A log file's text for a failure message (or why it could not be read).
pub fn log_text(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| format!("({} unreadable: {e})", path.display()))
}
