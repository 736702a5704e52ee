//! `ferryctl create migration`, `get migration`, and the progress bar of a running one.

use crate::Result;
use crate::table::{created, render};
use ferry_migration::crd::{ItemStatus, Migration, MigrationSpec, MigrationStatus};
use kube::api::PostParams;
use kube::{Api, ResourceExt};
use std::collections::BTreeMap;

/// What `create migration` takes (storkctl's flags).
#[derive(Clone, Debug, Default)]
pub struct CreateArgs {
    /// ClusterPair name.
    pub cluster_pair: String,
    /// Namespaces to migrate.
    pub namespaces: Vec<String>,
    /// Copy resources.
    pub include_resources: bool,
    /// Copy volume data.
    pub include_volumes: bool,
    /// Start applications on the destination.
    pub start_applications: bool,
    /// Source namespace to destination namespace.
    pub namespace_mapping: BTreeMap<String, String>,
    /// Source StorageClass to destination StorageClass.
    pub storage_class_mapping: BTreeMap<String, String>,
    /// ResourceTransformations to apply, in order.
    pub transform_specs: Vec<String>,
    /// Plan only.
    pub dry_run: bool,
}

/// Parses `a=b,c=d` (or repeated `a=b`) into a map; the flag is named in the error.
///
/// # Errors
/// An item without `=`, or with an empty side.
pub fn parse_mapping(flag: &str, items: &[String]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for item in items.iter().flat_map(|i| i.split(',')) {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        match item.split_once('=') {
            Some((a, b)) if !a.trim().is_empty() && !b.trim().is_empty() => {
                out.insert(a.trim().to_string(), b.trim().to_string());
            }
            _ => {
                return Err(format!("{flag}: {item:?} is not source=destination").into());
            }
        }
    }
    Ok(out)
}

/// Creates Migration `ns/name`; an existing one with the same name is an error that says so.
pub async fn create(client: &kube::Client, ns: &str, name: &str, a: &CreateArgs) -> Result<String> {
    if a.namespaces.is_empty() {
        return Err("--namespaces is required: name the namespaces to migrate".into());
    }
    let mut m = Migration::new(name, spec_of(a));
    m.metadata.namespace = Some(ns.to_string());
    let api: Api<Migration> = Api::namespaced(client.clone(), ns);
    match api.create(&PostParams::default(), &m).await {
        Ok(_) => Ok(format!("Migration {name} created successfully\n")),
        Err(kube::Error::Api(s)) if s.code == 409 => {
            Err(format!("Migration {ns}/{name} already exists: pick another name").into())
        }
        Err(e) => Err(e.into()),
    }
}

/// The Migration spec `a` describes.
pub fn spec_of(a: &CreateArgs) -> MigrationSpec {
    MigrationSpec {
        cluster_pair: a.cluster_pair.clone(),
        admin_cluster_pair: None,
        namespaces: a.namespaces.clone(),
        include_resources: a.include_resources,
        include_volumes: a.include_volumes,
        start_applications: a.start_applications,
        selectors: Default::default(),
        exclude_selectors: Default::default(),
        exclude_resource_types: Vec::new(),
        include_optional_resource_types: Vec::new(),
        purge_deleted_resources: false,
        persistent_volume_claims: Vec::new(),
        namespace_mapping: a.namespace_mapping.clone(),
        storage_class_mapping: a.storage_class_mapping.clone(),
        transform_specs: a.transform_specs.clone(),
        dry_run: a.dry_run,
        group_snapshot: None,
        pre_exec_rule: None,
        post_exec_rule: None,
    }
}

fn counts(st: &MigrationStatus) -> (String, String) {
    let vols = format!(
        "{}/{}",
        st.volumes
            .iter()
            .filter(|v| v.status == ItemStatus::Successful)
            .count(),
        st.volumes.len()
    );
    let res = format!(
        "{}/{}",
        st.resources
            .iter()
            .filter(|r| r.status == ItemStatus::Successful)
            .count(),
        st.resources.len()
    );
    (vols, res)
}

/// Migrations as storkctl's table: NAME CLUSTERPAIR STAGE STATUS VOLUMES RESOURCES CREATED
/// (plus ELAPSED), one or all, in `ns` or every namespace.
pub async fn get(client: &kube::Client, ns: Option<&str>, name: Option<&str>) -> Result<String> {
    get_selected(client, ns, name, None).await
}

