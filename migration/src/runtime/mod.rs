//! The one reconcile runtime every ferry resource goes through.
//!
//! A reconciler ([`Reconciler`]) says what one pass over one object does; the runtime owns
//! everything around it, so no reconciler keeps its own copy:
//!
//! - **What starts a pass** ([`Reconciler::fingerprint`]): a change of the object's
//!   generation (its spec) or its deletion, a related object's change that its reconciler
//!   names ([`driver::Related`]), or a time the last pass asked for. A write of the object's
//!   own status never does, although the API sends it back as a watch event: a status write
//!   cannot start a loop.
//! - **One pass at a time per object**, reading it fresh from the API (a watch cache may be
//!   older).
//! - **Finalizers that always finish** ([`finalizer`]): the reconciler's cleanup runs before
//!   the finalizer is removed; what it cannot clean up (or cannot clean up within
//!   [`CLEANUP_LIMIT`] of temporary failures) is reported in a Warning Event and a metric,
//!   and the object goes.
//! - **Errors, classified once** ([`retry`]): a temporary error records a retry (attempt,
//!   since, cause, next try) in the object's status and brings the object back at that
//!   time, whatever events arrive meanwhile; a permanent one ends the object with the
//!   reason ([`Reconciler::give_up`]).
//! - **The one status writer** ([`status`]): a pass works on a copy of the status and the
//!   runtime writes what changed once at its end (a JSON merge patch with the resourceVersion
//!   read as a precondition), so a failed pass writes at most one status.
//! - **Time** from [`crate::Ctx::now`], the controller's clock, which tests drive.
//!
//! [`once`] runs one pass (tests and the demo call it); [`driver::run`] watches a kind and
//! runs passes when they are due.

pub mod driver;
pub mod finalizer;
pub mod retry;
pub mod status;

use crate::Ctx;
use crate::crd::RetryStatus;
use crate::error::{Error, Result};
use kube::api::Api;
use kube::{Resource, ResourceExt};
use retry::Class;
use serde::Serialize;
use serde::de::DeserializeOwned;
use status::StatusWriter;
use std::future::Future;
use std::time::Duration;

/// How long a finalizer's cleanup may keep failing with temporary errors before the
/// runtime reports what is left and lets the object go.
pub const CLEANUP_LIMIT: Duration = Duration::from_secs(600);

/// What a pass asks for next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Nothing until the object (or something it watches) changes.
    Idle,
    /// Look again after this long.
    After(Duration),
}

impl Next {
    /// The sooner of two.
    pub fn min(self, other: Next) -> Next {
        match (self, other) {
            (Next::Idle, x) | (x, Next::Idle) => x,
            (Next::After(a), Next::After(b)) => Next::After(a.min(b)),
        }
    }
}

/// What a finalizer's cleanup got to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cleanup {
    /// Everything is cleaned up.
    Done,
    /// These things could not be cleaned up (said in an Event); the object goes anyway.
    Left(String),
    /// Not yet: something still uses the object (said in an Event); look again after this
    /// long. Only for a wait that ends by itself (a running Migration ends).
    Wait(Duration, String),
}

/// The object types the runtime handles.
pub trait Object:
    Resource<DynamicType = ()>
    + Clone
    + DeserializeOwned
    + Serialize
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
}

impl<K> Object for K where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug
        + Send
        + Sync
        + 'static
{
}

/// One kind's reconciler: what a pass over one object does.
pub trait Reconciler: Send + Sync + Sized + 'static {
    /// The kind.
    type K: Object;
    /// Its status, as the pass works on it (`()` for a kind whose status is not ferry's).
    type S: Clone + Default + Serialize + PartialEq + Send + Sync + 'static;
    /// The kind's name, for logs, metrics and the reconcile counts.
    const KIND: &'static str;

    /// The API of the kind in `ns` (cluster-scoped kinds ignore it).
    fn api(client: &kube::Client, ns: Option<&str>) -> Api<Self::K>;

    /// The object's status (the default one when it has none yet).
    fn status(obj: &Self::K) -> Self::S;

    /// Whether the status is ferry's to write (false for the trigger's Namespaces and PVCs).
    fn writes_status() -> bool {
        true
    }

    /// The run of failed tries the status records, if any.
    fn retry_of(_s: &Self::S) -> Option<&RetryStatus> {
        None
    }

    /// Records (or, with `None`, clears) a run of failed tries in the status, with a reason
    /// that says so.
    fn set_retry(_s: &mut Self::S, _r: Option<RetryStatus>) {}

    /// What of the object starts a pass when it changes: by default its generation (the
    /// spec: the API moves it on no other write) and whether it is being deleted.
    fn fingerprint(obj: &Self::K) -> String {
        let m = obj.meta();
        format!(
            "{}/{}/{}",
            m.uid.as_deref().unwrap_or_default(),
            m.generation.unwrap_or_default(),
            m.deletion_timestamp.is_some()
        )
    }

    /// The finalizer of the kind, if it has one: added before a pass does anything (see
    /// [`Reconciler::needs_finalizer`]), removed once [`Reconciler::cleanup`] ran.
    const FINALIZER: Option<&'static str> = None;

    /// Whether `obj` needs the finalizer (an object that will make nothing may go without).
    fn needs_finalizer(&self, _obj: &Self::K) -> bool {
        true
    }

    /// One pass: moves the object on as far as it can go now.
    fn reconcile(&self, pass: &mut Pass<'_, Self>) -> impl Future<Output = Result<Next>> + Send;

    /// Cleans up before the finalizer goes (the object is being deleted).
    fn cleanup(&self, _ctx: &Ctx, _obj: &Self::K) -> impl Future<Output = Result<Cleanup>> + Send {
        async { Ok(Cleanup::Done) }
    }

    /// A permanent error reached the runtime: record the object as failed with `reason`
    /// (and say what happens next).
    fn give_up(
        &self,
        _pass: &mut Pass<'_, Self>,
        _reason: String,
    ) -> impl Future<Output = Next> + Send {
        async { Next::Idle }
    }
}

