//! The sidecar's main loop: every reconciler, wired to the one runtime
//! ([`crate::runtime::driver`]).
//!
//! - Migration (on a source): the flow of `source::migrate`.
//! - ClusterPair: readiness checks, again every few minutes.
//! - SchedulePolicy: a verdict on each policy in its status.
//! - MigrationSchedule: a Migration whenever its policy is due (and a look when one of its
//!   Migrations ends).
//! - Action (on a destination): failover and failback (and a look when one of its
//!   Migrations ends).
//! - ResourceTransformation: a verdict on its rules in its status.
//! - ApplicationClone: a namespace copied within this cluster.
//! - VolumeImport (on a destination): imports and PVs.
//! - Namespace and PersistentVolumeClaim: the `ferry.dev/migrate-to` trigger.

use crate::Ctx;
use crate::crd::{
    Action, ApplicationClone, ClusterPair, Migration, MigrationSchedule, ResourceTransformation,
    SchedulePolicy, VolumeImport,
};
use crate::destination::{dr::Actions, volume_import::Imports};
use crate::runtime::driver::{self, ObjectKey, Related};
use crate::source::{
    application_clone::Clones,
    cluster_pair::Pairs,
    migrate::Migrations,
    migration_schedule::Schedules,
    schedule_policy::Policies,
    transformation::Transformations,
    trigger::{ClaimTriggers, NamespaceTriggers},
};
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim};
use kube::Api;
use std::sync::Arc;

/// What of a Migration its owner (a schedule, an Action) looks at: how it stands.
pub fn migration_outcome(m: &Migration) -> String {
    match &m.status {
        Some(s) => format!(
            "{}/{:?}/{}",
            s.status,
            s.stage,
            s.finish_timestamp.as_deref().unwrap_or_default()
        ),
        None => String::new(),
    }
}

/// The Migrations of this cluster, as a reason for their owners of `kind` to look again.
fn migrations_owned_by(client: &kube::Client, kind: &'static str) -> Related {
    driver::related(
        Api::<Migration>::all(client.clone()),
        migration_outcome,
        move |m: &Migration| -> Vec<ObjectKey> { driver::owners_of_kind(m, kind) },
    )
}

/// Runs every controller until the process is stopped.
pub async fn run(ctx: Ctx) {
    let ctx = Arc::new(ctx);
    let c = ctx.client.clone();
    let own = ctx.namespace.clone();
    futures::join!(
        driver::run(
            ctx.clone(),
            Arc::new(Migrations),
            Api::<Migration>::all(c.clone()),
            vec![]
        ),
        driver::run(
            ctx.clone(),
            Arc::new(Pairs),
            Api::<ClusterPair>::all(c.clone()),
            vec![]
        ),
        driver::run(
            ctx.clone(),
            Arc::new(Policies),
            Api::<SchedulePolicy>::all(c.clone()),
            vec![]
        ),
        driver::run(
            ctx.clone(),
            Arc::new(Schedules),
            Api::<MigrationSchedule>::all(c.clone()),
            vec![migrations_owned_by(&c, "MigrationSchedule")],
        ),
        driver::run(
            ctx.clone(),
            Arc::new(Actions),
            Api::<Action>::all(c.clone()),
            vec![migrations_owned_by(&c, "Action")],
        ),
        driver::run(
            ctx.clone(),
            Arc::new(Transformations),
            Api::<ResourceTransformation>::all(c.clone()),
            vec![]
        ),
        driver::run(
            ctx.clone(),
            Arc::new(Clones),
            Api::<ApplicationClone>::namespaced(c.clone(), &own),
            vec![]
        ),
        driver::run(
            ctx.clone(),
            Arc::new(Imports),
            Api::<VolumeImport>::all(c.clone()),
            vec![]
        ),
        driver::run(
            ctx.clone(),
            Arc::new(NamespaceTriggers),
            Api::<Namespace>::all(c.clone()),
            vec![]
        ),
        driver::run(
            ctx.clone(),
            Arc::new(ClaimTriggers),
            Api::<PersistentVolumeClaim>::all(c.clone()),
            vec![]
        ),
    );
}
