//! fio through a mounted ferry volume and through ext4 on a loop device over a plain file on
//! the same filesystem, in one run with the same jobs. Run by `hack/bench-node.sh` (root).
//!
//! Environment: `FERRY_BIN` (the ferry binary, a release build), `FERRY_BENCH_DIR` (where the
//! store and the plain file go), `FERRY_BENCH_SIZE_MIB` (file size per job, default 1024),
//! `FERRY_BENCH_SECS` (duration of the random jobs, default 20).
//!
//! Then PostgreSQL's pgbench (TPC-B like) on both: a cluster made with `initdb` on each
//! mount, `pgbench -i -s FERRY_BENCH_PG_SCALE` (30), then `FERRY_BENCH_PG_ROUNDS` (2)
//! interleaved runs of `pgbench -c 4 -j 2 -T FERRY_BENCH_PG_SECS` (60) on each side
//! (`FERRY_BENCH_JOBS=pgbench` for that alone). With `FERRY_BENCH_S3_ENDPOINT` set, the
//! volume's chunk store is bucket `bench` of that S3 server (behind the benchmark link in
//! `hack/bench-wan.sh`) instead of a local folder.

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
    // Twice the jobs' file, and at least 4 GiB: pgbench at scale 30 writes about 0.5 GB of
    // tables and indexes and up to 1 GB of WAL (both sides are sparse until written).
    let vol_bytes = (size * 2).max(4096) << 20;

    // ferry: one ext4 volume on a local-folder store, staged and published.
    let store = base.join("store");
    let log = std::env::var("FERRY_BENCH_LOG").unwrap_or_else(|_| "warn".into());
    let store_root = store.to_string_lossy().into_owned();
    let mut env: Vec<(&str, &str)> = vec![("NODE_ID", "bench"), ("RUST_LOG", &log)];
    let endpoint = std::env::var("FERRY_BENCH_S3_ENDPOINT").ok();
    match &endpoint {
        Some(e) => env.extend([
            ("FERRY_STORE_BACKEND", "s3"),
            ("FERRY_STORE_BUCKET", "bench"),
            ("FERRY_STORE_ENDPOINT", e.as_str()),
            ("FERRY_STORE_REGION", "us-east-1"),
            ("FERRY_STORE_ACCESS_KEY_ID", "test"),
            ("FERRY_STORE_SECRET_ACCESS_KEY", "test"),
        ]),
        None => env.extend([
            ("FERRY_STORE_BACKEND", "fs"),
            ("FERRY_STORE_ROOT", store_root.as_str()),
        ]),
    }
    let plugin = Plugin::start(
        tempfile::Builder::new().prefix("node").tempdir_in(&base)?,
        &env,
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
        jobs(&ferry_mnt, &plain_mnt, size, secs)?;
        // Room for the database: fio's file goes.
        for m in [&ferry_mnt, &plain_mnt] {
            let _ = std::fs::remove_file(m.join("bench.dat"));
        }
        run(Command::new("fstrim").arg(&ferry_mnt)).ok();
        pgbench(&ferry_mnt, &plain_mnt)
    }
    .await;
    let log = plugin
        .dir
        .path()
        .join("state/volumes")
        .join(&vol.volume_id)
        .join("server.log");
    let _ = std::fs::copy(log, base.join("server.log"));
    if let Err(e) = &result {
        eprintln!("benchmark failed: {e}");
    }
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

