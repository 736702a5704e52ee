//! Harness for end-to-end tests: builds and starts the real `ferry` binary on a socket in a
//! temporary folder, and gives CSI clients to it. The process is killed when the
//! [`Plugin`] drops.

pub mod bench;
pub mod node_calls;

use ferry_csi::serve::connect_unix;
use ferry_proto::v1::controller_client::ControllerClient;
use ferry_proto::v1::group_controller_client::GroupControllerClient;
use ferry_proto::v1::identity_client::IdentityClient;
use ferry_proto::v1::node_client::NodeClient;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;
use tonic::transport::Channel;

/// The workspace's `ferry` binary, built once per test process (or `FERRY_BIN` when set).
pub fn ferry_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| match std::env::var_os("FERRY_BIN") {
        Some(bin) => PathBuf::from(bin),
        None => build_bin("ferry"),
    })
    .clone()
}

/// The workspace's `ferryctl` binary, built once per test process.
pub fn ferryctl_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build_bin("ferryctl")).clone()
}

fn build_bin(bin: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&root)
        // The same selection `cargo test --workspace` builds, so features unify the same way
        // and the binary is already there instead of rebuilt with other features.
        .args([
            "build",
            "--quiet",
            "--workspace",
            "--bins",
            "--tests",
            "--examples",
        ])
        .status()
        .expect("running cargo build");
    assert!(status.success(), "building the workspace for {bin} failed");
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target"));
    target.join("debug").join(bin)
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
        // A plugin in a PID namespace of its own: its init goes with it.
        for pid in children(self.child.id()) {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        clean_node(self.dir.path());
    }
}

/// The children of process `pid`.
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Undoes what a node plugin left under `dir`: its volume host, mounts (innermost first),
/// loop devices over its volume servers' images, and the servers themselves.
pub fn clean_node(dir: &Path) {
    // The host first: it would take a killed server's connection up again.
    if let Some(pid) = host_pid(dir) {
        let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
    }
    let prefix = dir.to_string_lossy().into_owned();
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut targets: Vec<String> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|t| t.starts_with(&prefix))
        .collect();
    targets.reverse();
    let fuse: Vec<&String> = targets.iter().filter(|t| t.ends_with("/fuse")).collect();
    for t in targets
        .iter()
        .filter(|t| !t.ends_with("/fuse") && **t != prefix)
    {
        let _ = Command::new("umount").arg("-l").arg(t).status();
    }
    for dev in loops_under(&prefix).into_iter().chain(recorded_loops(dir)) {
        let _ = Command::new("losetup").arg("-d").arg(dev).status();
    }
    for t in fuse {
        let _ = Command::new("umount").arg("-l").arg(t).status();
    }
    for pid in server_pids(dir) {
        let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
    }
    // The folder itself, made a shared mount for a plugin in a namespace of its own.
    if targets.contains(&prefix) {
        let _ = Command::new("umount").arg("-l").arg(&prefix).status();
    }
}

/// Loop devices the volumes of a plugin in `dir` recorded that still back onto a volume
/// image (attached in a mount namespace that is gone, their backing path reads `/disk`).
fn recorded_loops(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir.join("state/volumes")) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let id = e.file_name().to_string_lossy().into_owned();
            let d = ferry_node::state::VolumeDir::new(&dir.join("state"), &id).ok()?;
            let dev = d.load_device()?.loop_device;
            let name = dev.strip_prefix("/dev/")?.to_string();
            let backing =
                std::fs::read_to_string(format!("/sys/block/{name}/loop/backing_file")).ok()?;
            let backing = backing.trim_end();
            (backing.ends_with("/disk") || backing.ends_with("/disk (deleted)")).then_some(dev)
        })
        .collect()
}

/// Loop devices whose backing file lies under `prefix`.
pub fn loops_under(prefix: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let f = std::fs::read_to_string(e.path().join("loop/backing_file")).ok()?;
            f.starts_with(prefix)
                .then(|| format!("/dev/{}", e.file_name().to_string_lossy()))
        })
        .collect()
}

