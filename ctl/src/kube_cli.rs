//! The Kubernetes verbs of `ferryctl` (storkctl's): argument parsing and output; the work is
//! in the `ferryctl` library.

use clap::{Args, Subcommand};
use ferryctl::Result;
use std::path::PathBuf;

/// Which cluster to talk to.
#[derive(Args, Debug, Clone)]
pub struct KubeArgs {
    /// Kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then in-cluster).
    #[arg(long, global = true, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context (default: the current one).
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// Namespace.
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// Every namespace (get, activate, deactivate).
    #[arg(long = "all-namespaces", short = 'A', global = true)]
    pub all_namespaces: bool,
}

impl KubeArgs {
    async fn client(&self) -> Result<kube::Client> {
        let opts = kube::config::KubeConfigOptions {
            context: self.context.clone(),
            ..Default::default()
        };
        let config = match &self.kubeconfig {
            Some(p) => {
                let kc = kube::config::Kubeconfig::read_from(p)?;
                kube::Config::from_custom_kubeconfig(kc, &opts).await?
            }
            None if self.context.is_some() => kube::Config::from_kubeconfig(&opts).await?,
            None => kube::Config::infer().await?,
        };
        Ok(kube::Client::try_from(config)?)
    }

    fn ns(&self) -> String {
        self.namespace.clone().unwrap_or_else(|| "default".into())
    }
}

/// `generate ...`
#[derive(Subcommand, Debug)]
pub enum Generate {
    /// Print a ClusterPair and its Secret for the cluster the kubeconfig context points at
    /// (the destination); apply the output on the source.
    Clusterpair(GenerateClusterPair),
}

/// Flags of `generate clusterpair`.
#[derive(Args, Debug)]
pub struct GenerateClusterPair {
    /// ClusterPair name.
    pub name: String,
    /// Namespace where ferry runs on the destination.
    #[arg(long = "ferry-namespace")]
    pub ferry_namespace: Option<String>,
    /// Transfer store service: s3, azblob, gcs or fs.
    #[arg(long)]
    pub backend: String,
    /// Print the pair without first checking, as the controller will, that the destination
    /// answers with ferry installed and the transfer store takes a write and a read.
    #[arg(long = "skip-check")]
    pub skip_check: bool,
    /// Bucket (S3, GCS) or container (Azure).
    #[arg(long)]
    pub bucket: Option<String>,
    /// Key prefix in the bucket, or the folder for fs.
    #[arg(long)]
    pub root: Option<String>,
    /// Service endpoint.
    #[arg(long)]
    pub endpoint: Option<String>,
    /// S3 region.
    #[arg(long)]
    pub region: Option<String>,
    /// S3 access key id.
    #[arg(long = "access-key-id", env = "AWS_ACCESS_KEY_ID")]
    pub access_key_id: Option<String>,
    /// S3 secret access key.
    #[arg(
        long = "secret-access-key",
        env = "AWS_SECRET_ACCESS_KEY",
        hide_env_values = true
    )]
    pub secret_access_key: Option<String>,
    /// Azure account name.
    #[arg(long = "account-name")]
    pub account_name: Option<String>,
    /// Azure account key.
    #[arg(long = "account-key", hide_env_values = true)]
    pub account_key: Option<String>,
    /// GCS service-account JSON, base64.
    #[arg(long)]
    pub credential: Option<String>,
    /// File with the transfer store's encryption key (ferryctl transfer keygen writes one).
    #[arg(long = "encryption-key-file")]
    pub encryption_key_file: Option<PathBuf>,
}

