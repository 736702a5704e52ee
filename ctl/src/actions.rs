//! `perform failover`, `perform failback` and `get action`: Actions on the destination
//! cluster (the one the kubeconfig points at), followed step by step.

use crate::Result;
use crate::table::{created, render};
use ferry_migration::crd::{
    Action, ActionParameter, ActionSpec, ActionStatus, ActionType, ClusterPair, FailbackParameter,
    FailoverParameter, ItemStatus,
};
use kube::api::PostParams;
use kube::{Api, ResourceExt};
use std::time::Duration;

/// What `perform failover|failback` was given.
#[derive(Clone, Debug, Default)]
pub struct PerformArgs {
    /// The MigrationSchedule on the source.
    pub migration_schedule: String,
    /// The ClusterPair here that reaches the source (default: the namespace's only one).
    pub cluster_pair: Option<String>,
    /// Failover: one last migration once the source stopped.
    pub sync_first: bool,
    /// Failover: leave the source alone.
    pub skip_source_operations: bool,
    /// The Action's name (default: type, schedule and time).
    pub name: Option<String>,
}

/// The pair to use: the one named, else the namespace's only one.
async fn pair(client: &kube::Client, ns: &str, named: Option<&str>) -> Result<Option<String>> {
    if let Some(n) = named {
        return Ok(Some(n.to_string()));
    }
    let pairs: Api<ClusterPair> = Api::namespaced(client.clone(), ns);
    let list = pairs.list(&Default::default()).await?;
    match list.items.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one.name_any())),
        many => Err(format!(
            "{} ClusterPairs in {ns} ({}): name the one that reaches the source with \
             --cluster-pair",
            many.len(),
            many.iter()
                .map(ResourceExt::name_any)
                .collect::<Vec<_>>()
                .join(", ")
        )
        .into()),
    }
}

/// Creates the Action of `kind`; returns its name.
///
/// # Errors
/// API errors; a failback without a pair back to the source.
pub async fn perform(
    client: &kube::Client,
    ns: &str,
    kind: ActionType,
    a: &PerformArgs,
) -> Result<String> {
    let pair = pair(client, ns, a.cluster_pair.as_deref()).await?;
    let action_parameter = match kind {
        ActionType::Failover => ActionParameter {
            failover_parameter: Some(FailoverParameter {
                migration_schedule_reference: a.migration_schedule.clone(),
                cluster_pair: pair,
                sync_first: a.sync_first,
                skip_source_operations: a.skip_source_operations,
                ..Default::default()
            }),
            ..Default::default()
        },
        ActionType::Failback => ActionParameter {
            failback_parameter: Some(FailbackParameter {
                migration_schedule_reference: a.migration_schedule.clone(),
                cluster_pair: pair.ok_or(
                    "a failback migrates back over a ClusterPair in this namespace that reaches \
                     the source: make one (ferryctl create clusterpair against this cluster, \
                     --dest-kubeconfig the source's) or name it with --cluster-pair",
                )?,
                ..Default::default()
            }),
            ..Default::default()
        },
    };
    let word = match kind {
        ActionType::Failover => "failover",
        ActionType::Failback => "failback",
    };
    let name = a.name.clone().unwrap_or_else(|| {
        let stamp = jiff::Timestamp::now().strftime("%Y%m%d%H%M%S").to_string();
        let base: String = format!("{word}-{}", a.migration_schedule)
            .chars()
            .take(48)
            .collect();
        format!("{}-{stamp}", base.trim_end_matches(['-', '.']))
    });
    let mut obj = Action::new(
        &name,
        ActionSpec {
            action_type: kind,
            action_parameter,
        },
    );
    obj.metadata.namespace = Some(ns.to_string());
    let api: Api<Action> = Api::namespaced(client.clone(), ns);
    api.create(&PostParams::default(), &obj).await?;
    Ok(name)
}

/// Polls Action `ns/name` until it ends, calling `each` whenever its status changed.
///
/// # Errors
/// API errors; the Action deleted meanwhile.
pub async fn wait(
    client: &kube::Client,
    ns: &str,
    name: &str,
    poll: Duration,
    mut each: impl FnMut(&ActionStatus),
) -> Result<ActionStatus> {
    let api: Api<Action> = Api::namespaced(client.clone(), ns);
    let mut last = None;
    loop {
        let a = api
            .get_opt(name)
            .await?
            .ok_or_else(|| format!("Action {ns}/{name} was deleted"))?;
        let st = a.status.unwrap_or_default();
        if last.as_ref() != Some(&st) {
            each(&st);
            last = Some(st.clone());
        }
        if st.status.is_final() {
            return Ok(st);
        }
        tokio::time::sleep(poll).await;
    }
}

/// One line per step that changed between `old` and `new`.
pub fn step_lines(old: Option<&ActionStatus>, new: &ActionStatus) -> Vec<String> {
    let mut out = Vec::new();
    for s in &new.steps {
        let before = old.and_then(|o| o.steps.iter().find(|x| x.name == s.name));
        if before == Some(s) || s.status == ItemStatus::Pending {
            continue;
        }
        out.push(format!(
            "{:<22} {:<11} {}",
            s.name,
            s.status.to_string(),
            s.message.as_deref().unwrap_or("")
        ));
    }
    if new.status == ItemStatus::Failed {
        out.push(format!(
            "failed: {}",
            new.reason.as_deref().unwrap_or("no reason given")
        ));
    }
    out
}

/// The steps of one Action as a table: STEP STATUS STARTED FINISHED MESSAGE.
pub fn describe(st: &ActionStatus) -> String {
    let rows: Vec<Vec<String>> = st
        .steps
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                s.status.to_string(),
                s.start_timestamp.clone().unwrap_or_default(),
                s.finish_timestamp.clone().unwrap_or_default(),
                s.message.clone().unwrap_or_default(),
            ]
        })
        .collect();
    render(&["STEP", "STATUS", "STARTED", "FINISHED", "MESSAGE"], &rows)
}

/// `get action`: NAME TYPE SCHEDULE STEP STATUS CREATED, with NAMESPACE first across every
/// namespace (`ns` `None`).
///
/// # Errors
/// API errors.
pub async fn get(client: &kube::Client, ns: Option<&str>) -> Result<String> {
    let api: Api<Action> = crate::scoped(client, ns);
    let items = api.list(&Default::default()).await?.items;
    if items.is_empty() {
        return Ok("No resources found.\n".into());
    }
    let rows: Vec<Vec<String>> = items
        .into_iter()
        .map(|a| {
            let schedule = a.spec.schedule().to_string();
            let st = a.status.clone().unwrap_or_default();
            let mut row = Vec::new();
            if ns.is_none() {
                row.push(a.namespace().unwrap_or_default());
            }
            row.extend([
                a.name_any(),
                format!("{:?}", a.spec.action_type).to_lowercase(),
                schedule,
                st.current_step.unwrap_or_default(),
                st.status.to_string(),
                created(&a.metadata),
            ]);
            row
        })
        .collect();
    let mut header = vec!["NAME", "TYPE", "SCHEDULE", "STEP", "STATUS", "CREATED"];
    if ns.is_none() {
        header.insert(0, "NAMESPACE");
    }
    Ok(render(&header, &rows))
}