/// Like [`get`], listing only the Migrations of MigrationSchedule `schedule` when given.
pub async fn get_selected(
    client: &kube::Client,
    ns: Option<&str>,
    name: Option<&str>,
    schedule: Option<&str>,
) -> Result<String> {
    let api: Api<Migration> = crate::scoped(client, ns);
    let lp = match schedule {
        Some(s) => kube::api::ListParams::default().labels(&format!(
            "{}={s}",
            ferry_migration::source::migration_schedule::SCHEDULE_LABEL
        )),
        None => Default::default(),
    };
    let items = crate::named_or_listed(&api, "Migration", ns, name, &lp).await?;
    if items.is_empty() {
        return Ok("No resources found.\n".into());
    }
    let mut rows = Vec::new();
    for m in &items {
        let st = m.status.clone().unwrap_or_default();
        let (vols, res) = counts(&st);
        let elapsed = match (&st.start_timestamp, &st.finish_timestamp) {
            (Some(a), Some(b)) => ferry_migration::time::seconds_between(a, b)
                .map(ferry_migration::time::human)
                .unwrap_or_default(),
            _ => String::new(),
        };
        let mut row = Vec::new();
        if ns.is_none() {
            row.push(m.namespace().unwrap_or_default());
        }
        row.extend([
            m.name_any(),
            m.spec.cluster_pair.clone(),
            st.stage.map(|s| s.to_string()).unwrap_or_default(),
            st.status.to_string(),
            vols,
            res,
            created(&m.metadata),
            elapsed,
        ]);
        rows.push(row);
    }
    let mut header = vec![
        "NAME",
        "CLUSTERPAIR",
        "STAGE",
        "STATUS",
        "VOLUMES",
        "RESOURCES",
        "CREATED",
        "ELAPSED",
    ];
    if ns.is_none() {
        header.insert(0, "NAMESPACE");
    }
    let mut out = render(&header, &rows);
    if name.is_some() {
        for m in &items {
            let st = m.status.clone().unwrap_or_default();
            if let Some(r) = &st.reason {
                out.push_str(&format!("reason: {r}\n"));
            }
            for v in &st.volumes {
                out.push_str(&format!(
                    "volume {}/{}: {} {}/{} bytes{}\n",
                    v.namespace,
                    v.persistent_volume_claim,
                    v.status,
                    v.bytes_done,
                    v.bytes_total,
                    v.reason
                        .as_deref()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default()
                ));
            }
            for r in st
                .resources
                .iter()
                .filter(|r| r.status != ItemStatus::Successful)
            {
                out.push_str(&format!(
                    "resource {}: {}{}\n",
                    crate::table::resource(r),
                    r.status,
                    r.reason
                        .as_deref()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default()
                ));
            }
        }
    }
    Ok(out)
}

/// Bytes done and total over a migration's volumes, and a one-line state.
pub fn progress(st: &MigrationStatus) -> (u64, u64, String) {
    let done = st.volumes.iter().map(|v| v.bytes_done).sum();
    let total = st.volumes.iter().map(|v| v.bytes_total).sum();
    let (vols, res) = counts(st);
    let stage = st
        .stage
        .map(|s| s.to_string())
        .unwrap_or_else(|| "Pending".into());
    (
        done,
        total,
        format!("{stage} {} volumes {vols} resources {res}", st.status),
    )
}

/// Polls Migration `ns/name` every `every` until it ends, calling `show` with each status.
pub async fn wait(
    client: &kube::Client,
    ns: &str,
    name: &str,
    every: std::time::Duration,
    mut show: impl FnMut(&MigrationStatus),
) -> Result<MigrationStatus> {
    let api: Api<Migration> = Api::namespaced(client.clone(), ns);
    loop {
        let m = api
            .get_opt(name)
            .await?
            .ok_or_else(|| format!("Migration {ns}/{name} not found"))?;
        let st = m.status.unwrap_or_default();
        show(&st);
        if st.finish_timestamp.is_some() {
            return Ok(st);
        }
        tokio::time::sleep(every).await;
    }
}

/// A dry run's plan as text: the volumes with the bytes a run would move, then each object
/// with what would happen to it and the fields the transformations change.
pub fn describe_plan(st: &MigrationStatus) -> String {
    use ferry_migration::crd::PlannedAction;
    let Some(plan) = &st.plan else {
        return format!(
            "no plan: {}\n",
            st.reason.as_deref().unwrap_or("the dry run has not ended")
        );
    };
    let mut out = String::new();
    let mut rows = Vec::new();
    for v in &plan.volumes {
        rows.push(vec![
            format!("{}/{}", v.namespace, v.persistent_volume_claim),
            v.destination_namespace.clone(),
            match (&v.storage_class, &v.destination_storage_class) {
                (Some(a), Some(b)) if a != b => format!("{a} -> {b}"),
                (Some(a), _) => a.clone(),
                _ => "-".into(),
            },
            v.size_bytes.to_string(),
            if v.moves {
                v.bytes_to_move.to_string()
            } else {
                "-".into()
            },
            v.reason.clone().unwrap_or_default(),
        ]);
    }
    out.push_str(&render(
        &[
            "VOLUME",
            "TO-NAMESPACE",
            "CLASS",
            "SIZE",
            "BYTES-TO-MOVE",
            "NOTE",
        ],
        &rows,
    ));
    let mut rows = Vec::new();
    for r in &plan.resources {
        let action = match r.action {
            PlannedAction::Create => "create",
            PlannedAction::Update => "update",
            PlannedAction::Conflict => "conflict",
            PlannedAction::Skip => "skip",
        };
        let at = if r.namespace.is_empty() {
            r.name.clone()
        } else {
            format!("{}/{}", r.destination_namespace, r.name)
        };
        rows.push(vec![
            r.kind.clone(),
            at,
            action.to_string(),
            r.reason.clone().unwrap_or_default(),
        ]);
        for c in &r.changes {
            rows.push(vec![
                String::new(),
                format!("  {} ({})", c.path, c.transformation),
                String::new(),
                format!(
                    "{} -> {}",
                    c.before.as_deref().unwrap_or("(absent)"),
                    c.after.as_deref().unwrap_or("(deleted)")
                ),
            ]);
        }
    }
    out.push('\n');
    out.push_str(&render(&["KIND", "NAME", "ACTION", "WHY"], &rows));
    out.push_str(&format!(
        "\n{} bytes to move; {} to create, {} to update, {} conflict(s)\n",
        plan.bytes_to_move, plan.creates, plan.updates, plan.conflicts
    ));
    out
}
