//! fio through a mounted ferry volume and through ext4 on a loop device over a plain file on
//! the same filesystem, in one run with the same jobs. Run by `hack/bench-node.sh` (root).
//!
//! Environment: `FERRY_BIN` (the ferry binary, a release build), `FERRY_BENCH_DIR` (where the
//! store and the plain file go), `FERRY_BENCH_SIZE_MIB` (file size per job, default 1024),
//! `FERRY_BENCH_SECS` (duration of the random jobs, default 20).

use ferry_e2e::Plugin;
use ferry_proto::v1::volume_capability::access_mode::Mode;
use ferry_proto::v1::volume_capability::{AccessMode, AccessType, MountVolume};
use ferry_proto::v1::*;
use std::path::{Path, PathBuf};
use std::process::Command;

type BoxError = Box<dyn std::error::Error>;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn run(cmd: &mut Command) -> Result<String, BoxError> {
    let out = cmd.output()?;
    if !out.status.success() {
        return Err(format!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let size = env_u64("FERRY_BENCH_SIZE_MIB", 1024);
    let secs = env_u64("FERRY_BENCH_SECS", 20);
    let base = PathBuf::from(
        std::env::var("FERRY_BENCH_DIR").unwrap_or_else(|_| ".cache/bench-node".into()),
    );
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base)?;
    let base = base.canonicalize()?;
    let vol_bytes = (size * 2) << 20;

    // ferry: one ext4 volume on a local-folder store, staged and published.
    let store = base.join("store");
    let plugin = Plugin::start(
        tempfile::Builder::new().prefix("node").tempdir_in(&base)?,
        &[
            ("FERRY_STORE_BACKEND", "fs"),
            ("FERRY_STORE_ROOT", &store.to_string_lossy()),
            ("NODE_ID", "bench"),
            (
                "RUST_LOG",
                &std::env::var("FERRY_BENCH_LOG").unwrap_or_else(|_| "warn".into()),
            ),
        ],
    )
    .await;
    let cap = VolumeCapability {
        access_mode: Some(AccessMode {
            mode: Mode::SingleNodeWriter as i32,
        }),
        access_type: Some(AccessType::Mount(MountVolume {
            fs_type: "ext4".into(),
            ..Default::default()
        })),
    };
    let vol = plugin
        .controller()
        .await
        .create_volume(CreateVolumeRequest {
            name: "bench".into(),
            capacity_range: Some(CapacityRange {
                required_bytes: vol_bytes as i64,
                limit_bytes: 0,
            }),
            volume_capabilities: vec![cap.clone()],
            ..Default::default()
        })
        .await?
        .into_inner()
        .volume
        .ok_or("no volume")?;
    let staging = plugin.dir.path().join("staging");
    let ferry_mnt = plugin.dir.path().join("mnt");
    let mut node = plugin.node().await;
    node.node_stage_volume(NodeStageVolumeRequest {
        volume_id: vol.volume_id.clone(),
        staging_target_path: staging.to_string_lossy().into(),
        volume_capability: Some(cap.clone()),
        ..Default::default()
    })
    .await?;
    node.node_publish_volume(NodePublishVolumeRequest {
        volume_id: vol.volume_id.clone(),
        staging_target_path: staging.to_string_lossy().into(),
        target_path: ferry_mnt.to_string_lossy().into(),
        volume_capability: Some(cap.clone()),
        ..Default::default()
    })
    .await?;

    // plain: a sparse file on the same filesystem, a loop device, ext4.
    let img = base.join("plain.img");
    std::fs::File::create(&img)?.set_len(vol_bytes)?;
    let dev = run(Command::new("losetup").args(["--find", "--show"]).arg(&img))?
        .trim()
        .to_string();
    let plain_mnt = base.join("plain-mnt");
    std::fs::create_dir_all(&plain_mnt)?;
    let result = async {
        run(Command::new("mkfs.ext4").args(["-F", "-q", &dev]))?;
        run(Command::new("mount").arg(&dev).arg(&plain_mnt))?;
        jobs(&ferry_mnt, &plain_mnt, size, secs)
    }
    .await;
    let log = plugin
        .dir
        .path()
        .join("state/volumes")
        .join(&vol.volume_id)
        .join("server.log");
    let _ = std::fs::copy(log, base.join("server.log"));
    let _ = Command::new("umount").arg(&plain_mnt).status();
    let _ = Command::new("losetup").args(["-d", &dev]).status();
    node.node_unpublish_volume(NodeUnpublishVolumeRequest {
        volume_id: vol.volume_id.clone(),
        target_path: ferry_mnt.to_string_lossy().into(),
    })
    .await?;
    node.node_unstage_volume(NodeUnstageVolumeRequest {
        volume_id: vol.volume_id.clone(),
        staging_target_path: staging.to_string_lossy().into(),
    })
    .await?;
    result
}

fn jobs(ferry: &Path, plain: &Path, size: u64, secs: u64) -> Result<(), BoxError> {
    let size = format!("--size={size}M");
    let runtime = format!("--runtime={secs}");
    let list: [(&str, Vec<&str>); 4] = [
        (
            "seq-write-1M",
            vec![
                "--rw=write",
                "--bs=1M",
                &size,
                "--fsync=16",
                "--end_fsync=1",
            ],
        ),
        ("seq-read-1M", vec!["--rw=read", "--bs=1M", &size]),
        (
            "rand-write-4K",
            vec![
                "--rw=randwrite",
                "--bs=4k",
                &size,
                "--fsync=1",
                "--time_based",
                &runtime,
            ],
        ),
        (
            "rand-read-4K",
            vec!["--rw=randread", "--bs=4k", &size, "--time_based", &runtime],
        ),
    ];
    println!(
        "{:<14} {:>14} {:>14} {:>7}",
        "job", "ferry", "plain loop", "ratio"
    );
    let only = std::env::var("FERRY_BENCH_JOBS").unwrap_or_default();
    for (name, args) in list
        .into_iter()
        .filter(|(n, _)| only.is_empty() || only.split(',').any(|o| n.starts_with(o)))
    {
        let f = fio(ferry, name, &args)?;
        let p = fio(plain, name, &args)?;
        let show = |x: (f64, f64)| {
            if name.ends_with("1M") {
                format!("{:.1} MB/s", x.0 / 1e6)
            } else {
                format!("{:.0} IOPS", x.1)
            }
        };
        println!(
            "{name:<14} {:>14} {:>14} {:>6.0}%",
            show(f),
            show(p),
            f.0 / p.0 * 100.0
        );
    }
    Ok(())
}

/// Runs one fio job in `dir` with O_DIRECT after dropping caches; (bytes/s, IOPS).
fn fio(dir: &Path, name: &str, args: &[&str]) -> Result<(f64, f64), BoxError> {
    run(&mut Command::new("sync"))?;
    std::fs::write("/proc/sys/vm/drop_caches", "3")?;
    let out = run(Command::new("fio")
        .arg(format!("--name={name}"))
        .arg(format!("--directory={}", dir.display()))
        .args([
            "--filename=bench.dat",
            "--ioengine=psync",
            "--direct=1",
            "--output-format=json",
        ])
        .args(args))?;
    let v: serde_json::Value = serde_json::from_str(&out)?;
    let job = &v["jobs"][0];
    let side = if job["write"]["io_bytes"].as_u64().unwrap_or(0) > 0 {
        &job["write"]
    } else {
        &job["read"]
    };
    Ok((
        side["bw_bytes"].as_f64().unwrap_or(0.0),
        side["iops"].as_f64().unwrap_or(0.0),
    ))
}
