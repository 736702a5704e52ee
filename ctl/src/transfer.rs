//! `ferryctl transfer export|import|verify|gc|keygen`.
//!
//! A store is named by a folder (a local-folder store) or a JSON settings file (any
//! backend: `{"backend": "s3", "bucket": ..., "endpoint": ..., ...}`, the same fields as
//! `ferry plugin --store-config`).

use clap::{Args, Subcommand};
use ferry_store::{Store, StoreConfig, StoreOptions};
use ferry_transfer::{Key, Progress, Report, TransferStore, Tuning};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The transfer verbs.
#[derive(Subcommand)]
pub enum TransferCommand {
    /// Copy a snapshot's missing chunks and tree into a transfer store, then commit it.
    Export(ExportArgs),
    /// Bring a commit into a chunk store as a volume (created, or moved to the new root).
    Import(ImportArgs),
    /// Read back everything a commit needs and check it, writing nothing.
    Verify(VerifyArgs),
    /// Keep the newest commits of each volume and remove the packs no kept commit reaches.
    Gc(GcArgs),
    /// Print a new random transfer key (64 hex digits).
    Keygen,
}

/// Flags of `gc`.
#[derive(Args)]
pub struct GcArgs {
    /// Commits kept per volume, newest first (at least 1: the base of the next incremental
    /// export).
    #[arg(long, default_value_t = ferry_transfer::gc::DEFAULT_KEEP)]
    keep: usize,
    /// Unreferenced packs are removed by a run at least this long after the run that found
    /// them ("0s": at once), e.g. "10m".
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    grace: Duration,
    /// Report what would be removed; change nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    t: TransferStoreArgs,
}

/// Parses "90s", "10m", "2h" or plain seconds.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 90s, 10m or 2h"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("{s:?}: the unit must be s, m or h")),
    };
    Ok(Duration::from_secs(secs))
}

/// Where the transfer store is, and its key.
#[derive(Args)]
pub struct TransferStoreArgs {
    /// The transfer store: a folder, or a JSON settings file.
    #[arg(long)]
    transfer: PathBuf,
    /// File with the transfer store's key (64 hex digits, base64, or 32 raw bytes); the
    /// store is encrypted when it was first written with a key.
    #[arg(long, env = "FERRY_TRANSFER_KEY_FILE")]
    key_file: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Blobs read and checked at once.
    #[arg(long, default_value_t = 32)]
    width: usize,
}

/// Flags of `export`.
#[derive(Args)]
pub struct ExportArgs {
    /// The chunk store holding the snapshot: a folder, or a JSON settings file.
    #[arg(long)]
    store: PathBuf,
    /// The snapshot id (`snap-...`).
    #[arg(long)]
    snapshot: String,
    #[command(flatten)]
    t: TransferStoreArgs,
}

/// Flags of `import`.
#[derive(Args)]
pub struct ImportArgs {
    /// The destination chunk store: a folder, or a JSON settings file.
    #[arg(long)]
    store: PathBuf,
    /// The commit: `<volume id>/<snapshot id>`, or `<volume id>` for its newest.
    #[arg(long)]
    commit: String,
    /// Name of the destination volume (created on first import, updated after).
    #[arg(long)]
    name: String,
    #[command(flatten)]
    t: TransferStoreArgs,
}

/// Flags of `verify`.
#[derive(Args)]
pub struct VerifyArgs {
    /// The commit: `<volume id>/<snapshot id>`, or `<volume id>` for its newest.
    #[arg(long)]
    commit: String,
    #[command(flatten)]
    t: TransferStoreArgs,
}

