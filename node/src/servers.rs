//! Starting, finding and stopping volume servers from the node plugin.

use crate::mounts;
use crate::server::SUBCOMMAND;
use crate::server::status::Report;
use crate::state::VolumeDir;
use ferry_csi::Error;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// How long a server may take to mount, or to exit after its unmount.
const WAIT: Duration = Duration::from_secs(60);

/// Starts volume servers as `<exe> volume-server ...`.
#[derive(Clone, Debug)]
pub struct Servers {
    /// The `ferry` binary.
    pub exe: PathBuf,
    /// Store settings file handed to servers.
    pub store_config: PathBuf,
    /// The plugin's state folder.
    pub state_dir: PathBuf,
    /// The lease holder name.
    pub node_id: String,
    /// Lease duration.
    pub lease_ttl: Duration,
    /// Read cache of each server, MiB.
    pub cache_mib: usize,
}

impl Servers {
    /// True when the volume's server answers on its mount.
    pub fn healthy(dir: &VolumeDir) -> bool {
        matches!(mounts::at(&dir.fuse()), Ok(Some(m)) if m.fs_type.starts_with("fuse") && m.source.starts_with("ferry:"))
            && std::fs::metadata(dir.disk()).is_ok()
    }

    /// Makes sure a server serves the volume, starting one if needed.
    ///
    /// # Errors
    /// INTERNAL with the server's last log lines when it fails to come up.
    pub async fn ensure(
        &self,
        dir: &VolumeDir,
        volume_id: &str,
        read_only: bool,
    ) -> Result<(), Error> {
        if Self::healthy(dir) {
            return Ok(());
        }
        if mounts::at(&dir.fuse())?.is_some() {
            // A server that died left its mount: clear it before starting another.
            mounts::unmount_all(&dir.fuse()).await?;
        }
        std::fs::create_dir_all(dir.root())
            .map_err(|e| Error::Internal(format!("cannot create {}: {e}", dir.root().display())))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.log())
            .map_err(|e| Error::Internal(format!("cannot open {}: {e}", dir.log().display())))?;
        let log2 = log
            .try_clone()
            .map_err(|e| Error::Internal(format!("cannot open {}: {e}", dir.log().display())))?;
        let ttl = self.lease_ttl.as_secs_f64().to_string();
        let mut cmd = std::process::Command::new(&self.exe);
        cmd.arg(SUBCOMMAND)
            .arg("--volume-id")
            .arg(volume_id)
            .arg("--node-id")
            .arg(&self.node_id)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .arg("--store-config")
            .arg(&self.store_config)
            .arg("--lease-ttl-secs")
            .arg(ttl)
            .arg("--cache-mib")
            .arg(self.cache_mib.to_string());
        if read_only {
            cmd.arg("--read-only");
        }
        // Its own process group: a signal to the plugin's group (or the plugin's death)
        // leaves the volume served.
        cmd.stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .process_group(0);
        let mut child = cmd
            .spawn()
            .map_err(|e| Error::Internal(format!("cannot start {}: {e}", self.exe.display())))?;
        let started = Instant::now();
        loop {
            if Self::healthy(dir) {
                // Reap it in the background when it ends.
                std::thread::spawn(move || child.wait());
                return Ok(());
            }
            if let Ok(Some(code)) = child.try_wait() {
                return Err(Error::Internal(format!(
                    "volume server for {volume_id} exited ({code}) before serving: {}",
                    dir.log_tail()
                )));
            }
            if started.elapsed() > WAIT {
                let _ = child.kill();
                return Err(Error::Internal(format!(
                    "volume server for {volume_id} did not come up within {} s: {}",
                    WAIT.as_secs(),
                    dir.log_tail()
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the volume's server by unmounting its FUSE mount (it flushes and exits), and
    /// waits for it to go.
    ///
    /// # Errors
    /// INTERNAL when the mount cannot be removed or the server does not exit.
    pub async fn stop(dir: &VolumeDir) -> Result<(), Error> {
        mounts::unmount_all(&dir.fuse()).await?;
        let started = Instant::now();
        while let Some(pid) = dir.live_pid() {
            if started.elapsed() > WAIT {
                return Err(Error::Internal(format!(
                    "volume server (pid {pid}) did not exit within {} s after its unmount: {}",
                    WAIT.as_secs(),
                    dir.log_tail()
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// The server's status report.
    ///
    /// # Errors
    /// A message saying why it cannot be read (the server is not running).
    pub fn status(dir: &VolumeDir) -> Result<Report, String> {
        let text = std::fs::read_to_string(dir.status()).map_err(|e| {
            format!(
                "the volume server is not answering ({e}); stage the volume again to restart it"
            )
        })?;
        serde_json::from_str(&text).map_err(|e| format!("unreadable server status: {e}"))
    }
}