/// pgbench on a PostgreSQL cluster on each mount, interleaved rounds; prints TPS.
fn pgbench(ferry: &Path, plain: &Path) -> Result<(), BoxError> {
    let only = std::env::var("FERRY_BENCH_JOBS").unwrap_or_default();
    if !only.is_empty() && !only.split(',').any(|o| o == "pgbench") {
        return Ok(());
    }
    let scale = env_u64("FERRY_BENCH_PG_SCALE", 30).to_string();
    let secs = env_u64("FERRY_BENCH_PG_SECS", 60).to_string();
    let rounds = env_u64("FERRY_BENCH_PG_ROUNDS", 2);
    let pg_bin = Path::new("/usr/lib/postgresql/15/bin");
    let sides = [
        ("ferry", ferry, 54_391u16),
        ("plain loop", plain, 54_392u16),
    ];
    let as_pg = |cmd: &Path| {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(cmd);
        c
    };
    let outcome = pg_rounds(&sides, &as_pg, pg_bin, &scale, &secs, rounds);
    // Stopped whatever happened: a server left running keeps the mounts busy.
    for (_, mnt, _) in sides {
        let _ = run(as_pg(&pg_bin.join("pg_ctl"))
            .args(["-D"])
            .arg(mnt.join("pgdata"))
            // A shutdown checkpoint to a store far away takes longer than pg_ctl's minute.
            .args(["-m", "fast", "-w", "-t", "600", "stop"]));
    }
    outcome
}

type Side<'a> = (&'a str, &'a Path, u16);

fn pg_rounds(
    sides: &[Side],
    as_pg: &dyn Fn(&Path) -> Command,
    pg_bin: &Path,
    scale: &str,
    secs: &str,
    rounds: u64,
) -> Result<(), BoxError> {
    for &(_, mnt, port) in sides {
        let data = mnt.join("pgdata");
        std::fs::create_dir_all(&data)?;
        // The server runs as postgres: every folder above its data must let it pass.
        for dir in data.ancestors().skip(1) {
            if dir.as_os_str().len() > 1 {
                run(Command::new("chmod").arg("o+x").arg(dir))?;
            }
        }
        run(Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&data))?;
        run(as_pg(&pg_bin.join("initdb")).args(["-D"]).arg(&data).args([
            "--auth=trust",
            "-U",
            "postgres",
        ]))?;
        run(as_pg(&pg_bin.join("pg_ctl"))
            .args(["-D"])
            .arg(&data)
            .args(["-w", "-l"])
            .arg(data.join("server.log"))
            .arg("-o")
            .arg(format!(
                "-p {port} -k /tmp -c listen_addresses='' -c shared_buffers=128MB"
            ))
            .arg("start"))?;
        let init = run(as_pg(Path::new("/usr/bin/pgbench")).args([
            "-i",
            "-q",
            "-s",
            scale,
            "-h",
            "/tmp",
            "-p",
            &port.to_string(),
            "postgres",
        ]));
        if let Err(e) = init {
            // Which side failed and what the server said, before the mounts go.
            let log = std::fs::read_to_string(data.join("server.log"))
                .unwrap_or_else(|le| format!("(its log cannot be read: {le})"));
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(format!(
                "pgbench -i on {}: {e}\nits server's log ends:\n{}",
                mnt.display(),
                tail.join("\n")
            )
            .into());
        }
    }
    let mut tps: Vec<Vec<f64>> = vec![Vec::new(), Vec::new()];
    for round in 0..rounds {
        for (i, (_, _, port)) in sides.iter().enumerate() {
            let out = run(as_pg(Path::new("/usr/bin/pgbench")).args([
                "-c",
                "4",
                "-j",
                "2",
                "-T",
                secs,
                "-h",
                "/tmp",
                "-p",
                &port.to_string(),
                "postgres",
            ]))?;
            let t = out
                .lines()
                .find(|l| l.starts_with("tps = "))
                .and_then(|l| l.split_whitespace().nth(2))
                .and_then(|v| v.parse::<f64>().ok())
                .ok_or("pgbench printed no tps")?;
            eprintln!("pgbench round {round} {}: {t:.0} TPS", sides[i].0);
            tps[i].push(t);
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let (f, p) = (mean(&tps[0]), mean(&tps[1]));
    println!(
        "{:<14} {:>10.0} TPS {:>10.0} TPS {:>6.0}%   (pgbench -s {scale} -c 4 -j 2 -T {secs}, {rounds} rounds each: ferry {:?}, plain {:?})",
        "pgbench",
        f,
        p,
        f / p * 100.0,
        tps[0].iter().map(|t| t.round()).collect::<Vec<_>>(),
        tps[1].iter().map(|t| t.round()).collect::<Vec<_>>()
    );
    Ok(())
}
