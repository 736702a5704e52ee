//! The volume writer's journal on a local folder: an fsync is one record, a new writer seals
//! and replays the journal, a stale writer can append nothing, snapshots and clones of a
//! volume in use hold its journaled writes, and a process killed between any two steps
//! (after a record, during a checkpoint, during a take-up) loses nothing acknowledged. The
//! randomized test checks writes, fsyncs, checkpoints, crashes and take-ups against a model
//! of what was acknowledged (`FERRY_JOURNAL_SEEDS` seeds, 6 unless set).

use ferry_store::{
    Error, Store, StoreConfig, StoreOptions, VolumeHandle, VolumeOptions, VolumeSpec,
};
use rand::{Rng, SeedableRng, rngs::StdRng};
use std::collections::BTreeMap;
use std::sync::Arc;

const CHUNK: u64 = 16 << 10;
const SIZE: u64 = 1 << 20;

fn spec(name: &str) -> VolumeSpec {
    VolumeSpec {
        name: name.into(),
        capacity_bytes: SIZE,
        options: VolumeOptions {
            chunk_size: CHUNK as u32,
            ..Default::default()
        },
        parameters: BTreeMap::new(),
        source: None,
    }
}

async fn store(dir: &std::path::Path) -> Store {
    Store::open(
        &StoreConfig::fs(dir.to_string_lossy()),
        StoreOptions::default(),
    )
    .await
    .unwrap()
}

/// A store in memory: the journal as one object per record with create-if-absent, as on
/// S3, Azure and GCS (a folder keeps it in segment files).
async fn object_store() -> Store {
    Store::open(&StoreConfig::memory(), StoreOptions::default())
        .await
        .unwrap()
}

/// A writer taking the volume up as a node's volume server does: open under a tag, fence.
async fn take_up(s: &Store, id: &str, tag: &str) -> Arc<VolumeHandle> {
    let h = s.open_volume_as(id, Some(tag.into())).await.unwrap();
    h.fence().await.unwrap();
    assert!(h.journaling().await);
    h
}

fn objects_under(dir: &std::path::Path) -> usize {
    walk(dir).len()
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[tokio::test]
async fn an_fsync_is_one_record_and_the_next_writer_replays_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path()).await;
    let id = s.create_volume(spec("v")).await.unwrap().record.id;
    let a = take_up(&s, &id, "node-a#1").await;
    let gen_before = s.head(&id).await.unwrap().generation;
    a.write_at(5000, &[1u8; 3000]).await.unwrap();
    a.write_at(200_000, &[2u8; 512]).await.unwrap();
    let before = objects_under(dir.path());
    let r = a.flush().await.unwrap();
    assert_eq!(r.journal_record, Some(1));
    assert_eq!(r.generation, None, "a small fsync commits no generation");
    // Counting the files: one record, nothing else (the store on a folder is files).
    assert_eq!(objects_under(dir.path()), before + 1);
    assert_eq!(s.head(&id).await.unwrap().generation, gen_before);
    // Nothing written since: a second fsync writes nothing.
    assert_eq!(a.flush().await.unwrap().journal_record, None);
    // The next record goes into the same segment file: no file is created.
    a.write_at(300_000, &[3u8; 4096]).await.unwrap();
    assert_eq!(a.flush().await.unwrap().journal_record, Some(2));
    assert_eq!(objects_under(dir.path()), before + 1);
    drop(a); // killed: no checkpoint

    let b = take_up(&s, &id, "node-b#2").await;
    assert_eq!(b.read_at(5000, 3000).await.unwrap(), vec![1u8; 3000]);
    assert_eq!(b.read_at(200_000, 512).await.unwrap(), vec![2u8; 512]);
    assert_eq!(b.read_at(0, 5000).await.unwrap(), vec![0u8; 5000]);
    assert_eq!(b.read_at(300_000, 4096).await.unwrap(), vec![3u8; 4096]);
    // The take-up committed the replay: a reader of the head alone sees it.
    let head = s.head(&id).await.unwrap();
    assert!(head.generation > gen_before);
    assert_eq!(head.writer.as_deref(), Some("node-b#2"));
    let plain = s.open_volume(&id).await.unwrap();
    assert_eq!(plain.read_at(5000, 3000).await.unwrap(), vec![1u8; 3000]);
}

#[tokio::test]
async fn a_writer_that_lost_the_volume_cannot_append_to_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    lost_volume(store(dir.path()).await).await;
}

