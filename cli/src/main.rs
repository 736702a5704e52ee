//! `ferry`: the CSI plugin of the ferry storage system, its migration controller, and store
//! upkeep. The local demo is `ferry-demo` (the `demo` crate).

mod health_events;
mod migration;
mod plugin;
mod store_args;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "ferry",
    version,
    about = "Ferry: a CSI driver over a content-addressed chunk store"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the CSI services (Identity, Controller, Node) on a unix socket.
    Plugin(plugin::PluginArgs),
    /// Serve one staged volume as a block device image (started by the volume host).
    #[command(name = "volume-server", hide = true)]
    VolumeServer(plugin::VolumeServerArgs),
    /// Mount and serve the node's staged volumes apart from the node plugin, so they outlive
    /// it (the node DaemonSet's volume host).
    #[command(name = "volume-host")]
    VolumeHost(plugin::VolumeHostArgs),
    /// Run the migration controller (the sidecar beside the CSI controller).
    Migration(migration::MigrationArgs),
    /// Run one garbage-collection pass over the chunk store.
    Gc(GcArgs),
}

#[derive(clap::Args)]
struct GcArgs {
    #[command(flatten)]
    store: store_args::StoreArgs,
    /// Report what would be deleted and condemned; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Record a new grace period (seconds) in the store, used by every process from its
    /// next open and by every later GC run, then run.
    #[arg(long)]
    set_grace_secs: Option<u64>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    ferry_store::process_memory::limit_retention();
    // What this process creates in a shared store folder stays writable for the group.
    ferry_node::store_folder::set_umask();
    let cli = Cli::parse();
    let default_level = "info";
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Plugin(a) => plugin::run(a).await,
        Command::VolumeServer(a) => plugin::volume_server(a).await,
        Command::VolumeHost(a) => plugin::volume_host(a).await,
        Command::Migration(a) => migration::run(a).await,
        Command::Gc(a) => gc(a).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferry: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn gc(args: GcArgs) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let store = ferry_store::Store::open(&args.store.config()?, args.store.options()).await?;
    if let Some(secs) = args.set_grace_secs {
        let mut policy = store.gc_policy();
        policy.grace = std::time::Duration::from_secs(secs);
        store.set_gc_policy(policy).await?;
    }
    let r = store
        .gc_with(ferry_store::GcOptions {
            dry_run: args.dry_run,
        })
        .await?;
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "dryRun": r.dry_run,
                "roots": r.roots,
                "holds": r.holds,
                "liveChunks": r.live_chunks,
                "livePages": r.live_pages,
                "deleted": r.deleted,
                "deletedBytes": r.deleted_bytes,
                "revived": r.revived,
                "condemned": r.condemned,
                "condemnedBytes": r.condemned_bytes,
                "nextSweepInSecs": r.next_sweep_in.map(|d| d.as_secs()),
                "elapsedMs": r.elapsed.as_millis() as u64,
            })
        );
        return Ok(());
    }
    let verb = if r.dry_run { "would delete" } else { "deleted" };
    println!(
        "roots {} holds {} live chunks {} live pages {} {verb} {} ({} bytes) revived {} condemned {} ({} bytes){}",
        r.roots,
        r.holds,
        r.live_chunks,
        r.live_pages,
        r.deleted,
        r.deleted_bytes,
        r.revived,
        r.condemned,
        r.condemned_bytes,
        match r.next_sweep_in {
            Some(d) => format!("; the condemned list is due in {} s", d.as_secs()),
            None => String::new(),
        }
    );
    Ok(())
}