/// `get ...`
#[derive(Subcommand, Debug)]
pub enum Get {
    /// ClusterPairs: NAME STORAGE-STATUS SCHEDULER-STATUS CREATED.
    #[command(alias = "clusterpairs")]
    Clusterpair,
    /// Migrations: NAME CLUSTERPAIR STAGE STATUS VOLUMES RESOURCES CREATED ELAPSED.
    #[command(alias = "migrations")]
    Migration {
        /// One migration, with its volumes and reasons.
        name: Option<String>,
        /// Follow the named migration with a progress bar until it ends.
        #[arg(long, short = 'w')]
        watch: bool,
        /// Only the runs of this MigrationSchedule.
        #[arg(long = "migration-schedule")]
        migration_schedule: Option<String>,
    },
    /// SchedulePolicies: NAME INTERVAL-MINUTES DAILY WEEKLY MONTHLY.
    #[command(alias = "schedulepolicies")]
    Schedulepolicy,
    /// MigrationSchedules: NAME POLICYNAME CLUSTERPAIR SUSPEND LAST-SUCCESS-TIME
    /// LAST-SUCCESS-DURATION.
    #[command(alias = "migrationschedules")]
    Migrationschedule {
        /// One MigrationSchedule, with its reason.
        name: Option<String>,
    },
    /// Actions (failovers and failbacks): NAME TYPE SCHEDULE STEP STATUS CREATED; with a
    /// name, its steps.
    #[command(alias = "actions", alias = "failover", alias = "failback")]
    Action {
        /// One Action, step by step.
        name: Option<String>,
    },
}

/// `suspend migrationschedule NAME` / `resume migrationschedule NAME`.
#[derive(Subcommand, Debug)]
pub enum Suspension {
    /// A MigrationSchedule of the namespace (-n).
    Migrationschedule {
        /// Its name.
        name: String,
    },
}

/// Flags of `create schedulepolicy` (storkctl's names).
#[derive(Args, Debug)]
pub struct CreatePolicy {
    /// Policy name.
    pub name: String,
    /// interval, daily, weekly or monthly.
    #[arg(long = "policy-type", short = 't')]
    pub policy_type: String,
    /// Minutes between runs (interval).
    #[arg(long = "interval-minutes", short = 'i')]
    pub interval_minutes: Option<i64>,
    /// Time of day: 10:30PM or 22:30 (daily, weekly, monthly).
    #[arg(long)]
    pub time: Option<String>,
    /// Day of the week (weekly): Monday or Mon.
    #[arg(long = "day-of-week")]
    pub day_of_week: Option<String>,
    /// Day of the month (monthly): 1 to 31.
    #[arg(long = "date-of-month")]
    pub date_of_month: Option<i64>,
    /// Runs kept (default 2).
    #[arg(long)]
    pub retain: Option<i64>,
}

/// Flags of `create migrationschedule`.
#[derive(Args, Debug)]
pub struct CreateSchedule {
    /// MigrationSchedule name.
    pub name: String,
    /// The settings of the Migrations it makes.
    #[command(flatten)]
    pub migration: MigrationFlags,
    /// SchedulePolicy saying when.
    #[arg(long = "schedule-policy-name", short = 's')]
    pub schedule_policy_name: String,
    /// Create it suspended.
    #[arg(long)]
    pub suspend: bool,
}

/// `create ...`
#[derive(Subcommand, Debug)]
pub enum Create {
    /// Create a Migration.
    Migration(CreateMigration),
    /// Create a SchedulePolicy (cluster-wide).
    Schedulepolicy(CreatePolicy),
    /// Create a MigrationSchedule: Migrations of these settings whenever the policy is due.
    Migrationschedule(CreateSchedule),
    /// Generate a ClusterPair for the destination (--dest-kubeconfig) and apply it to the
    /// cluster of --kubeconfig/--context (the source), checked first as the controller will.
    Clusterpair(Box<CreateClusterPair>),
}

/// Flags of `create clusterpair`.
#[derive(Args, Debug)]
pub struct CreateClusterPair {
    /// The destination cluster's kubeconfig.
    #[arg(long = "dest-kubeconfig")]
    pub dest_kubeconfig: PathBuf,
    /// Context of the destination kubeconfig (default: its current one).
    #[arg(long = "dest-context")]
    pub dest_context: Option<String>,
    #[command(flatten)]
    pub pair: GenerateClusterPair,
}

/// Flags of `create migration` (storkctl's names).
#[derive(Args, Debug)]
pub struct CreateMigration {
    /// Migration name.
    pub name: String,
    /// What it migrates, and how.
    #[command(flatten)]
    pub migration: MigrationFlags,
    /// Validate and plan only, writing nothing to either cluster or the transfer store;
    /// prints the plan.
    #[arg(long = "dry-run", alias = "dryRun")]
    pub dry_run: bool,
    /// Wait for the migration to end, with a progress bar.
    #[arg(long)]
    pub wait: bool,
}