#[tokio::test]
async fn a_writer_that_lost_the_volume_cannot_append_to_the_journal_on_an_object_store() {
    lost_volume(object_store().await).await;
}

async fn lost_volume(s: Store) {
    let id = s.create_volume(spec("v")).await.unwrap().record.id;
    let a = take_up(&s, &id, "node-a#1").await;
    a.write_at(0, &[1u8; 4096]).await.unwrap();
    a.flush().await.unwrap();
    // node-b takes over while node-a still runs (its lease lapsed without it noticing).
    let b = take_up(&s, &id, "node-b#2").await;
    a.write_at(8192, &[9u8; 4096]).await.unwrap();
    match a.flush().await {
        Err(Error::Conflict(msg)) => assert!(msg.contains("sealed"), "{msg}"),
        other => panic!("the stale writer's fsync must fail, got {other:?}"),
    }
    // Nor can it checkpoint.
    assert!(matches!(a.checkpoint().await, Err(Error::Conflict(_))));
    assert_eq!(b.read_at(0, 4096).await.unwrap(), vec![1u8; 4096]);
    assert_eq!(b.read_at(8192, 4096).await.unwrap(), vec![0u8; 4096]);
    // Still so after node-b's own records and checkpoint pruned its journal.
    b.write_at(16384, &[3u8; 100]).await.unwrap();
    b.flush().await.unwrap();
    b.checkpoint().await.unwrap();
    assert!(a.flush().await.is_err());
    let c = take_up(&s, &id, "node-c#3").await;
    assert_eq!(c.read_at(16384, 100).await.unwrap(), vec![3u8; 100]);
    assert_eq!(c.read_at(8192, 4096).await.unwrap(), vec![0u8; 4096]);
}

#[tokio::test]
async fn snapshots_and_clones_of_a_volume_in_use_hold_its_journaled_writes() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path()).await;
    let id = s.create_volume(spec("v")).await.unwrap().record.id;
    let a = take_up(&s, &id, "node-a#1").await;
    a.write_at(0, &[4u8; 20_000]).await.unwrap();
    a.checkpoint().await.unwrap();
    a.write_at(30_000, &[5u8; 10_000]).await.unwrap();
    a.zero_range(0, 2 * CHUNK).await.unwrap();
    a.flush().await.unwrap();
    // Between the record and its checkpoint.
    let snap = s.create_snapshot("s", &id, BTreeMap::new()).await.unwrap();
    let mut from_snap = spec("from-snap");
    from_snap.source = Some(ferry_store::Source::Snapshot(snap.id.clone()));
    let restored = s.create_volume(from_snap).await.unwrap();
    let mut cloned = spec("clone");
    cloned.source = Some(ferry_store::Source::Volume(id.clone()));
    let clone = s.create_volume(cloned).await.unwrap();
    let want = a.read_at(0, SIZE as usize).await.unwrap();
    assert_eq!(
        &want[0..2 * CHUNK as usize],
        &vec![0u8; 2 * CHUNK as usize][..]
    );
    assert_eq!(
        &want[2 * CHUNK as usize..40_000],
        &vec![5u8; 40_000 - 2 * CHUNK as usize][..]
    );
    for v in [restored.record.id, clone.record.id] {
        let h = s.open_volume(&v).await.unwrap();
        assert_eq!(h.read_at(0, SIZE as usize).await.unwrap(), want, "{v}");
    }
    let (_, members) = s
        .create_group_snapshot("g", std::slice::from_ref(&id), BTreeMap::new())
        .await
        .unwrap();
    assert_eq!(members[0].root, snap.root);
    // The writer's own checkpoint afterwards is not disturbed by what the snapshot built.
    a.write_at(100_000, &[6u8; 10]).await.unwrap();
    a.checkpoint().await.unwrap();
    assert_eq!(
        s.head(&id).await.unwrap().writer.as_deref(),
        Some("node-a#1")
    );
}

#[tokio::test]
async fn a_process_killed_between_any_two_steps_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    killed_between_steps(store(dir.path()).await).await;
}

#[tokio::test]
async fn a_process_killed_between_any_two_steps_loses_nothing_acknowledged_on_an_object_store() {
    killed_between_steps(object_store().await).await;
}

