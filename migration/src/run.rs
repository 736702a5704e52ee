//! The sidecar's main loop: one kube-runtime controller per resource it reconciles.
//!
//! - Migration (on a source): the flow of `crate::migrate`.
//! - ClusterPair: readiness checks, again every few minutes.
//! - SchedulePolicy: a verdict on each policy in its status.
//! - MigrationSchedule: a Migration whenever its policy is due.
//! - Action (on a destination): failover and failback.
//! - ResourceTransformation: a verdict on its rules in its status.
//! - ApplicationClone: a namespace copied within this cluster.
//! - VolumeImport (on a destination): imports and PVs.
//! - Namespace and PersistentVolumeClaim: the `ferry.dev/migrate-to` trigger.

use crate::crd::{
    Action as DrAction, ApplicationClone, ClusterPair, Migration, MigrationSchedule,
    ResourceTransformation, SchedulePolicy, VolumeImport,
};
use crate::{Ctx, Error};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, Resource};
use std::sync::Arc;
use std::time::Duration;

fn requeue(wait: Option<Duration>) -> Action {
    match wait {
        Some(d) => Action::requeue(d),
        None => Action::await_change(),
    }
}

/// Where an object's failures are counted.
fn key<K: Resource<DynamicType = ()>>(o: &K) -> String {
    format!(
        "{}/{}/{}",
        K::kind(&()),
        o.meta().namespace.as_deref().unwrap_or_default(),
        o.meta().name.as_deref().unwrap_or_default()
    )
}

fn on_error<K: Resource<DynamicType = ()>>(o: Arc<K>, e: &Error, ctx: Arc<Ctx>) -> Action {
    let wait = ctx.backoff.failed(&key(o.as_ref()));
    tracing::warn!(object = %key(o.as_ref()), error = %e, kind = e.kind(), class = e.class(),
        retry_in = ?wait, "reconcile failed; retrying");
    Action::requeue(wait)
}

/// Runs a reconcile; a success clears the object's backoff.
async fn counted<K, F>(o: &K, ctx: &Ctx, run: F) -> Result<Action, Error>
where
    K: Resource<DynamicType = ()>,
    F: std::future::Future<Output = Result<Action, Error>>,
{
    let out = run.await;
    if out.is_ok() {
        ctx.backoff.succeeded(&key(o));
    }
    out
}

async fn migration(m: Arc<Migration>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    counted(m.as_ref(), &ctx, async {
        crate::source::migrate::reconcile(&ctx, &m)
            .await
            .map(requeue)
    })
    .await
}

async fn pair(p: Arc<ClusterPair>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    counted(p.as_ref(), &ctx, async {
        crate::source::cluster_pair::reconcile(&ctx, &p)
            .await
            .map(Action::requeue)
    })
    .await
}

async fn policy(p: Arc<SchedulePolicy>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    counted(p.as_ref(), &ctx, async {
        crate::source::schedule_policy::reconcile(&ctx, &p).await?;
        Ok(Action::await_change())
    })
    .await
}

async fn schedule(s: Arc<MigrationSchedule>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    counted(s.as_ref(), &ctx, async {
        crate::source::migration_schedule::reconcile(&ctx, &s)
            .await
            .map(requeue)
    })
    .await
}

async fn action(a: Arc<DrAction>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    counted(a.as_ref(), &ctx, async {
        crate::destination::dr::reconcile(&ctx, &a)
            .await
            .map(requeue)
    })
    .await
}

async fn transformation(t: Arc<ResourceTransformation>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    counted(t.as_ref(), &ctx, async {
        crate::source::transformation::reconcile(&ctx, &t).await?;
        Ok(Action::await_change())
    })
    .await
}

async fn app_clone(c: Arc<ApplicationClone>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    counted(c.as_ref(), &ctx, async {
        crate::source::application_clone::reconcile(&ctx, &c).await?;
        Ok(Action::await_change())
    })
    .await
}

async fn import(v: Arc<VolumeImport>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    counted(v.as_ref(), &ctx, async {
        crate::destination::volume_import::reconcile(&ctx, &v)
            .await
            .map(requeue)
    })
    .await
}

async fn annotated<K: Resource<DynamicType = ()> + serde::Serialize>(
    o: Arc<K>,
    ctx: Arc<Ctx>,
) -> Result<Action, Error> {
    counted(o.as_ref(), &ctx, async {
        let v = serde_json::to_value(o.as_ref()).map_err(|e| Error::Unexpected(e.to_string()))?;
        crate::source::trigger::handle(&ctx, &v).await?;
        Ok(Action::await_change())
    })
    .await
}

async fn drain<T, E: std::fmt::Display>(name: &str, s: impl futures::Stream<Item = Result<T, E>>) {
    s.for_each(|r| async {
        if let Err(e) = r {
            tracing::debug!(controller = name, error = %e, "reconcile");
        }
    })
    .await;
}

/// Runs every controller until the process is stopped.
pub async fn run(ctx: Ctx) {
    let ctx = Arc::new(ctx);
    let c = ctx.client.clone();
    let cfg = watcher::Config::default;
    let migrations = Controller::new(Api::<Migration>::all(c.clone()), cfg())
        .shutdown_on_signal()
        .run(migration, on_error, ctx.clone());
    let pairs = Controller::new(Api::<ClusterPair>::all(c.clone()), cfg())
        .shutdown_on_signal()
        .run(pair, on_error, ctx.clone());
    let policies = Controller::new(Api::<SchedulePolicy>::all(c.clone()), cfg())
        .shutdown_on_signal()
        .run(policy, on_error, ctx.clone());
    let schedules = Controller::new(Api::<MigrationSchedule>::all(c.clone()), cfg())
        .owns(Api::<Migration>::all(c.clone()), cfg())
        .shutdown_on_signal()
        .run(schedule, on_error, ctx.clone());
    let actions = Controller::new(Api::<DrAction>::all(c.clone()), cfg())
        .owns(Api::<Migration>::all(c.clone()), cfg())
        .shutdown_on_signal()
        .run(action, on_error, ctx.clone());
    let transformations = Controller::new(Api::<ResourceTransformation>::all(c.clone()), cfg())
        .shutdown_on_signal()
        .run(transformation, on_error, ctx.clone());
    let clones = Controller::new(
        Api::<ApplicationClone>::namespaced(c.clone(), &ctx.namespace),
        cfg(),
    )
    .shutdown_on_signal()
    .run(app_clone, on_error, ctx.clone());
    let imports = Controller::new(
        Api::<VolumeImport>::namespaced(c.clone(), &ctx.namespace),
        cfg(),
    )
    .shutdown_on_signal()
    .run(import, on_error, ctx.clone());
    let namespaces = Controller::new(Api::<Namespace>::all(c.clone()), cfg())
        .shutdown_on_signal()
        .run(annotated, on_error, ctx.clone());
    let claims = Controller::new(Api::<PersistentVolumeClaim>::all(c.clone()), cfg())
        .shutdown_on_signal()
        .run(annotated, on_error, ctx.clone());
    futures::join!(
        drain("migration", migrations),
        drain("clusterpair", pairs),
        drain("schedulepolicy", policies),
        drain("migrationschedule", schedules),
        drain("action", actions),
        drain("resourcetransformation", transformations),
        drain("applicationclone", clones),
        drain("volumeimport", imports),
        drain("namespace", namespaces),
        drain("pvc", claims),
    );
}