/// A Migration's settings, as `create migration` and `create migrationschedule` take them.
#[derive(Args, Debug)]
pub struct MigrationFlags {
    /// ClusterPair to migrate to.
    #[arg(long = "clusterPair", alias = "cluster-pair")]
    pub cluster_pair: String,
    /// Namespaces to migrate, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub namespaces: Vec<String>,
    /// Copy resources.
    #[arg(long = "includeResources", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub include_resources: bool,
    /// Copy volume data.
    #[arg(long = "includeVolumes", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub include_volumes: bool,
    /// Start applications on the destination.
    #[arg(long = "startApplications", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub start_applications: bool,
    /// Land namespaces elsewhere: `src=dst[,src2=dst2]`.
    #[arg(long = "namespace-mapping", alias = "namespaceMapping")]
    pub namespace_mapping: Vec<String>,
    /// Land claims of one StorageClass in another: `src=dst[,...]`.
    #[arg(long = "storage-class-mapping", alias = "storageClassMapping")]
    pub storage_class_mapping: Vec<String>,
    /// ResourceTransformations (in this namespace) to apply, comma-separated, in order.
    #[arg(
        long = "transform-specs",
        alias = "transformSpecs",
        value_delimiter = ','
    )]
    pub transform_specs: Vec<String>,
}

/// `clone ...`
#[derive(Subcommand, Debug)]
pub enum CloneWhat {
    /// Copy namespace SRC into --to DST in this cluster: an ApplicationClone in the
    /// controller's namespace (cluster admins), followed to its end.
    Namespace(CloneFlags),
}

/// Flags of `clone namespace`.
#[derive(Args, Debug)]
pub struct CloneFlags {
    /// The namespace to copy.
    pub source: String,
    /// The namespace of the copy.
    #[arg(long = "to")]
    pub to: String,
    /// Start the copied workloads (default: parked at zero).
    #[arg(long = "start-applications")]
    pub start_applications: bool,
    /// Replace objects of the same name already in the destination (default: keep them).
    #[arg(long)]
    pub replace: bool,
    /// The ApplicationClone's name (default SRC-to-DST).
    #[arg(long)]
    pub name: Option<String>,
    /// The migration controller's namespace.
    #[arg(long = "ferry-namespace", default_value = "ferry-system")]
    pub ferry_namespace: String,
    /// Create it and return without waiting.
    #[arg(long)]
    pub detach: bool,
}

pub async fn clone(k: &KubeArgs, c: CloneWhat) -> Result<()> {
    let CloneWhat::Namespace(f) = c;
    let client = k.client().await?;
    let args = ferryctl::clones::CloneArgs {
        source: f.source,
        destination: f.to,
        start_applications: f.start_applications,
        replace: f.replace,
        name: f.name,
    };
    let name = ferryctl::clones::create(&client, &f.ferry_namespace, &args).await?;
    println!("ApplicationClone {}/{name} created", f.ferry_namespace);
    if f.detach {
        return Ok(());
    }
    let st = ferryctl::clones::wait(
        &client,
        &f.ferry_namespace,
        &name,
        std::time::Duration::from_millis(500),
    )
    .await?;
    print!("{}", ferryctl::clones::describe(&st));
    match st.status {
        ferry_migration::crd::ItemStatus::Failed => Err(format!("clone {name} failed").into()),
        _ => Ok(()),
    }
}

/// Flags of `move`.
#[derive(Args, Debug)]
pub struct MoveFlags {
    /// The workload: deployment/NAME or statefulset/NAME.
    pub workload: String,
    /// The node to move it to (its Kubernetes name, which is also ferry's node id).
    #[arg(long = "to-node")]
    pub to_node: String,
    /// The chunk store the volumes live in: a folder, or a JSON settings file (the same
    /// fields as `ferry plugin --store-config`).
    #[arg(long, env = "FERRY_STORE_CONFIG")]
    pub store: PathBuf,
    /// Also read back and check every chunk of each volume's committed root, while the
    /// workload is down (default: its tree pages only).
    #[arg(long = "verify-chunks")]
    pub verify_chunks: bool,
    /// How long each wait may take (pods gone, volumes unstaged, pods ready), e.g. 90s, 10m.
    #[arg(long, default_value = "5m", value_parser = crate::transfer::parse_duration)]
    pub timeout: std::time::Duration,
}

