//! The MigrationSchedule reconciler: makes a Migration from the template whenever a policy
//! type of the named SchedulePolicy is due, never two at once, and keeps `retain` finished
//! Migrations of each type.
//!
//! - A type never run counts from the schedule's creation, except an interval, which runs at
//!   once.
//! - A due time that finds a run in progress is recorded in `status.skipped` (once per run in
//!   progress), not queued.
//! - Missed slots collapse into one run (see `policy`); the next due time of each type is in
//!   `status.nextDue` and is computed from the policy and the recorded runs, so it survives a
//!   restart.
//! - Migrations are made in the schedule's own namespace with its template, so a schedule
//!   can do nothing its author could not do with a Migration.

use crate::crd::RetryStatus;
use crate::crd::{
    ItemStatus, Migration, MigrationSchedule, MigrationScheduleStatus, SchedulePolicy,
    ScheduledMigration, SkippedRun,
};
use crate::error::Result;
use crate::runtime::{Next, Pass, Reconciler};
use crate::schedule::policy::{is_due, next_due};
use crate::time::{human, seconds_between};
use crate::{Ctx, Error};
use jiff::{Timestamp, ToSpan};
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Resource, ResourceExt};
use std::time::Duration;

/// Label on the Migrations a schedule makes: the schedule's name.
pub const SCHEDULE_LABEL: &str = "ferry.dev/migration-schedule";
/// Label on the Migrations a schedule makes: the policy type that was due.
pub const POLICY_TYPE_LABEL: &str = "ferry.dev/policy-type";

const SKIPPED_KEPT: usize = 10;

fn finished(status: &str) -> bool {
    matches!(status, "Successful" | "PartialSuccess" | "Failed")
}

fn ts(s: &str) -> Option<Timestamp> {
    s.parse().ok()
}

fn rfc3339(t: Timestamp) -> String {
    t.round(jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| t.to_string())
}

/// The MigrationSchedule reconciler.
#[derive(Clone, Copy, Debug, Default)]
pub struct Schedules;

impl Reconciler for Schedules {
    type K = MigrationSchedule;
    type S = MigrationScheduleStatus;
    const KIND: &'static str = "MigrationSchedule";

    fn api(client: &kube::Client, ns: Option<&str>) -> Api<MigrationSchedule> {
        Api::namespaced(client.clone(), ns.unwrap_or_default())
    }

    fn status(obj: &MigrationSchedule) -> MigrationScheduleStatus {
        obj.status.clone().unwrap_or_default()
    }

    fn retry_of(s: &MigrationScheduleStatus) -> Option<&RetryStatus> {
        s.retry.as_ref()
    }

    fn set_retry(s: &mut MigrationScheduleStatus, r: Option<RetryStatus>) {
        crate::source::migrate::set_retry_reason(&mut s.reason, &r, "");
        s.retry = r;
    }

    async fn reconcile(&self, pass: &mut Pass<'_, Self>) -> Result<Next> {
        let ctx = pass.ctx;
        let ns = pass.namespace();
        let migrations: Api<Migration> = Api::namespaced(ctx.client.clone(), &ns);
        refresh_items(&migrations, &mut pass.status).await?;
        let fresh = pass.obj.clone();
        let wait = match plan(ctx, &fresh, &migrations, &mut pass.status).await {
            Ok(Planned::Wait(w)) => w,
            Ok(Planned::Suspended(written)) => {
                // The spec write moved the resourceVersion: the status goes on top of it.
                pass.rebase(&written);
                Duration::from_secs(1)
            }
            Err(Error::Invalid(reason)) => {
                pass.status.reason = Some(reason);
                pass.status.next_due.clear();
                Duration::from_secs(60)
            }
            Err(e) => return Err(e),
        };
        Ok(Next::After(wait))
    }
}

/// What planning a schedule ended with.
enum Planned {
    /// Look again after this long.
    Wait(Duration),
    /// The schedule suspended itself (autoSuspend): the object as written.
    Suspended(Box<MigrationSchedule>),
}

