//! What every reconciler needs: this cluster's client and chunk store, how to reach a
//! destination, where to publish events.

use crate::error::Result;
use crate::pair::PairSettings;
use crate::runtime::retry::Backoff;
use crate::trust::{Policy, Trust};
use ferry_store::Store;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Resource;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use std::sync::Arc;
use std::time::Duration;

/// Opens a client for a pair's destination (a kubeconfig in production; tests pass their
/// own).
pub type Connector =
    Arc<dyn Fn(PairSettings) -> BoxFuture<'static, Result<kube::Client>> + Send + Sync>;

/// Shared state of the reconcilers.
#[derive(Clone)]
pub struct Ctx {
    /// This cluster's API.
    pub client: kube::Client,
    /// This cluster's chunk store (the CSI driver's).
    pub store: Store,
    /// The namespace the sidecar runs in: VolumeImports and their Secrets live here, and
    /// Migrations created here may move any namespace.
    pub namespace: String,
    /// How to reach a destination.
    pub connect: Connector,
    /// Where events go; `None` leaves them out (tests that check requests one by one).
    pub recorder: Option<Recorder>,
    /// Transfer tuning.
    pub tuning: ferry_transfer::Tuning,
    /// The exports and imports running in this controller, and its limit on them.
    pub transfers: Arc<crate::transfers::Transfers>,
    /// Volumes of one migration exported at once.
    pub volume_width: usize,
    /// How long to wait before looking again at something in progress.
    pub poll: Duration,
    /// What tenants' objects may ask for.
    pub policy: Policy,
    /// Failed passes in a row, per object, whose status could not record them.
    pub backoff: Arc<Backoff>,
    /// Passes run per object.
    pub reconciles: Arc<crate::runtime::Reconciles>,
    /// When failing cleanups started failing, per object.
    pub cleanup_tries: Arc<crate::runtime::CleanupTries>,
    /// Now, for schedules (tests move it by hand).
    pub clock: Clock,
    /// The zone schedule policies' times of day are read in: the controller's.
    pub zone: jiff::tz::TimeZone,
}

/// The controller's time source.
pub type Clock = Arc<dyn Fn() -> jiff::Timestamp + Send + Sync>;

/// A clock moved by hand (tests, and the demo, which shows days of schedules in seconds).
#[derive(Clone, Debug)]
pub struct ManualClock(Arc<std::sync::Mutex<jiff::Timestamp>>);

impl ManualClock {
    /// A clock that stands at `start` until moved.
    pub fn new(start: jiff::Timestamp) -> ManualClock {
        ManualClock(Arc::new(std::sync::Mutex::new(start)))
    }

    /// Now, on this clock.
    pub fn now(&self) -> jiff::Timestamp {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Moves the clock on by `d`.
    pub fn advance(&self, d: Duration) {
        let mut t = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *t = t.checked_add(d).unwrap_or(*t);
    }

    /// Sets the clock to `t`.
    pub fn set(&self, t: jiff::Timestamp) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = t;
    }

    /// This clock as a controller's [`Clock`].
    pub fn clock(&self) -> Clock {
        let me = self.clone();
        Arc::new(move || me.now())
    }
}

impl Ctx {
    /// A context over `client` and `store`, reaching destinations through their kubeconfig.
    pub fn new(client: kube::Client, store: Store, namespace: String, events: bool) -> Ctx {
        let recorder = events.then(|| {
            Recorder::new(
                client.clone(),
                Reporter {
                    controller: "ferry-migration".into(),
                    instance: std::env::var("POD_NAME").ok(),
                },
            )
        });
        Ctx {
            client,
            store,
            connect: Arc::new(|s: PairSettings| {
                Box::pin(async move { s.destination_client().await })
            }),
            recorder,
            tuning: ferry_transfer::Tuning::default(),
            transfers: Arc::new(crate::transfers::Transfers::new(
                crate::transfers::DEFAULT_LIMIT,
            )),
            volume_width: crate::transfers::DEFAULT_WIDTH,
            poll: Duration::from_secs(5),
            policy: Policy::default(),
            backoff: Arc::default(),
            reconciles: Arc::default(),
            cleanup_tries: Arc::default(),
            clock: Arc::new(jiff::Timestamp::now),
            zone: jiff::tz::TimeZone::system(),
            namespace,
        }
    }

    /// Now, on the controller's clock.
    pub fn now(&self) -> jiff::Timestamp {
        (self.clock)()
    }

    /// Now, RFC 3339 in UTC with seconds, for status fields.
    pub fn stamp(&self) -> String {
        crate::runtime::retry::stamp(self.now())
    }

    /// A clock that runs with tokio's time from `start`: tests that pause tokio's time and
    /// move it (or let it jump to the next timer) move this clock with it, so waits,
    /// retries and schedules all see one time.
    pub fn tokio_clock(start: jiff::Timestamp) -> Clock {
        let origin = tokio::time::Instant::now();
        Arc::new(move || {
            start
                .checked_add(tokio::time::Instant::now() - origin)
                .unwrap_or(start)
        })
    }

    /// The trust an object in namespace `ns` gets: the sidecar's own namespace is the
    /// admin's.
    pub fn trust(&self, ns: &str) -> Trust {
        if ns == self.namespace {
            Trust::Admin
        } else {
            Trust::Tenant
        }
    }

    /// Publishes an event on `obj`; failures are logged, never fatal.
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        warning: bool,
        reason: &str,
        note: String,
    ) {
        self.publish(&obj.object_ref(&()), None, warning, reason, note)
            .await;
    }

    /// Publishes an event on the object `at` refers to; failures are logged, never fatal.
    pub async fn event_on(&self, at: &ObjectReference, warning: bool, reason: &str, note: String) {
        self.publish(at, None, warning, reason, note).await;
    }

    /// Publishes an event on `obj` about one of its claims (namespace and name): each claim
    /// gets its own event series, so one volume's note never hides another's.
    pub async fn volume_event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        claim: (&str, &str),
        reason: &str,
        note: String,
    ) {
        let related = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("PersistentVolumeClaim".into()),
            namespace: Some(claim.0.to_string()),
            name: Some(claim.1.to_string()),
            ..Default::default()
        };
        self.publish(&obj.object_ref(&()), Some(related), false, reason, note)
            .await;
    }

    async fn publish(
        &self,
        at: &ObjectReference,
        related: Option<ObjectReference>,
        warning: bool,
        reason: &str,
        note: String,
    ) {
        tracing::info!(reason, note = %note, "event");
        let Some(r) = &self.recorder else { return };
        let ev = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.into(),
            note: Some(note),
            action: reason.into(),
            secondary: related,
        };
        if let Err(e) = r.publish(&ev, at).await {
            tracing::warn!(error = %e, "event not published");
        }
    }
}
