//! storkctl's schedule verbs: `create|get schedulepolicy`, `create|get|suspend|resume
//! migrationschedule`.

use crate::Result;
use crate::migrations::{CreateArgs, spec_of};
use crate::table::render;
use ferry_migration::crd::{
    DailyPolicy, IntervalPolicy, MigrationSchedule, MigrationScheduleSpec, MigrationTemplate,
    MonthlyPolicy, SchedulePolicy, SchedulePolicyItem, WeeklyPolicy,
};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

/// What `create schedulepolicy` was given (storkctl's flags).
#[derive(Clone, Debug, Default)]
pub struct PolicyArgs {
    /// `interval`, `daily`, `weekly` or `monthly`.
    pub policy_type: String,
    /// Minutes between runs (interval).
    pub interval_minutes: Option<i64>,
    /// Time of day (daily, weekly, monthly).
    pub time: Option<String>,
    /// Day of the week (weekly).
    pub day_of_week: Option<String>,
    /// Day of the month (monthly).
    pub date_of_month: Option<i64>,
    /// Runs kept.
    pub retain: Option<i64>,
}

fn policy_of(a: &PolicyArgs) -> Result<SchedulePolicyItem> {
    let time = || {
        a.time
            .clone()
            .ok_or_else(|| format!("--time is required for a {} policy", a.policy_type))
    };
    let mut p = SchedulePolicyItem::default();
    match a.policy_type.as_str() {
        "interval" => {
            p.interval = Some(IntervalPolicy {
                interval_minutes: a
                    .interval_minutes
                    .ok_or("--interval-minutes is required for an interval policy")?,
                retain: a.retain,
            })
        }
        "daily" => {
            p.daily = Some(DailyPolicy {
                time: time()?,
                retain: a.retain,
            })
        }
        "weekly" => {
            p.weekly = Some(WeeklyPolicy {
                day: a
                    .day_of_week
                    .clone()
                    .ok_or("--day-of-week is required for a weekly policy")?,
                time: time()?,
                retain: a.retain,
            })
        }
        "monthly" => {
            p.monthly = Some(MonthlyPolicy {
                date: a
                    .date_of_month
                    .ok_or("--date-of-month is required for a monthly policy")?,
                time: time()?,
                retain: a.retain,
            })
        }
        other => {
            return Err(
                format!("--policy-type {other:?}: use interval, daily, weekly or monthly").into(),
            );
        }
    }
    Ok(p)
}

/// Creates SchedulePolicy `name`, refusing a bad one before it reaches the API.
pub async fn create_policy(client: &kube::Client, name: &str, a: &PolicyArgs) -> Result<String> {
    let policy = policy_of(a)?;
    policy.checked()?;
    let sp = SchedulePolicy {
        api_version: "ferry.dev/v1alpha1".into(),
        kind: "SchedulePolicy".into(),
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        policy,
        status: None,
    };
    let api: Api<SchedulePolicy> = Api::all(client.clone());
    match api.create(&PostParams::default(), &sp).await {
        Ok(_) => Ok(format!("Schedule policy {name} created successfully\n")),
        Err(kube::Error::Api(s)) if s.code == 409 => {
            Err(format!("SchedulePolicy {name} already exists: pick another name").into())
        }
        Err(e) => Err(e.into()),
    }
}

/// SchedulePolicies as storkctl's table: NAME INTERVAL-MINUTES DAILY WEEKLY MONTHLY.
pub async fn get_policies(client: &kube::Client) -> Result<String> {
    let api: Api<SchedulePolicy> = Api::all(client.clone());
    let list = api.list(&Default::default()).await?;
    if list.items.is_empty() {
        return Ok("No resources found.\n".into());
    }
    let none = || "N/A".to_string();
    let rows: Vec<Vec<String>> = list
        .items
        .iter()
        .map(|p| {
            let q = &p.policy;
            vec![
                p.name_any(),
                q.interval
                    .as_ref()
                    .map_or_else(none, |i| i.interval_minutes.to_string()),
                q.daily.as_ref().map_or_else(none, |d| d.time.clone()),
                q.weekly
                    .as_ref()
                    .map_or_else(none, |w| format!("{}@{}", w.day, w.time)),
                q.monthly
                    .as_ref()
                    .map_or_else(none, |m| format!("{}@{}", m.date, m.time)),
            ]
        })
        .collect();
    let mut out = render(
        &["NAME", "INTERVAL-MINUTES", "DAILY", "WEEKLY", "MONTHLY"],
        &rows,
    );
    for p in &list.items {
        if let Some(r) = p.status.as_ref().and_then(|s| s.reason.as_ref()) {
            out.push_str(&format!("{}: {r}\n", p.name_any()));
        }
    }
    Ok(out)
}

