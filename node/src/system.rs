//! Running the node's tools (mount, losetup, mkfs, blkid, resize2fs, xfs_growfs) and turning
//! their failures into errors that carry the command and what it printed.

use ferry_csi::Error;
use std::process::Stdio;
use tokio::process::Command;

/// Runs `program` with `args`; its stdout on success.
///
/// # Errors
/// INTERNAL naming the command, its exit status and its stderr.
pub async fn run(program: &str, args: &[&str]) -> Result<String, Error> {
    let out = output(program, args).await?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    Err(Error::Internal(failure(program, args, &out)))
}

/// Runs `program` with `args` and returns its exit code and stdout, whatever the code.
///
/// # Errors
/// INTERNAL when the program cannot be started.
pub async fn probe(program: &str, args: &[&str]) -> Result<(i32, String), Error> {
    let out = output(program, args).await?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    ))
}

async fn output(program: &str, args: &[&str]) -> Result<std::process::Output, Error> {
    tracing::debug!(%program, ?args, "running");
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| {
            Error::Internal(format!(
                "cannot run {program}: {e} (is it installed on the node?)"
            ))
        })
}

fn failure(program: &str, args: &[&str], out: &std::process::Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let said = if stderr.trim().is_empty() {
        stdout.trim().to_string()
    } else {
        stderr.trim().to_string()
    };
    format!(
        "{program} {} failed ({}): {said}",
        args.join(" "),
        out.status
    )
}
