//! The steps of failover and failback. "Source" is the cluster the MigrationSchedule runs
//! on; "destination" is this one, where the Action is and where the standby copy lives.

use super::action::{Progress, source};
use super::remote::Source;
use super::workloads::{self, Scope};
use crate::crd::{Action, ActionStatus, ItemStatus, Migration, MigrationStatus};
use crate::error::{Error, Result};
use crate::source::migration_schedule::SCHEDULE_LABEL;
use crate::{Ctx, api, kinds_used, names};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

/// Suspend the MigrationSchedule on the source; wait for a run in progress to end.
pub const SUSPEND_SCHEDULE: &str = "SuspendSchedule";
/// Park the source's workloads; wait for their pods to go.
pub const DEACTIVATE_SOURCE: &str = "DeactivateSource";
/// One last migration from the source (failover with `syncFirst`).
pub const SYNC_FIRST: &str = "SyncFirst";
/// Start the migrated workloads here.
pub const ACTIVATE_DESTINATION: &str = "ActivateDestination";
/// Migrate the namespaces back while they still run here (failback).
pub const MIGRATE: &str = "Migrate";
/// Park the workloads here; wait for their pods to go (failback).
pub const DEACTIVATE_DESTINATION: &str = "DeactivateDestination";
/// Migrate what changed since [`MIGRATE`] (failback).
pub const FINAL_MIGRATE: &str = "FinalMigrate";
/// Start the workloads on the source (failback).
pub const ACTIVATE_SOURCE: &str = "ActivateSource";
/// Let the MigrationSchedule run again (failback).
pub const RESUME_SCHEDULE: &str = "ResumeSchedule";

/// Label on the Migrations an Action makes: the Action's name.
pub const ACTION_LABEL: &str = "ferry.dev/action";

/// Whether a step talks to the source cluster.
pub fn on_source(step: &str) -> bool {
    matches!(
        step,
        SUSPEND_SCHEDULE | DEACTIVATE_SOURCE | SYNC_FIRST | ACTIVATE_SOURCE | RESUME_SCHEDULE
    )
}

fn finished(status: &str) -> bool {
    matches!(status, "Successful" | "PartialSuccess" | "Failed")
}

/// Runs step `i` of `st` once.
///
/// # Errors
/// API errors; [`Error::Invalid`] when the step cannot succeed (the reason says what to do).
pub async fn run(ctx: &Ctx, a: &Action, st: &mut ActionStatus, i: usize) -> Result<Progress> {
    let step = st.steps[i].name.clone();
    let src = if on_source(&step) {
        match source(ctx, a, st).await? {
            Source::Up(c) => Some(c),
            Source::Gone(why) => return Ok(Progress::Skipped(why)),
        }
    } else {
        None
    };
    let namespaces = st.namespaces.clone();
    match (step.as_str(), src) {
        (SUSPEND_SCHEDULE, Some(c)) => suspend(&c, a, true).await,
        (RESUME_SCHEDULE, Some(c)) => suspend(&c, a, false).await,
        (DEACTIVATE_SOURCE, Some(c)) => deactivate(&c, &namespaces, Scope::All, "source").await,
        (ACTIVATE_SOURCE, Some(c)) => activate(&c, &namespaces, Scope::All, "source").await,
        (SYNC_FIRST, Some(c)) => sync_first(&c, a, st, i).await,
        (ACTIVATE_DESTINATION, None) => {
            activate(&ctx.client, &namespaces, Scope::Migrated, "destination").await
        }
        (DEACTIVATE_DESTINATION, None) => {
            deactivate(&ctx.client, &namespaces, Scope::All, "destination").await
        }
        (MIGRATE | FINAL_MIGRATE, None) => migrate_back(ctx, a, st, i).await,
        (other, _) => Err(Error::Unexpected(format!("unknown step {other}"))),
    }
}

