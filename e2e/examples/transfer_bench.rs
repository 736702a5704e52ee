//! ferry export + import against `restic backup` + `restic restore` of the same 2 GiB ext4
//! image, into a local folder and through one S3 server (moto) on loopback, in rounds
//! (`FERRY_BENCH_ROUNDS`, default 3; restic first in odd rounds, last in even ones). ferry
//! runs twice a round: from a source store whose chunks are deflated, and from one whose
//! chunks are zstd. Each round also measures this disk's synced write rate, so that the
//! bytes ferry writes durably (export and import) give a floor to compare with. Then a
//! second version of the image with about 1 % of its files' data overwritten in place, and
//! what each tool uploads for it. Run by `hack/bench-transfer.sh` (root: the second version
//! is written through a loop mount).
//!
//! On the local folder ferry also runs encrypted (a transfer key) from the zstd store.
//! With `RUSTIC_BIN` set (a `rustic` binary, crates.io `rustic-rs`), rustic's backup and
//! restore run beside restic's on the local folder.
//!
//! `FERRY_BENCH_SIDES` (`local,s3` by default) picks the sides. `FERRY_BENCH_S3_ENDPOINT`
//! names an S3 server the caller runs (with its bucket `bench`) instead of moto started
//! here; `FERRY_BENCH_LINK_STATS` the stats address of the benchmark link in front of it
//! (`wan_link`), whose requests and bytes each tool's run is charged with; and
//! `FERRY_BENCH_RCLONE=1` adds `rclone copy` of the image up and back, the link's floor
//! (`hack/bench-wan.sh`).
//!
//! Every measured step is its own process (`ferryctl`, `restic`), timed with wait4: wall
//! time, CPU time (user + system) and peak RSS. The ferry volume is put into its chunk
//! stores first (not measured): that is where a ferry volume lives.

use ferry_e2e::bench::{LinkStats, Measure, link_stats, measure};
use ferry_store::{Codec, Store, StoreConfig, StoreOptions, VolumeOptions, VolumeSpec};
use rand::{Rng, RngCore, SeedableRng, rngs::StdRng};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

type BoxError = Box<dyn std::error::Error>;
const MB: u64 = 1_000_000;

