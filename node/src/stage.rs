//! NodeStageVolume: take the lease, start the volume server, attach a loop device, format
//! an empty device, mount it at the staging path. Each step checks whether it is already
//! done, so a retry (or a call after a plugin restart) finishes the job; a volume whose
//! server died is brought back (its mounts are rebuilt on a fresh device).

use crate::state::{StageRecord, VolumeDir};
use crate::{NodeService, capability, filesystem, loopdev, mounts, need, servers::Servers};
use ferry_csi::Error;
use ferry_proto::v1::volume_capability::access_mode::Mode;
use ferry_proto::v1::volume_capability::{AccessType, MountVolume};
use ferry_proto::v1::{NodeStageVolumeRequest, NodeStageVolumeResponse, VolumeCapability};
use std::path::Path;

impl NodeService {
    pub(crate) async fn stage(
        &self,
        req: NodeStageVolumeRequest,
    ) -> Result<NodeStageVolumeResponse, Error> {
        let id = need(&req.volume_id, "volume_id")?;
        let staging = need(&req.staging_target_path, "staging_target_path")?;
        let cap = capability(req.volume_capability.as_ref())?;
        let _guard = self.node.in_flight.claim(format!("volume {id}"))?;
        let want = wanted(id, staging, cap);
        let dir = self.dir(id)?;
        self.node.store.get_volume(id).await?;
        if let Some(have) = dir.load_stage() {
            if have.staging_path != want.staging_path {
                return Err(Error::FailedPrecondition(format!(
                    "volume {id} is already staged at {} on this node",
                    have.staging_path
                )));
            }
            if have != want {
                return Err(Error::Store(ferry_store::Error::AlreadyExists(format!(
                    "volume {id} is already staged at {staging} with another capability \
                     (block {}, fs {:?}, read-only {}); unstage it first",
                    have.block, have.fs_type, have.read_only
                ))));
            }
        }
        let max = self.node.config.max_volumes;
        if max > 0
            && dir.load_stage().is_none()
            && staged_count(&self.node.config.state_dir) >= max as usize
        {
            return Err(Error::Store(ferry_store::Error::StoreFull(format!(
                "node {} already has {max} volumes staged (--max-volumes)",
                self.node.config.node_id
            ))));
        }
        if !want.read_only {
            self.node
                .store
                .acquire_lease(id, &self.node.config.node_id, self.node.config.lease_ttl)
                .await?;
        }
        dir.save_stage(&want)?;
        if !Servers::healthy(&dir) {
            tear_down_dead(&dir, Path::new(staging)).await?;
        }
        self.node.servers.ensure(&dir, id, want.read_only).await?;
        let device = device(&dir, want.read_only).await?;
        if !want.block {
            mount_fs(&device, &want).await?;
        }
        tracing::info!(volume.id = %id, %device, staging, "staged");
        Ok(NodeStageVolumeResponse {})
    }
}

/// The stage record a request asks for.
fn wanted(id: &str, staging: &str, cap: &VolumeCapability) -> StageRecord {
    let mode = cap
        .access_mode
        .as_ref()
        .map(|m| m.mode())
        .unwrap_or(Mode::Unknown);
    let read_only = matches!(mode, Mode::SingleNodeReaderOnly | Mode::MultiNodeReaderOnly);
    let (block, mount) = match &cap.access_type {
        Some(AccessType::Block(_)) => (true, MountVolume::default()),
        Some(AccessType::Mount(m)) => (false, m.clone()),
        None => (false, MountVolume::default()),
    };
    let fs_type = if block {
        String::new()
    } else if mount.fs_type.is_empty() {
        filesystem::DEFAULT_FS.to_string()
    } else {
        mount.fs_type.clone()
    };
    StageRecord {
        volume_id: id.to_string(),
        staging_path: staging.to_string(),
        block,
        fs_type,
        mount_flags: mount.mount_flags.clone(),
        read_only,
    }
}

/// Volumes staged on this node.
fn staged_count(state_dir: &Path) -> usize {
    std::fs::read_dir(state_dir.join("volumes")).map_or(0, |d| d.filter_map(Result::ok).count())
}

/// After a server died: its loop device and the mounts over it only return errors.
/// Unmount them and detach the device so staging starts over on a fresh one.
async fn tear_down_dead(dir: &VolumeDir, staging: &Path) -> Result<(), Error> {
    if mounts::at(staging)?.is_some() {
        tracing::warn!(staging = %staging.display(), "volume server gone; remounting");
        mounts::unmount_all(staging).await?;
    }
    loopdev::detach_all(dir).await
}

/// The loop device over the volume's image, attached if needed.
pub(crate) async fn device(dir: &VolumeDir, read_only: bool) -> Result<String, Error> {
    loopdev::ensure(dir, read_only).await
}

/// Mounts the filesystem at the staging path, formatting an empty device first.
async fn mount_fs(device: &str, rec: &StageRecord) -> Result<(), Error> {
    let staging = Path::new(&rec.staging_path);
    if let Some(m) = mounts::at(staging)? {
        if m.source == device {
            return Ok(());
        }
        return Err(Error::FailedPrecondition(format!(
            "staging path {} already has {} mounted on it, not this volume's {device}",
            rec.staging_path, m.source
        )));
    }
    match filesystem::detect(device).await? {
        Some(found) if found != rec.fs_type => {
            return Err(Error::FailedPrecondition(format!(
                "volume {} holds a {found} filesystem, not {}: ask for fs_type {found}",
                rec.volume_id, rec.fs_type
            )));
        }
        Some(_) => {}
        None if rec.read_only => {
            return Err(Error::FailedPrecondition(format!(
                "volume {} holds no filesystem and is staged read-only, so it cannot be \
                 formatted",
                rec.volume_id
            )));
        }
        None => filesystem::format(device, &rec.fs_type).await?,
    }
    std::fs::create_dir_all(staging).map_err(|e| {
        Error::Internal(format!(
            "cannot create staging path {}: {e}",
            rec.staging_path
        ))
    })?;
    let mut options = rec.mount_flags.clone();
    if rec.fs_type == "xfs" {
        // Clones and restored snapshots carry their source's UUID; xfs refuses a second
        // mount of one UUID on a node unless told not to check.
        options.push("nouuid".into());
    }
    if rec.read_only {
        options.extend(filesystem::read_only_options(&rec.fs_type));
    }
    mounts::mount(device, staging, &rec.fs_type, &options).await
}
