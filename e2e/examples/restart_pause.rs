//! The I/O pause a writer sees on a mounted ferry volume (ext4) across: a node plugin
//! restart (its PID namespace killed with SIGKILL, a new plugin started, NodeStageVolume
//! called again), a volume-server upgrade (a volume host of a newer build takes the servers
//! over: drain, descriptor handover, new server), and a volume server killed alone at a
//! moment with nothing unflushed (the host starts a new one, which asks the kernel to resend
//! what the dead one had read). The writer appends 4 KiB and fsyncs, back to back; each
//! event's figure is the longest write + fsync in a window of about 4 s around it, beside
//! the same figure for windows of 4 s with no event, in the same run. Run by `hack/bench-node.sh pause` (root).
//!
//! Environment: `FERRY_BIN` (the ferry binary, a release build), `FERRY_BENCH_DIR` (where
//! the store goes; default `.cache/bench-pause`), `FERRY_BENCH_ROUNDS` (times each event is
//! repeated, default 5).

use ferry_e2e::node_calls::*;
use ferry_e2e::{Plugin, VolumeHost};
use ferry_proto::v1::volume_capability::access_mode::Mode;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type BoxError = Box<dyn std::error::Error>;

/// Latencies of write + fsync, each with when it ended.
#[derive(Default)]
struct Ops(Mutex<Vec<(Instant, Duration)>>);

impl Ops {
    /// The longest op that ended in [from, to], and how many ended there.
    fn window(&self, from: Instant, to: Instant) -> (Duration, usize) {
        let ops = self.0.lock().unwrap();
        let sel: Vec<Duration> = ops
            .iter()
            .filter(|(t, _)| *t >= from && *t <= to)
            .map(|(_, d)| *d)
            .collect();
        (sel.iter().copied().max().unwrap_or_default(), sel.len())
    }

    fn median(&self, from: Instant, to: Instant) -> Duration {
        let ops = self.0.lock().unwrap();
        let mut sel: Vec<Duration> = ops
            .iter()
            .filter(|(t, _)| *t >= from && *t <= to)
            .map(|(_, d)| *d)
            .collect();
        sel.sort();
        sel.get(sel.len() / 2).copied().unwrap_or_default()
    }
}

/// Copies the servers' and the hosts' logs next to the store, for where the time of a
/// take-up goes.
fn keep_logs(node: &std::path::Path, base: &std::path::Path) {
    let _ = std::fs::copy(node.join("volume-host.log"), base.join("volume-host.log"));
    for e in std::fs::read_dir(node.join("state/volumes"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let _ = std::fs::copy(e.path().join("server.log"), base.join("server.log"));
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let rounds: usize = std::env::var("FERRY_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let base = PathBuf::from(
        std::env::var("FERRY_BENCH_DIR").unwrap_or_else(|_| ".cache/bench-pause".into()),
    );
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base)?;
    let base = base.canonicalize()?;
    let store = base.join("store");
    let bins = base.join("bin");
    std::fs::create_dir_all(&bins)?;
    let bin = ferry_e2e::ferry_copy(&bins, "ferry", b"");
    let root = store.to_string_lossy().into_owned();
    let env = [
        ("FERRY_STORE_BACKEND", "fs"),
        ("FERRY_STORE_ROOT", root.as_str()),
    ];
    let dir = tempfile::tempdir()?;
    let mut host = VolumeHost::start(&bin, dir.path()).await;
    let mut plugin = Plugin::start_in_pid_namespace(dir, &bin, &env).await;
    let cap = mount_cap("ext4", Mode::SingleNodeWriter);
    let id = create(&plugin, "pause", 1 << 30).await;
    stage(&plugin, &id, cap.clone()).await?;
    let target = publish(&plugin, &id, cap.clone(), 1, false).await;

    let ops = Arc::new(Ops::default());
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (ops, stop, file) = (ops.clone(), stop.clone(), target.join("app.log"));
        std::thread::spawn(move || -> Result<(), String> {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(file)
                .map_err(|e| e.to_string())?;
            let block = vec![b'x'; 4096];
            while !stop.load(Ordering::SeqCst) {
                let t = Instant::now();
                f.write_all(&block)
                    .and_then(|_| f.sync_data())
                    .map_err(|e| format!("the writer failed: {e}"))?;
                ops.0.lock().unwrap().push((Instant::now(), t.elapsed()));
            }
            Ok(())
        })
    };
    let settle = Duration::from_secs(2);
    tokio::time::sleep(settle).await;
    // The steady state, in windows as long as an event's, for the same figure.
    let mut steady = Vec::new();
    for _ in 0..rounds {
        let from = Instant::now();
        tokio::time::sleep(settle * 2).await;
        steady.push(ops.window(from, Instant::now()).0);
    }

    let mut restart = Vec::new();
    let mut upgrade = Vec::new();
    let mut killed = Vec::new();
    for round in 0..rounds {
        // A node plugin restart.
        let from = Instant::now();
        let (dir, _) = plugin.kill_namespace();
        plugin = Plugin::start_in_pid_namespace(dir, &bin, &env).await;
        stage(&plugin, &id, cap.clone()).await?;
        tokio::time::sleep(settle).await;
        restart.push(ops.window(from, Instant::now()).0);

        // A volume-server upgrade: a host of a newer build takes the volume over.
        ferry_e2e::ferry_copy(&bins, "ferry", format!("\0build {round}\0").as_bytes());
        let from = Instant::now();
        let new_host = VolumeHost::start(&bin, plugin.dir.path()).await;
        let mut old = std::mem::replace(&mut host, new_host);
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(old.pid().to_string())
            .status();
        let _ = old.child.wait();
        tokio::time::sleep(settle).await;
        upgrade.push(ops.window(from, Instant::now()).0);

        // A volume server killed alone, at a moment everything it acknowledged is durable.
        let pid = ferry_e2e::server_pids(plugin.dir.path())[0];
        let marker = plugin
            .dir
            .path()
            .join("state/volumes")
            .join(&id)
            .join("durability");
        let from = Instant::now();
        if !ferry_e2e::kill_when_clean(pid, &marker, 1000) {
            return Err("the server never showed every write durable".into());
        }
        tokio::time::sleep(settle).await;
        killed.push(ops.window(from, Instant::now()).0);
    }
    stop.store(true, Ordering::SeqCst);
    let written = writer.join().map_err(|_| "writer panicked")?;
    keep_logs(plugin.dir.path(), &base);
    written?;
    let (all_from, all_to) = (Instant::now() - Duration::from_secs(3600), Instant::now());
    println!(
        "every write+fsync: median {} ms",
        ms(ops.median(all_from, all_to))
    );
    let show = |what: &str, v: &[Duration]| {
        let mut s = v.to_vec();
        s.sort();
        println!(
            "{what}: longest write+fsync per event, {} events: median {} ms, max {} ms ({})",
            s.len(),
            ms(s[s.len() / 2]),
            ms(*s.last().unwrap()),
            v.iter().map(|d| ms(*d)).collect::<Vec<_>>().join(", ")
        );
    };
    show("steady state (no event)", &steady);
    show("node plugin restart", &restart);
    show("volume-server upgrade (host handover)", &upgrade);
    show("volume server killed, taken up again", &killed);
    println!("no write or fsync failed");
    // The servers' logs, for where the time of a take-up goes.
    let _ = std::fs::copy(
        plugin
            .dir
            .path()
            .join("state/volumes")
            .join(&id)
            .join("server.log"),
        base.join("server.log"),
    );
    unpublish(&plugin, &id, 1).await;
    unstage(&plugin, &id).await;
    drop(plugin);
    drop(host);
    Ok(())
}
