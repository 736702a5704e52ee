//! The SchedulePolicy reconciler: checks each policy and writes the verdict (`status.valid`
//! and, when invalid, `status.reason` naming the field), only when it changed, so a status
//! write (which the API answers with a watch event) does not loop.

use crate::Error;
use crate::crd::{SchedulePolicy, SchedulePolicyItem, SchedulePolicyStatus};
use crate::runtime::{Next, Pass, Reconciler};
use kube::Api;

/// The verdict on a policy.
pub fn verdict(p: &SchedulePolicyItem) -> SchedulePolicyStatus {
    match p.checked() {
        Ok(_) => SchedulePolicyStatus {
            valid: Some("True".into()),
            reason: None,
        },
        Err(reason) => SchedulePolicyStatus {
            valid: Some("False".into()),
            reason: Some(reason),
        },
    }
}

/// The SchedulePolicy reconciler: the verdict on each policy in its status.
#[derive(Clone, Copy, Debug, Default)]
pub struct Policies;

impl Reconciler for Policies {
    type K = SchedulePolicy;
    type S = SchedulePolicyStatus;
    const KIND: &'static str = "SchedulePolicy";

    fn api(client: &kube::Client, _ns: Option<&str>) -> Api<SchedulePolicy> {
        Api::all(client.clone())
    }

    fn status(obj: &SchedulePolicy) -> SchedulePolicyStatus {
        obj.status.clone().unwrap_or_default()
    }

    async fn reconcile(&self, pass: &mut Pass<'_, Self>) -> Result<Next, Error> {
        let want = verdict(&pass.obj.policy);
        if let Some(r) = &want.reason
            && pass.status.reason.as_ref() != Some(r)
        {
            tracing::warn!(policy = %pass.name(), reason = %r, "schedule policy is invalid");
        }
        pass.status = want;
        Ok(Next::Idle)
    }
}
