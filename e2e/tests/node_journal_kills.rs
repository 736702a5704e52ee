//! `kill -9` of real volume servers at each step of the journal, as root: between a record
//! and its checkpoint, during a checkpoint (chunks and pages uploaded, no commit) and during
//! a take-up (old journal sealed and replayed, no commit). The servers stop at the step
//! through `FERRY_PAUSE_FILE` (ferry_store's pause steps), the test checks the store is in
//! the state it names, kills the node, and another node stages the volume: every fsync'd
//! file reads back and `e2fsck -n -f` is clean. Without root these tests print why and
//! return.

use ferry_e2e::Plugin;
use ferry_e2e::node_calls::*;
use ferry_proto::v1::VolumeCapability;
use ferry_proto::v1::volume_capability::access_mode::Mode;
use ferry_store::{Store, StoreConfig, StoreOptions};
use std::path::{Path, PathBuf};
use std::time::Duration;

const MIB: u64 = 1 << 20;

fn skip_unless_root(test: &str) -> bool {
    ferry_testkit::skip_unless_root(&format!("{test} (loop devices, FUSE, mount)"))
}

/// The file a node's servers read their armed step from, and the mark they leave there.
struct Pause {
    _dir: tempfile::TempDir,
    file: PathBuf,
}

impl Pause {
    fn new() -> Pause {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("step");
        Pause { _dir: dir, file }
    }

    fn env(&self) -> (&'static str, &str) {
        ("FERRY_PAUSE_FILE", self.file.to_str().unwrap())
    }

    fn arm(&self, step: &str) {
        std::fs::write(&self.file, step).unwrap();
    }

    /// Waits until a server stopped at the armed step.
    async fn reached(&self) {
        let mark = self.file.with_file_name("step.paused");
        for _ in 0..600 {
            if mark.exists() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no volume server reached the armed step in 60 s");
    }
}

async fn open_store(dir: &Path) -> Store {
    Store::open(
        &StoreConfig::fs(dir.to_string_lossy()),
        StoreOptions::default(),
    )
    .await
    .unwrap()
}

/// Records past the head's position: fsync'd writes held only by the journal.
async fn unapplied(store: &Store, id: &str) -> usize {
    store.journal_state(id).await.unwrap().unapplied.len()
}

/// Stages on `p` and checks the files, then the filesystem.
async fn takes_up_intact(
    p: &Plugin,
    id: &str,
    cap: &VolumeCapability,
    files: &[(String, Vec<u8>)],
) {
    stage_when_free(p, id, cap.clone()).await;
    let t = publish(p, id, cap.clone(), 1, false).await;
    check_files(&t, files);
    unpublish(p, id, 1).await;
    unstage(p, id).await;
    fsck(p, id, "ext4").await;
}

/// Node-a writes and fsyncs files, the step is armed, one more file is fsync'd (so a
/// record is past any checkpoint made so far), and the idle checkpoint stops at the step.
async fn write_until_paused(
    a: &Plugin,
    id: &str,
    cap: &VolumeCapability,
    pause: &Pause,
    step: &str,
) -> Vec<(String, Vec<u8>)> {
    stage(a, id, cap.clone()).await.unwrap();
    let t = publish(a, id, cap.clone(), 1, false).await;
    let mut files = write_files(&t, 21, 10);
    pause.arm(step);
    files.extend(write_files(&t, 22, 1));
    pause.reached().await;
    files
}

/// Node-a's server stops at `step` with fsync'd writes only in the journal and is killed;
/// node-b takes the volume up intact and commits past what node-a left.
async fn kill_at(step: &str, name: &str) {
    let store = tempfile::tempdir().unwrap();
    let pause = Pause::new();
    let mut a = node_with(store.path(), "node-a", "1", &[pause.env()]).await;
    let b = node(store.path(), "node-b", "1").await;
    let id = create(&a, name, 128 * MIB).await;
    let cap = mount_cap("ext4", Mode::SingleNodeWriter);
    let s = open_store(store.path()).await;
    let files = write_until_paused(&a, &id, &cap, &pause, step).await;
    let head = s.head(&id).await.unwrap();
    assert!(
        unapplied(&s, &id).await > 0,
        "{step}: the last fsync is only in the journal when the server is killed"
    );
    a.kill_node();
    ferry_e2e::clean_node(a.dir.path());
    takes_up_intact(&b, &id, &cap, &files).await;
    assert!(s.head(&id).await.unwrap().generation > head.generation);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kill_between_a_record_and_its_checkpoint_loses_nothing() {
    if skip_unless_root("kill before a checkpoint") {
        return;
    }
    kill_at("checkpoint-start", "kill-record").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kill_during_a_checkpoint_loses_nothing() {
    if skip_unless_root("kill during a checkpoint") {
        return;
    }
    // Chunks and pages uploaded, no commit: the take-up commits past those uploads.
    kill_at("checkpoint-commit", "kill-checkpoint").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kill_during_a_take_up_loses_nothing() {
    if skip_unless_root("kill during a take-up") {
        return;
    }
    let store = tempfile::tempdir().unwrap();
    let pause_a = Pause::new();
    let pause_b = Pause::new();
    let mut a = node_with(store.path(), "node-a", "1", &[pause_a.env()]).await;
    let mut b = node_with(store.path(), "node-b", "1", &[pause_b.env()]).await;
    let c = node(store.path(), "node-c", "1").await;
    let id = create(&a, "kill-take-up", 128 * MIB).await;
    let cap = mount_cap("ext4", Mode::SingleNodeWriter);
    let files = write_until_paused(&a, &id, &cap, &pause_a, "checkpoint-start").await;
    let s = open_store(store.path()).await;
    let head = s.head(&id).await.unwrap();
    let before = s.journal_state(&id).await.unwrap();
    assert!(!before.unapplied.is_empty() && !before.sealed);
    a.kill_node();
    ferry_e2e::clean_node(a.dir.path());

    // Node-b's server seals a's journal, replays it, uploads the result and stops before
    // its commit; its stage call waits on it meanwhile.
    pause_b.arm("take-up-commit");
    let staging = {
        let mut client = b.node().await;
        let request = ferry_proto::v1::NodeStageVolumeRequest {
            volume_id: id.clone(),
            staging_target_path: staging(&b, &id).to_string_lossy().into(),
            volume_capability: Some(cap.clone()),
            ..Default::default()
        };
        // Abandoned when node-b is killed: only what the server left in the store counts.
        tokio::spawn(async move {
            loop {
                match client.node_stage_volume(request.clone()).await {
                    Err(e) if e.code() == tonic::Code::FailedPrecondition => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    _ => return,
                }
            }
        })
    };
    pause_b.reached().await;
    let now = s.head(&id).await.unwrap();
    assert_eq!(
        now.generation, head.generation,
        "the take-up did not commit"
    );
    let after = s.journal_state(&id).await.unwrap();
    assert!(after.sealed, "the take-up sealed the old journal");
    assert_eq!(
        after.unapplied, before.unapplied,
        "and wrote nothing into it"
    );
    staging.abort();
    b.kill_node();
    ferry_e2e::clean_node(b.dir.path());

    takes_up_intact(&c, &id, &cap, &files).await;
}