/// Sets the schedule's `suspend`; suspending waits for a run in progress to end.
async fn suspend(src: &kube::Client, a: &Action, on: bool) -> Result<Progress> {
    let ns = a.namespace().unwrap_or_default();
    let name = a.spec.schedule().to_string();
    let kind = kinds_used::migration_schedule();
    let s = api::get(src, &kind, Some(&ns), &name)
        .await?
        .ok_or_else(|| {
            Error::Invalid(format!(
                "MigrationSchedule {ns}/{name} not found on the source cluster: fix \
             migrationScheduleReference"
            ))
        })?;
    if s["spec"]["template"]["spec"]["namespaceMapping"]
        .as_object()
        .is_some_and(|m| !m.is_empty())
    {
        // Its namespaces have other names on each side; the steps act on one name.
        return Err(Error::Invalid(format!(
            "MigrationSchedule {ns}/{name} maps namespaces (namespaceMapping): failover and \
             failback act on namespaces of one name on both clusters; use a schedule without \
             a mapping"
        )));
    }
    if s["spec"]["suspend"].as_bool().unwrap_or(false) != on {
        api::merge(
            src,
            &kind,
            Some(&ns),
            &name,
            &json!({"spec": {"suspend": on}}),
        )
        .await?;
    }
    if !on {
        return Ok(Progress::Done(format!(
            "MigrationSchedule {ns}/{name} resumed"
        )));
    }
    let running = s["status"]["items"]
        .as_object()
        .into_iter()
        .flat_map(|m| m.values())
        .filter_map(Value::as_array)
        .flatten()
        .find(|i| !finished(i["status"].as_str().unwrap_or_default()))
        .and_then(|i| i["name"].as_str());
    if let Some(r) = running {
        // The schedule's record may lag: read the run itself.
        let m = api::get(src, &kinds_used::migration(), Some(&ns), r).await?;
        let done = m
            .as_ref()
            .is_none_or(|m| m["status"]["finishTimestamp"].is_string());
        if !done {
            return Ok(Progress::Wait(format!(
                "MigrationSchedule {ns}/{name} suspended; waiting for its run {r} to end"
            )));
        }
    }
    Ok(Progress::Done(format!(
        "MigrationSchedule {ns}/{name} suspended"
    )))
}

async fn deactivate(
    c: &kube::Client,
    namespaces: &[String],
    scope: Scope,
    side: &str,
) -> Result<Progress> {
    let mut left = Vec::new();
    for ns in namespaces {
        for line in workloads::set(c, ns, false, scope).await? {
            tracing::info!(side, "{line}");
        }
        left.extend(
            workloads::running_pods(c, ns)
                .await?
                .into_iter()
                .map(|p| format!("{ns}/{p}")),
        );
    }
    if left.is_empty() {
        return Ok(Progress::Done(format!(
            "the applications are scaled to zero on the {side} and none of their pods runs"
        )));
    }
    let shown: Vec<&str> = left.iter().take(5).map(String::as_str).collect();
    Ok(Progress::Wait(format!(
        "applications scaled to zero on the {side}; waiting for {} pod(s) to stop: {}{}",
        left.len(),
        shown.join(", "),
        if left.len() > shown.len() {
            ", ..."
        } else {
            ""
        }
    )))
}

async fn activate(
    c: &kube::Client,
    namespaces: &[String],
    scope: Scope,
    side: &str,
) -> Result<Progress> {
    let mut lines = Vec::new();
    for ns in namespaces {
        lines.extend(workloads::set(c, ns, true, scope).await?);
    }
    Ok(Progress::Done(if lines.is_empty() {
        format!("every workload on the {side} already runs at its parked count")
    } else {
        format!("started on the {side}: {}", lines.join("; "))
    }))
}

/// The outcome of a Migration an Action made: `None` while it runs.
fn outcome(m: &Value) -> Option<(String, String)> {
    let st: MigrationStatus = serde_json::from_value(m["status"].clone()).ok()?;
    st.finish_timestamp.as_ref()?;
    Some((st.status.to_string(), st.reason.unwrap_or_default()))
}

/// Step `i`'s Migration name, recorded before it is made.
fn migration_name(a: &Action, st: &mut ActionStatus, i: usize) -> Option<String> {
    if let Some(n) = &st.steps[i].migration {
        return Some(n.clone());
    }
    let step = st.steps[i].name.to_lowercase();
    st.steps[i].migration = Some(names::action_migration(
        &a.name_any(),
        a.metadata.uid.as_deref().unwrap_or_default(),
        &step,
    ));
    None
}

