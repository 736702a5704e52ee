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
pub mod landing;
mod retention;
mod shape;
mod validate;
mod volumes;

use crate::Ctx;
use crate::crd::{ItemStatus, Migration, MigrationStatus, RetryStatus, Stage};
use crate::error::{Error, Result};
use crate::runtime::{Cleanup, Next, Pass, Reconciler, finalizer, retry};
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

/// The Migration reconciler.
#[derive(Clone, Copy, Debug, Default)]
pub struct Migrations;

impl Reconciler for Migrations {
    type K = Migration;
    type S = MigrationStatus;
    const KIND: &'static str = "Migration";
    const FINALIZER: Option<&'static str> = Some(finalizer::MIGRATION);

    fn api(client: &kube::Client, ns: Option<&str>) -> kube::Api<Migration> {
        kube::Api::namespaced(client.clone(), ns.unwrap_or_default())
    }

    fn status(obj: &Migration) -> MigrationStatus {
        obj.status.clone().unwrap_or_default()
    }

    fn retry_of(s: &MigrationStatus) -> Option<&RetryStatus> {
        s.retry.as_ref()
    }

    fn set_retry(s: &mut MigrationStatus, r: Option<RetryStatus>) {
        set_retry_reason(&mut s.reason, &r, "");
        s.retry = r;
    }

    /// A dry run makes nothing, so it needs no finalizer (and writes none); neither does a
    /// migration that ended.
    fn needs_finalizer(&self, m: &Migration) -> bool {
        !m.spec.dry_run && next_step(m.status.as_ref()) != Step::Done
    }

    async fn reconcile(&self, pass: &mut Pass<'_, Self>) -> Result<Next> {
        reconcile(pass).await
    }

    async fn cleanup(&self, ctx: &Ctx, m: &Migration) -> Result<Cleanup> {
        cleanup::run(ctx, m).await
    }

    async fn give_up(&self, pass: &mut Pass<'_, Self>, reason: String) -> Next {
        fail(&mut pass.status, reason);
        // The Final stage still removes what the migration made.
        Next::After(Duration::ZERO)
    }
}

/// Sets (or clears) the "retrying" reason of a status from its retry record; `what` names
/// the item retried.
pub fn set_retry_reason(reason: &mut Option<String>, r: &Option<RetryStatus>, what: &str) {
    match r {
        Some(r) => *reason = Some(retry::reason(what, r)),
        None => {
            if reason.as_deref().is_some_and(|x| x.starts_with(RETRYING)) {
                *reason = None;
            }
        }
    }
}

/// Runs steps until the migration waits or ends; returns when to look again.
///
/// # Errors
/// Errors of a step (the runtime retries temporary ones and fails the migration on
/// permanent ones).
async fn reconcile(pass: &mut Pass<'_, Migrations>) -> Result<Next> {
    let ctx = pass.ctx;
    let mig = pass.obj.clone();
    let mig = &mig;
    if let Some(reason) = spec_changed(mig, &pass.status) {
        // Checked before every step: what was validated is what runs, or nothing does.
        tracing::warn!(migration = %mig.name_any(), "{reason}");
        fail(&mut pass.status, reason);
    }
    loop {
        let step = next_step(Some(&pass.status));
        let started = std::time::Instant::now();
        let outcome = match step {
            Step::Validate => validate::run(ctx, mig, &mut pass.status).await,
            Step::Volumes => volumes::run(pass).await,
            Step::Application => application::run(ctx, mig, &mut pass.status).await,
            Step::Finish => finish::run(ctx, mig, &mut pass.status).await,
            Step::Done => return Ok(Next::Idle),
        };
        let name = format!("migration_{step:?}").to_lowercase();
        ferry_csi::metrics::operation(
            &name,
            outcome.as_ref().err().map(Error::kind),
            started.elapsed(),
        );
        let wait = outcome?;
        pass.save().await?;
        if let Some(wait) = wait {
            return Ok(Next::After(wait));
        }
    }
}

/// How a reason starts while a step is being retried.
pub const RETRYING: &str = retry::RETRYING;

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
