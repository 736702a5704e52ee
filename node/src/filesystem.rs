//! Filesystems on a volume's device: detect, format (only when empty), grow.

use crate::system::{probe, run};
use ferry_csi::Error;
use std::path::Path;

/// The filesystem ferry formats when the request names none.
pub const DEFAULT_FS: &str = "ext4";

/// The filesystem (or other signature) on `device`, `None` when it holds none.
///
/// # Errors
/// INTERNAL when blkid fails for another reason than finding nothing.
pub async fn detect(device: &str) -> Result<Option<String>, Error> {
    let (code, out) = probe("blkid", &["-p", "-o", "value", "-s", "TYPE", device]).await?;
    match code {
        0 => Ok(Some(out.trim().to_string()).filter(|t| !t.is_empty())),
        // blkid: 2 means no signature found.
        2 => Ok(None),
        _ => Err(Error::Internal(format!(
            "blkid could not probe {device} (exit {code})"
        ))),
    }
}

/// Formats `device` as `fs_type`. Discards are skipped: the device starts all zero.
///
/// # Errors
/// INVALID_ARGUMENT for a filesystem ferry does not format; INTERNAL with mkfs's message.
pub async fn format(device: &str, fs_type: &str) -> Result<(), Error> {
    match fs_type {
        "ext4" => run("mkfs.ext4", &["-F", "-q", "-E", "nodiscard", device]).await?,
        "xfs" => run("mkfs.xfs", &["-q", "-K", device]).await?,
        other => {
            return Err(Error::InvalidArgument(format!(
                "fs_type {other:?} is not supported: use ext4 or xfs"
            )));
        }
    };
    Ok(())
}

/// Grows the filesystem mounted at `mountpoint` from `device` to fill the device, online.
///
/// # Errors
/// INTERNAL with the tool's message.
pub async fn grow(device: &str, fs_type: &str, mountpoint: &Path) -> Result<(), Error> {
    match fs_type {
        "ext4" => match run("resize2fs", &[device]).await {
            Err(Error::Internal(m)) if m.contains("Permission denied") && !has_sys_resource() => {
                Err(Error::Internal(format!(
                    "{m}: online ext4 growth needs CAP_SYS_RESOURCE, which the node plugin \
                     lacks; run it privileged (the device already has the new size)"
                )))
            }
            r => r.map(drop),
        },
        "xfs" => run("xfs_growfs", &[&mountpoint.to_string_lossy()])
            .await
            .map(drop),
        other => Err(Error::Internal(format!("cannot grow a {other} filesystem"))),
    }
}

/// Whether this process may resize a mounted ext4 filesystem (CAP_SYS_RESOURCE).
pub fn has_sys_resource() -> bool {
    const CAP_SYS_RESOURCE: u32 = 24;
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("CapEff:"))?;
            u64::from_str_radix(line.split_whitespace().nth(1)?, 16).ok()
        })
        .is_some_and(|caps| caps >> CAP_SYS_RESOURCE & 1 == 1)
}

/// Mount options that keep a read-only mount from writing (no journal replay).
pub fn read_only_options(fs_type: &str) -> Vec<String> {
    match fs_type {
        "ext4" => vec!["ro".into(), "noload".into()],
        "xfs" => vec!["ro".into(), "norecovery".into()],
        _ => vec!["ro".into()],
    }
}
