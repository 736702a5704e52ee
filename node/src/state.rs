//! The node plugin's state folder: per staged volume, the FUSE mountpoint of its server, the
//! server's pid and log, and a record of how it was staged, so a restarted plugin finds its
//! volumes again.
//!
//! ```text
//! <state>/store.json                    store settings handed to volume servers (0600)
//! <state>/volume-host.sock              the volume host's socket (see `crate::host`)
//! <state>/volume-host.pid, .log         the host's process id and, when the plugin started
//!                                       it, its log
//! <state>/volumes/<id>/fuse/            the server's FUSE mount: disk, status
//! <state>/volumes/<id>/server.pid       the server's process id (in the host's namespace)
//! <state>/volumes/<id>/server.log       the server's log
//! <state>/volumes/<id>/durability       whether the server holds acknowledged writes that
//!                                       are not durable yet (`crate::server::durability`)
//! <state>/volumes/<id>/health.json      what the host did when the server died
//! <state>/volumes/<id>/device.json      the loop device over `disk` and the FUSE
//!                                       filesystem's device number, to find it again
//! <state>/volumes/<id>/stage.json       how the volume was staged
//! ```

use ferry_csi::Error;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// How a volume was staged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StageRecord {
    /// The volume.
    pub volume_id: String,
    /// The staging path kubelet gave.
    pub staging_path: String,
    /// Raw block access (no filesystem).
    pub block: bool,
    /// Filesystem type for mount access.
    pub fs_type: String,
    /// Mount flags asked for at stage.
    pub mount_flags: Vec<String>,
    /// Staged read-only (a reader-only access mode): no lease, no writes.
    pub read_only: bool,
}

/// What the volume host recorded when a volume's server died.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    /// The volume can no longer be read or written here (its connection was aborted).
    pub abnormal: bool,
    /// What happened, for a person.
    pub message: String,
    /// When, milliseconds since the epoch.
    pub at_ms: u64,
}

/// The loop device attached to a volume's image, and the device number of the FUSE
/// filesystem it was attached over (the loop device's backing file is named by a path that
/// stops meaning anything once the mount namespace it was attached in is gone).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceRecord {
    /// `/dev/loopN`.
    pub loop_device: String,
    /// `major:minor` of the FUSE filesystem holding `disk`.
    pub fuse_dev: String,
}

/// Every volume folder under `state_dir`, with its volume id; names that cannot be a
/// volume id are passed over.
pub fn volume_dirs(state_dir: &Path) -> Vec<(String, VolumeDir)> {
    let Ok(entries) = std::fs::read_dir(state_dir.join("volumes")) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let id = e.file_name().to_string_lossy().into_owned();
            let dir = VolumeDir::new(state_dir, &id).ok()?;
            Some((id, dir))
        })
        .collect()
}

/// One volume's folder in the state folder.
#[derive(Clone, Debug)]
pub struct VolumeDir {
    root: PathBuf,
}

impl VolumeDir {
    /// The folder of `volume_id` under `state_dir`.
    ///
    /// # Errors
    /// NOT_FOUND for an id that cannot be a ferry volume (it would escape the folder).
    pub fn new(state_dir: &Path, volume_id: &str) -> Result<Self, Error> {
        let ok = !volume_id.is_empty()
            && volume_id.len() <= 128
            && volume_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Err(Error::NotFound(format!(
                "volume {volume_id:?} does not exist: not a ferry volume id"
            )));
        }
        Ok(VolumeDir {
            root: state_dir.join("volumes").join(volume_id),
        })
    }

    /// The folder itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The server's FUSE mountpoint.
    pub fn fuse(&self) -> PathBuf {
        self.root.join("fuse")
    }

    /// The image file the loop device attaches to.
    pub fn disk(&self) -> PathBuf {
        self.fuse().join(crate::server::image_fs::DISK_NAME)
    }

    /// The server's status file.
    pub fn status(&self) -> PathBuf {
        self.fuse().join(crate::server::image_fs::STATUS_NAME)
    }

    /// The server's log.
    pub fn log(&self) -> PathBuf {
        self.root.join("server.log")
    }

    fn pid_file(&self) -> PathBuf {
        self.root.join("server.pid")
    }

    fn stage_file(&self) -> PathBuf {
        self.root.join("stage.json")
    }

    fn health_file(&self) -> PathBuf {
        self.root.join("health.json")
    }

    fn device_file(&self) -> PathBuf {
        self.root.join("device.json")
    }

    /// Records what happened to the volume's server.
    ///
    /// # Errors
    /// INTERNAL when the file cannot be written.
    pub fn save_health(&self, h: &Health) -> Result<(), Error> {
        save_json(&self.health_file(), h)
    }

    /// What the host recorded, if anything.
    pub fn load_health(&self) -> Option<Health> {
        load_json(&self.health_file())
    }

    /// Forgets the health record.
    pub fn remove_health(&self) {
        let _ = std::fs::remove_file(self.health_file());
    }

    /// Records the loop device attached over the image.
    ///
    /// # Errors
    /// INTERNAL when the file cannot be written.
    pub fn save_device(&self, d: &DeviceRecord) -> Result<(), Error> {
        save_json(&self.device_file(), d)
    }

    /// The recorded loop device, if any.
    pub fn load_device(&self) -> Option<DeviceRecord> {
        load_json(&self.device_file())
    }

    /// Forgets the loop device.
    pub fn remove_device(&self) {
        let _ = std::fs::remove_file(self.device_file());
    }

    /// Records the server's pid.
    ///
    /// # Errors
    /// INTERNAL when the file cannot be written.
    pub fn write_pid(&self, pid: u32) -> Result<(), Error> {
        write_atomic(&self.pid_file(), pid.to_string().as_bytes())
    }

    /// The recorded server pid, if its process still runs.
    pub fn live_pid(&self) -> Option<u32> {
        let pid: u32 = std::fs::read_to_string(self.pid_file())
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let alive = Path::new(&format!("/proc/{pid}")).exists()
            && std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| !s.split(") ").nth(1).is_some_and(|r| r.starts_with('Z')));
        alive.then_some(pid)
    }

    /// Forgets the server pid.
    pub fn remove_pid(&self) {
        let _ = std::fs::remove_file(self.pid_file());
    }

    /// Saves how the volume was staged.
    ///
    /// # Errors
    /// INTERNAL when the file cannot be written.
    pub fn save_stage(&self, rec: &StageRecord) -> Result<(), Error> {
        save_json(&self.stage_file(), rec)
    }

    /// How the volume was staged, if it is.
    pub fn load_stage(&self) -> Option<StageRecord> {
        load_json(&self.stage_file())
    }

    /// Removes the folder (after unstaging).
    ///
    /// # Errors
    /// INTERNAL when it cannot be removed.
    pub fn remove(&self) -> Result<(), Error> {
        match std::fs::remove_dir_all(&self.root) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::Internal(format!(
                "cannot remove {}: {e}",
                self.root.display()
            ))),
        }
    }

    /// The last lines of the server's log, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" | ")
    }
}

fn save_json<T: Serialize>(path: &Path, value: &T) -> Result<(), Error> {
    let bytes = serde_json::to_vec_pretty(value)
        .map_err(|e| Error::Internal(format!("cannot encode {}: {e}", path.display())))?;
    write_atomic(path, &bytes)
}

fn load_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Writes `bytes` to `path` through a temporary file and a rename, creating the folder.
///
/// # Errors
/// INTERNAL naming the path.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let fail = |e: std::io::Error| Error::Internal(format!("cannot write {}: {e}", path.display()));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)
}