/// Reads back each Migration the schedule made: its outcome, or gone.
async fn refresh_items(
    migrations: &Api<Migration>,
    st: &mut MigrationScheduleStatus,
) -> Result<()> {
    for items in st.items.values_mut() {
        let mut kept = Vec::new();
        for mut item in std::mem::take(items) {
            if finished(&item.status) {
                kept.push(item);
                continue;
            }
            let Some(m) = migrations.get_opt(&item.name).await? else {
                continue; // deleted by someone: no longer the schedule's
            };
            if let Some(ms) = &m.status {
                item.status = if ms.status == ItemStatus::Pending && ms.stage.is_some() {
                    "InProgress".into()
                } else {
                    ms.status.to_string()
                };
                item.finish_timestamp = ms.finish_timestamp.clone();
            }
            kept.push(item);
        }
        *items = kept;
    }
    let newest_success = st
        .items
        .values()
        .flatten()
        .filter(|i| matches!(i.status.as_str(), "Successful" | "PartialSuccess"))
        .max_by(|a, b| a.creation_timestamp.cmp(&b.creation_timestamp));
    if let Some(i) = newest_success {
        st.last_success_time = Some(i.creation_timestamp.clone());
        st.last_success_duration = i
            .finish_timestamp
            .as_deref()
            .and_then(|f| seconds_between(&i.creation_timestamp, f))
            .map(human);
    }
    Ok(())
}

async fn plan(
    ctx: &Ctx,
    s: &MigrationSchedule,
    migrations: &Api<Migration>,
    st: &mut MigrationScheduleStatus,
) -> Result<Planned> {
    let policies: Api<SchedulePolicy> = Api::all(ctx.client.clone());
    let name = &s.spec.schedule_policy_name;
    let policy = policies.get_opt(name).await?.ok_or_else(|| {
        Error::Invalid(format!(
            "SchedulePolicy {name} not found: create it, or name an existing one in spec.schedulePolicyName"
        ))
    })?;
    let checked = policy
        .policy
        .checked()
        .map_err(|e| Error::Invalid(format!("SchedulePolicy {name} is invalid: {e}")))?;
    st.reason = None;

    let now = (ctx.clock)();
    let created = s
        .meta()
        .creation_timestamp
        .as_ref()
        .map(|t| t.0)
        .unwrap_or(now);
    let suspended = s.spec.suspend.unwrap_or(false);
    if !suspended
        && s.spec.auto_suspend.unwrap_or(false)
        && let Some(active) = activated_on_destination(ctx, s).await?
    {
        let schedules: Api<MigrationSchedule> =
            Api::namespaced(ctx.client.clone(), &s.namespace().unwrap_or_default());
        let written = schedules
            .patch(
                &s.name_any(),
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(serde_json::json!({"spec": {"suspend": true}})),
            )
            .await?;
        ctx.event(
            s,
            false,
            "AutoSuspended",
            format!("{active} runs on the destination: schedule suspended (autoSuspend)"),
        )
        .await;
        return Ok(Planned::Suspended(Box::new(written)));
    }
    let mut running: Option<String> = st
        .items
        .values()
        .flatten()
        .find(|i| !finished(&i.status))
        .map(|i| i.name.clone());
    let mut soonest: Option<Timestamp> = None;
    for c in &checked {
        let kind = c.slot.kind();
        let last = st
            .items
            .get(kind)
            .and_then(|v| v.last())
            .and_then(|i| ts(&i.creation_timestamp));
        let last = match (last, c.slot) {
            (Some(l), _) => l,
            // An interval never run runs at once.
            (None, crate::schedule::policy::Slot::Interval { minutes }) => created
                .checked_sub((i64::from(minutes)).minutes())
                .unwrap_or(Timestamp::MIN),
            (None, _) => created,
        };
        let due = is_due(&c.slot, last, now, &ctx.zone);
        // The next slot counts from the last run: this one, when it starts now.
        let mut from = last;
        if due && !suspended {
            match &running {
                Some(r) => {
                    let seen = st
                        .skipped
                        .iter()
                        .any(|x| x.policy_type == kind && &x.running == r);
                    if !seen {
                        st.skipped.push(SkippedRun {
                            policy_type: kind.into(),
                            time: rfc3339(now),
                            running: r.clone(),
                            reason: None,
                        });
                        let over = st.skipped.len().saturating_sub(SKIPPED_KEPT);
                        st.skipped.drain(..over);
                        ctx.event(
                            s,
                            false,
                            "RunSkipped",
                            format!("{kind} run due while {r} is still running: skipped"),
                        )
                        .await;
                    }
                }
                None => {
                    if let Some(active) = activated_on_destination(ctx, s).await? {
                        // A standby that took over is never overwritten by a run.
                        let reason = format!(
                            "{active} runs on the destination (it took over): not \
                             overwritten; fail back, or deactivate it there and resume"
                        );
                        let seen = st.skipped.last().is_some_and(|x| {
                            x.policy_type == kind && x.reason.as_ref() == Some(&reason)
                        });
                        if !seen {
                            st.skipped.push(SkippedRun {
                                policy_type: kind.into(),
                                time: rfc3339(now),
                                running: String::new(),
                                reason: Some(reason.clone()),
                            });
                            let over = st.skipped.len().saturating_sub(SKIPPED_KEPT);
                            st.skipped.drain(..over);
                            ctx.event(s, true, "RunSkipped", format!("{kind} run: {reason}"))
                                .await;
                        }
                        if let Some(next) = next_due(&c.slot, now, now, &ctx.zone) {
                            st.next_due.insert(kind.into(), rfc3339(next));
                            soonest = Some(soonest.map_or(next, |x| x.min(next)));
                        }
                        continue;
                    }
                    let made = start(ctx, s, migrations, kind, now).await?;
                    st.items.entry(kind.into()).or_default().push(made.clone());
                    running = Some(made.name);
                    from = now;
                }
            }
        }
        // While suspended, the next slot to come (when it would run, were it resumed), never
        // a time that has passed.
        let from = if suspended { now } else { from };
        if let Some(next) = next_due(&c.slot, from, now, &ctx.zone) {
            st.next_due.insert(kind.into(), rfc3339(next));
            if next > now {
                soonest = Some(soonest.map_or(next, |s| s.min(next)));
            }
        }
        retain(migrations, st, kind, c.retain).await?;
    }
    st.next_due
        .retain(|k, _| checked.iter().any(|c| c.slot.kind() == k));
    rpo(ctx, s, st, &checked, created, now, suspended).await;
    if running.is_some() {
        // A run's end also brings the schedule here (it watches its Migrations).
        return Ok(Planned::Wait(Duration::from_secs(300)));
    }
    Ok(Planned::Wait(match soonest {
        Some(t) => {
            let secs = (t.as_second() - now.as_second()).clamp(1, 300);
            Duration::from_secs(secs as u64)
        }
        None => Duration::from_secs(300),
    }))
}

