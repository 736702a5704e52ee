//! The controller's transfer pool: exports (on a source) and imports (on a destination) run
//! here, each in its own task, outside the reconcile that asked for it.
//!
//! A reconcile submits a job under a key that names its work (the snapshot and where it
//! goes), comes back later to read its progress, and takes its outcome once it ended. At
//! most `limit` jobs run at once in the whole controller, whatever the number of
//! migrations; the rest wait, queued, for a slot. A job lives only in this process: after a
//! restart (or a lost leadership, which drops the pool and ends its tasks) the next
//! reconcile submits it again, and the transfer engine resumes from what is durable (packs
//! indexed before are skipped, chunks already in the destination are not fetched).

use crate::error::Result;
use ferry_transfer::{Progress, ProgressSnapshot, Report};
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Semaphore, watch};
use tokio::task::AbortHandle;

/// Transfers running at once per controller unless configured.
pub const DEFAULT_LIMIT: usize = 4;

/// Volumes of one migration in flight at once unless configured.
pub const DEFAULT_WIDTH: usize = 4;

/// Where a job is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for one of the controller's transfer slots.
    Queued,
    /// Moving data.
    Running,
    /// Ended; its outcome is waiting to be taken.
    Ended,
}

/// A job as a reconcile sees it.
#[derive(Clone, Copy, Debug)]
pub struct View {
    /// Where it is.
    pub phase: Phase,
    /// Its counters.
    pub progress: ProgressSnapshot,
}

/// What a reconcile learns when it looks for its job.
pub enum Look {
    /// No such job: submit it.
    Absent,
    /// Queued or running.
    InFlight(View),
    /// Ended with this outcome and these last counters (now taken out of the pool).
    Ended(Result<Report>, ProgressSnapshot),
}

struct Job {
    progress: Arc<Progress>,
    state: Mutex<State>,
    abort: Mutex<Option<AbortHandle>>,
}

enum State {
    Queued,
    Running,
    Ended(Option<Result<Report>>),
}

impl Job {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Counters of the pool, for metrics and for tests that assert the limit.
#[derive(Default)]
struct Counters {
    running: AtomicUsize,
    peak: AtomicUsize,
    started: AtomicUsize,
}

/// The pool. Dropping it ends every job it runs.
pub struct Transfers {
    limit: usize,
    slots: Arc<Semaphore>,
    jobs: Mutex<HashMap<String, Arc<Job>>>,
    counters: Arc<Counters>,
    ended: watch::Sender<u64>,
    /// Packs each new job may start before it waits (`None`: no brake); see
    /// [`Progress::hold_after_packs`].
    brake: Mutex<Option<u64>>,
}

impl Transfers {
    /// A pool running at most `limit` jobs at once (at least one).
    pub fn new(limit: usize) -> Transfers {
        let limit = limit.max(1);
        Transfers {
            limit,
            slots: Arc::new(Semaphore::new(limit)),
            jobs: Mutex::new(HashMap::new()),
            counters: Arc::default(),
            ended: watch::Sender::new(0),
            brake: Mutex::new(None),
        }
    }

    /// Jobs allowed to run at once.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Jobs running now (holding a slot).
    pub fn running(&self) -> usize {
        self.counters.running.load(Ordering::SeqCst)
    }

    /// The most jobs that ever ran at once.
    pub fn peak(&self) -> usize {
        self.counters.peak.load(Ordering::SeqCst)
    }

