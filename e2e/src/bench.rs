//! What the benchmarks share: a command run under GNU time.

use std::path::PathBuf;
use std::process::Command;

type BoxError = Box<dyn std::error::Error>;

/// What one measured process took.
pub struct Measure {
    /// Wall time, seconds.
    pub wall: f64,
    /// User + system CPU time, seconds.
    pub cpu: f64,
    /// Peak resident set size, MB (MiB).
    pub rss_mb: f64,
    /// What it printed.
    pub stdout: String,
}

/// Runs a command to completion under GNU time (`/usr/bin/time`): wall, CPU (user +
/// system), peak RSS.
///
/// # Errors
/// The command failing (its output in the message), or time's output not parsing.
pub fn measure(cmd: &mut Command) -> Result<Measure, BoxError> {
    let stats = tempfile_path("time");
    let mut timed = Command::new("/usr/bin/time");
    timed
        .args(["-f", "%e %U %S %M", "-o"])
        .arg(&stats)
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => timed.env(k, v),
            None => timed.env_remove(k),
        };
    }
    let out = timed.output()?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let text = std::fs::read_to_string(&stats)?;
    let f: Vec<f64> = text
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    let _ = std::fs::remove_file(&stats);
    if f.len() < 4 {
        return Err(format!("unexpected time output {text:?}").into());
    }
    Ok(Measure {
        wall: f[0],
        cpu: f[1] + f[2],
        rss_mb: f[3] / 1024.0,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
    })
}

/// A path in the temporary folder, unique to this process and `tag`.
pub fn tempfile_path(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("ferry-bench-{tag}-{}", std::process::id()))
}

/// What a benchmark link (`e2e/examples/wan_link.rs`) has carried so far.
#[derive(Clone, Copy, Debug, Default)]
pub struct LinkStats {
    /// Bytes from clients to the server.
    pub up: u64,
    /// Bytes from the server to clients.
    pub down: u64,
    /// HTTP requests.
    pub requests: u64,
}

impl LinkStats {
    /// What was carried between `before` and `self`.
    pub fn since(&self, before: &LinkStats) -> LinkStats {
        LinkStats {
            up: self.up - before.up,
            down: self.down - before.down,
            requests: self.requests - before.requests,
        }
    }
}

/// The counts of the link whose stats address is in `FERRY_BENCH_LINK_STATS`, if any.
pub fn link_stats() -> Option<LinkStats> {
    use std::io::{Read, Write};
    let addr = std::env::var("FERRY_BENCH_LINK_STATS").ok()?;
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let body = out.split("\r\n\r\n").nth(1)?;
    let field = |name: &str| -> Option<u64> {
        let at = body.find(&format!("\"{name}\":"))? + name.len() + 3;
        body[at..]
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect::<String>()
            .parse()
            .ok()
    };
    Some(LinkStats {
        up: field("up")?,
        down: field("down")?,
        requests: field("requests")?,
    })
}
