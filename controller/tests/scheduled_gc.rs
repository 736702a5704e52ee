//! The controller's scheduled collection: passes run by themselves on the interval, delete
//! what no root reaches, and show in the metrics.

use ferry_store::{Store, StoreConfig, StoreOptions, VolumeOptions, VolumeSpec};
use std::time::Duration;

fn count_files(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() { count_files(&p) } else { 1 }
        })
        .sum()
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_run_on_the_interval_and_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        gc_grace: Duration::ZERO,
        ..Default::default()
    };
    let store = Store::open(&StoreConfig::fs(dir.path().to_string_lossy()), options)
        .await
        .unwrap();
    let v = store
        .create_volume(VolumeSpec {
            name: "scratch".into(),
            capacity_bytes: 1 << 20,
            options: VolumeOptions::default(),
            parameters: Default::default(),
            source: None,
        })
        .await
        .unwrap();
    let h = store.open_volume(v.id()).await.unwrap();
    h.write_at(0, &vec![9u8; 1 << 20]).await.unwrap();
    h.flush().await.unwrap();
    drop(h);
    store.delete_volume(v.id()).await.unwrap();
    // The deleted volume's chunks, in the pack its flush wrote.
    let chunks = dir.path().join("packs");
    assert!(count_files(&chunks) > 0);

    let task = tokio::spawn(ferry_controller::scheduled_gc::run(
        store.clone(),
        Duration::from_millis(100),
    ));
    // Two passes (condemn, then delete) happen without anyone calling GC.
    let mut waited = 0;
    while count_files(&chunks) > 0 {
        assert!(
            waited < 600,
            "scheduled passes did not collect the deleted volume"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += 1;
    }
    // The pass that deleted them is counted once it returns.
    while metric(
        &ferry_csi::metrics::render(),
        "ferry_gc_runs_total{outcome=\"ok\"}",
    ) < 2.0
    {
        assert!(waited < 1200, "the passes were not counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += 1;
    }
    task.abort();
    let text = ferry_csi::metrics::render();
    assert!(
        metric(&text, "ferry_gc_runs_total{outcome=\"ok\"}") >= 2.0,
        "{text}"
    );
    assert!(
        metric(&text, "ferry_gc_deleted_objects_total") >= 1.0,
        "{text}"
    );
    assert!(
        metric(&text, "ferry_gc_deleted_bytes_total") > 0.0,
        "{text}"
    );
    assert!(text.contains("ferry_gc_duration_seconds_count"), "{text}");
}
