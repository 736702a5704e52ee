//! Watches a kind and runs a pass over an object when one is due: when the object's
//! fingerprint changed (see [`super::Reconciler::fingerprint`]), when a related object
//! changed ([`Related`]), or when the time its last pass asked for has come. At most
//! [`WORKERS`] passes run at once per kind, never two over one object: an object due while
//! its pass runs gets one more pass after it.

use super::{Next, Reconciler, once};
use crate::Ctx;
use futures::stream::{BoxStream, FuturesUnordered};
use futures::{StreamExt, TryStreamExt};
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Resource, ResourceExt};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use tokio::time::Instant;

/// Passes run at once per kind.
pub const WORKERS: usize = 16;

/// An object of the reconciled kind: namespace (`None` for cluster-scoped) and name.
pub type ObjectKey = (Option<String>, String);

/// A stream of objects of the reconciled kind to look at because something they watch
/// changed.
pub type Related = BoxStream<'static, ObjectKey>;

/// Objects to look at when an object of another kind changes in a way that matters to them:
/// `fingerprint` says what matters (a change of anything else starts nothing), `owners`
/// which objects of the reconciled kind look at it.
pub fn related<K2, F, O>(api: Api<K2>, fingerprint: F, owners: O) -> Related
where
    K2: super::Object,
    F: Fn(&K2) -> String + Send + Sync + 'static,
    O: Fn(&K2) -> Vec<ObjectKey> + Send + Sync + 'static,
{
    let mut seen: HashMap<String, String> = HashMap::new();
    watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .filter_map(|e| async move { e.ok() })
        .flat_map(move |ev| {
            let touched: Vec<K2> = match ev {
                Event::Apply(o) | Event::InitApply(o) => {
                    let key = format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any());
                    let fp = fingerprint(&o);
                    if seen.get(&key) == Some(&fp) {
                        Vec::new()
                    } else {
                        seen.insert(key, fp);
                        vec![o]
                    }
                }
                Event::Delete(o) => {
                    seen.remove(&format!(
                        "{}/{}",
                        o.namespace().unwrap_or_default(),
                        o.name_any()
                    ));
                    vec![o]
                }
                Event::Init | Event::InitDone => Vec::new(),
            };
            let keys: Vec<ObjectKey> = touched.iter().flat_map(&owners).collect();
            futures::stream::iter(keys)
        })
        .boxed()
}

/// The owners of `obj` of kind `kind` (by owner reference), in its namespace.
pub fn owners_of_kind<K: Resource>(obj: &K, kind: &str) -> Vec<ObjectKey> {
    obj.meta()
        .owner_references
        .iter()
        .flatten()
        .filter(|o| o.kind == kind)
        .map(|o| (obj.meta().namespace.clone(), o.name.clone()))
        .collect()
}

/// Due times of objects; an earlier time always wins over a later one.
#[derive(Default)]
struct Queue {
    order: BTreeSet<(Instant, ObjectKey)>,
    at: HashMap<ObjectKey, Instant>,
}

impl Queue {
    fn schedule(&mut self, key: ObjectKey, when: Instant) {
        if let Some(&old) = self.at.get(&key) {
            if old <= when {
                return;
            }
            self.order.remove(&(old, key.clone()));
        }
        self.at.insert(key.clone(), when);
        self.order.insert((when, key));
    }

    fn remove(&mut self, key: &ObjectKey) {
        if let Some(old) = self.at.remove(key) {
            self.order.remove(&(old, key.clone()));
        }
    }

    fn next(&self) -> Option<Instant> {
        self.order.first().map(|(t, _)| *t)
    }

    fn pop_due(&mut self, now: Instant) -> Option<ObjectKey> {
        let (t, _) = self.order.first()?;
        if *t > now {
            return None;
        }
        let (_, key) = self.order.pop_first()?;
        self.at.remove(&key);
        Some(key)
    }
}