    /// Jobs that got a slot so far.
    pub fn started(&self) -> usize {
        self.counters.started.load(Ordering::SeqCst)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Job>>> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The job under `key`: in flight, or ended (its outcome is handed over once and the
    /// job forgotten), or absent.
    pub fn look(&self, key: &str) -> Look {
        let mut jobs = self.lock();
        let Some(job) = jobs.get(key).cloned() else {
            return Look::Absent;
        };
        let phase = match &mut *job.lock() {
            State::Queued => Phase::Queued,
            State::Running => Phase::Running,
            State::Ended(outcome) => {
                let outcome = outcome.take();
                jobs.remove(key);
                return match outcome {
                    Some(o) => Look::Ended(o, job.progress.snapshot()),
                    None => Look::Absent,
                };
            }
        };
        Look::InFlight(View {
            phase,
            progress: job.progress.snapshot(),
        })
    }

    /// Keys of jobs in flight (or ended and not yet taken) that start with `prefix`.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        self.lock()
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect()
    }

    /// Starts `work` under `key` unless a job of that key is already here. `work` gets the
    /// job's progress to update.
    pub fn submit<F, Fut>(&self, key: &str, work: F)
    where
        F: FnOnce(Arc<Progress>) -> Fut,
        Fut: Future<Output = Result<Report>> + Send + 'static,
    {
        let mut jobs = self.lock();
        if jobs.contains_key(key) {
            return;
        }
        let progress = Arc::new(Progress::default());
        if let Some(n) = *self.brake.lock().unwrap_or_else(|p| p.into_inner()) {
            progress.hold_after_packs(Some(n));
        }
        let job = Arc::new(Job {
            progress: progress.clone(),
            state: Mutex::new(State::Queued),
            abort: Mutex::new(None),
        });
        let fut = work(progress);
        let (slots, counters, ended) = (
            self.slots.clone(),
            self.counters.clone(),
            self.ended.clone(),
        );
        let j = job.clone();
        let name = key.to_string();
        let task = tokio::spawn(async move {
            let Ok(_slot) = slots.acquire_owned().await else {
                return;
            };
            *j.lock() = State::Running;
            let now = counters.running.fetch_add(1, Ordering::SeqCst) + 1;
            counters.peak.fetch_max(now, Ordering::SeqCst);
            counters.started.fetch_add(1, Ordering::SeqCst);
            tracing::debug!(job = %name, running = now, "transfer started");
            let running = Running(&counters);
            let outcome = fut.await;
            drop(running);
            if let Err(e) = &outcome {
                tracing::info!(job = %name, error = %e, "transfer ended with an error");
            }
            *j.lock() = State::Ended(Some(outcome));
            ended.send_modify(|n| *n += 1);
        });
        *job.abort.lock().unwrap_or_else(|p| p.into_inner()) = Some(task.abort_handle());
        jobs.insert(key.to_string(), job);
    }

    /// Ends (aborts) every job whose key starts with `prefix`, as a dead process would.
    pub fn cancel(&self, prefix: &str) {
        let mut jobs = self.lock();
        jobs.retain(|k, job| {
            if !k.starts_with(prefix) {
                return true;
            }
            if let Some(a) = job.abort.lock().unwrap_or_else(|p| p.into_inner()).take() {
                a.abort();
            }
            false
        });
    }

    /// Waits until a job whose key starts with `prefix` has ended (at once when one has
    /// and its outcome was not taken yet), or `at_most` passed; true when one has ended.
    pub async fn wait_for_an_end(&self, prefix: &str, at_most: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + at_most;
        let mut rx = self.ended.subscribe();
        loop {
            rx.mark_unchanged();
            let ended = self
                .lock()
                .iter()
                .any(|(k, j)| k.starts_with(prefix) && matches!(*j.lock(), State::Ended(_)));
            if ended {
                return true;
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                return false;
            }
        }
    }

    /// Makes every job submitted from now on start at most `packs` packs and then wait
    /// (`None`: no brake). Jobs already here are held or let go too.
    pub fn hold_after_packs(&self, packs: Option<u64>) {
        *self.brake.lock().unwrap_or_else(|p| p.into_inner()) = packs;
        for job in self.lock().values() {
            job.progress.hold_after_packs(packs);
        }
    }

    /// The progress of the job under `key`, when it is here.
    pub fn progress(&self, key: &str) -> Option<Arc<Progress>> {
        self.lock().get(key).map(|j| j.progress.clone())
    }
}

impl Drop for Transfers {
    fn drop(&mut self) {
        self.cancel("");
    }
}

/// Counts a job as running while alive (also when its task is aborted mid-way).
struct Running<'a>(&'a Counters);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(n: u64) -> Result<Report> {
        Ok(Report {
            chunks_copied: n,
            ..Report::default()
        })
    }

    #[tokio::test]
    async fn no_more_jobs_run_than_the_limit_and_each_outcome_is_handed_over_once() {
        let pool = Transfers::new(2);
        let (tx, rx) = watch::channel(false);
        for i in 0..5u64 {
            let mut rx = rx.clone();
            pool.submit(&format!("job/{i}"), move |_| async move {
                let _ = rx.wait_for(|go| *go).await;
                report(i)
            });
        }
        // A second submit of a key in flight starts nothing.
        pool.submit("job/0", |_| async { report(99) });
        while pool.running() < 2 {
            tokio::task::yield_now().await;
        }
        let queued = (0..5)
            .filter(|i| {
                matches!(pool.look(&format!("job/{i}")),
                    Look::InFlight(v) if v.phase == Phase::Queued)
            })
            .count();
        assert_eq!(queued, 3, "three wait for a slot");
        tx.send_replace(true);
        let mut got = Vec::new();
        while got.len() < 5 {
            for i in 0..5u64 {
                if let Look::Ended(r, _) = pool.look(&format!("job/{i}")) {
                    got.push(r.expect("ok").chunks_copied);
                }
            }
            pool.wait_for_an_end("", Duration::from_millis(50)).await;
        }
        got.sort();
        assert_eq!(got, vec![0, 1, 2, 3, 4]);
        assert_eq!(pool.peak(), 2);
        assert_eq!(pool.started(), 5);
        assert!(matches!(pool.look("job/0"), Look::Absent), "taken once");
    }

    #[tokio::test]
    async fn a_cancelled_job_gives_its_slot_back() {
        let pool = Transfers::new(1);
        pool.submit("a/1", |_| std::future::pending());
        pool.submit("b/1", |_| async { report(1) });
        while pool.running() < 1 {
            tokio::task::yield_now().await;
        }
        pool.cancel("a/");
        assert!(matches!(pool.look("a/1"), Look::Absent));
        loop {
            if let Look::Ended(r, _) = pool.look("b/1") {
                assert_eq!(r.expect("ok").chunks_copied, 1);
                break;
            }
            pool.wait_for_an_end("", Duration::from_millis(50)).await;
        }
        assert_eq!(pool.running(), 0);
    }
}
