//! `ferryctl`: the operator's command line for ferry.

mod kube_cli;
mod transfer;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "ferryctl",
    version,
    about = "Operate ferry: migrations between clusters, cluster pairs, and volume transfers"
)]
struct Cli {
    #[command(flatten)]
    kube: kube_cli::KubeArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print objects to apply (a ClusterPair and its Secret).
    #[command(subcommand)]
    Generate(kube_cli::Generate),
    /// List ClusterPairs, Migrations, SchedulePolicies, MigrationSchedules or Actions.
    #[command(subcommand)]
    Get(kube_cli::Get),
    /// Create a Migration, a SchedulePolicy or a MigrationSchedule.
    #[command(subcommand)]
    Create(kube_cli::Create),
    /// Stop a MigrationSchedule from starting runs.
    #[command(subcommand)]
    Suspend(kube_cli::Suspension),
    /// Let a suspended MigrationSchedule start runs again.
    #[command(subcommand)]
    Resume(kube_cli::Suspension),
    /// Fail over to this cluster, or fail back from it (an Action, followed to its end).
    #[command(subcommand)]
    Perform(kube_cli::Perform),
    /// Copy a namespace (resources, and volumes as metadata-only clones) within this cluster.
    #[command(subcommand)]
    Clone(kube_cli::CloneWhat),
    /// Move a Deployment or StatefulSet to another node of this cluster; its ferry volumes
    /// stay where they are (the shared chunk store) and are checked on the way.
    Move(kube_cli::MoveFlags),
    /// Start migrated workloads at their source replica counts.
    #[command(subcommand)]
    Activate(kube_cli::Activation),
    /// Scale migrated workloads to zero, keeping their counts.
    #[command(subcommand)]
    Deactivate(kube_cli::Activation),
    /// Export snapshots to a transfer store, import them into a chunk store, verify them.
    #[command(subcommand)]
    Transfer(transfer::TransferCommand),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    ferry_store::process_memory::limit_retention();
    // ferryctl reports every error it meets itself, once, as a sentence; the kube client's
    // own line for the same failed request ("ERROR kube_client: failed with ...") would say
    // it twice, so it is off unless RUST_LOG asks for it.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,kube_client=off")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let k = cli.kube;
    let result = match cli.command {
        Command::Generate(g) => kube_cli::generate(&k, g).await,
        Command::Get(g) => kube_cli::get(&k, g).await,
        Command::Create(c) => kube_cli::create(&k, c).await,
        Command::Suspend(s) => kube_cli::suspension(&k, s, true).await,
        Command::Resume(s) => kube_cli::suspension(&k, s, false).await,
        Command::Perform(p) => kube_cli::perform(&k, p).await,
        Command::Clone(c) => kube_cli::clone(&k, c).await,
        Command::Move(f) => kube_cli::move_workload(&k, f).await,
        Command::Activate(_) => kube_cli::activation(&k, true).await,
        Command::Deactivate(_) => kube_cli::activation(&k, false).await,
        Command::Transfer(c) => transfer::run(c).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferryctl: {}", ferryctl::say(&*e));
            std::process::ExitCode::FAILURE
        }
    }
}