pub async fn move_workload(k: &KubeArgs, f: MoveFlags) -> Result<()> {
    let client = k.client().await?;
    let store = crate::transfer::open_store(&f.store).await?;
    let args = ferryctl::moves::MoveArgs {
        namespace: k.ns(),
        workload: f.workload,
        node: f.to_node,
        verify_chunks: f.verify_chunks,
        timeout: f.timeout,
        every: std::time::Duration::from_millis(500),
    };
    let report =
        ferryctl::moves::run(&client, &store, &args, &mut |line| println!("{line}")).await?;
    print!("{}", ferryctl::moves::describe(&report));
    Ok(())
}

/// `perform failover` / `perform failback`, run against the destination cluster.
#[derive(Subcommand, Debug)]
pub enum Perform {
    /// Start the standby copy of a MigrationSchedule here: suspend the schedule, stop the
    /// source's applications (if the source answers) and wait for their pods, optionally
    /// migrate once more, then start the migrated applications here.
    Failover(PerformFlags),
    /// Move the namespace back to the source: migrate what changed here, stop it here, start
    /// it on the source, resume the schedule.
    Failback(PerformFlags),
}

/// Flags of `perform failover|failback`.
#[derive(Args, Debug)]
pub struct PerformFlags {
    /// The MigrationSchedule (on the source, in this namespace).
    #[arg(long = "migration-schedule", short = 'm')]
    pub migration_schedule: String,
    /// The ClusterPair in this namespace, on this cluster, that reaches the source
    /// (default: the namespace's only one; a failover without any acts here alone).
    #[arg(long = "cluster-pair")]
    pub cluster_pair: Option<String>,
    /// Failover: once the source's applications stopped, migrate once more so their last
    /// writes come along.
    #[arg(long = "sync-first")]
    pub sync_first: bool,
    /// Failover: do not touch the source even if it answers.
    #[arg(long = "skip-source-operations")]
    pub skip_source_operations: bool,
    /// The Action's name (default: the type, the schedule and the time).
    #[arg(long)]
    pub name: Option<String>,
    /// Return once the Action is created instead of following it to its end.
    #[arg(long)]
    pub detach: bool,
}

/// `activate migration` / `deactivate migration`.
#[derive(Subcommand, Debug)]
pub enum Activation {
    /// The migrated workloads of the namespace (-n) or of every namespace (-A).
    #[command(alias = "migrations")]
    Migration,
}