/// One pass over one object: the object as read at its start, the status it works on, and
/// what the runtime knows about it.
pub struct Pass<'a, R: Reconciler> {
    /// The controller's context.
    pub ctx: &'a Ctx,
    /// The object, read fresh at the start of the pass.
    pub obj: R::K,
    /// The status the pass works on; the runtime writes it at the end of the pass.
    pub status: R::S,
    writer: Option<StatusWriter<R::K>>,
}

impl<R: Reconciler> Pass<'_, R> {
    /// Writes the status now if it changed (progress in a long pass); the runtime writes it
    /// at the end of every pass anyway.
    ///
    /// # Errors
    /// API errors; 409 when the object changed since it was read.
    pub async fn save(&mut self) -> Result<bool> {
        match &mut self.writer {
            Some(w) => w.save(&self.status).await,
            None => Ok(false),
        }
    }

    /// The object was written during the pass (its spec or metadata): the status is
    /// written on top of `written`.
    pub fn rebase(&mut self, written: &R::K) {
        if let Some(w) = &mut self.writer {
            w.rebase(written);
        }
    }

    /// How `e` is to be handled, given the object's run of failed tries.
    pub fn classify(&self, e: &Error) -> Class {
        retry::classify(e, R::retry_of(&self.status), self.ctx.now())
    }

    /// The object's namespace (empty when cluster-scoped).
    pub fn namespace(&self) -> String {
        self.obj.namespace().unwrap_or_default()
    }

    /// The object's name.
    pub fn name(&self) -> String {
        self.obj.name_any()
    }
}

/// The key the runtime knows an object by: `Kind/namespace/name`.
pub fn key_of<K: Resource<DynamicType = ()>>(kind: &str, obj: &K) -> String {
    format!(
        "{kind}/{}/{}",
        obj.meta().namespace.as_deref().unwrap_or_default(),
        obj.meta().name.as_deref().unwrap_or_default()
    )
}

/// Runs one pass over the object `ns/name` of `r`'s kind: reads it fresh, handles its
/// finalizer, runs the reconciler, records a retry or a final failure, writes the status.
/// Returns when to look again.
///
/// # Errors
/// API errors reading the object or writing its status (the caller waits and tries again).
pub async fn once<R: Reconciler>(ctx: &Ctx, r: &R, ns: Option<&str>, name: &str) -> Result<Next> {
    let api = R::api(&ctx.client, ns);
    let key = format!("{}/{}/{name}", R::KIND, ns.unwrap_or_default());
    ctx.reconciles.count(&key);
    let Some(obj) = api.get_opt(name).await? else {
        return Ok(Next::Idle);
    };
    if finalizer::deleting(&obj) {
        return finish_deletion(ctx, r, &api, &key, obj).await;
    }
    let status = R::status(&obj);
    if let Some(wait) = R::retry_of(&status)
        .map(|r| retry::wait(r, ctx.now()))
        .filter(|w| !w.is_zero())
    {
        // A failed step is tried again when its time comes, not when an event arrives.
        return Ok(Next::After(wait));
    }
    let obj = match R::FINALIZER {
        Some(f) if !finalizer::has(&obj, f) && r.needs_finalizer(&obj) => {
            finalizer::add_with(&api, &obj, f).await?
        }
        _ => obj,
    };
    let writer = if R::writes_status() {
        Some(StatusWriter::for_api(api.clone(), &obj)?)
    } else {
        None
    };
    let mut pass = Pass {
        ctx,
        obj,
        status,
        writer,
    };
    let outcome = r.reconcile(&mut pass).await;
    let next = match outcome {
        Ok(next) => {
            if R::retry_of(&pass.status).is_some() {
                R::set_retry(&mut pass.status, None);
            }
            next
        }
        Err(e) => {
            e.count();
            match pass.classify(&e) {
                Class::Temporary => {
                    let rec = retry::record(R::retry_of(&pass.status), &e, ctx.now());
                    let wait = retry::delay(rec.attempt);
                    tracing::warn!(object = %key, error = %e, attempt = rec.attempt,
                        retry_in = ?wait, "reconcile failed; retrying");
                    if R::writes_status() {
                        R::set_retry(&mut pass.status, Some(rec));
                    }
                    Next::After(wait)
                }
                Class::Permanent => {
                    tracing::warn!(object = %key, error = %e, "reconcile failed for good");
                    R::set_retry(&mut pass.status, None);
                    r.give_up(&mut pass, e.to_string()).await
                }
            }
        }
    };
    pass.save().await?;
    Ok(next)
}