/// Runs one verb.
///
/// # Errors
/// Bad settings, a failed transfer (with the reason).
pub async fn run(cmd: TransferCommand) -> Result<(), BoxError> {
    match cmd {
        TransferCommand::Keygen => {
            println!("{}", Key::generate_hex());
            Ok(())
        }
        TransferCommand::Export(a) => {
            let store = open_store(&a.store).await?;
            let target = open_transfer(&a.t).await?;
            let tuning = tuning(&a.t);
            let progress = Arc::new(Progress::default());
            let job =
                ferry_transfer::export(&store, &a.snapshot, &target, progress.clone(), tuning);
            let report = with_bar("export", progress, job).await?;
            print_report("exported", &report, a.t.json);
            Ok(())
        }
        TransferCommand::Import(a) => {
            let store = open_store(&a.store).await?;
            let target = open_transfer(&a.t).await?;
            let commit = target.find_commit(&a.commit).await?;
            let progress = Arc::new(Progress::default());
            let job = ferry_transfer::import(
                &target,
                &commit,
                &store,
                &a.name,
                progress.clone(),
                tuning(&a.t),
            );
            let report = with_bar("import", progress, job).await?;
            print_report("imported", &report, a.t.json);
            Ok(())
        }
        TransferCommand::Gc(a) => {
            let target = open_transfer(&a.t).await?;
            let opts = ferry_transfer::GcOptions {
                keep: a.keep,
                grace: a.grace,
                dry_run: a.dry_run,
            };
            let r = ferry_transfer::gc(&target, opts).await?;
            if a.t.json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                let verb = if r.dry_run { "would remove" } else { "removed" };
                println!(
                    "{verb} {} commits and {} packs ({} bytes); kept {} commits and {} packs ({} bytes, {} of them reached); {} packs condemned for a later run{}",
                    r.commits_removed.len(),
                    r.packs_removed,
                    r.bytes_removed,
                    r.commits_kept,
                    r.packs_kept,
                    r.bytes_kept,
                    r.live_bytes,
                    r.packs_condemned,
                    if r.exports_running > 0 {
                        format!(
                            "; {} exports running, so no pack was removed",
                            r.exports_running
                        )
                    } else {
                        String::new()
                    }
                );
            }
            Ok(())
        }
        TransferCommand::Verify(a) => {
            let target = open_transfer(&a.t).await?;
            let commit = target.find_commit(&a.commit).await?;
            let progress = Arc::new(Progress::default());
            let job = ferry_transfer::verify(&target, &commit, progress.clone(), tuning(&a.t));
            let report = with_bar("verify", progress, job).await?;
            print_report("verified", &report, a.t.json);
            Ok(())
        }
    }
}

fn tuning(t: &TransferStoreArgs) -> Tuning {
    Tuning {
        width: t.width.max(1),
        ..Tuning::default()
    }
}

/// A folder is a local-folder store; a `.json` file holds any store's settings.
fn config(path: &Path) -> Result<StoreConfig, BoxError> {
    if path.extension().is_some_and(|e| e == "json") {
        Ok(StoreConfig::from_file(path)?)
    } else {
        Ok(StoreConfig::fs(path.to_string_lossy()))
    }
}

pub(crate) async fn open_store(path: &Path) -> Result<Store, BoxError> {
    Ok(Store::open(&config(path)?, StoreOptions::default()).await?)
}

async fn open_transfer(t: &TransferStoreArgs) -> Result<TransferStore, BoxError> {
    let key = match &t.key_file {
        Some(p) => {
            let bytes = std::fs::read(p)
                .map_err(|e| format!("cannot read key file {}: {e}", p.display()))?;
            Some(Key::parse(&bytes)?)
        }
        None => None,
    };
    Ok(TransferStore::open(&config(&t.transfer)?, key).await?)
}

/// Runs `job` while drawing a progress bar on stderr (plain lines when it is not a
/// terminal).
async fn with_bar<F>(what: &str, progress: Arc<Progress>, job: F) -> Result<Report, BoxError>
where
    F: std::future::Future<Output = ferry_transfer::Result<Report>>,
{
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>7} [{bar:30}] {bytes}/{total_bytes} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(what.to_string());
    let mut job = std::pin::pin!(job);
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let result = loop {
        tokio::select! {
            r = &mut job => break r,
            _ = tick.tick() => {
                let p = progress.snapshot();
                bar.set_length(p.bytes_total);
                bar.set_position(p.bytes_done + p.bytes_skipped);
                bar.set_message(format!(
                    "{} of {} chunks copied, {} present, {:.0} MB/s",
                    p.chunks_done,
                    p.chunks_total,
                    p.chunks_skipped,
                    p.throughput() / 1e6
                ));
            }
        }
    };
    bar.finish_and_clear();
    Ok(result?)
}

fn print_report(verb: &str, r: &Report, json: bool) {
    if json {
        println!("{}", serde_json::to_string_pretty(r).unwrap_or_default());
        return;
    }
    println!("{verb} {}", r.commit);
    if let Some(v) = &r.volume_id {
        println!("  volume            {v}");
    }
    println!(
        "  chunks            {} differing, {} copied, {} already there (dedup {:.0} %)",
        r.chunks_total,
        r.chunks_copied,
        r.chunks_skipped,
        r.dedup_ratio() * 100.0
    );
    println!("  tree pages        {}", r.pages_copied);
    println!(
        "  bytes             {} read, {} written (compression {:.2})",
        r.bytes_read,
        r.bytes_written,
        r.compression_ratio()
    );
    println!("  duration          {:.2?}", r.duration);
}
