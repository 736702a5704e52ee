//! Collection of a transfer store after incremental exports: retention keeps the newest
//! commits of a volume, and exactly the packs those commits reach stay.

use ferry_store::{Hash, Store, StoreConfig, StoreOptions, VolumeOptions, VolumeSpec, tree};
use ferry_transfer::{
    GcOptions, Progress, TransferPages, TransferStore, Tuning, export, gc, import, verify,
};
use rand::{Rng, RngCore, SeedableRng, rngs::StdRng};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

const CHUNK: u64 = 64 << 10;
const CHUNKS: u64 = 64;

fn small_packs() -> Tuning {
    Tuning {
        pack_bytes: 256 << 10,
        ..Tuning::default()
    }
}

async fn digest_of_snapshot(store: &Store, snap: &str, name: &str) -> String {
    let v = store
        .create_volume(VolumeSpec {
            name: name.into(),
            capacity_bytes: CHUNKS * CHUNK,
            options: VolumeOptions::default(),
            parameters: Default::default(),
            source: Some(ferry_store::Source::Snapshot(snap.into())),
        })
        .await
        .unwrap();
    digest(store, v.id()).await
}

async fn digest(store: &Store, id: &str) -> String {
    let h = store.open_volume(id).await.unwrap();
    let size = h.size().await;
    hex::encode(Sha256::digest(h.read_at(0, size as usize).await.unwrap()))
}