/// One pass over `obj` (read fresh by its namespace and name) with reconciler `R`: for
/// tests, the demo and tools that drive reconcilers by hand. `Ok(None)`: nothing to do until
/// something changes; `Ok(Some(wait))`: look again after `wait`.
///
/// # Errors
/// As [`once`].
pub async fn pass<R: Reconciler + Default>(ctx: &Ctx, obj: &R::K) -> Result<Option<Duration>> {
    let ns = obj.meta().namespace.clone();
    let name = obj.meta().name.clone().unwrap_or_default();
    Ok(
        match once(ctx, &R::default(), ns.as_deref(), &name).await? {
            Next::Idle => None,
            Next::After(d) => Some(d),
        },
    )
}

/// The object is being deleted: its cleanup, then its finalizer goes, whatever the cleanup
/// could not do (reported).
async fn finish_deletion<R: Reconciler>(
    ctx: &Ctx,
    r: &R,
    api: &Api<R::K>,
    key: &str,
    obj: R::K,
) -> Result<Next> {
    let Some(f) = R::FINALIZER.filter(|f| finalizer::has(&obj, f)) else {
        return Ok(Next::Idle);
    };
    let left = match r.cleanup(ctx, &obj).await {
        Ok(Cleanup::Done) => None,
        Ok(Cleanup::Left(what)) => Some(what),
        Ok(Cleanup::Wait(wait, why)) => {
            ctx.event(&obj, false, "DeletionWaits", why).await;
            return Ok(Next::After(wait));
        }
        Err(e) if !e.is_permanent() && ctx.cleanup_tries.within(key, ctx.now()) => {
            e.count();
            let wait = ctx.backoff.failed(key);
            tracing::warn!(object = %key, error = %e, retry_in = ?wait, "cleanup failed; retrying");
            return Ok(Next::After(wait));
        }
        Err(e) => {
            e.count();
            Some(e.to_string())
        }
    };
    if let Some(what) = left {
        ferry_csi::metrics::add(
            "ferry_cleanup_incomplete_total",
            "Objects deleted whose cleanup could not remove everything (an Event names it).",
            &[("kind", R::KIND)],
            1.0,
        );
        ctx.event(
            &obj,
            true,
            "CleanupIncomplete",
            format!("deleted without cleaning up everything: {what}"),
        )
        .await;
    }
    finalizer::remove_with(api, &obj, f).await?;
    ctx.cleanup_tries.forget(key);
    ctx.backoff.succeeded(key);
    Ok(Next::Idle)
}

/// When each object's cleanup first failed, so that a cleanup that keeps failing gives up
/// after [`CLEANUP_LIMIT`].
#[derive(Debug, Default)]
pub struct CleanupTries {
    first: std::sync::Mutex<std::collections::HashMap<String, jiff::Timestamp>>,
}

impl CleanupTries {
    /// True while `key`'s cleanup has been failing for less than [`CLEANUP_LIMIT`] (a first
    /// failure starts the count).
    pub fn within(&self, key: &str, now: jiff::Timestamp) -> bool {
        let mut m = self.first.lock().unwrap_or_else(|p| p.into_inner());
        let first = *m.entry(key.to_string()).or_insert(now);
        now.duration_since(first).unsigned_abs() < CLEANUP_LIMIT
    }

    /// Forgets `key`.
    pub fn forget(&self, key: &str) {
        self.first
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
}

/// Passes run per object, for tests and the `ferry_reconciles_total` metric.
#[derive(Debug, Default)]
pub struct Reconciles {
    counts: std::sync::Mutex<std::collections::HashMap<String, u64>>,
}

impl Reconciles {
    /// Counts a pass over `key` (`Kind/namespace/name`).
    pub fn count(&self, key: &str) {
        let kind = key.split('/').next().unwrap_or_default();
        ferry_csi::metrics::add(
            "ferry_reconciles_total",
            "Reconcile passes run, by kind.",
            &[("kind", kind)],
            1.0,
        );
        let mut m = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry(key.to_string()).or_default() += 1;
    }

    /// Passes run over `key` so far.
    pub fn of(&self, key: &str) -> u64 {
        self.counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .copied()
            .unwrap_or_default()
    }

    /// Passes run so far, per object.
    pub fn all(&self) -> std::collections::BTreeMap<String, u64> {
        self.counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }
}