/// Runs passes of `r` over the objects `watch` lists, until the process ends.
pub async fn run<R: Reconciler>(ctx: Arc<Ctx>, r: Arc<R>, watch: Api<R::K>, related: Vec<Related>) {
    let mut primary = watcher::watcher(watch, watcher::Config::default())
        .default_backoff()
        .map_err(|e| e.to_string())
        .boxed();
    let mut related = futures::stream::select_all(related);
    let mut queue = Queue::default();
    let mut seen: HashMap<ObjectKey, String> = HashMap::new();
    let mut listing: Option<HashSet<ObjectKey>> = None;
    let mut running: FuturesUnordered<tokio::task::JoinHandle<(ObjectKey, crate::Result<Next>)>> =
        FuturesUnordered::new();
    let mut in_flight: HashSet<ObjectKey> = HashSet::new();
    let mut again: HashSet<ObjectKey> = HashSet::new();
    loop {
        let now = Instant::now();
        // Start what is due, as far as workers allow.
        while in_flight.len() < WORKERS {
            let Some(key) = queue.pop_due(now) else { break };
            if in_flight.contains(&key) {
                again.insert(key);
                continue;
            }
            in_flight.insert(key.clone());
            let (ctx, r) = (ctx.clone(), r.clone());
            running.push(tokio::spawn(async move {
                let out = once(&ctx, r.as_ref(), key.0.as_deref(), &key.1).await;
                (key, out)
            }));
        }
        let wake = queue.next();
        tokio::select! {
            ev = primary.next() => match ev {
                Some(Ok(ev)) => on_event::<R>(ev, &mut seen, &mut listing, &mut queue),
                Some(Err(e)) => tracing::debug!(kind = R::KIND, error = %e, "watch"),
                None => return,
            },
            Some(key) = related.next(), if !related.is_empty() => {
                queue.schedule(key, Instant::now());
            }
            Some(done) = running.next(), if !running.is_empty() => {
                let Ok((key, out)) = done else { continue };
                in_flight.remove(&key);
                let label = format!("{}/{}/{}", R::KIND, key.0.as_deref().unwrap_or_default(), key.1);
                match out {
                    Ok(Next::Idle) => ctx.backoff.succeeded(&label),
                    Ok(Next::After(d)) => {
                        ctx.backoff.succeeded(&label);
                        queue.schedule(key.clone(), Instant::now() + d);
                    }
                    Err(e) => {
                        let wait = ctx.backoff.failed(&label);
                        tracing::warn!(object = %label, error = %e, retry_in = ?wait,
                            "pass failed; retrying");
                        queue.schedule(key.clone(), Instant::now() + wait);
                    }
                }
                if again.remove(&key) {
                    queue.schedule(key, Instant::now());
                }
            }
            _ = async {
                match wake {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            } => {}
        }
    }
}

/// A watch event: a pass for an object that is new or whose fingerprint changed.
fn on_event<R: Reconciler>(
    ev: Event<R::K>,
    seen: &mut HashMap<ObjectKey, String>,
    listing: &mut Option<HashSet<ObjectKey>>,
    queue: &mut Queue,
) {
    let key_of = |o: &R::K| (o.namespace(), o.name_any());
    match ev {
        Event::Init => *listing = Some(HashSet::new()),
        Event::InitApply(o) | Event::Apply(o) => {
            let key = key_of(&o);
            if let Some(l) = listing.as_mut() {
                l.insert(key.clone());
            }
            let fp = R::fingerprint(&o);
            if seen.get(&key) != Some(&fp) {
                seen.insert(key.clone(), fp);
                queue.schedule(key, Instant::now());
            }
        }
        Event::InitDone => {
            // Objects gone while the watch was away.
            if let Some(l) = listing.take() {
                seen.retain(|k, _| l.contains(k));
            }
        }
        Event::Delete(o) => {
            let key = key_of(&o);
            seen.remove(&key);
            queue.remove(&key);
        }
    }
}