async fn killed_between_steps(s: Store) {
    let id = s.create_volume(spec("v")).await.unwrap().record.id;
    let a = take_up(&s, &id, "node-a#1").await;
    a.write_at(0, &[1u8; 50_000]).await.unwrap();
    a.flush().await.unwrap();
    a.write_at(60_000, &[2u8; 5_000]).await.unwrap();
    a.flush().await.unwrap();
    // Killed during a checkpoint: chunks and pages stored, no commit.
    a.checkpoint_killed_before_commit().await.unwrap();
    drop(a);
    // Killed during the take-up: the journal sealed, no commit.
    s.take_up_killed_after_seal(&id).await.unwrap();
    // The next take-up finds the seal, replays up to it and commits.
    let c = take_up(&s, &id, "node-c#3").await;
    assert_eq!(c.read_at(0, 50_000).await.unwrap(), vec![1u8; 50_000]);
    assert_eq!(c.read_at(60_000, 5_000).await.unwrap(), vec![2u8; 5_000]);
    // Killed after its own record: the next one replays it.
    c.write_at(70_000, &[3u8; 7]).await.unwrap();
    c.flush().await.unwrap();
    drop(c);
    let d = take_up(&s, &id, "node-d#4").await;
    assert_eq!(d.read_at(70_000, 7).await.unwrap(), vec![3u8; 7]);
    assert_eq!(d.read_at(0, 50_000).await.unwrap(), vec![1u8; 50_000]);
}

/// What each 4 KiB block may hold after a crash: what the last acknowledged fsync saw, or
/// (for blocks written since) any version written since.
struct Model {
    acked: Vec<u8>,
    current: Vec<u8>,
    since: BTreeMap<u64, Vec<Vec<u8>>>,
}

const BLOCK: u64 = 4096;

impl Model {
    fn write(&mut self, off: u64, data: &[u8]) {
        let (o, e) = (off as usize, off as usize + data.len());
        self.current[o..e].copy_from_slice(data);
        for b in off / BLOCK..=(off + data.len() as u64 - 1) / BLOCK {
            let (lo, hi) = ((b * BLOCK) as usize, ((b + 1) * BLOCK) as usize);
            self.since
                .entry(b)
                .or_default()
                .push(self.current[lo..hi].to_vec());
        }
    }

    fn acked(&mut self) {
        self.acked.clone_from(&self.current);
        self.since.clear();
    }

    /// Checks a recovered image and takes it as the new state.
    fn recovered(&mut self, got: Vec<u8>, seed: u64, step: usize) {
        for b in 0..SIZE / BLOCK {
            let (lo, hi) = ((b * BLOCK) as usize, ((b + 1) * BLOCK) as usize);
            let block = &got[lo..hi];
            let ok = block == &self.acked[lo..hi]
                || self
                    .since
                    .get(&b)
                    .is_some_and(|vs| vs.iter().any(|v| v == block));
            assert!(
                ok,
                "seed {seed} step {step}: block {b} holds bytes never acknowledged or written there"
            );
        }
        self.current.clone_from(&got);
        self.acked = got;
        self.since.clear();
    }
}

/// `VolumeHandle::write_now` on a blocking thread; false when it declined.
async fn write_now(h: &Arc<VolumeHandle>, off: u64, data: &[u8]) -> bool {
    let (h, data) = (h.clone(), data.to_vec());
    tokio::task::spawn_blocking(move || h.write_now(off, &data).map(|r| r.unwrap()))
        .await
        .unwrap()
        .is_some()
}

/// `VolumeHandle::read_now` on a blocking thread.
async fn read_now(h: &Arc<VolumeHandle>, off: u64, len: usize) -> Option<Vec<u8>> {
    let h = h.clone();
    tokio::task::spawn_blocking(move || h.read_now(off, len).map(|r| r.unwrap()))
        .await
        .unwrap()
}