async fn wait_for(
    c: &kube::Client,
    ns: &str,
    name: &str,
    side: &str,
    on_failure: &str,
) -> Result<Progress> {
    let m = api::get(c, &kinds_used::migration(), Some(ns), name)
        .await?
        .ok_or_else(|| {
            Error::Invalid(format!(
                "Migration {ns}/{name} on the {side} was deleted before it ended"
            ))
        })?;
    match outcome(&m) {
        None => Ok(Progress::Wait(format!(
            "waiting for Migration {ns}/{name} on the {side} (stage {})",
            m["status"]["stage"].as_str().unwrap_or("not started")
        ))),
        Some((s, _)) if s == ItemStatus::Successful.to_string() => {
            Ok(Progress::Done(format!("Migration {ns}/{name} succeeded")))
        }
        Some((s, r)) if s == ItemStatus::PartialSuccess.to_string() => Ok(Progress::Done(format!(
            "Migration {ns}/{name} ended PartialSuccess: {r}"
        ))),
        Some((_, r)) => Err(Error::Invalid(format!(
            "Migration {ns}/{name} failed: {r}. {on_failure}"
        ))),
    }
}

/// Makes (once) and follows a Migration on the source of the schedule's template.
async fn sync_first(
    src: &kube::Client,
    a: &Action,
    st: &mut ActionStatus,
    i: usize,
) -> Result<Progress> {
    let Some(name) = migration_name(a, st, i) else {
        return Ok(Progress::Again);
    };
    let ns = a.namespace().unwrap_or_default();
    let kind = kinds_used::migration();
    if api::get(src, &kind, Some(&ns), &name).await?.is_none() {
        let sched = a.spec.schedule().to_string();
        let s = api::get(src, &kinds_used::migration_schedule(), Some(&ns), &sched)
            .await?
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "MigrationSchedule {ns}/{sched} not found on the source cluster"
                ))
            })?;
        let mut spec = s["spec"]["template"]["spec"].clone();
        spec["startApplications"] = json!(false);
        let m = json!({
            "apiVersion": "ferry.dev/v1alpha1",
            "kind": "Migration",
            "metadata": {
                "name": name,
                "namespace": ns,
                "labels": { SCHEDULE_LABEL: sched, ACTION_LABEL: a.name_any() },
            },
            "spec": spec,
        });
        create(src, &kind, &ns, &m).await?;
    }
    wait_for(
        src,
        &ns,
        &name,
        "source",
        "The source's applications are stopped: run a failover without syncFirst to start \
         the copy of the last scheduled run here, or ferryctl activate migration on the \
         source to start them there again",
    )
    .await
}

/// Makes (once) and follows a Migration here, back to the source, over the Action's pair.
async fn migrate_back(ctx: &Ctx, a: &Action, st: &mut ActionStatus, i: usize) -> Result<Progress> {
    let Some(name) = migration_name(a, st, i) else {
        return Ok(Progress::Again);
    };
    let ns = a.namespace().unwrap_or_default();
    let kind = kinds_used::migration();
    if api::get(&ctx.client, &kind, Some(&ns), &name)
        .await?
        .is_none()
    {
        let pair = a.spec.cluster_pair().unwrap_or_default();
        let mut m = Migration::new(
            &name,
            serde_json::from_value(json!({
                "clusterPair": pair,
                "namespaces": st.namespaces,
                "includeResources": true,
                "includeVolumes": true,
                "startApplications": false,
            }))
            .map_err(|e| Error::Unexpected(e.to_string()))?,
        );
        m.metadata.namespace = Some(ns.clone());
        m.metadata.labels = Some([(ACTION_LABEL.to_string(), a.name_any())].into());
        m.metadata.owner_references = a.controller_owner_ref(&()).map(|o| vec![o]);
        let v = serde_json::to_value(&m).map_err(|e| Error::Unexpected(e.to_string()))?;
        create(&ctx.client, &kind, &ns, &v).await?;
    }
    wait_for(
        &ctx.client,
        &ns,
        &name,
        "destination",
        "Nothing was started on the source; fix what the Migration names and create a new \
         failback Action",
    )
    .await
}

/// Creates `obj`; one made by an earlier try counts.
async fn create(
    c: &kube::Client,
    kind: &crate::resources::Kind,
    ns: &str,
    obj: &Value,
) -> Result<()> {
    let api: kube::Api<kube::api::DynamicObject> =
        kube::Api::namespaced_with(c.clone(), ns, &kind.api_resource());
    let o: kube::api::DynamicObject =
        serde_json::from_value(obj.clone()).map_err(|e| Error::Unexpected(e.to_string()))?;
    match api.create(&kube::api::PostParams::default(), &o).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}
