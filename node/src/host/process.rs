//! Starting one volume server process on a FUSE connection and talking to it: the
//! connection is its standard input, a socket to the host its standard output, its log its
//! standard error.

use super::protocol::ServerSpec;
use crate::server::SUBCOMMAND;
use crate::state::VolumeDir;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

/// The binary volume servers run: this process's own, even after a newer build replaced the
/// file on disk (an upgrade then goes through a new host, never through a mixed one).
pub const OWN_EXE: &str = "/proc/self/exe";

/// A started server.
pub struct Started {
    /// The process.
    pub child: tokio::process::Child,
    /// The host's end of the control socket.
    pub control: UnixStream,
}

/// Starts `<exe> volume-server` for `spec` on connection `fuse`; `resend` when a server
/// that died read requests it never answered.
///
/// # Errors
/// When the process cannot be started.
pub fn spawn(
    exe: &Path,
    spec: &ServerSpec,
    state_dir: &Path,
    dir: &VolumeDir,
    fuse: &OwnedFd,
    resend: bool,
) -> std::io::Result<Started> {
    std::fs::create_dir_all(dir.root())?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.log())?;
    let (control, theirs) = UnixStream::pair()?;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg(SUBCOMMAND)
        .arg("--volume-id")
        .arg(&spec.volume_id)
        .arg("--node-id")
        .arg(&spec.node_id)
        .arg("--state-dir")
        .arg(state_dir)
        .arg("--store-config")
        .arg(&spec.store_config)
        .arg("--lease-ttl-secs")
        .arg(spec.lease_ttl_secs.to_string())
        .arg("--cache-mib")
        .arg(spec.cache_mib.to_string());
    if spec.read_only {
        cmd.arg("--read-only");
    }
    if resend {
        cmd.arg("--resend");
    }
    cmd.stdin(Stdio::from(fuse.try_clone()?))
        .stdout(Stdio::from(OwnedFd::from(theirs)))
        .stderr(Stdio::from(log))
        // Its own process group: a signal to the host's group leaves volumes served.
        .process_group(0)
        .kill_on_drop(false);
    let child = cmd.spawn()?;
    Ok(Started { child, control })
}

/// Waits (on a blocking thread) for the line `want` from a server, for at most `limit`;
/// false when the server ended or said nothing in time.
pub async fn wait_for(control: &UnixStream, want: &'static str, limit: Duration) -> bool {
    let Ok(stream) = control.try_clone() else {
        return false;
    };
    tokio::task::spawn_blocking(move || {
        if stream.set_read_timeout(Some(limit)).is_err() {
            return false;
        }
        for line in BufReader::new(stream).lines() {
            match line {
                Ok(l) if l.trim() == want => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        false
    })
    .await
    .unwrap_or(false)
}

/// Writes one line to a server.
pub fn tell(control: &UnixStream, line: &str) -> bool {
    (&*control)
        .write_all(format!("{line}\n").as_bytes())
        .is_ok()
}

/// The binary a process runs, as the kernel names it.
pub fn exe_of(pid: u32) -> String {
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}
