//! The node plugin's side of volume serving: it asks the volume host ([`crate::host`]) to
//! serve and to stop serving volumes, and reads their health. Nothing here runs a server:
//! the plugin may die at any moment without a volume noticing.

use crate::host::protocol::{Client, Request, ServerSpec};
use crate::mounts;
use crate::server::status::Report;
use crate::state::VolumeDir;
use ferry_csi::Error;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

/// How long a host this plugin started stays with nothing to serve.
const HOST_IDLE_EXIT: Duration = Duration::from_secs(10);

/// Asks the volume host to serve volumes.
#[derive(Clone, Debug)]
pub struct Servers {
    /// The `ferry` binary (to start a host when none runs and that is allowed).
    pub exe: PathBuf,
    /// Store settings file handed to servers.
    pub store_config: PathBuf,
    /// The plugin's state folder, shared with the host.
    pub state_dir: PathBuf,
    /// The lease holder name.
    pub node_id: String,
    /// Lease duration.
    pub lease_ttl: Duration,
    /// Read cache of each server, MiB.
    pub cache_mib: usize,
    /// Start a volume host (detached) when none answers: for a node plugin run by hand.
    /// In Kubernetes the host is its own DaemonSet and this is off.
    pub start_host: bool,
}

impl Servers {
    fn client(&self) -> Client {
        Client::new(&self.state_dir.join(crate::host::protocol::SOCKET_NAME))
    }

    /// True when the volume's server answers on its mount.
    pub fn healthy(dir: &VolumeDir) -> bool {
        matches!(mounts::at(&dir.fuse()), Ok(Some(m)) if m.fs_type.starts_with("fuse") && m.source.starts_with("ferry:"))
            && std::fs::metadata(dir.disk()).is_ok()
    }

    /// Makes sure the host serves the volume.
    ///
    /// # Errors
    /// UNAVAILABLE when no host answers; INTERNAL with the server's last log lines when it
    /// fails to come up.
    pub async fn ensure(
        &self,
        dir: &VolumeDir,
        volume_id: &str,
        read_only: bool,
    ) -> Result<(), Error> {
        if Self::healthy(dir) && dir.load_health().is_none_or(|h| !h.abnormal) {
            return Ok(());
        }
        self.host_running().await?;
        let spec = ServerSpec {
            volume_id: volume_id.to_string(),
            node_id: self.node_id.clone(),
            read_only,
            lease_ttl_secs: self.lease_ttl.as_secs_f64(),
            cache_mib: self.cache_mib,
            store_config: self.store_config.clone(),
        };
        self.client().call(&Request::Start(spec)).await.map(drop)
    }

    /// Stops the volume's server: the host unmounts its FUSE filesystem (the server flushes
    /// and exits) and waits for it to go.
    ///
    /// # Errors
    /// UNAVAILABLE when no host answers; INTERNAL when the mount cannot be removed or the
    /// server does not exit.
    pub async fn stop(&self, volume_id: &str) -> Result<(), Error> {
        self.host_running().await?;
        let req = Request::Stop {
            volume_id: volume_id.to_string(),
        };
        self.client().call(&req).await.map(drop)
    }

    /// Starts a volume host when none answers and that is allowed.
    async fn host_running(&self) -> Result<(), Error> {
        let client = self.client();
        if !self.start_host || client.try_call(&Request::Ping).await.is_ok() {
            return Ok(());
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.state_dir.join("volume-host.log"))
            .map_err(|e| Error::Internal(format!("cannot open the volume host's log: {e}")))?;
        let log2 = log
            .try_clone()
            .map_err(|e| Error::Internal(format!("cannot open the volume host's log: {e}")))?;
        let mut cmd = std::process::Command::new(&self.exe);
        cmd.arg("volume-host")
            .arg("--state-dir")
            .arg(&self.state_dir)
            .arg("--idle-exit-secs")
            .arg(HOST_IDLE_EXIT.as_secs().to_string())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        // Its own process group: it outlives this plugin (a plugin killed with its group).
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = cmd
            .spawn()
            .map_err(|e| Error::Internal(format!("cannot start the volume host: {e}")))?;
        tracing::info!(pid = child.id(), "started a volume host");
        std::thread::spawn(move || child.wait());
        for _ in 0..500 {
            if client.try_call(&Request::Ping).await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(Error::Internal(format!(
            "the volume host started but does not answer on {}",
            client.socket().display()
        )))
    }

    /// The server's status report, or why the volume is not served.
    ///
    /// # Errors
    /// A message saying why it cannot be read (the server is not running, or the host
    /// aborted its connection).
    pub fn status(dir: &VolumeDir) -> Result<Report, String> {
        if let Some(h) = dir.load_health().filter(|h| h.abnormal) {
            return Err(h.message);
        }
        let text = std::fs::read_to_string(dir.status()).map_err(|e| {
            format!(
                "the volume server is not answering ({e}); stage the volume again to restart it"
            )
        })?;
        serde_json::from_str(&text).map_err(|e| format!("unreadable server status: {e}"))
    }
}
