//! Nodes' reports of failed volumes (`health/<id>/<node>.json`), which the controller's
//! ControllerGetVolume and ListVolumes read: one per node, replaced by a newer one, withdrawn
//! by that node, found by one listing for every volume, and gone with the volume; a damaged
//! report still reads as one. On a memory store and on a local folder.

use ferry_store::{Store, StoreConfig, StoreOptions, VolumeOptions, VolumeSpec};
use std::collections::BTreeMap;

fn spec(name: &str) -> VolumeSpec {
    VolumeSpec {
        name: name.into(),
        capacity_bytes: 1 << 20,
        options: VolumeOptions::default(),
        parameters: BTreeMap::new(),
        source: None,
    }
}

async fn folder_store(dir: &std::path::Path) -> Store {
    Store::open(
        &StoreConfig::fs(dir.to_string_lossy()),
        StoreOptions::default(),
    )
    .await
    .unwrap()
}

async fn reports_follow_the_nodes(s: Store) {
    let a = s.create_volume(spec("a")).await.unwrap();
    let b = s.create_volume(spec("b")).await.unwrap();
    assert!(s.abnormal_volumes().await.unwrap().is_empty());
    assert!(s.volume_health(a.id()).await.unwrap().is_empty());

    s.report_volume_abnormal(a.id(), "node-1", "server died holding writes", 10)
        .await
        .unwrap();
    s.report_volume_abnormal(a.id(), "node-1", "died again", 20)
        .await
        .unwrap();
    // A node id that is not a plain name never shapes the path.
    s.report_volume_abnormal(a.id(), "../../volumes/x", "odd node", 15)
        .await
        .unwrap();
    s.report_volume_abnormal(b.id(), "node-2", "aborted", 5)
        .await
        .unwrap();

    let notes = s.volume_health(a.id()).await.unwrap();
    let said: Vec<(&str, &str)> = notes
        .iter()
        .map(|n| (n.node.as_str(), n.message.as_str()))
        .collect();
    assert_eq!(
        said,
        [("../../volumes/x", "odd node"), ("node-1", "died again")]
    );
    let all = s.abnormal_volumes().await.unwrap();
    assert_eq!(all.keys().cloned().collect::<Vec<_>>(), {
        let mut ids = vec![a.id().to_string(), b.id().to_string()];
        ids.sort();
        ids
    });
    assert_eq!(all[b.id()][0].message, "aborted");

    // Withdrawn by the node that made it; twice is fine.
    s.clear_volume_health(a.id(), "node-1").await.unwrap();
    s.clear_volume_health(a.id(), "node-1").await.unwrap();
    let left = s.volume_health(a.id()).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].node, "../../volumes/x");

    // Deleting the volume takes its reports.
    s.delete_volume(b.id()).await.unwrap();
    let all = s.abnormal_volumes().await.unwrap();
    assert!(!all.contains_key(b.id()), "{all:?}");
    assert!(
        s.report_volume_abnormal("../gc/policy", "n", "x", 1)
            .await
            .is_err(),
        "only volume ids of this store name a report"
    );
}

#[tokio::test]
async fn reports_follow_the_nodes_in_memory() {
    let s = Store::open(&StoreConfig::memory(), StoreOptions::default())
        .await
        .unwrap();
    reports_follow_the_nodes(s).await;
}

#[tokio::test]
async fn reports_follow_the_nodes_on_a_folder() {
    let dir = tempfile::tempdir().unwrap();
    let s = folder_store(dir.path()).await;
    reports_follow_the_nodes(s).await;
}

/// A report that does not parse (damaged, or of a newer build) neither hides the failed
/// volume nor fails the listing: it reads as a report saying it cannot be read.
#[tokio::test]
async fn a_damaged_report_still_reads_as_a_report() {
    let dir = tempfile::tempdir().unwrap();
    let s = folder_store(dir.path()).await;
    let v = s.create_volume(spec("v")).await.unwrap();
    let folder = dir.path().join("health").join(v.id());
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("node-9.json"), b"{ not json").unwrap();
    let notes = s.volume_health(v.id()).await.unwrap();
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0].node, "node-9");
    assert!(notes[0].message.contains("cannot be read"), "{notes:?}");
    let all = s.abnormal_volumes().await.unwrap();
    assert_eq!(all[v.id()][0].node, "node-9");
}
