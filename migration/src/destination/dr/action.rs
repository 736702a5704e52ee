//! The Action reconciler: plans the steps of a failover or a failback once, records them in
//! the status, then runs the first unfinished one, again and again.
//!
//! Every step is safe to run twice (a patch to the state it wants, a Migration of a fixed
//! name made only when absent), and a step's outcome is written before the next starts, so
//! a controller killed at any point resumes at the step it was in.

use super::remote::{self, Source};
use super::steps;
use crate::crd::{Action, ActionStatus, ActionStep, ActionType, ItemStatus};
use crate::error::{Error, Result};
use crate::runtime::status::StatusWriter;
use crate::{Ctx, time};
use kube::{Api, ResourceExt};
use std::time::Duration;

/// Where a step got to.
pub enum Progress {
    /// Done; the message says what it did.
    Done(String),
    /// Left out; the message says why.
    Skipped(String),
    /// Not yet; the message says what it waits for.
    Wait(String),
    /// Recorded something to keep before going on: save, then run the step again.
    Again,
}

/// The steps of each action type, in order.
pub fn step_names(a: &Action) -> Vec<&'static str> {
    match a.spec.action_type {
        ActionType::Failover => {
            let mut v = vec![steps::SUSPEND_SCHEDULE, steps::DEACTIVATE_SOURCE];
            if a.spec.sync_first() {
                v.push(steps::SYNC_FIRST);
            }
            v.push(steps::ACTIVATE_DESTINATION);
            v
        }
        ActionType::Failback => vec![
            steps::SUSPEND_SCHEDULE,
            steps::DEACTIVATE_SOURCE,
            steps::MIGRATE,
            steps::DEACTIVATE_DESTINATION,
            steps::FINAL_MIGRATE,
            steps::ACTIVATE_SOURCE,
            steps::RESUME_SCHEDULE,
        ],
    }
}

/// The namespaces an Action acts on; a tenant's Action acts on its own namespace only.
fn namespaces(ctx: &Ctx, a: &Action) -> Result<Vec<String>> {
    let own = a.namespace().unwrap_or_default();
    let p = &a.spec.action_parameter;
    let (listed, field) = match a.spec.action_type {
        ActionType::Failover => {
            let p = p.failover_parameter.as_ref().ok_or_else(|| {
                Error::Invalid(
                    "actionType failover needs spec.actionParameter.failoverParameter".into(),
                )
            })?;
            (&p.failover_namespaces, "failoverNamespaces")
        }
        ActionType::Failback => {
            let p = p.failback_parameter.as_ref().ok_or_else(|| {
                Error::Invalid(
                    "actionType failback needs spec.actionParameter.failbackParameter".into(),
                )
            })?;
            (&p.failback_namespaces, "failbackNamespaces")
        }
    };
    if listed.is_empty() {
        if own == ctx.namespace {
            return Err(Error::Invalid(format!(
                "an Action in {own} acts on the namespaces it names: set {field}"
            )));
        }
        return Ok(vec![own]);
    }
    if own != ctx.namespace && listed.iter().any(|n| *n != own) {
        return Err(Error::Invalid(format!(
            "an Action in namespace {own} may only act on {own}; create it in {} to act on \
             other namespaces",
            ctx.namespace
        )));
    }
    for n in listed {
        crate::names::check_object_name(field, n)?;
    }
    Ok(listed.clone())
}

