//! The node's mount table (from `/proc/self/mountinfo`) and mounting and unmounting.

use crate::system::run;
use ferry_csi::Error;
use std::path::Path;

/// One line of the mount table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountEntry {
    /// Where it is mounted.
    pub target: String,
    /// Path inside the source filesystem that is mounted (`/` unless a bind of a subtree).
    pub root: String,
    /// Filesystem type (`ext4`, `xfs`, `fuse.ferry`, ...).
    pub fs_type: String,
    /// The mounted device or source.
    pub source: String,
    /// Per-mount options (`rw`, `ro`, ...).
    pub options: Vec<String>,
    /// `major:minor` of the filesystem's device.
    pub dev: String,
}

impl MountEntry {
    /// True when mounted read-only.
    pub fn read_only(&self) -> bool {
        self.options.iter().any(|o| o == "ro")
    }
}

/// The current mount table.
///
/// # Errors
/// INTERNAL when it cannot be read.
pub fn table() -> Result<Vec<MountEntry>, Error> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| Error::Internal(format!("cannot read /proc/self/mountinfo: {e}")))?;
    Ok(text.lines().filter_map(parse_line).collect())
}

/// The topmost mount at `target`, if any.
///
/// # Errors
/// As [`table`].
pub fn at(target: &Path) -> Result<Option<MountEntry>, Error> {
    let t = target.to_string_lossy();
    Ok(table()?.into_iter().rev().find(|m| m.target == t))
}

fn parse_line(line: &str) -> Option<MountEntry> {
    // id parent major:minor root target options [optional...] - fstype source superopts
    let (left, right) = line.split_once(" - ")?;
    let l: Vec<&str> = left.split(' ').collect();
    let r: Vec<&str> = right.split(' ').collect();
    Some(MountEntry {
        dev: l.get(2)?.to_string(),
        root: unescape(l.get(3)?),
        target: unescape(l.get(4)?),
        options: l.get(5)?.split(',').map(str::to_string).collect(),
        fs_type: r.first()?.to_string(),
        source: unescape(r.get(1)?),
    })
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mounts `source` (a device) at `target` as `fs_type` with `options`.
///
/// # Errors
/// INTERNAL with mount's message.
pub async fn mount(
    source: &str,
    target: &Path,
    fs_type: &str,
    options: &[String],
) -> Result<(), Error> {
    let t = target.to_string_lossy();
    let opts = options.join(",");
    let mut args = vec!["-t", fs_type];
    if !opts.is_empty() {
        args.extend(["-o", opts.as_str()]);
    }
    args.extend([source, &t]);
    run("mount", &args).await.map(drop)
}

/// Bind-mounts `source` at `target`, then makes it read-only or adds `options` when asked.
///
/// # Errors
/// INTERNAL with mount's message.
pub async fn bind(
    source: &Path,
    target: &Path,
    read_only: bool,
    options: &[String],
) -> Result<(), Error> {
    let (s, t) = (source.to_string_lossy(), target.to_string_lossy());
    run("mount", &["--bind", &s, &t]).await?;
    let mut remount: Vec<String> = vec!["remount".into(), "bind".into()];
    if read_only {
        remount.push("ro".into());
    }
    remount.extend(options.iter().cloned());
    if remount.len() > 2 {
        let opts = remount.join(",");
        if let Err(e) = run("mount", &["-o", &opts, &t]).await {
            // Leave nothing half done: a writable bind where read-only was asked is worse
            // than an error.
            let _ = run("umount", &[&t]).await;
            return Err(e);
        }
    }
    Ok(())
}

/// Unmounts every mount stacked at `target`; a target that is not mounted is fine.
/// A mount whose server is gone (ENOTCONN) is detached lazily.
///
/// # Errors
/// INTERNAL with umount's message (for example "target is busy").
pub async fn unmount_all(target: &Path) -> Result<(), Error> {
    // "target is busy" can be passing: a loop device just detached releases its backing file
    // asynchronously, and udev's probes hold a device for a moment. Such a mount is tried
    // again for a bounded time; a holder that stays makes the call fail, and the caller's
    // retry (the kubelet's) goes on from there.
    let started = std::time::Instant::now();
    while at(target)?.is_some() {
        let t = target.to_string_lossy();
        if let Err(e) = run("umount", &[&t]).await {
            if is_dead(target) {
                run("umount", &["-l", &t]).await?;
            } else if e.to_string().contains("target is busy") && started.elapsed() < BUSY_WAIT {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            } else {
                return Err(e);
            }
        }
    }
    Ok(())
}

/// How long a busy mount is tried again before unmounting fails.
const BUSY_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// True when `path` answers "transport endpoint is not connected": a FUSE mount whose server
/// died, or a mount over one.
pub fn is_dead(path: &Path) -> bool {
    matches!(std::fs::metadata(path), Err(e) if e.raw_os_error() == Some(libc::ENOTCONN))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_mountinfo_line_with_escapes() {
        let line = "36 35 7:3 / /var/lib/kubelet/a\\040b rw,relatime shared:1 - ext4 /dev/loop3 rw,errors=remount-ro";
        let m = parse_line(line).unwrap();
        assert_eq!(m.target, "/var/lib/kubelet/a b");
        assert_eq!(m.fs_type, "ext4");
        assert_eq!(m.source, "/dev/loop3");
        assert_eq!(m.dev, "7:3");
        assert!(!m.read_only());
    }

    #[test]
    fn reads_this_process_mount_table() {
        let t = table().unwrap();
        assert!(
            t.iter().any(|m| m.target == "/"),
            "the root mount is listed"
        );
    }
}