/// A workload the schedule migrated that runs on the destination (scaled up from the zero it
/// arrived at), when there is one. A destination that cannot be reached is not activated.
async fn activated_on_destination(ctx: &Ctx, s: &MigrationSchedule) -> Result<Option<String>> {
    use crate::resources::REPLICAS_ANNOTATION;
    let ns = s.namespace().unwrap_or_default();
    let pairs: Api<crate::crd::ClusterPair> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(pair) = pairs.get_opt(&s.spec.template.spec.cluster_pair).await? else {
        return Ok(None);
    };
    let dest = match crate::pair::PairSettings::load(ctx, &pair).await {
        Ok(settings) => match settings.connect(ctx).await {
            Ok(c) => c,
            Err(e) => {
                tracing::info!(schedule = %s.name_any(), error = %e, "destination not reachable for autoSuspend");
                return Ok(None);
            }
        },
        Err(e) => {
            tracing::info!(schedule = %s.name_any(), error = %e, "pair not usable for autoSuspend");
            return Ok(None);
        }
    };
    let kinds = [
        crate::resources::Kind {
            group: "apps".into(),
            version: "v1".into(),
            kind: "Deployment".into(),
            plural: "deployments".into(),
        },
        crate::resources::Kind {
            group: "apps".into(),
            version: "v1".into(),
            kind: "StatefulSet".into(),
            plural: "statefulsets".into(),
        },
    ];
    for target_ns in &s.spec.template.spec.namespaces {
        for kind in &kinds {
            let objs = match crate::api::list(&dest, kind, Some(target_ns), None).await {
                Ok(o) => o,
                Err(e) => {
                    tracing::info!(error = %e, "listing the destination for autoSuspend failed");
                    return Ok(None);
                }
            };
            for o in objs {
                let migrated = o["metadata"]["annotations"][REPLICAS_ANNOTATION].is_string();
                let replicas = o["spec"]["replicas"].as_i64().unwrap_or(1);
                if migrated && replicas > 0 {
                    return Ok(Some(format!(
                        "{} {target_ns}/{}",
                        kind.kind,
                        o["metadata"]["name"].as_str().unwrap_or_default()
                    )));
                }
            }
        }
    }
    Ok(None)
}

/// Seconds between runs of a policy type, at most.
fn period_secs(slot: &crate::schedule::policy::Slot) -> i64 {
    use crate::schedule::policy::Slot;
    match slot {
        Slot::Interval { minutes } => i64::from(*minutes) * 60,
        Slot::Daily { .. } => 86_400,
        Slot::Weekly { .. } => 7 * 86_400,
        Slot::Monthly { .. } => 31 * 86_400,
    }
}