/// Reconciles one Action; returns when to look again (`None`: ended).
///
/// # Errors
/// API errors a retry may cure.
pub async fn reconcile(ctx: &Ctx, a: &Action) -> Result<Option<Duration>> {
    let api: Api<Action> = Api::namespaced(ctx.client.clone(), &a.namespace().unwrap_or_default());
    let Some(fresh) = api.get_opt(&a.name_any()).await? else {
        return Ok(None);
    };
    let a = &fresh;
    let mut st = fresh.status.clone().unwrap_or_default();
    if st.status.is_final() {
        return Ok(None);
    }
    let mut w = StatusWriter::new(&ctx.client, a)?;
    if st.steps.is_empty() {
        match namespaces(ctx, a) {
            Ok(ns) => st.namespaces = ns,
            Err(e @ Error::Invalid(_)) => {
                fail(ctx, a, &mut st, e.to_string()).await;
                w.save(&st).await?;
                return Ok(None);
            }
            Err(e) => return Err(e),
        }
        st.steps = step_names(a)
            .into_iter()
            .map(|n| ActionStep {
                name: n.into(),
                ..Default::default()
            })
            .collect();
        st.status = ItemStatus::InProgress;
        st.start_timestamp = Some(time::now());
        w.save(&st).await?;
    }
    loop {
        let Some(i) = st.steps.iter().position(|s| !s.status.is_final()) else {
            st.status = ItemStatus::Successful;
            st.reason = None;
            st.finish_timestamp = Some(time::now());
            ctx.event(
                a,
                false,
                "ActionSucceeded",
                format!(
                    "{:?} of {} done",
                    a.spec.action_type,
                    st.namespaces.join(",")
                ),
            )
            .await;
            w.save(&st).await?;
            return Ok(None);
        };
        let name = st.steps[i].name.clone();
        st.current_step = Some(name.clone());
        if st.steps[i].start_timestamp.is_none() {
            st.steps[i].start_timestamp = Some(time::now());
            st.steps[i].status = ItemStatus::InProgress;
        }
        if st
            .reason
            .as_deref()
            .is_some_and(|r| r.starts_with(crate::source::migrate::RETRYING))
        {
            st.reason = None;
        }
        let outcome = steps::run(ctx, a, &mut st, i).await;
        let outcome = match outcome {
            Err(e) if remote::unreachable(&e) && steps::on_source(&name) => {
                remote::count_failure(ctx, a, &mut st, &e).await
            }
            other => other,
        };
        match outcome {
            Ok(Progress::Again) => {
                w.save(&st).await?;
            }
            Ok(Progress::Done(msg)) => {
                end_step(&mut st.steps[i], ItemStatus::Successful, msg.clone());
                ctx.event(a, false, &name, msg).await;
                w.save(&st).await?;
            }
            Ok(Progress::Skipped(msg)) => {
                end_step(&mut st.steps[i], ItemStatus::Skipped, msg.clone());
                ctx.event(a, true, &name, format!("skipped: {msg}")).await;
                w.save(&st).await?;
            }
            Ok(Progress::Wait(msg)) => {
                st.steps[i].message = Some(msg);
                w.save(&st).await?;
                return Ok(Some(ctx.poll));
            }
            Err(e) if e.is_permanent() => {
                end_step(&mut st.steps[i], ItemStatus::Failed, e.to_string());
                fail(ctx, a, &mut st, format!("step {name}: {e}")).await;
                w.save(&st).await?;
                return Ok(None);
            }
            Err(e) => {
                st.reason = Some(format!(
                    "{}step {name}: {e}",
                    crate::source::migrate::RETRYING
                ));
                if let Err(save) = w.save(&st).await {
                    tracing::warn!(error = %save, "retry reason not saved");
                }
                return Err(e);
            }
        }
    }
}

/// Reaches the source for a step, or says why it is skipped; for [`steps`].
pub(super) async fn source(ctx: &Ctx, a: &Action, st: &mut ActionStatus) -> Result<Source> {
    remote::source(ctx, a, st).await
}

fn end_step(step: &mut ActionStep, status: ItemStatus, message: String) {
    step.status = status;
    step.message = Some(message);
    step.finish_timestamp = Some(time::now());
}

async fn fail(ctx: &Ctx, a: &Action, st: &mut ActionStatus, reason: String) {
    ctx.event(a, true, "ActionFailed", reason.clone()).await;
    st.status = ItemStatus::Failed;
    st.reason = Some(reason);
    st.finish_timestamp = Some(time::now());
}