/// A `ferry volume-host` started apart from the node plugin, as its own DaemonSet runs it;
/// killed when dropped.
pub struct VolumeHost {
    /// The process.
    pub child: Child,
}

impl VolumeHost {
    /// Starts `<bin> volume-host` on the state folder of a plugin in `dir`, and waits until
    /// it answers on its socket (a new host first takes the volumes over from a running one).
    pub async fn start(bin: &Path, dir: &Path) -> VolumeHost {
        let state = dir.join("state");
        std::fs::create_dir_all(&state).expect("state folder");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("volume-host.log"))
            .expect("host log");
        let before = host_pid(dir);
        let child = Command::new(bin)
            .arg("volume-host")
            .arg("--state-dir")
            .arg(&state)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting ferry volume-host");
        let host = VolumeHost { child };
        for _ in 0..1500 {
            if host_pid(dir) == Some(host.child.id()) && host_pid(dir) != before {
                return host;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "the volume host did not start: {}",
            std::fs::read_to_string(dir.join("volume-host.log")).unwrap_or_default()
        );
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for VolumeHost {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes `ferry` as `dir/name`, with `extra` bytes appended: a "newer build" that runs the
/// same but is another file, so the processes of each can be told apart. Replaces a file
/// already there by a rename, as a package upgrade does.
pub fn ferry_copy(dir: &Path, name: &str, extra: &[u8]) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join(name);
    let mut bytes = std::fs::read(ferry_bin()).expect("reading ferry");
    bytes.extend_from_slice(extra);
    let tmp = dir.join(format!("{name}.new"));
    std::fs::write(&tmp, &bytes).expect("writing ferry");
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::rename(&tmp, &bin).expect("rename");
    bin
}

/// Kills volume server `pid` with SIGKILL at a moment its durability marker (`marker`)
/// says every write it acknowledged is durable: it is stopped (SIGSTOP, and waited for
/// until every thread of it is stopped, since a signal is delivered asynchronously), the
/// marker read, and it is killed or let go on. False when that moment did not come in
/// `tries` tries.
pub fn kill_when_clean(pid: u32, marker: &Path, tries: usize) -> bool {
    let signal = |sig: &str| {
        let _ = Command::new("kill").arg(sig).arg(pid.to_string()).status();
    };
    let all_stopped = || {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return true;
        };
        tasks.filter_map(Result::ok).all(|t| {
            std::fs::read_to_string(t.path().join("stat"))
                .ok()
                .and_then(|s| s.rsplit_once(") ").map(|(_, r)| r.starts_with(['T', 't'])))
                .unwrap_or(true)
        })
    };
    for _ in 0..tries {
        signal("-STOP");
        while !all_stopped() {
            std::thread::sleep(Duration::from_micros(200));
        }
        if std::fs::read_to_string(marker).is_ok_and(|t| t == "clean") {
            signal("-KILL");
            return true;
        }
        signal("-CONT");
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

/// Pid of the volume host serving the node plugin in `dir`.
pub fn host_pid(dir: &Path) -> Option<u32> {
    std::fs::read_to_string(dir.join("state/volume-host.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Pids of the volume servers a node plugin in `dir` started.
pub fn server_pids(dir: &Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir(dir.join("state/volumes")) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read_to_string(e.path().join("server.pid")).ok())
        .filter_map(|p| p.trim().parse().ok())
        .collect()
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
        Plugin::launch(dir, env, &[ferry_bin().to_string_lossy().as_ref()]).await
    }

    /// Starts `<bin> plugin` as the init of a PID namespace of its own, as a container runtime
    /// does (`unshare --pid --fork --mount-proc`), in a mount namespace whose mounts propagate
    /// both ways, as a Bidirectional volume's do. It starts no volume host: one must run
    /// beside it ([`VolumeHost`]).
    pub async fn start_in_pid_namespace(
        dir: tempfile::TempDir,
        bin: &Path,
        env: &[(&str, &str)],
    ) -> Plugin {
        let mut all = env.to_vec();
        all.push(("FERRY_START_VOLUME_HOST", "false"));
        // Mounts propagate between two namespaces only through a shared mount, as a
        // Bidirectional volume's host folder is (the kubelet's is rshared): make the folder
        // one, once.
        let d = dir.path().to_string_lossy().into_owned();
        let is_mount = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .any(|l| l.split(' ').nth(4) == Some(d.as_str()));
        if !is_mount {
            for args in [vec!["--bind", &d, &d], vec!["--make-shared", &d]] {
                let ok = Command::new("mount").args(&args).status();
                assert!(ok.is_ok_and(|s| s.success()), "mount {args:?}");
            }
        }
        let bin = bin.to_string_lossy();
        let argv = [
            "unshare",
            "--pid",
            "--fork",
            "--mount-proc",
            "--propagation",
            "shared",
            bin.as_ref(),
        ];
        Plugin::launch(dir, &all, &argv).await
    }

    /// Starts `ferry plugin` as user and group `uid` (through `setpriv`, with no other
    /// group), as a Deployment with `runAsUser` and `runAsGroup` runs it.
    pub async fn start_as(dir: tempfile::TempDir, uid: u32, env: &[(&str, &str)]) -> Plugin {
        let bin = ferry_bin();
        let (reuid, regid) = (format!("--reuid={uid}"), format!("--regid={uid}"));
        let argv = [
            "setpriv",
            reuid.as_str(),
            regid.as_str(),
            "--clear-groups",
            bin.to_str().expect("path"),
        ];
        Plugin::launch(dir, env, &argv).await
    }

    async fn launch(dir: tempfile::TempDir, env: &[(&str, &str)], argv: &[&str]) -> Plugin {
        let socket = dir.path().join("csi.sock");
        let _ = std::fs::remove_file(&socket);
        let mut cmd = Command::new(argv[0]);
        cmd.args(&argv[1..])
            .arg("plugin")
            .env("CSI_ENDPOINT", format!("unix://{}", socket.display()))
            .env("NODE_ID", "node-a")
            .env("FERRY_STATE_DIR", dir.path().join("state"))
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
        for _ in 0..500 {
            if plugin.socket.exists() && connect_unix(&plugin.socket).await.is_ok() {
                return plugin;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("ferry plugin did not open {}", plugin.socket.display());
    }

    /// Kills the init of the plugin's PID namespace with SIGKILL (the kernel then kills every
    /// process in it, as a container runtime stopping the container does) and waits for the
    /// namespace to be gone. Returns the folder and settings for the next plugin.
    pub fn kill_namespace(mut self) -> (tempfile::TempDir, Vec<(String, String)>) {
        let init = *children(self.child.id())
            .first()
            .expect("the namespace's init");
        let _ = Command::new("kill")
            .arg("-9")
            .arg(init.to_string())
            .status();
        let _ = self.child.wait();
        let env = std::mem::take(&mut self.env);
        let dir = std::mem::replace(
            &mut self.dir,
            tempfile::tempdir().expect("temporary folder"),
        );
        (dir, env)
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

    /// A GroupController client.
    pub async fn group_controller(&self) -> GroupControllerClient<Channel> {
        GroupControllerClient::new(self.channel().await)
    }

    /// A Node client.
    pub async fn node(&self) -> NodeClient<Channel> {
        NodeClient::new(self.channel().await)
    }

    /// Kills the plugin, its volume host and every volume server with SIGKILL: a node that
    /// died. Its mounts stay behind, dead, until the plugin drops.
    pub fn kill_node(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(pid) = host_pid(self.dir.path()) {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        }
        for pid in server_pids(self.dir.path()) {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        }
    }

    /// An Identity client.
    pub async fn identity(&self) -> IdentityClient<Channel> {
        IdentityClient::new(self.channel().await)
    }
}
