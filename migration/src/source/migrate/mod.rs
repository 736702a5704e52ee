//! Migration reconciler: validate, then stage Volumes, stage Application, stage Final.
//!
//! A finalizer ([`crate::runtime::finalizer::MIGRATION`]) is added before anything is made, so a
//! Migration deleted mid-run first removes its snapshots and unfinished imports.
//!
//! Every step writes what it did to the Migration's status before the next starts, so a
//! controller restarted at any point reads the status and goes on from there: a volume with
//! a snapshot name is not snapshotted again, an exported one is not exported again, the
//! Application stage applies with server-side apply and may simply run again.

mod application;
mod cleanup;
mod crds;
mod dry_run;
mod finish;
mod retention;
mod shape;
mod validate;
mod volumes;

use crate::Ctx;
use crate::crd::{ItemStatus, Migration, MigrationStatus, Stage};
use crate::error::{Error, Result};
use crate::runtime::finalizer;
use crate::runtime::status::StatusWriter;
use kube::ResourceExt;
use sha2::Digest;
use std::time::Duration;

pub use application::{TRIGGER_ANNOTATION, collect};
pub use shape::parameters as class_parameters;

/// What the reconciler does next, read off the status alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing started: check the spec, the pair, the namespaces; list the volumes.
    Validate,
    /// Work on the volumes not yet final.
    Volumes,
    /// Copy the resources.
    Application,
    /// Delete the snapshots made, set the outcome.
    Finish,
    /// Ended; nothing to do.
    Done,
}

/// The next step for a status (the resume point after a restart).
pub fn next_step(status: Option<&MigrationStatus>) -> Step {
    let Some(st) = status else {
        return Step::Validate;
    };
    match st.stage {
        None => Step::Validate,
        Some(Stage::Volumes) => Step::Volumes,
        Some(Stage::Application) => Step::Application,
        Some(Stage::Final) if st.finish_timestamp.is_some() => Step::Done,
        Some(Stage::Final) => Step::Finish,
    }
}

/// Runs steps until the migration waits or ends; returns when to look again (`None`: ended).
///
/// # Errors
/// API errors that a retry may cure.
pub async fn reconcile(ctx: &Ctx, mig: &Migration) -> Result<Option<Duration>> {
    // A watch cache may hand over an older copy; the status must not go back in time.
    let api: kube::Api<Migration> =
        kube::Api::namespaced(ctx.client.clone(), &mig.namespace().unwrap_or_default());
    let Some(fresh) = api.get_opt(&mig.name_any()).await? else {
        return Ok(None);
    };
    if finalizer::deleting(&fresh) {
        if finalizer::has(&fresh, finalizer::MIGRATION) {
            cleanup::run(ctx, &fresh).await?;
            finalizer::remove(&ctx.client, &fresh, finalizer::MIGRATION).await?;
        }
        return Ok(None);
    }
    // A dry run makes nothing, so it needs no finalizer (and writes none).
    let fresh = if finalizer::has(&fresh, finalizer::MIGRATION)
        || fresh.spec.dry_run
        || next_step(fresh.status.as_ref()) == Step::Done
    {
        fresh
    } else {
        // Before anything is made, so that a deletion always finds what to clean up.
        finalizer::add(&ctx.client, &fresh, finalizer::MIGRATION).await?
    };
    let mig = &fresh;
    let mut w = StatusWriter::new(&ctx.client, mig)?;
    let mut status = mig.status.clone().unwrap_or_default();
    if let Some(reason) = spec_changed(mig, &status) {
        // Checked before every step: what was validated is what runs, or nothing does.
        tracing::warn!(migration = %mig.name_any(), "{reason}");
        fail(&mut status, reason);
    }
    loop {
        let step = next_step(Some(&status));
        // A step that still fails sets the reason again.
        if status
            .reason
            .as_deref()
            .is_some_and(|r| r.starts_with(RETRYING))
        {
            status.reason = None;
        }
        let started = std::time::Instant::now();
        let outcome = match step {
            Step::Validate => validate::run(ctx, mig, &mut status).await,
            Step::Volumes => volumes::run(ctx, mig, &mut status, &mut w).await,
            Step::Application => application::run(ctx, mig, &mut status).await,
            Step::Finish => finish::run(ctx, mig, &mut status).await,
            Step::Done => return Ok(None),
        };
        let name = format!("migration_{step:?}").to_lowercase();
        ferry_csi::metrics::operation(
            &name,
            outcome.as_ref().err().map(Error::kind),
            started.elapsed(),
        );
        let wait = match outcome {
            Ok(w) => w,
            Err(e) => {
                e.count();
                // Shown on the Migration while the step is retried.
                status.reason = Some(format!("{RETRYING}{e}"));
                if let Err(save) = w.save(&status).await {
                    tracing::warn!(error = %save, "retry reason not saved");
                }
                return Err(e);
            }
        };
        w.save(&status).await?;
        if let Some(wait) = wait {
            return Ok(Some(wait));
        }
    }
}

/// How a Migration's `reason` starts while a step is being retried.
pub const RETRYING: &str = "retrying: ";

/// The hash of a spec, as `status.validatedSpec` records it.
///
/// # Errors
/// None in practice: a spec always serialises.
pub fn spec_hash(mig: &Migration) -> Result<String> {
    let bytes = serde_json::to_vec(&mig.spec).map_err(|e| Error::Unexpected(e.to_string()))?;
    Ok(hex::encode(sha2::Sha256::digest(&bytes)))
}

/// Why a migration whose spec differs from the validated one must stop, if it does.
fn spec_changed(mig: &Migration, st: &MigrationStatus) -> Option<String> {
    let validated = st.validated_spec.as_deref()?;
    if st.finish_timestamp.is_some() || st.status == ItemStatus::Failed {
        return None;
    }
    let now = spec_hash(mig).unwrap_or_default();
    (now != validated).then(|| {
        "spec changed after validation: a Migration's spec is immutable, so this one stops \
         here and moves nothing more; create a new Migration for the new spec"
            .to_string()
    })
}

/// Ends a migration as Failed with `reason`: the Final stage then removes what it made.
fn fail(status: &mut MigrationStatus, reason: String) {
    status.status = ItemStatus::Failed;
    status.reason = Some(reason);
    status.stage = Some(Stage::Final);
}