/// Even seeds run on a folder (segment files), odd ones in memory (an object per record).
#[tokio::test]
async fn random_writes_fsyncs_and_crashes_keep_what_was_acknowledged() {
    let seeds: u64 = std::env::var("FERRY_JOURNAL_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    for seed in 0..seeds {
        let dir = tempfile::tempdir().unwrap();
        let s = if seed % 2 == 0 {
            store(dir.path()).await
        } else {
            object_store().await
        };
        let id = s.create_volume(spec("v")).await.unwrap().record.id;
        let mut rng = StdRng::seed_from_u64(seed);
        let mut writer = 1u64;
        let mut h = take_up(&s, &id, &format!("node#{writer}")).await;
        let mut m = Model {
            acked: vec![0; SIZE as usize],
            current: vec![0; SIZE as usize],
            since: BTreeMap::new(),
        };
        for step in 0..300 {
            match rng.random_range(0..100) {
                0..=54 => {
                    let len = rng.random_range(1..=20_000u64);
                    let off = rng.random_range(0..SIZE - len);
                    let (off, len) = if rng.random_bool(0.5) {
                        (off / 512 * 512, len.div_ceil(512) * 512)
                    } else {
                        (off, len)
                    };
                    let len = len.min(SIZE - off);
                    let byte = rng.random::<u8>() | 1;
                    let data = vec![byte; len as usize];
                    // Half the writes as the FUSE thread makes them, on a thread that may
                    // block (falling back to the async path when it must).
                    if !(rng.random_bool(0.5) && write_now(&h, off, &data).await) {
                        h.write_at(off, &data).await.unwrap();
                    }
                    m.write(off, &data);
                }
                55..=59 => {
                    let first = rng.random_range(0..SIZE / CHUNK - 2);
                    let n = rng.random_range(1..=2);
                    h.zero_range(first * CHUNK, n * CHUNK).await.unwrap();
                    m.write(first * CHUNK, &vec![0; (n * CHUNK) as usize]);
                }
                60..=79 => {
                    h.flush().await.unwrap();
                    m.acked();
                }
                80..=84 => {
                    h.checkpoint().await.unwrap();
                    m.acked();
                }
                85..=89 => {
                    // Reads see every write, flushed or not, on either path.
                    assert_eq!(h.read_at(0, SIZE as usize).await.unwrap(), m.current);
                    let off = rng.random_range(0..SIZE - 70_000);
                    if let Some(got) = read_now(&h, off, 70_000).await {
                        assert!(got == m.current[off as usize..off as usize + 70_000]);
                    }
                }
                _ => {
                    // A crash, sometimes during a checkpoint or during the next take-up.
                    if rng.random_bool(0.3) {
                        h.checkpoint_killed_before_commit().await.unwrap();
                    }
                    drop(h);
                    if rng.random_bool(0.3) {
                        s.take_up_killed_after_seal(&id).await.unwrap();
                    }
                    writer += 1;
                    h = take_up(&s, &id, &format!("node#{writer}")).await;
                    let got = h.read_at(0, SIZE as usize).await.unwrap();
                    m.recovered(got, seed, step);
                }
            }
        }
        h.flush().await.unwrap();
        m.acked();
        drop(h);
        let last = take_up(&s, &id, "last#0").await;
        let got = last.read_at(0, SIZE as usize).await.unwrap();
        assert!(
            got == m.acked,
            "seed {seed}: the last fsync's state did not survive"
        );
    }
}

#[tokio::test]
async fn a_torn_frame_at_the_end_of_a_segment_ends_the_journal_there() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path()).await;
    let id = s.create_volume(spec("v")).await.unwrap().record.id;
    let a = take_up(&s, &id, "node-a#1").await;
    a.write_at(0, &[1u8; 4096]).await.unwrap();
    a.flush().await.unwrap();
    a.write_at(4096, &[2u8; 4096]).await.unwrap();
    a.flush().await.unwrap();
    drop(a);
    // The writer died writing its next frame: a length and part of a record.
    let segment = walk(dir.path())
        .into_iter()
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("log-"))
        })
        .expect("a journal segment");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&segment)
        .unwrap();
    std::io::Write::write_all(&mut f, &[200, 0, 0, 0, b'F', b'J', b'R']).unwrap();
    drop(f);
    let b = take_up(&s, &id, "node-b#2").await;
    assert_eq!(
        b.read_at(0, 8192).await.unwrap(),
        [[1u8; 4096], [2u8; 4096]].concat()
    );
    b.write_at(8192, &[3u8; 10]).await.unwrap();
    b.flush().await.unwrap();
    drop(b);
    let c = take_up(&s, &id, "node-c#3").await;
    assert_eq!(c.read_at(8192, 10).await.unwrap(), vec![3u8; 10]);
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_and_writes_on_the_calling_thread_use_the_folder_and_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path()).await;
    let id = s.create_volume(spec("v")).await.unwrap().record.id;
    let a = take_up(&s, &id, "node-a#1").await;
    a.write_at(0, &[1u8; 3 * CHUNK as usize]).await.unwrap();
    a.checkpoint().await.unwrap();
    drop(a);
    let b = take_up(&s, &id, "node-b#2").await;
    // The tree pages are cached by a first read; chunk 1 then comes from the folder.
    b.read_at(0, 1).await.unwrap();
    let got = read_now(&b, CHUNK + 10, 1000).await;
    assert_eq!(
        got,
        Some(vec![1u8; 1000]),
        "served from the folder on this thread"
    );
    assert!(write_now(&b, CHUNK + 100, &[2u8; 10]).await);
    assert!(
        write_now(&b, 2 * CHUNK - 5, &[3u8; 10]).await,
        "across two chunks"
    );
    assert_eq!(b.read_at(CHUNK + 100, 10).await.unwrap(), vec![2u8; 10]);
    assert_eq!(
        read_now(&b, 2 * CHUNK - 5, 10).await,
        Some(vec![3u8; 10]),
        "dirty buffers read back on this thread"
    );
    // What was written on this thread goes into the next journal record.
    assert!(b.flush().await.unwrap().journal_record.is_some());
    drop(b);
    let c = take_up(&s, &id, "node-c#3").await;
    assert_eq!(c.read_at(CHUNK + 100, 10).await.unwrap(), vec![2u8; 10]);
    assert_eq!(c.read_at(2 * CHUNK - 5, 10).await.unwrap(), vec![3u8; 10]);
    assert_eq!(c.read_at(CHUNK + 110, 10).await.unwrap(), vec![1u8; 10]);
}

