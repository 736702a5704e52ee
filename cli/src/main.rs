//! `ferry`: the CSI plugin of the ferry storage system, its migration controller, and store
//! upkeep. The local demo is `ferry-demo` (the `demo` crate).

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
    /// Serve one staged volume as a block device image (started by the node service).
    #[command(name = "volume-server", hide = true)]
    VolumeServer(plugin::VolumeServerArgs),
    /// Run the migration controller (the sidecar beside the CSI controller).
    Migration(migration::MigrationArgs),
    /// Run one garbage-collection pass over the chunk store.
    Gc(store_args::StoreArgs),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
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

async fn gc(args: store_args::StoreArgs) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let store = ferry_store::Store::open(&args.config()?, args.options()).await?;
    let r = store.gc().await?;
    println!(
        "roots {} live chunks {} live pages {} deleted {} condemned {}",
        r.roots, r.live_chunks, r.live_pages, r.deleted, r.condemned
    );
    Ok(())
}
