//! Harness for end-to-end tests: builds and starts the real `ferry` binary on a socket in a
//! temporary folder, and gives CSI clients to it. The process is killed when the
//! [`Plugin`] drops.

use ferry_csi::serve::connect_unix;
use ferry_proto::v1::controller_client::ControllerClient;
use ferry_proto::v1::identity_client::IdentityClient;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;
use tonic::transport::Channel;

/// The workspace's `ferry` binary, built once per test process.
pub fn ferry_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(&root)
            .args(["build", "--quiet", "-p", "ferry", "--bin", "ferry"])
            .status()
            .expect("running cargo build for the ferry binary");
        assert!(status.success(), "building the ferry binary failed");
        let target = std::env::var("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| root.join("target"));
        target.join("debug/ferry")
    })
    .clone()
}

/// A running `ferry plugin`.
pub struct Plugin {
    child: Child,
    env: Vec<(String, String)>,
    /// Its socket.
    pub socket: PathBuf,
    /// Temporary folder holding socket (and store, for `fs`).
    pub dir: tempfile::TempDir,
}

impl Drop for Plugin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Plugin {
    /// Starts `ferry plugin` with a local-folder store in a temporary folder.
    pub async fn start_fs() -> Plugin {
        let dir = tempfile::tempdir().expect("temporary folder");
        let store = dir.path().join("store");
        let store = store.to_string_lossy().into_owned();
        Plugin::start(
            dir,
            &[("FERRY_STORE_BACKEND", "fs"), ("FERRY_STORE_ROOT", &store)],
        )
        .await
    }

    /// Starts `ferry plugin` in `dir` with store settings given as environment variables.
    pub async fn start(dir: tempfile::TempDir, env: &[(&str, &str)]) -> Plugin {
        let socket = dir.path().join("csi.sock");
        let mut cmd = Command::new(ferry_bin());
        cmd.arg("plugin")
            .env("CSI_ENDPOINT", format!("unix://{}", socket.display()))
            .env("NODE_ID", "node-a")
            .env("FERRY_GC_GRACE_SECS", "0")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("starting ferry plugin");
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let plugin = Plugin {
            child,
            env,
            socket,
            dir,
        };
        for _ in 0..300 {
            if plugin.socket.exists() && connect_unix(&plugin.socket).await.is_ok() {
                return plugin;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("ferry plugin did not open {}", plugin.socket.display());
    }

    /// Kills the plugin with SIGKILL (no chance to clean up) and starts a new one on the same
    /// folder and settings.
    pub async fn kill_and_restart(mut self) -> Plugin {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let env = std::mem::take(&mut self.env);
        let dir = std::mem::replace(
            &mut self.dir,
            tempfile::tempdir().expect("temporary folder"),
        );
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Plugin::start(dir, &env).await
    }

    async fn channel(&self) -> Channel {
        connect_unix(&self.socket)
            .await
            .expect("connecting to the plugin socket")
    }

    /// A Controller client.
    pub async fn controller(&self) -> ControllerClient<Channel> {
        ControllerClient::new(self.channel().await)
    }

    /// An Identity client.
    pub async fn identity(&self) -> IdentityClient<Channel> {
        IdentityClient::new(self.channel().await)
    }
}