/// Creates MigrationSchedule `ns/name` over policy `policy`.
pub async fn create_schedule(
    client: &kube::Client,
    ns: &str,
    name: &str,
    policy: &str,
    a: &CreateArgs,
    suspend: bool,
) -> Result<String> {
    if a.namespaces.is_empty() {
        return Err("--namespaces is required: name the namespaces to migrate".into());
    }
    let mut s = MigrationSchedule::new(
        name,
        MigrationScheduleSpec {
            template: MigrationTemplate { spec: spec_of(a) },
            schedule_policy_name: policy.into(),
            suspend: suspend.then_some(true),
            auto_suspend: None,
        },
    );
    s.metadata.namespace = Some(ns.into());
    let api: Api<MigrationSchedule> = Api::namespaced(client.clone(), ns);
    match api.create(&PostParams::default(), &s).await {
        Ok(_) => Ok(format!("MigrationSchedule {name} created successfully\n")),
        Err(kube::Error::Api(e)) if e.code == 409 => {
            Err(format!("MigrationSchedule {ns}/{name} already exists: pick another name").into())
        }
        Err(e) => Err(e.into()),
    }
}

/// MigrationSchedules as storkctl's table: NAME POLICYNAME CLUSTERPAIR SUSPEND
/// LAST-SUCCESS-TIME LAST-SUCCESS-DURATION.
pub async fn get_schedules(client: &kube::Client, ns: Option<&str>) -> Result<String> {
    get_schedules_named(client, ns, None).await
}

/// Like [`get_schedules`], only MigrationSchedule `name` (of namespace `ns`) when given.
///
/// # Errors
/// API errors; the named schedule not found.
pub async fn get_schedules_named(
    client: &kube::Client,
    ns: Option<&str>,
    name: Option<&str>,
) -> Result<String> {
    let api: Api<MigrationSchedule> = crate::scoped(client, ns);
    let items =
        crate::named_or_listed(&api, "MigrationSchedule", ns, name, &Default::default()).await?;
    if items.is_empty() {
        return Ok("No resources found.\n".into());
    }
    let mut rows = Vec::new();
    for s in &items {
        let st = s.status.clone().unwrap_or_default();
        let mut row = Vec::new();
        if ns.is_none() {
            row.push(s.namespace().unwrap_or_default());
        }
        row.extend([
            s.name_any(),
            s.spec.schedule_policy_name.clone(),
            s.spec.template.spec.cluster_pair.clone(),
            s.spec.suspend.unwrap_or(false).to_string(),
            st.last_success_time.clone().unwrap_or_default(),
            st.last_success_duration.clone().unwrap_or_default(),
        ]);
        rows.push(row);
    }
    let mut header = vec![
        "NAME",
        "POLICYNAME",
        "CLUSTERPAIR",
        "SUSPEND",
        "LAST-SUCCESS-TIME",
        "LAST-SUCCESS-DURATION",
    ];
    if ns.is_none() {
        header.insert(0, "NAMESPACE");
    }
    let mut out = render(&header, &rows);
    for s in &items {
        if let Some(r) = s.status.as_ref().and_then(|st| st.reason.as_ref()) {
            out.push_str(&format!("{}: {r}\n", s.name_any()));
        }
    }
    Ok(out)
}

/// Suspends (or resumes) MigrationSchedule `ns/name`.
pub async fn set_suspend(
    client: &kube::Client,
    ns: &str,
    name: &str,
    suspend: bool,
) -> Result<String> {
    let api: Api<MigrationSchedule> = Api::namespaced(client.clone(), ns);
    // Merge patch: resuming removes the field (null), as the API deletes only on null.
    let value = if suspend { json!(true) } else { json!(null) };
    match api
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"suspend": value}})),
        )
        .await
    {
        Ok(_) => Ok(format!(
            "MigrationSchedule {name} {} successfully\n",
            if suspend { "suspended" } else { "resumed" }
        )),
        Err(kube::Error::Api(e)) if e.code == 404 => {
            Err(format!("MigrationSchedule {ns}/{name} not found").into())
        }
        Err(e) => Err(e.into()),
    }
}
