//! Loop devices over a volume's served image file, driven through util-linux `losetup`.
//!
//! A loop device is found again by what its backing file is, not by its name: the device
//! number of the FUSE filesystem and the image's inode. Its backing path is the path in the
//! mount namespace where it was attached, which means nothing once that namespace is gone
//! (a node plugin's container that was restarted: the path reads `/disk`).

use crate::mounts;
use crate::state::{DeviceRecord, VolumeDir};
use crate::system::run;
use ferry_csi::Error;
use serde::Deserialize;
use std::path::Path;

/// Attaches `file` to a free loop device and returns its path (`/dev/loopN`). Direct I/O
/// keeps the image's pages out of a second page cache; the device's own cache stays.
///
/// # Errors
/// INTERNAL with losetup's message.
pub async fn attach(file: &Path, read_only: bool) -> Result<String, Error> {
    let f = file.to_string_lossy();
    let mut args = vec![
        "--find",
        "--show",
        "--direct-io=on",
        "--sector-size",
        "4096",
    ];
    if read_only {
        args.push("--read-only");
    }
    args.push(&f);
    Ok(run("losetup", &args).await?.trim().to_string())
}

#[derive(Deserialize)]
struct Listing {
    #[serde(default)]
    loopdevices: Vec<Listed>,
}

#[derive(Deserialize)]
struct Listed {
    name: String,
    #[serde(rename = "back-ino", default)]
    ino: serde_json::Value,
    #[serde(rename = "back-maj:min", default)]
    dev: Option<String>,
    #[serde(rename = "back-file", default)]
    file: Option<String>,
}

/// Every attached loop device: (device, backing `major:minor`, backing inode, backing path).
async fn list() -> Result<Vec<(String, String, u64, String)>, Error> {
    let out = run(
        "losetup",
        &[
            "--list",
            "--json",
            "-O",
            "NAME,BACK-INO,BACK-MAJ:MIN,BACK-FILE",
        ],
    )
    .await?;
    if out.trim().is_empty() {
        return Ok(Vec::new());
    }
    let l: Listing = serde_json::from_str(&out)
        .map_err(|e| Error::Internal(format!("losetup --list printed {out:?}: {e}")))?;
    Ok(l.loopdevices
        .into_iter()
        .map(|d| {
            let ino = match &d.ino {
                serde_json::Value::Number(n) => n.as_u64().unwrap_or(0),
                serde_json::Value::String(s) => s.trim().parse().unwrap_or(0),
                _ => 0,
            };
            let file = d.file.unwrap_or_default();
            let file = file.strip_suffix(" (deleted)").unwrap_or(&file).to_string();
            (
                d.name,
                d.dev.unwrap_or_default().trim().to_string(),
                ino,
                file,
            )
        })
        .collect())
}

/// Device numbers of the FUSE filesystems serving other volumes than `dir`'s.
fn other_volumes_devs(dir: &VolumeDir) -> Result<Vec<String>, Error> {
    let mine = dir.fuse().to_string_lossy().into_owned();
    Ok(mounts::table()?
        .into_iter()
        .filter(|m| m.source.starts_with("ferry:") && m.target != mine)
        .map(|m| m.dev)
        .collect())
}

/// The loop devices attached over volume `dir`'s image: over its FUSE filesystem as mounted
/// now, or as recorded when the device was attached (the mount may be gone), or, for a
/// device attached before such records, by path.
///
/// # Errors
/// INTERNAL when losetup or the mount table cannot be read.
pub async fn find(dir: &VolumeDir) -> Result<Vec<String>, Error> {
    let mut devs = Vec::new();
    if let Some(m) = mounts::at(&dir.fuse())?.filter(|m| m.source.starts_with("ferry:")) {
        devs.push(m.dev);
    }
    if let Some(r) = dir.load_device()
        && !devs.contains(&r.fuse_dev)
        && !other_volumes_devs(dir)?.contains(&r.fuse_dev)
    {
        devs.push(r.fuse_dev);
    }
    let path = dir.disk().to_string_lossy().into_owned();
    let ino = crate::server::image_fs::DISK_INO;
    let mut out: Vec<String> = list()
        .await?
        .into_iter()
        .filter(|(_, dev, i, file)| (devs.contains(dev) && *i == ino) || *file == path)
        .map(|(name, ..)| name)
        .collect();
    out.sort();
    Ok(out)
}

/// The volume's loop device, attached (and recorded) if none is.
///
/// # Errors
/// INTERNAL with losetup's message.
pub async fn ensure(dir: &VolumeDir, read_only: bool) -> Result<String, Error> {
    if let Some(dev) = find(dir).await?.into_iter().next() {
        return Ok(dev);
    }
    let fuse_dev = mounts::at(&dir.fuse())?.map(|m| m.dev).ok_or_else(|| {
        Error::Internal(format!(
            "the volume's FUSE filesystem is not mounted at {}",
            dir.fuse().display()
        ))
    })?;
    let dev = attach(&dir.disk(), read_only).await?;
    dir.save_device(&DeviceRecord {
        loop_device: dev.clone(),
        fuse_dev,
    })?;
    Ok(dev)
}

/// Detaches every loop device over the volume's image and waits (a bounded time) until the
/// kernel has let go of them, so the FUSE filesystem can be unmounted.
///
/// # Errors
/// INTERNAL with losetup's message.
pub async fn detach_all(dir: &VolumeDir) -> Result<(), Error> {
    for dev in find(dir).await? {
        detach(&dev).await?;
    }
    // The kernel lets go of a detached device's backing file asynchronously.
    let started = std::time::Instant::now();
    while !find(dir).await?.is_empty() && started.elapsed() < DETACH_WAIT {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    dir.remove_device();
    Ok(())
}

/// How long detaching waits for the kernel to let go of the devices.
const DETACH_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Detaches `device`; one already gone is fine.
///
/// # Errors
/// INTERNAL with losetup's message.
pub async fn detach(device: &str) -> Result<(), Error> {
    match run("losetup", &["--detach", device]).await {
        Ok(_) => Ok(()),
        Err(Error::Internal(m)) if m.contains("No such device") => Ok(()),
        Err(e) => Err(e),
    }
}

/// Makes `device` pick up its backing file's new size.
///
/// # Errors
/// INTERNAL with losetup's message.
pub async fn refresh_capacity(device: &str) -> Result<(), Error> {
    run("losetup", &["--set-capacity", device]).await.map(drop)
}

/// Size of a block device in bytes.
///
/// # Errors
/// INTERNAL with blockdev's message.
pub async fn size(device: &str) -> Result<u64, Error> {
    let out = run("blockdev", &["--getsize64", device]).await?;
    out.trim()
        .parse()
        .map_err(|e| Error::Internal(format!("blockdev printed {out:?} for {device}: {e}")))
}
