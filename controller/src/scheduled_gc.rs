//! Garbage collection of the chunk store on a schedule, run by the controller: one pass every
//! interval, its outcome in the process's metrics (`ferry_gc_*`).

use ferry_csi::metrics;
use ferry_store::{GcReport, Store};
use std::time::Duration;

/// Runs one pass and records it in the metrics.
///
/// # Errors
/// The store's error; it is counted as a failed run.
pub async fn run_once(store: &Store) -> ferry_store::Result<GcReport> {
    let started = std::time::Instant::now();
    let outcome = store.gc().await;
    let took = started.elapsed();
    metrics::observe(
        "ferry_gc_duration_seconds",
        "How long chunk-store GC passes took.",
        &[],
        took,
    );
    match &outcome {
        Ok(r) => {
            metrics::add(
                "ferry_gc_runs_total",
                "Chunk-store GC passes, by outcome.",
                &[("outcome", "ok")],
                1.0,
            );
            metrics::add(
                "ferry_gc_deleted_objects_total",
                "Chunks and pages deleted by GC.",
                &[],
                r.deleted as f64,
            );
            metrics::add(
                "ferry_gc_deleted_bytes_total",
                "Stored bytes of the chunks and pages GC deleted.",
                &[],
                r.deleted_bytes as f64,
            );
            metrics::add(
                "ferry_gc_condemned_objects_total",
                "Objects GC found unreachable and condemned for its next pass.",
                &[],
                r.condemned as f64,
            );
            tracing::info!(
                deleted = r.deleted,
                deleted_bytes = r.deleted_bytes,
                condemned = r.condemned,
                holds = r.holds,
                ?took,
                "garbage collection pass"
            );
        }
        Err(e) => {
            metrics::add(
                "ferry_gc_runs_total",
                "Chunk-store GC passes, by outcome.",
                &[("outcome", "failed")],
                1.0,
            );
            tracing::warn!(error = %e, "garbage collection pass failed; it runs again next interval");
        }
    }
    outcome
}

/// Runs a pass every `interval` until the task is dropped. The first pass waits one
/// interval, so a restarting controller does not collect at once.
pub async fn run(store: Store, interval: Duration) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let _ = run_once(&store).await;
    }
}