/// The packs the given commits reach, computed here from the index and the trees.
async fn packs_reached(t: &TransferStore, commits: &[ferry_transfer::Commit]) -> BTreeSet<String> {
    let index = t.load_index().await.unwrap();
    let pages = TransferPages::new(t, &index);
    let mut out = BTreeSet::new();
    for c in commits {
        let d = tree::diff(&pages, c.root, &pages, Hash::ZERO)
            .await
            .unwrap();
        for h in d.chunks.iter().chain(d.pages.iter().map(|(h, _)| h)) {
            out.insert(index.get(&t.name(h)).unwrap().unwrap().pack.to_string());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_incremental_exports_then_keep_two() {
    let a = Store::open(&StoreConfig::memory(), StoreOptions::default())
        .await
        .unwrap();
    let v = a
        .create_volume(VolumeSpec {
            name: "data".into(),
            capacity_bytes: CHUNKS * CHUNK,
            options: VolumeOptions::default(),
            parameters: Default::default(),
            source: None,
        })
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let t = TransferStore::open(&StoreConfig::fs(dir.path().to_string_lossy()), None)
        .await
        .unwrap();
    let mut rng = StdRng::seed_from_u64(11);
    let mut snaps = Vec::new();
    for round in 0..5 {
        let h = a.open_volume(v.id()).await.unwrap();
        // The first round fills the volume; each later one rewrites a quarter of it.
        let n = CHUNKS / 4;
        let hit: Vec<u64> = if round == 0 {
            (0..CHUNKS).collect()
        } else {
            (0..n).map(|_| rng.random_range(0..CHUNKS)).collect()
        };
        for c in hit {
            let mut buf = vec![0u8; CHUNK as usize];
            rng.fill_bytes(&mut buf);
            h.write_at(c * CHUNK, &buf).await.unwrap();
        }
        h.flush().await.unwrap();
        let s = a
            .create_snapshot(&format!("s{round}"), v.id(), Default::default())
            .await
            .unwrap();
        export(&a, &s.id, &t, Arc::new(Progress::default()), small_packs())
            .await
            .unwrap();
        snaps.push(s.id);
    }
    let before = t.contents().await.unwrap();
    assert_eq!(before.commits.get(v.id()), Some(&5));

    let dry = gc(
        &t,
        GcOptions {
            keep: 2,
            grace: Duration::ZERO,
            dry_run: true,
        },
    )
    .await
    .unwrap();
    assert_eq!(
        t.contents().await.unwrap(),
        before,
        "a dry run changes nothing"
    );

    let report = gc(
        &t,
        GcOptions {
            keep: 2,
            grace: Duration::ZERO,
            dry_run: false,
        },
    )
    .await
    .unwrap();
    println!(
        "transfer gc after 5 exports, keep 2: {} of {} packs removed, {} of {} bytes reclaimed, {} bytes kept of which {} live",
        report.packs_removed,
        before.packs,
        report.bytes_removed,
        before.pack_bytes,
        report.bytes_kept,
        report.live_bytes
    );
    assert!(report.live_bytes <= report.bytes_kept);
    assert_eq!(
        dry.packs_removed, report.packs_removed,
        "the dry run told the truth"
    );
    assert_eq!(dry.bytes_removed, report.bytes_removed);
    assert_eq!(report.commits_removed.len(), 3);
    assert!(
        report.packs_removed > 0,
        "older exports' packs go: {report:?}"
    );

    // Exactly what the kept commits reach stays: counted pack by pack.
    let kept: Vec<_> = t.commits_of(v.id()).await.unwrap();
    assert_eq!(kept.len(), 2);
    let mut kept_ids: Vec<String> = kept.iter().map(|c| c.snapshot_id.clone()).collect();
    kept_ids.sort();
    let mut newest: Vec<String> = snaps[3..].to_vec();
    newest.sort();
    assert_eq!(kept_ids, newest, "the two newest commits are kept");
    let reached = packs_reached(&t, &kept).await;
    let after = t.contents().await.unwrap();
    assert_eq!(
        after.packs,
        reached.len(),
        "no pack beyond what kept commits reach"
    );
    assert_eq!(after.indexes, reached.len(), "one index per kept pack");
    assert_eq!(after.pack_bytes, report.bytes_kept);
    assert_eq!(before.pack_bytes - after.pack_bytes, report.bytes_removed);

    // Both kept commits verify and import byte-identical to their snapshots.
    for (i, c) in kept.iter().enumerate() {
        verify(&t, c, Arc::new(Progress::default()), Tuning::default())
            .await
            .unwrap();
        let b = Store::open(&StoreConfig::memory(), StoreOptions::default())
            .await
            .unwrap();
        let r = import(
            &t,
            c,
            &b,
            "back",
            Arc::new(Progress::default()),
            Tuning::default(),
        )
        .await
        .unwrap();
        assert_eq!(
            digest(&b, &r.volume_id.unwrap()).await,
            digest_of_snapshot(&a, &c.snapshot_id, &format!("check-{i}")).await
        );
    }

    // A removed commit is refused with a clear error.
    let gone = format!("{}/{}", v.id(), snaps[0]);
    let err = t.find_commit(&gone).await.unwrap_err().to_string();
    assert!(
        err.contains("no commit") && err.contains(&snaps[0]),
        "a removed commit is named as missing: {err}"
    );

    // An export running while a collection runs completes and verifies; the next
    // incremental export still builds on the kept newest commit.
    let h = a.open_volume(v.id()).await.unwrap();
    let mut buf = vec![0u8; CHUNK as usize];
    rng.fill_bytes(&mut buf);
    h.write_at(5 * CHUNK, &buf).await.unwrap();
    h.flush().await.unwrap();
    let s = a
        .create_snapshot("s5", v.id(), Default::default())
        .await
        .unwrap();
    let (exported, collected) = tokio::join!(
        export(&a, &s.id, &t, Arc::new(Progress::default()), small_packs()),
        async {
            tokio::task::yield_now().await;
            gc(
                &t,
                GcOptions {
                    keep: 2,
                    grace: Duration::ZERO,
                    dry_run: false,
                },
            )
            .await
        }
    );
    let exported = exported.unwrap();
    collected.unwrap();
    assert!(exported.chunks_copied <= 1, "incremental: {exported:?}");
    let c = t
        .find_commit(&format!("{}/{}", v.id(), s.id))
        .await
        .unwrap();
    verify(&t, &c, Arc::new(Progress::default()), Tuning::default())
        .await
        .unwrap();
    // And once more after the export is done, nothing the kept commits need goes.
    gc(
        &t,
        GcOptions {
            keep: 2,
            grace: Duration::ZERO,
            dry_run: false,
        },
    )
    .await
    .unwrap();
    for c in t.commits_of(v.id()).await.unwrap() {
        verify(&t, &c, Arc::new(Progress::default()), Tuning::default())
            .await
            .unwrap();
    }
}
