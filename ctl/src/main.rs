//! `ferryctl`: the operator's command line for ferry.

mod transfer;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "ferryctl",
    version,
    about = "Operate ferry: move volumes between chunk stores"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Export snapshots to a transfer store, import them into a chunk store, verify them.
    #[command(subcommand)]
    Transfer(transfer::TransferCommand),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Transfer(c) => transfer::run(c).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferryctl: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