/// Journal records as an object store holds them (one object each), read raw.
async fn record_paths(s: &Store, id: &str) -> Vec<String> {
    let name = s.head(id).await.unwrap().journal.unwrap().name;
    let mut paths: Vec<String> = s
        .raw_objects()
        .list(&ferry_store::layout::journal(id, &name))
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.path)
        .collect();
    paths.sort();
    paths
}

/// On an object store a record is written whole by create-if-absent: one that fails its
/// checksum in the middle of a journal is damage, and the records after it were
/// acknowledged. The take-up fails naming it, seals and commits nothing, and once the
/// record is restored every acknowledged write reads back.
async fn damaged_record_in_the_middle(s: Store) {
    let id = s.create_volume(spec("v")).await.unwrap().record.id;
    let a = take_up(&s, &id, "node-a#1").await;
    for i in 0..4u8 {
        a.write_at(u64::from(i) * 8192, &[i + 1; 4096])
            .await
            .unwrap();
        assert!(a.flush().await.unwrap().journal_record.is_some());
    }
    drop(a); // killed: no checkpoint
    let paths = record_paths(&s, &id).await;
    assert_eq!(paths.len(), 4, "{paths:?}");
    let second = paths[1].clone();
    let good = s.raw_objects().get(&second).await.unwrap().unwrap();
    let mut bad = good.clone();
    bad[20] ^= 0xff;
    s.raw_objects().put(&second, bad).await.unwrap();
    let head_before = s.head(&id).await.unwrap();

    let b = s
        .open_volume_as(&id, Some("node-b#2".into()))
        .await
        .unwrap();
    match b.fence().await {
        Err(Error::Corrupt { path, reason }) => {
            assert_eq!(path, second, "the error names the damaged record");
            assert!(reason.contains("journal record 2"), "{reason}");
        }
        other => panic!("the take-up must fail on a damaged record, got {other:?}"),
    }
    // Nothing was sealed, replayed or committed: every record is still there, unapplied.
    assert_eq!(s.head(&id).await.unwrap(), head_before);
    assert_eq!(record_paths(&s, &id).await, paths);
    let state = s.journal_state(&id).await;
    assert!(matches!(state, Err(Error::Corrupt { .. })), "{state:?}");

    // Restored, the journal takes up whole: the writes after the damaged record are there.
    s.raw_objects().put(&second, good).await.unwrap();
    let c = take_up(&s, &id, "node-c#3").await;
    for i in 0..4u8 {
        assert_eq!(
            c.read_at(u64::from(i) * 8192, 4096).await.unwrap(),
            vec![i + 1; 4096],
            "record {}",
            i + 1
        );
    }
}

#[tokio::test]
async fn a_damaged_record_in_the_middle_fails_the_take_up_and_loses_nothing_in_memory() {
    damaged_record_in_the_middle(object_store().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_record_in_the_middle_fails_the_take_up_and_loses_nothing_on_s3() {
    let Some(server) = ferry_testkit::TestServer::start(ferry_testkit::Kind::S3).await else {
        return;
    };
    let params = server.bucket("ferry-journal-damage").await;
    let s = Store::open(
        &StoreConfig::from_params(&params).unwrap(),
        StoreOptions::default(),
    )
    .await
    .unwrap();
    damaged_record_in_the_middle(s).await;
    drop(server);
}
