//! The SchedulePolicy reconciler: checks each policy and writes the verdict (`status.valid`
//! and, when invalid, `status.reason` naming the field), only when it changed, so a status
//! write (which the API answers with a watch event) does not loop.

use crate::crd::{SchedulePolicy, SchedulePolicyItem, SchedulePolicyStatus};
use crate::{Ctx, Error};
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;

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

/// Checks `sp` (read fresh) and records the verdict.
///
/// # Errors
/// API errors; a 409 when the policy changed since it was read (the next reconcile sees it).
pub async fn reconcile(ctx: &Ctx, sp: &SchedulePolicy) -> Result<(), Error> {
    let api: Api<SchedulePolicy> = Api::all(ctx.client.clone());
    let Some(fresh) = api.get_opt(&sp.name_any()).await? else {
        return Ok(());
    };
    let want = verdict(&fresh.policy);
    if fresh.status.as_ref() == Some(&want) {
        return Ok(());
    }
    if let Some(r) = &want.reason {
        tracing::warn!(policy = %fresh.name_any(), reason = %r, "schedule policy is invalid");
    }
    // Merge patch: a field goes only when sent as null.
    let body = json!({
        "metadata": {"resourceVersion": fresh.resource_version()},
        "status": {"valid": want.valid, "reason": want.reason},
    });
    api.patch_status(
        &fresh.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&body),
    )
    .await?;
    Ok(())
}
