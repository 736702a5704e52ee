//! The walk-through with real mounts: stage and publish an ext4 volume, write files, take a
//! snapshot while it is mounted, restore it as a clone, mount the clone, compare.

use super::{BoxError, DemoPlugin, create_data_volume, digest, mount_capability, restore_volume};
use ferry_proto::v1::controller_client::ControllerClient;
use ferry_proto::v1::identity_client::IdentityClient;
use ferry_proto::v1::node_client::NodeClient;
use ferry_proto::v1::*;
use rand::{RngCore, SeedableRng};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tonic::transport::Channel;

/// Runs the mounted walk-through.
///
/// # Errors
/// Any failed step; volumes staged so far are unstaged first.
pub async fn run(plugin: &DemoPlugin, dir: &Path, size: u64) -> Result<(), BoxError> {
    let store = plugin.store.clone();
    let mut identity = IdentityClient::new(plugin.channel.clone());
    let info = identity
        .get_plugin_info(GetPluginInfoRequest {})
        .await?
        .into_inner();
    println!(
        "CSI plugin       {} {} on {} (controller + node)",
        info.name,
        info.vendor_version,
        plugin.socket.display()
    );
    let mut demo = Demo {
        ctl: ControllerClient::new(plugin.channel.clone()),
        node: NodeClient::new(plugin.channel.clone()),
        kubelet: dir.join("kubelet"),
        staged: Vec::new(),
        store,
        dir: dir.to_path_buf(),
    };
    let result = demo.walk(size).await;
    let cleanup = demo.unstage_all().await;
    result?;
    cleanup
}

struct Demo {
    ctl: ControllerClient<Channel>,
    node: NodeClient<Channel>,
    kubelet: PathBuf,
    /// Volumes staged (and published at `pods/<id>`), for cleanup.
    staged: Vec<String>,
    store: ferry_store::Store,
    dir: PathBuf,
}

impl Demo {
    async fn walk(&mut self, size: u64) -> Result<(), BoxError> {
        let vol = create_data_volume(&mut self.ctl, size).await?;
        let t = Instant::now();
        let src = self.stage_and_publish(&vol.volume_id).await?;
        println!(
            "stage + publish  ext4 mounted at {} in {:.1?}",
            src.display(),
            t.elapsed()
        );

        let t = Instant::now();
        let written = write_database(&src, size / 4)?;
        let bytes: u64 = std::fs::read_dir(&src)?
            .filter_map(Result::ok)
            .filter_map(|e| e.metadata().ok())
            .filter(|m| m.is_file())
            .map(|m| m.len())
            .sum();
        println!(
            "write + fsync    {} files, {} MiB in {:.1?}",
            written.len(),
            bytes >> 20,
            t.elapsed()
        );
        let before = checksums(&src)?;

        let t = Instant::now();
        let snap = self
            .ctl
            .create_snapshot(CreateSnapshotRequest {
                source_volume_id: vol.volume_id.clone(),
                name: "demo-snapshot".into(),
                ..Default::default()
            })
            .await?
            .into_inner()
            .snapshot
            .ok_or("CreateSnapshot returned no snapshot")?;
        println!(
            "CreateSnapshot   {} of the mounted volume, ready={} in {:.1?}",
            snap.snapshot_id,
            snap.ready_to_use,
            t.elapsed()
        );
        std::fs::write(
            src.join("after-snapshot.txt"),
            b"written after the snapshot\n",
        )?;
        std::fs::File::open(src.join("after-snapshot.txt"))?.sync_all()?;

        let t = Instant::now();
        let restored = restore_volume(&mut self.ctl, &snap.snapshot_id).await?;
        let dst = self.stage_and_publish(&restored.volume_id).await?;
        println!(
            "restore + mount  {} at {} in {:.1?}",
            restored.volume_id,
            dst.display(),
            t.elapsed()
        );

        let after = checksums(&dst)?;
        for (name, sum) in before.iter().take(4) {
            println!(
                "  {name:<24} {}  {}",
                &sum[..16],
                if after.get(name) == Some(sum) {
                    "match"
                } else {
                    "DIFFERS"
                }
            );
        }
        let late = dst.join("after-snapshot.txt").exists();
        println!(
            "compared         {} files by sha256; after-snapshot.txt in the restore: {}",
            before.len(),
            if late { "yes (wrong)" } else { "no (right)" }
        );
        let stats = self
            .node
            .node_get_volume_stats(NodeGetVolumeStatsRequest {
                volume_id: vol.volume_id.clone(),
                volume_path: src.to_string_lossy().into(),
                staging_target_path: String::new(),
            })
            .await?
            .into_inner();
        if let (Some(u), Some(c)) = (stats.usage.first(), stats.volume_condition) {
            println!(
                "volume stats     {} MiB used of {} MiB; condition: {}",
                u.used >> 20,
                u.total >> 20,
                c.message
            );
        }
        if before != after || late {
            return Err("restored files do not match the snapshot".into());
        }
        println!("OK: the restored volume holds exactly the files at the snapshot");
        if !super::migrate::run(&self.store, self.ctl.clone(), &snap.snapshot_id, &self.dir).await?
        {
            return Err("the imported volume differs from the snapshot".into());
        }
        println!(
            "OK: namespace shop kept on standby in B by a schedule and failed over; its volume on B holds exactly the bytes it had on A"
        );
        Ok(())
    }