fn du(path: &Path) -> u64 {
    let out = Command::new("du").args(["-sb"]).arg(path).output().ok();
    out.and_then(|o| {
        String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
    .unwrap_or(0)
}

/// The image's files: CSV and JSON rows (compressible), random blobs, many small texts.
fn populate(dir: &Path, rng: &mut StdRng) -> Result<(), BoxError> {
    std::fs::create_dir_all(dir.join("db"))?;
    std::fs::create_dir_all(dir.join("blobs"))?;
    std::fs::create_dir_all(dir.join("docs"))?;
    for f in 0..10 {
        let mut w = std::io::BufWriter::new(std::fs::File::create(
            dir.join(format!("db/orders-{f}.csv")),
        )?);
        let mut n = 0u64;
        let mut i = f * 10_000_000u64;
        while n < 40 * MB {
            let line = format!(
                "{i},{},customer-{},{}.{:02},{},\"{}\"\n",
                1_600_000_000 + i * 7 % 90_000_000,
                rng.random_range(0..50_000),
                rng.random_range(1..5000),
                rng.random_range(0..100),
                ["new", "paid", "shipped", "returned"][rng.random_range(0..4)],
                ["standard", "express", "pickup"][rng.random_range(0..3)]
            );
            w.write_all(line.as_bytes())?;
            n += line.len() as u64;
            i += 1;
        }
    }
    for f in 0..5 {
        let mut w = std::io::BufWriter::new(std::fs::File::create(
            dir.join(format!("db/events-{f}.json")),
        )?);
        let mut n = 0u64;
        while n < 20 * MB {
            let line = format!(
                "{{\"id\":{},\"user\":\"u{}\",\"kind\":\"{}\",\"score\":{},\"tags\":[\"a{}\",\"b{}\"]}}\n",
                rng.random::<u32>(),
                rng.random_range(0..100_000),
                ["click", "view", "buy"][rng.random_range(0..3)],
                rng.random_range(0..1000),
                rng.random_range(0..50),
                rng.random_range(0..50)
            );
            w.write_all(line.as_bytes())?;
            n += line.len() as u64;
        }
    }
    let mut buf = vec![0u8; MB as usize];
    for f in 0..4 {
        let mut w = std::fs::File::create(dir.join(format!("blobs/blob-{f}.bin")))?;
        for _ in 0..100 {
            rng.fill_bytes(&mut buf);
            w.write_all(&buf)?;
        }
    }
    let words = [
        "ferry", "volume", "chunk", "store", "cluster", "snapshot", "node", "data",
    ];
    let mut total = 0u64;
    let mut i = 0;
    while total < 350 * MB {
        let sub = dir.join(format!("docs/{:03}", i / 500));
        if i % 500 == 0 {
            std::fs::create_dir_all(&sub)?;
        }
        let len = rng.random_range(2_000..14_000);
        let mut text = String::with_capacity(len + 16);
        while text.len() < len {
            text.push_str(words[rng.random_range(0..words.len())]);
            text.push(if rng.random_range(0..12) == 0 {
                '\n'
            } else {
                ' '
            });
        }
        std::fs::write(sub.join(format!("note-{i}.txt")), &text)?;
        total += text.len() as u64;
        i += 1;
    }
    Ok(())
}

/// Overwrites random 4 KiB ranges inside the files (through a loop mount) until about
/// `fraction` of the files' bytes changed; returns the bytes written.
fn change_files(
    image: &Path,
    mnt: &Path,
    fraction: f64,
    rng: &mut StdRng,
) -> Result<u64, BoxError> {
    std::fs::create_dir_all(mnt)?;
    run(Command::new("mount")
        .args(["-o", "loop"])
        .arg(image)
        .arg(mnt))?;
    let result = (|| -> Result<u64, BoxError> {
        let mut files = Vec::new();
        let mut stack = vec![mnt.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d)? {
                let e = e?;
                let m = e.metadata()?;
                if m.is_dir() {
                    stack.push(e.path());
                } else if m.len() >= 4096 && e.file_name() != "lost+found" {
                    files.push((e.path(), m.len()));
                }
            }
        }
        files.sort();
        let data: u64 = files.iter().map(|f| f.1).sum();
        let target = (data as f64 * fraction) as u64;
        let mut written = 0;
        let mut block = vec![0u8; 4096];
        while written < target {
            // Weighted by size: pick a byte of all the files' data, change its 4 KiB block.
            let mut at = rng.random_range(0..data);
            let (path, len) = files
                .iter()
                .find(|(_, l)| {
                    if at < *l {
                        true
                    } else {
                        at -= l;
                        false
                    }
                })
                .ok_or("no file")?;
            let off = (at.min(len - 4096) / 4096) * 4096;
            rng.fill_bytes(&mut block);
            let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
            f.seek(SeekFrom::Start(off))?;
            f.write_all(&block)?;
            written += 4096;
        }
        Ok(written)
    })();
    run(Command::new("umount").arg(mnt))?;
    result
}

fn run(cmd: &mut Command) -> Result<(), BoxError> {
    let s = cmd.status()?;
    if !s.success() {
        return Err(format!("{cmd:?} failed").into());
    }
    Ok(())
}

/// Writes the image into volume `name` of `store` (only changed chunks are stored) and
/// snapshots it.
async fn ingest(
    store: &Store,
    name: &str,
    image: &Path,
    snap: &str,
    codec: Codec,
) -> Result<(String, String), BoxError> {
    let size = std::fs::metadata(image)?.len();
    let v = match store.volume_by_name(name).await? {
        Some(v) => v,
        None => {
            store
                .create_volume(VolumeSpec {
                    name: name.into(),
                    capacity_bytes: size,
                    options: VolumeOptions {
                        compression: codec,
                        ..VolumeOptions::default()
                    },
                    parameters: Default::default(),
                    source: None,
                })
                .await?
        }
    };
    let h = store.open_volume(v.id()).await?;
    let mut f = std::fs::File::open(image)?;
    let mut buf = vec![0u8; 8 << 20];
    let mut off = 0;
    while off < size {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.write_at(off, &buf[..n]).await?;
        off += n as u64;
    }
    h.flush().await?;
    let s = store
        .create_snapshot(snap, v.id(), Default::default())
        .await?;
    Ok((v.id().to_string(), s.id))
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let ferryctl = PathBuf::from(
        std::env::var("FERRYCTL_BIN").unwrap_or_else(|_| "target/release/ferryctl".into()),
    );
    let base = PathBuf::from(
        std::env::var("FERRY_BENCH_DIR").unwrap_or_else(|_| ".cache/bench-transfer".into()),
    );
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base)?;
    let base = base.canonicalize()?;
    let mut rng = StdRng::seed_from_u64(2026);

    eprintln!("building the 2 GiB image");
    let files = base.join("files");
    populate(&files, &mut rng)?;
    let v1 = base.join("image-v1.ext4");
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-E", "nodiscard", "-d"])
        .arg(&files)
        .arg(&v1)
        .arg("2G"))?;
    std::fs::remove_dir_all(&files)?;
    let v2 = base.join("image-v2.ext4");
    std::fs::copy(&v1, &v2)?;
    let changed = change_files(&v2, &base.join("mnt"), 0.01, &mut rng)?;
    eprintln!("v2: {changed} bytes of files overwritten in 4 KiB blocks");

    // The same image in two source stores: chunks deflated, and chunks in zstd.
    let codecs = [("deflate", Codec::Deflate), ("zstd", Codec::Zstd)];
    let mut sources = Vec::new();
    for (tag, codec) in codecs {
        let dir = base.join(format!("store-a-{tag}"));
        let store = Store::open(
            &StoreConfig::fs(dir.to_string_lossy()),
            StoreOptions::default(),
        )
        .await?;
        let (vol, s1) = ingest(&store, "db", &v1, "v1", codec).await?;
        sources.push((tag, codec, dir, store, vol, s1));
    }
    let rounds: usize = std::env::var("FERRY_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);

    // An S3 server: moto started here, or one the caller runs (behind a benchmark link,
    // `hack/bench-wan.sh`) with its bucket `bench` made.
    let sides_wanted = std::env::var("FERRY_BENCH_SIDES").unwrap_or_else(|_| "local,s3".into());
    let external = std::env::var("FERRY_BENCH_S3_ENDPOINT").ok();
    let s3 = match (&external, sides_wanted.contains("s3")) {
        (None, true) => ferry_testkit::TestServer::start(ferry_testkit::Kind::S3).await,
        _ => None,
    };
    let s3_endpoint = external
        .clone()
        .or_else(|| s3.as_ref().map(|s| s.endpoint()));
    let s3_label = if external.is_some() {
        "S3 over the link"
    } else {
        "S3 (moto)"
    };
    let rclone = std::env::var("FERRY_BENCH_RCLONE").is_ok_and(|v| v == "1");
    let pw = base.join("restic-password");
    std::fs::write(&pw, "bench")?;
    let env = [
        ("RESTIC_PASSWORD_FILE", pw.to_string_lossy().into_owned()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
    ];
    let restic = |repo: &str, args: &[&str]| {
        let mut c = Command::new("restic");
        c.args(["-r", repo, "--no-cache"]).args(args);
        for (k, v) in &env {
            c.env(k, v);
        }
        c
    };
    let v1s = v1.to_string_lossy().into_owned();
    let image_bytes = std::fs::metadata(&v1)?.len();
    // The key of the encrypted runs.
    let key_file = base.join("transfer-key");
    let key = Command::new(&ferryctl)
        .args(["transfer", "keygen"])
        .output()?;
    std::fs::write(&key_file, &key.stdout)?;
    // rustic (crates.io `rustic-rs`) beside restic on the local folder, when installed.
    let rustic = std::env::var_os("RUSTIC_BIN").map(PathBuf::from);

    println!(
        "| round | store | tool | export / backup s | import / restore s | sum s | peak RSS MB | \
         stored MB | durable MB | floor s | sum / floor | / restic |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for round in 1..=rounds {
        let rate = synced_write_rate(&base)?;
        eprintln!("round {round}: synced writes {:.0} MB/s", rate / MB as f64);
        let mut sides: Vec<(&str, String, String)> = Vec::new();
        if sides_wanted.contains("local") {
            sides.push((
                "local folder",
                base.join(format!("ferry-transfer-{round}"))
                    .to_string_lossy()
                    .into_owned(),
                base.join(format!("restic-{round}"))
                    .to_string_lossy()
                    .into_owned(),
            ));
        }
        if let Some(endpoint) = &s3_endpoint {
            sides.push((
                s3_label,
                String::new(),
                format!("s3:{endpoint}/bench/restic-{round}"),
            ));
        }
        for (side, folder, repo) in &sides {
            // restic first in odd rounds, last in even ones.
            let restic_run = || -> Result<(Measure, Measure, u64, Wire), BoxError> {
                measure(&mut restic(repo, &["init", "--repository-version", "2"]))?;
                let link0 = link_stats();
                let bak = measure(&mut restic(
                    repo,
                    &["backup", "--compression", "auto", &v1s],
                ))?;
                let restore_dir = base.join(format!("restore-{round}"));
                let rst = measure(&mut restic(
                    repo,
                    &[
                        "restore",
                        "latest",
                        "--target",
                        &restore_dir.to_string_lossy(),
                    ],
                ))?;
                let _ = std::fs::remove_dir_all(&restore_dir);
                let wire = wire_since(link0);
                Ok((bak, rst, du(Path::new(repo)), wire))
            };
            let early = if round % 2 == 1 {
                Some(restic_run()?)
            } else {
                None
            };
            let mut rows = Vec::new();
            // ferry from each source store; from the zstd one also encrypted, on the folder.
            let mut runs: Vec<(String, &PathBuf, &String, &String, bool)> = sources
                .iter()
                .map(|(tag, _, a_dir, _, vol, s1)| (tag.to_string(), a_dir, vol, s1, false))
                .collect();
            if let (false, Some((_, _, a_dir, _, vol, s1))) = (
                folder.is_empty(),
                sources.iter().find(|s| s.1 == Codec::Zstd),
            ) {
                runs.push(("zstd encrypted".into(), a_dir, vol, s1, true));
            }
            for (tag, a_dir, vol, s1, encrypted) in runs {
                let key_args: Vec<String> = if encrypted {
                    vec!["--key-file".into(), key_file.to_string_lossy().into_owned()]
                } else {
                    Vec::new()
                };
                let file_tag = tag.replace(' ', "-");
                let tag = &tag;
                let t = if folder.is_empty() {
                    let mut p = match &s3 {
                        Some(server) => server.bucket("bench").await,
                        None => external_bucket(s3_endpoint.as_deref().ok_or("no S3")?),
                    };
                    p.insert("root".into(), format!("/ferry-{tag}-{round}/"));
                    let cfg = base.join(format!("s3-{tag}-{round}.json"));
                    std::fs::write(&cfg, serde_json::to_vec(&p)?)?;
                    cfg.to_string_lossy().into_owned()
                } else {
                    format!("{folder}-{file_tag}")
                };
                let b_dir = base.join(format!("store-b-{file_tag}-{round}"));
                let link0 = link_stats();
                let exp = measure(
                    Command::new(&ferryctl)
                        .args([
                            "transfer",
                            "export",
                            "--store",
                            &a_dir.to_string_lossy(),
                            "--snapshot",
                            s1,
                            "--transfer",
                            &t,
                            "--json",
                        ])
                        .args(&key_args),
                )?;
                let imp = measure(
                    Command::new(&ferryctl)
                        .args([
                            "transfer",
                            "import",
                            "--store",
                            &b_dir.to_string_lossy(),
                            "--commit",
                            vol,
                            "--name",
                            "db",
                            "--transfer",
                            &t,
                            "--json",
                        ])
                        .args(&key_args),
                )?;
                let e: serde_json::Value = serde_json::from_str(&exp.stdout)?;
                let i: serde_json::Value = serde_json::from_str(&imp.stdout)?;
                let durable = e["bytesWritten"].as_u64().unwrap_or(0)
                    + i["bytesWritten"].as_u64().unwrap_or(0);
                let stored = if folder.is_empty() {
                    e["bytesWritten"].as_u64().unwrap_or(0)
                } else {
                    du(Path::new(&t))
                };
                let wire = wire_since(link0);
                rows.push((
                    format!("ferry {tag}"),
                    exp,
                    imp,
                    stored,
                    Some(durable),
                    wire,
                ));
                let _ = std::fs::remove_dir_all(&b_dir);
                if !folder.is_empty() {
                    let _ = std::fs::remove_dir_all(&t);
                }
            }
            let (bak, rst, repo_bytes, wire) = match early {
                Some(r) => r,
                None => restic_run()?,
            };
            let restic_sum = bak.wall + rst.wall;
            let restic_stored = if folder.is_empty() { 0 } else { repo_bytes };
            rows.push(("restic".into(), bak, rst, restic_stored, None, wire));
            if let (true, true, Some(endpoint)) = (rclone, folder.is_empty(), &s3_endpoint) {
                // The link's floor: the image file copied up and back by rclone.
                let link0 = link_stats();
                let rc = |args: &[&str]| {
                    let mut c = Command::new("rclone");
                    // rclone's S3 client fails on a custom CA bundle with its own HTTP
                    // transport; the endpoint is plain HTTP on loopback and needs none.
                    c.args(args)
                        .env_remove("AWS_CA_BUNDLE")
                        .env("RCLONE_CONFIG_LINK_TYPE", "s3")
                        .env("RCLONE_CONFIG_LINK_PROVIDER", "Other")
                        .env("RCLONE_CONFIG_LINK_ENDPOINT", endpoint)
                        .env("RCLONE_CONFIG_LINK_ACCESS_KEY_ID", "test")
                        .env("RCLONE_CONFIG_LINK_SECRET_ACCESS_KEY", "test")
                        .env("RCLONE_CONFIG_LINK_REGION", "us-east-1");
                    measure(&mut c)
                };
                let remote = format!("link:bench/rclone-{round}");
                let up = rc(&["copy", &v1s, &remote])?;
                let back = base.join(format!("rclone-back-{round}"));
                let down = rc(&["copy", &remote, &back.to_string_lossy()])?;
                let _ = std::fs::remove_dir_all(&back);
                let wire = wire_since(link0);
                rows.push(("rclone copy".into(), up, down, 0, None, wire));
            }
            if let (Some(bin), false) = (&rustic, folder.is_empty()) {
                let repo = base.join(format!("rustic-{round}"));
                let restore_dir = base.join(format!("restore-rustic-{round}"));
                let run = |args: &[&str]| {
                    let mut c = Command::new(bin);
                    c.args(["-r", &repo.to_string_lossy(), "--password-file"])
                        .arg(&pw)
                        .args(["--no-progress", "--no-cache"])
                        .args(args);
                    measure(&mut c)
                };
                run(&["init"])?;
                let bak = run(&["backup", &v1s])?;
                let rst = run(&["restore", "latest", &restore_dir.to_string_lossy()])?;
                let _ = std::fs::remove_dir_all(&restore_dir);
                let stored = du(&repo);
                let _ = std::fs::remove_dir_all(&repo);
                rows.push(("rustic".into(), bak, rst, stored, None, Wire::default()));
            }
            let rclone_sum = rows
                .iter()
                .find(|r| r.0 == "rclone copy")
                .map(|r| r.1.wall + r.2.wall);
            for (tool, a, b, stored, durable, wire) in rows {
                if let Some(w) = wire.0 {
                    let per_gib = |x: u64| x as f64 * (1u64 << 30) as f64 / image_bytes as f64;
                    eprintln!(
                        "round {round} {side} {tool}: {} requests ({:.0} per GiB of image), \
                         {:.0} MB up and {:.0} MB down ({:.0} MB per GiB){}",
                        w.requests,
                        per_gib(w.requests),
                        w.up as f64 / MB as f64,
                        w.down as f64 / MB as f64,
                        per_gib(w.up + w.down) / MB as f64,
                        rclone_sum.map_or(String::new(), |r| format!(
                            ", sum / rclone's {:.2}",
                            (a.wall + b.wall) / r
                        ))
                    );
                }
                let sum = a.wall + b.wall;
                let floor = durable.map(|d| d as f64 / rate);
                let local = !folder.is_empty();
                println!(
                    "| {round} | {side} | {tool} | {:.1} | {:.1} | {sum:.1} | {:.0} | {} | {} | {} | {} | {:.2} |",
                    a.wall,
                    b.wall,
                    a.rss_mb.max(b.rss_mb),
                    if stored > 0 {
                        format!("{:.0}", stored as f64 / MB as f64)
                    } else {
                        "-".into()
                    },
                    durable.map_or("-".into(), |d| format!("{:.0}", d as f64 / MB as f64)),
                    floor
                        .filter(|_| local)
                        .map_or("-".into(), |f| format!("{f:.1}")),
                    floor
                        .filter(|_| local)
                        .map_or("-".into(), |f| format!("{:.2}", sum / f)),
                    sum / restic_sum
                );
            }
            if !folder.is_empty() {
                let _ = std::fs::remove_dir_all(repo);
            }
        }
    }

    if !sides_wanted.contains("local") {
        return Ok(());
    }
    // Version 2: each ferry store learns the new image (changed chunks only), then each
    // tool uploads what is new since version 1.
    println!();
    for (tag, codec, a_dir, a, _, s1) in &sources {
        let t = base.join(format!("ferry-transfer-incremental-{tag}"));
        let t = t.to_string_lossy().into_owned();
        let a_s = a_dir.to_string_lossy().into_owned();
        let export = |snap: &str| {
            measure(Command::new(&ferryctl).args([
                "transfer",
                "export",
                "--store",
                &a_s,
                "--snapshot",
                snap,
                "--transfer",
                &t,
                "--json",
            ]))
        };
        export(s1)?;
        let (_, s2) = ingest(a, "db", &v2, "v2", *codec).await?;
        let exp2 = export(&s2)?;
        let e2: serde_json::Value = serde_json::from_str(&exp2.stdout)?;
        println!(
            "v2, ferry {tag}: export {:.1} s wall {:.1} s CPU, {} bytes written ({} chunks)",
            exp2.wall, exp2.cpu, e2["bytesWritten"], e2["chunksCopied"]
        );
    }
    let repo = base
        .join("restic-incremental")
        .to_string_lossy()
        .into_owned();
    measure(&mut restic(&repo, &["init", "--repository-version", "2"]))?;
    measure(&mut restic(
        &repo,
        &["backup", "--compression", "auto", &v1s],
    ))?;
    let v2s = v2.to_string_lossy().into_owned();
    let bak2 = measure(&mut restic(
        &repo,
        &["backup", "--compression", "auto", &v2s],
    ))?;
    let added = bak2
        .stdout
        .lines()
        .find(|l| l.contains("Added to the repo"))
        .unwrap_or("")
        .trim()
        .to_string();
    println!(
        "v2, restic: backup {:.1} s wall {:.1} s CPU, {added}",
        bak2.wall, bak2.cpu
    );
    Ok(())
}

/// What the benchmark link carried for one tool (nothing without a link).
#[derive(Clone, Copy, Default)]
struct Wire(Option<LinkStats>);

fn wire_since(before: Option<LinkStats>) -> Wire {
    Wire(before.zip(link_stats()).map(|(b, a)| a.since(&b)))
}

/// Settings of bucket `bench` of an S3 server the caller runs (made by the caller).
fn external_bucket(endpoint: &str) -> std::collections::BTreeMap<String, String> {
    [
        ("backend", "s3"),
        ("bucket", "bench"),
        ("endpoint", endpoint),
        ("region", "us-east-1"),
        ("accessKeyId", "test"),
        ("secretAccessKey", "test"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// This disk's rate of durable writes: 1 GiB written in 8 MiB blocks and synced, in
/// bytes per second.
fn synced_write_rate(base: &Path) -> Result<f64, BoxError> {
    let probe = base.join("synced-write-probe");
    let block = vec![0x5au8; 8 << 20];
    let started = std::time::Instant::now();
    let mut f = std::fs::File::create(&probe)?;
    for _ in 0..128 {
        f.write_all(&block)?;
    }
    f.sync_all()?;
    let rate = (128u64 * block.len() as u64) as f64 / started.elapsed().as_secs_f64();
    drop(f);
    std::fs::remove_file(&probe)?;
    Ok(rate)
}
