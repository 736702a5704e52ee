//! Loop devices over a volume's served image file, driven through util-linux `losetup`.

use crate::system::run;
use ferry_csi::Error;
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

/// The loop devices attached to `file`, read from sysfs (which works even when the file's
/// FUSE server is gone and the file cannot be opened).
pub fn find(file: &Path) -> Vec<String> {
    let want = file.to_string_lossy();
    let Ok(entries) = std::fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    let mut out: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let backing = std::fs::read_to_string(e.path().join("loop/backing_file")).ok()?;
            let backing = backing.trim_end_matches('\n');
            let backing = backing.strip_suffix(" (deleted)").unwrap_or(backing);
            (name.starts_with("loop") && backing == want).then(|| format!("/dev/{name}"))
        })
        .collect();
    out.sort();
    out
}

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
