//! The Action reconciler: plans the steps of a failover or a failback once, records them in
//! the status, then runs the first unfinished one, again and again.
//!
//! Every step is safe to run twice (a patch to the state it wants, a Migration of a fixed
//! name made only when absent), and a step's outcome is written before the next starts, so
//! a controller killed at any point resumes at the step it was in.

use super::remote::{self, Source};
use super::steps;
use crate::Ctx;
use crate::crd::{Action, ActionStatus, ActionStep, ActionType, ItemStatus, RetryStatus};
use crate::error::{Error, Result};
use crate::runtime::{Next, Pass, Reconciler};
use kube::{Api, ResourceExt};
use std::time::Duration;

/// Where a step got to.
pub enum Progress {
    /// Done; the message says what it did.
    Done(String),
    /// Left out; the message says why.
    Skipped(String),
    /// Not yet; the message says what it waits for (looked at again after the poll
    /// interval).
    Wait(String),
    /// Not yet; looked at again after this long.
    WaitFor(Duration, String),
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

/// The Action reconciler.
#[derive(Clone, Copy, Debug, Default)]
pub struct Actions;

impl Reconciler for Actions {
    type K = Action;
    type S = ActionStatus;
    const KIND: &'static str = "Action";

    fn api(client: &kube::Client, ns: Option<&str>) -> Api<Action> {
        Api::namespaced(client.clone(), ns.unwrap_or_default())
    }

    fn status(obj: &Action) -> ActionStatus {
        obj.status.clone().unwrap_or_default()
    }

    fn retry_of(s: &ActionStatus) -> Option<&RetryStatus> {
        s.retry.as_ref()
    }

    fn set_retry(s: &mut ActionStatus, r: Option<RetryStatus>) {
        let what = s
            .current_step
            .as_deref()
            .map(|n| format!("step {n}: "))
            .unwrap_or_default();
        crate::source::migrate::set_retry_reason(&mut s.reason, &r, &what);
        s.retry = r;
    }

    async fn reconcile(&self, pass: &mut Pass<'_, Self>) -> Result<Next> {
        reconcile(pass).await
    }

    async fn give_up(&self, pass: &mut Pass<'_, Self>, reason: String) -> Next {
        let (ctx, a) = (pass.ctx, pass.obj.clone());
        let st = &mut pass.status;
        if let Some(i) = st.steps.iter().position(|s| !s.status.is_final()) {
            end_step(
                &mut st.steps[i],
                ItemStatus::Failed,
                reason.clone(),
                ctx.stamp(),
            );
        }
        let step = st.current_step.clone().unwrap_or_default();
        fail(ctx, &a, st, format!("step {step}: {reason}")).await;
        Next::Idle
    }
}

/// Plans the steps once, then runs the first unfinished one, again and again.
async fn reconcile(pass: &mut Pass<'_, Actions>) -> Result<Next> {
    let ctx = pass.ctx;
    let a = pass.obj.clone();
    let a = &a;
    if pass.status.status.is_final() {
        return Ok(Next::Idle);
    }
    if pass.status.steps.is_empty() {
        let st = &mut pass.status;
        match namespaces(ctx, a) {
            Ok(ns) => st.namespaces = ns,
            Err(e @ Error::Invalid(_)) => {
                fail(ctx, a, st, e.to_string()).await;
                return Ok(Next::Idle);
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
        st.start_timestamp = Some(ctx.stamp());
        pass.save().await?;
    }
    loop {
        let st = &mut pass.status;
        let Some(i) = st.steps.iter().position(|s| !s.status.is_final()) else {
            st.status = ItemStatus::Successful;
            st.reason = None;
            st.finish_timestamp = Some(ctx.stamp());
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
            return Ok(Next::Idle);
        };
        let name = st.steps[i].name.clone();
        st.current_step = Some(name.clone());
        if st.steps[i].start_timestamp.is_none() {
            st.steps[i].start_timestamp = Some(ctx.stamp());
            st.steps[i].status = ItemStatus::InProgress;
        }
        let outcome = steps::run(ctx, a, st, i).await;
        let outcome = match outcome {
            Err(e) if remote::unreachable(&e) && steps::on_source(&name) => {
                remote::count_failure(ctx, a, st, &e).await
            }
            other => other,
        };
        match outcome {
            Ok(Progress::Again) => {}
            Ok(Progress::Done(msg)) => {
                end_step(
                    &mut st.steps[i],
                    ItemStatus::Successful,
                    msg.clone(),
                    ctx.stamp(),
                );
                ctx.event(a, false, &name, msg).await;
            }
            Ok(Progress::Skipped(msg)) => {
                end_step(
                    &mut st.steps[i],
                    ItemStatus::Skipped,
                    msg.clone(),
                    ctx.stamp(),
                );
                ctx.event(a, true, &name, format!("skipped: {msg}")).await;
            }
            Ok(Progress::Wait(msg)) => {
                st.steps[i].message = Some(msg);
                return Ok(Next::After(ctx.poll));
            }
            Ok(Progress::WaitFor(wait, msg)) => {
                st.steps[i].message = Some(msg);
                return Ok(Next::After(wait));
            }
            Err(e) => return Err(e),
        }
        pass.save().await?;
    }
}

/// Reaches the source for a step, or says why it is skipped; for [`steps`].
pub(super) async fn source(ctx: &Ctx, a: &Action, st: &mut ActionStatus) -> Result<Source> {
    remote::source(ctx, a, st).await
}

fn end_step(step: &mut ActionStep, status: ItemStatus, message: String, now: String) {
    step.status = status;
    step.message = Some(message);
    step.finish_timestamp = Some(now);
}

async fn fail(ctx: &Ctx, a: &Action, st: &mut ActionStatus, reason: String) {
    ctx.event(a, true, "ActionFailed", reason.clone()).await;
    st.status = ItemStatus::Failed;
    st.reason = Some(reason);
    st.finish_timestamp = Some(ctx.stamp());
}
