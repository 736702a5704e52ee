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
        if let Some(v) = v {
            timed.env(k, v);
        }
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