fn bar() -> indicatif::ProgressBar {
    let pb = indicatif::ProgressBar::new(0);
    pb.set_style(
        indicatif::ProgressStyle::with_template("{spinner} [{bar:30}] {bytes}/{total_bytes} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb
}

async fn follow(client: &kube::Client, ns: &str, name: &str) -> Result<()> {
    let pb = bar();
    let st =
        ferryctl::migrations::wait(client, ns, name, std::time::Duration::from_secs(1), |st| {
            let (done, total, msg) = ferryctl::migrations::progress(st);
            pb.set_length(total.max(done));
            pb.set_position(done);
            pb.set_message(msg);
        })
        .await?;
    pb.finish();
    println!(
        "{}",
        ferryctl::migrations::get(client, Some(ns), Some(name)).await?
    );
    match st.status {
        ferry_migration::crd::ItemStatus::Failed => Err(format!("migration {name} failed").into()),
        _ => Ok(()),
    }
}

pub async fn generate(k: &KubeArgs, g: Generate) -> Result<()> {
    let Generate::Clusterpair(a) = g;
    let path = match &k.kubeconfig {
        Some(p) => p.clone(),
        None => std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join(".kube/config"))
            .ok_or("no kubeconfig: pass --kubeconfig")?,
    };
    let (args, skip_check) = generate_args(&path, k.context.clone(), k.ns(), a)?;
    if !skip_check {
        ferryctl::generate::check(&ferryctl::generate::pair_settings(&args)?, &args.namespace)
            .await?;
    }
    print!("{}", ferryctl::generate::clusterpair(&args)?);
    Ok(())
}

/// The generator's input: the destination's kubeconfig at `path` (context `context`) and
/// the transfer flags; also whether to skip the live check.
fn generate_args(
    path: &std::path::Path,
    context: Option<String>,
    namespace: String,
    a: GenerateClusterPair,
) -> Result<(ferryctl::generate::GenerateArgs, bool)> {
    let kubeconfig =
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let mut transfer = std::collections::BTreeMap::new();
    transfer.insert("backend".to_string(), a.backend.clone());
    for (key, v) in [
        ("bucket", &a.bucket),
        ("root", &a.root),
        ("endpoint", &a.endpoint),
        ("region", &a.region),
        ("accessKeyId", &a.access_key_id),
        ("secretAccessKey", &a.secret_access_key),
        ("accountName", &a.account_name),
        ("accountKey", &a.account_key),
        ("credential", &a.credential),
    ] {
        if let Some(v) = v {
            transfer.insert(key.to_string(), v.clone());
        }
    }
    let encryption_key = match &a.encryption_key_file {
        Some(p) => {
            Some(std::fs::read_to_string(p).map_err(|e| format!("reading {}: {e}", p.display()))?)
        }
        None => None,
    };
    let args = ferryctl::generate::GenerateArgs {
        name: a.name,
        namespace,
        kubeconfig,
        kubeconfig_dir: path.parent().map(PathBuf::from),
        context,
        transfer,
        encryption_key,
        ferry_namespace: a.ferry_namespace,
    };
    Ok((args, a.skip_check))
}

pub async fn get(k: &KubeArgs, g: Get) -> Result<()> {
    let named = match &g {
        Get::Migration { name, .. } | Get::Action { name } | Get::Migrationschedule { name } => {
            name.is_some()
        }
        Get::Clusterpair | Get::Schedulepolicy => false,
    };
    if named && k.all_namespaces {
        return Err(
            "a NAME is looked up in one namespace: give it with -n NS instead of -A".into(),
        );
    }
    let client = k.client().await?;
    let ns = if k.all_namespaces { None } else { Some(k.ns()) };
    match g {
        Get::Clusterpair => print!("{}", ferryctl::pairs::get(&client, ns.as_deref()).await?),
        Get::Migration {
            name: Some(name),
            watch: true,
            ..
        } => follow(&client, &k.ns(), &name).await?,
        Get::Migration {
            name,
            migration_schedule,
            ..
        } => print!(
            "{}",
            ferryctl::migrations::get_selected(
                &client,
                ns.as_deref(),
                name.as_deref(),
                migration_schedule.as_deref()
            )
            .await?
        ),
        Get::Schedulepolicy => print!("{}", ferryctl::schedules::get_policies(&client).await?),
        Get::Action { name: Some(name) } => {
            let api: kube::Api<ferry_migration::crd::Action> =
                kube::Api::namespaced(client.clone(), &k.ns());
            let a = api.get(&name).await?;
            print!(
                "{}",
                ferryctl::actions::describe(&a.status.unwrap_or_default())
            );
        }
        Get::Action { name: None } => {
            print!("{}", ferryctl::actions::get(&client, ns.as_deref()).await?)
        }
        Get::Migrationschedule { name } => print!(
            "{}",
            ferryctl::schedules::get_schedules_named(&client, ns.as_deref(), name.as_deref())
                .await?
        ),
    }
    Ok(())
}

fn migration_args(a: &MigrationFlags, dry_run: bool) -> Result<ferryctl::migrations::CreateArgs> {
    use ferryctl::migrations::parse_mapping;
    Ok(ferryctl::migrations::CreateArgs {
        cluster_pair: a.cluster_pair.clone(),
        namespaces: a.namespaces.clone(),
        include_resources: a.include_resources,
        include_volumes: a.include_volumes,
        start_applications: a.start_applications,
        namespace_mapping: parse_mapping("--namespace-mapping", &a.namespace_mapping)?,
        storage_class_mapping: parse_mapping("--storage-class-mapping", &a.storage_class_mapping)?,
        transform_specs: a.transform_specs.clone(),
        dry_run,
    })
}

pub async fn suspension(k: &KubeArgs, s: Suspension, suspend: bool) -> Result<()> {
    let Suspension::Migrationschedule { name } = s;
    let client = k.client().await?;
    print!(
        "{}",
        ferryctl::schedules::set_suspend(&client, &k.ns(), &name, suspend).await?
    );
    Ok(())
}

pub async fn create(k: &KubeArgs, c: Create) -> Result<()> {
    let client = k.client().await?;
    let ns = k.ns();
    let a = match c {
        Create::Migration(a) => a,
        Create::Schedulepolicy(p) => {
            let args = ferryctl::schedules::PolicyArgs {
                policy_type: p.policy_type,
                interval_minutes: p.interval_minutes,
                time: p.time,
                day_of_week: p.day_of_week,
                date_of_month: p.date_of_month,
                retain: p.retain,
            };
            print!(
                "{}",
                ferryctl::schedules::create_policy(&client, &p.name, &args).await?
            );
            return Ok(());
        }
        Create::Clusterpair(c) => {
            let c = *c;
            let (args, skip_check) =
                generate_args(&c.dest_kubeconfig, c.dest_context, ns.clone(), c.pair)?;
            if !skip_check {
                ferryctl::generate::check(
                    &ferryctl::generate::pair_settings(&args)?,
                    &args.namespace,
                )
                .await?;
            }
            print!("{}", ferryctl::generate::create(&client, &args).await?);
            return Ok(());
        }
        Create::Migrationschedule(s) => {
            let out = ferryctl::schedules::create_schedule(
                &client,
                &ns,
                &s.name,
                &s.schedule_policy_name,
                &migration_args(&s.migration, false)?,
                s.suspend,
            )
            .await?;
            print!("{out}");
            return Ok(());
        }
    };
    let args = migration_args(&a.migration, a.dry_run)?;
    print!(
        "{}",
        ferryctl::migrations::create(&client, &ns, &a.name, &args).await?
    );
    if a.dry_run {
        // A plan takes one reconcile: wait for it and show it.
        let st = ferryctl::migrations::wait(
            &client,
            &ns,
            &a.name,
            std::time::Duration::from_millis(500),
            |_| {},
        )
        .await?;
        print!("{}", ferryctl::migrations::describe_plan(&st));
        return match st.status {
            ferry_migration::crd::ItemStatus::Failed => Err(format!(
                "dry run {} failed: {}",
                a.name,
                st.reason.as_deref().unwrap_or("no reason given")
            )
            .into()),
            _ => Ok(()),
        };
    }
    if a.wait {
        follow(&client, &ns, &a.name).await?;
    }
    Ok(())
}

pub async fn activation(k: &KubeArgs, activate: bool) -> Result<()> {
    let client = k.client().await?;
    let namespaces = if k.all_namespaces {
        let nss = ferry_migration::api::list(
            &client,
            &ferry_migration::kinds_used::namespace(),
            None,
            None,
        )
        .await?;
        nss.iter()
            .filter_map(|n| n["metadata"]["name"].as_str().map(str::to_string))
            .collect()
    } else {
        vec![k.ns()]
    };
    let lines = ferryctl::activate::set(&client, &namespaces, activate).await?;
    if lines.is_empty() {
        println!(
            "nothing to {}",
            if activate { "activate" } else { "deactivate" }
        );
    }
    for l in lines {
        println!("{l}");
    }
    Ok(())
}

pub async fn perform(k: &KubeArgs, p: Perform) -> Result<()> {
    use ferry_migration::crd::{ActionType, ItemStatus};
    let (kind, f) = match p {
        Perform::Failover(f) => (ActionType::Failover, f),
        Perform::Failback(f) => (ActionType::Failback, f),
    };
    let client = k.client().await?;
    let ns = k.ns();
    let args = ferryctl::actions::PerformArgs {
        migration_schedule: f.migration_schedule,
        cluster_pair: f.cluster_pair,
        sync_first: f.sync_first,
        skip_source_operations: f.skip_source_operations,
        name: f.name,
    };
    let name = ferryctl::actions::perform(&client, &ns, kind, &args).await?;
    println!("Action {ns}/{name} created");
    if f.detach {
        println!("follow it with: ferryctl get action {name} -n {ns}");
        return Ok(());
    }
    let mut last: Option<ferry_migration::crd::ActionStatus> = None;
    let st = ferryctl::actions::wait(
        &client,
        &ns,
        &name,
        std::time::Duration::from_secs(1),
        |st| {
            for line in ferryctl::actions::step_lines(last.as_ref(), st) {
                println!("{line}");
            }
            last = Some(st.clone());
        },
    )
    .await?;
    match st.status {
        ItemStatus::Successful => Ok(()),
        _ => Err(format!("{name}: {}", st.reason.as_deref().unwrap_or("failed")).into()),
    }
}