    async fn stage_and_publish(&mut self, id: &str) -> Result<PathBuf, BoxError> {
        let staging = self.kubelet.join("staging").join(id);
        let target = self.kubelet.join("pods").join(id);
        self.staged.push(id.to_string());
        self.node
            .node_stage_volume(NodeStageVolumeRequest {
                volume_id: id.into(),
                staging_target_path: staging.to_string_lossy().into(),
                volume_capability: Some(mount_capability()),
                ..Default::default()
            })
            .await?;
        self.node
            .node_publish_volume(NodePublishVolumeRequest {
                volume_id: id.into(),
                staging_target_path: staging.to_string_lossy().into(),
                target_path: target.to_string_lossy().into(),
                volume_capability: Some(mount_capability()),
                ..Default::default()
            })
            .await?;
        Ok(target)
    }

    async fn unstage_all(&mut self) -> Result<(), BoxError> {
        for id in std::mem::take(&mut self.staged) {
            let staging = self.kubelet.join("staging").join(&id);
            let target = self.kubelet.join("pods").join(&id);
            self.node
                .node_unpublish_volume(NodeUnpublishVolumeRequest {
                    volume_id: id.clone(),
                    target_path: target.to_string_lossy().into(),
                })
                .await?;
            self.node
                .node_unstage_volume(NodeUnstageVolumeRequest {
                    volume_id: id.clone(),
                    staging_target_path: staging.to_string_lossy().into(),
                })
                .await?;
        }
        println!("unpublish + unstage  both volumes flushed and detached");
        Ok(())
    }
}

/// Database-like files: CSV rows, JSON documents, a random blob; each fsynced.
fn write_database(dir: &Path, budget: u64) -> Result<Vec<PathBuf>, BoxError> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let mut files = Vec::new();
    let mut put = |name: &str, data: &[u8]| -> Result<(), BoxError> {
        let path = dir.join(name);
        let mut f = std::fs::File::create(&path)?;
        f.write_all(data)?;
        f.sync_all()?;
        files.push(path);
        Ok(())
    };
    let part = (budget / 3) as usize;
    let rows: Vec<u8> = (0u64..)
        .flat_map(|i| format!("{i},customer-{},order,{}\n", i % 977, i * 31 % 10007).into_bytes())
        .take(part)
        .collect();
    put("orders.csv", &rows)?;
    for i in 0..20 {
        let doc = format!(
            "{{\"id\":{i},\"name\":\"item-{i}\",\"tags\":[\"a\",\"b\"],\"price\":{}}}\n",
            i * 7
        )
        .repeat(part / 20 / 64);
        put(&format!("doc-{i:02}.json"), doc.as_bytes())?;
    }
    let mut blob = vec![0u8; part];
    rng.fill_bytes(&mut blob);
    put("blob.bin", &blob)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(files)
}

fn checksums(dir: &Path) -> Result<BTreeMap<String, String>, BoxError> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if e.file_type()?.is_file() {
            out.insert(
                e.file_name().to_string_lossy().into_owned(),
                digest(&std::fs::read(e.path())?),
            );
        }
    }
    out.remove("after-snapshot.txt");
    Ok(out)
}