/// The age of the newest successfully migrated state: in the metrics, and as condition
/// `RPOExceeded` (with an Event when it turns true) past twice the shortest period.
async fn rpo(
    ctx: &Ctx,
    s: &MigrationSchedule,
    st: &mut MigrationScheduleStatus,
    checked: &[crate::crd::Checked],
    created: Timestamp,
    now: Timestamp,
    suspended: bool,
) {
    let ns = s.namespace().unwrap_or_default();
    let name = s.name_any();
    let since = st
        .last_success_time
        .as_deref()
        .and_then(ts)
        .unwrap_or(created);
    let age = (now.as_second() - since.as_second()).max(0);
    if let Some(t) = st.last_success_time.as_deref().and_then(ts) {
        ferry_csi::metrics::set(
            "ferry_migration_schedule_last_success_timestamp_seconds",
            "When the newest successful run of a schedule started (its state is that old), Unix seconds.",
            &[("namespace", &ns), ("schedule", &name)],
            t.as_second() as f64,
        );
    }
    ferry_csi::metrics::set(
        "ferry_migration_schedule_rpo_seconds",
        "Age of the newest successfully migrated state of a schedule at its last reconcile.",
        &[("namespace", &ns), ("schedule", &name)],
        age as f64,
    );
    let Some(limit) = checked.iter().map(|c| 2 * period_secs(&c.slot)).min() else {
        return;
    };
    let (status, reason, message) = if suspended {
        (
            "False",
            "Suspended",
            "the schedule is suspended".to_string(),
        )
    } else if age > limit {
        (
            "True",
            "RPOExceeded",
            format!(
                "the newest migrated state is {} old, more than twice the policy's period ({})",
                human(age as f64),
                human(limit as f64 / 2.0)
            ),
        )
    } else {
        (
            "False",
            "WithinRPO",
            format!(
                "the newest migrated state is within {}",
                human(limit as f64)
            ),
        )
    };
    let old = st.conditions.iter().position(|c| c.type_ == "RPOExceeded");
    let changed =
        old.is_none_or(|i| st.conditions[i].status != status || st.conditions[i].reason != reason);
    if !changed {
        // Keep the message as it was: a status that changed on every look would loop.
        return;
    }
    if status == "True" {
        ctx.event(s, true, "RPOExceeded", message.clone()).await;
    }
    let c = crate::crd::ScheduleCondition {
        type_: "RPOExceeded".into(),
        status: status.into(),
        reason: reason.into(),
        message,
        last_transition_time: rfc3339(now),
    };
    match old {
        Some(i) => st.conditions[i] = c,
        None => st.conditions.push(c),
    }
}

/// Makes the Migration of one run (a retry finds the one made before).
async fn start(
    ctx: &Ctx,
    s: &MigrationSchedule,
    migrations: &Api<Migration>,
    kind: &str,
    now: Timestamp,
) -> Result<ScheduledMigration> {
    let stamp = now.strftime("%Y%m%d%H%M%S").to_string();
    let name = format!("{}-{kind}-{stamp}", s.name_any());
    let mut m = Migration::new(&name, s.spec.template.spec.clone());
    m.metadata.namespace = s.namespace();
    m.metadata.labels = Some(
        [
            (SCHEDULE_LABEL.to_string(), s.name_any()),
            (POLICY_TYPE_LABEL.to_string(), kind.to_string()),
        ]
        .into(),
    );
    m.metadata.owner_references = s.controller_owner_ref(&()).map(|o| vec![o]);
    match migrations.create(&PostParams::default(), &m).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    ctx.event(
        s,
        false,
        "MigrationCreated",
        format!("{kind} run: Migration {name}"),
    )
    .await;
    Ok(ScheduledMigration {
        name,
        creation_timestamp: rfc3339(now),
        finish_timestamp: None,
        status: "Pending".into(),
    })
}

/// Deletes the oldest finished Migrations of `kind` beyond `keep`.
async fn retain(
    migrations: &Api<Migration>,
    st: &mut MigrationScheduleStatus,
    kind: &str,
    keep: u32,
) -> Result<()> {
    let Some(items) = st.items.get_mut(kind) else {
        return Ok(());
    };
    while items.len() > keep as usize {
        let Some(pos) = items.iter().position(|i| finished(&i.status)) else {
            break;
        };
        let old = items[pos].name.clone();
        match migrations.delete(&old, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
        items.remove(pos);
    }
    Ok(())
}
