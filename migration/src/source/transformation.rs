//! ResourceTransformation reconciler: checks the rules and says in the status whether a
//! Migration can use them (`Ready`) or what is wrong (`Failed`). The status is written only
//! when the verdict changes, so its own write (a watch event) does not loop.

use crate::crd::{ResourceTransformation, ResourceTransformationStatus};
use crate::error::Result;
use crate::resources::transformations;
use crate::{Ctx, runtime::status::StatusWriter};
use kube::ResourceExt;

/// The verdict on a set of rules.
pub fn verdict(rt: &ResourceTransformation) -> ResourceTransformationStatus {
    match transformations::check(&rt.spec.objects) {
        Ok(()) => ResourceTransformationStatus {
            status: Some("Ready".into()),
            reason: None,
        },
        Err(why) => ResourceTransformationStatus {
            status: Some("Failed".into()),
            reason: Some(why),
        },
    }
}

/// Writes the verdict on `rt` when it changed.
///
/// # Errors
/// API errors a retry may cure.
pub async fn reconcile(ctx: &Ctx, rt: &ResourceTransformation) -> Result<()> {
    let api: kube::Api<ResourceTransformation> =
        kube::Api::namespaced(ctx.client.clone(), &rt.namespace().unwrap_or_default());
    let Some(fresh) = api.get_opt(&rt.name_any()).await? else {
        return Ok(());
    };
    let want = verdict(&fresh);
    if fresh.status.as_ref() == Some(&want) {
        return Ok(());
    }
    let mut w = StatusWriter::new(&ctx.client, &fresh)?;
    w.save(&want).await?;
    Ok(())
}
