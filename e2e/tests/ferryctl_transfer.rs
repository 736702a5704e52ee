//! `ferryctl transfer` as a user runs it: real processes, killed with SIGKILL at random
//! moments and run again; a transfer store that fills up.

use ferry_store::{Store, StoreConfig, StoreOptions, VolumeOptions, VolumeSpec};
use rand::{Rng, RngCore, SeedableRng, rngs::StdRng};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const CHUNK: u64 = 64 << 10;

async fn store(dir: &Path) -> Store {
    Store::open(
        &StoreConfig::fs(dir.to_string_lossy()),
        StoreOptions::default(),
    )
    .await
    .unwrap()
}

/// A volume of `chunks` random chunks (incompressible, so sizes are predictable) and a
/// snapshot of it; returns (volume id, snapshot id).
async fn volume_with_snapshot(s: &Store, name: &str, chunks: u64, seed: u64) -> (String, String) {
    let v = match s.volume_by_name(name).await.unwrap() {
        Some(v) => v,
        None => s
            .create_volume(VolumeSpec {
                name: name.into(),
                capacity_bytes: chunks * CHUNK,
                options: VolumeOptions::default(),
                parameters: Default::default(),
                source: None,
            })
            .await
            .unwrap(),
    };
    let h = s.open_volume(v.id()).await.unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut buf = vec![0u8; (chunks * CHUNK) as usize];
    rng.fill_bytes(&mut buf);
    h.write_at(0, &buf).await.unwrap();
    h.flush().await.unwrap();
    let snap = s
        .create_snapshot(&format!("{name}-{seed}"), v.id(), Default::default())
        .await
        .unwrap();
    (v.id().to_string(), snap.id)
}

async fn digest(s: &Store, id: &str) -> String {
    let h = s.open_volume(id).await.unwrap();
    let n = h.size().await as usize;
    hex::encode(Sha256::digest(h.read_at(0, n).await.unwrap()))
}

fn ferryctl(args: &[&str]) -> Output {
    Command::new(ferry_e2e::ferryctl_bin())
        .args(args)
        .output()
        .expect("running ferryctl")
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "ferryctl failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Starts `ferryctl args`, kills it with SIGKILL after `after`.
fn run_and_kill(args: &[&str], after: Duration) {
    let mut child = Command::new(ferry_e2e::ferryctl_bin())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(after);
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_exports_and_imports_resume_and_match() {
    for seed in [1u64, 2, 3] {
        let dir = tempfile::tempdir().unwrap();
        let (a_dir, b_dir, t_dir) = (
            dir.path().join("a"),
            dir.path().join("b"),
            dir.path().join("t"),
        );
        let a = store(&a_dir).await;
        let (vol, snap) = volume_with_snapshot(&a, "db", 160, seed).await;
        let key = dir.path().join("key");
        std::fs::write(&key, ok(ferryctl(&["transfer", "keygen"])).trim()).unwrap();
        let (a_s, b_s, t_s, k_s) = (
            a_dir.to_string_lossy().into_owned(),
            b_dir.to_string_lossy().into_owned(),
            t_dir.to_string_lossy().into_owned(),
            key.to_string_lossy().into_owned(),
        );
        let export = [
            "transfer",
            "export",
            "--store",
            &a_s,
            "--snapshot",
            &snap,
            "--transfer",
            &t_s,
            "--key-file",
            &k_s,
        ];
        let import = [
            "transfer",
            "import",
            "--store",
            &b_s,
            "--commit",
            &vol,
            "--name",
            "db",
            "--transfer",
            &t_s,
            "--key-file",
            &k_s,
        ];
        let verify = [
            "transfer",
            "verify",
            "--commit",
            &vol,
            "--transfer",
            &t_s,
            "--key-file",
            &k_s,
        ];
        let mut rng = StdRng::seed_from_u64(seed);
        for _ in 0..3 {
            run_and_kill(&export, Duration::from_millis(rng.random_range(5..150)));
            // Whatever the kill interrupted, a commit on the store is complete.
            let listed = std::fs::read_dir(t_dir.join("commits").join(&vol))
                .map(|d| d.count())
                .unwrap_or(0);
            if listed > 0 {
                ok(ferryctl(&verify));
            }
        }
        ok(ferryctl(&export));
        ok(ferryctl(&verify));
        for _ in 0..3 {
            run_and_kill(&import, Duration::from_millis(rng.random_range(5..150)));
        }
        let report = ok(ferryctl(&[&import[..], &["--json"]].concat()));
        let report: serde_json::Value = serde_json::from_str(&report).unwrap();
        let b_vol = report["volumeId"].as_str().unwrap().to_string();
        let b = store(&b_dir).await;
        assert_eq!(
            digest(&a, &vol).await,
            digest(&b, &b_vol).await,
            "seed {seed}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_transfer_store_fails_with_the_reason_and_keeps_earlier_commits() {
    if ferry_testkit::skip_unless_root("mounting a small tmpfs as the transfer store") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let t_dir = dir.path().join("t");
    std::fs::create_dir_all(&t_dir).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
        .arg(&t_dir)
        .status()
        .unwrap();
    assert!(mounted.success());
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(self.0).status();
        }
    }
    let _unmount = Unmount(&t_dir);
    let a_dir = dir.path().join("a");
    let a = store(&a_dir).await;
    let (a_s, t_s) = (
        a_dir.to_string_lossy().into_owned(),
        t_dir.to_string_lossy().into_owned(),
    );
    // 1 MiB fits; then 8 MiB of new data does not.
    let (vol, small) = volume_with_snapshot(&a, "small", 16, 1).await;
    ok(ferryctl(&[
        "transfer",
        "export",
        "--store",
        &a_s,
        "--snapshot",
        &small,
        "--transfer",
        &t_s,
    ]));
    let (_, big) = volume_with_snapshot(&a, "big", 128, 2).await;
    let out = ferryctl(&[
        "transfer",
        "export",
        "--store",
        &a_s,
        "--snapshot",
        &big,
        "--transfer",
        &t_s,
    ]);
    assert!(
        !out.status.success(),
        "the export must fail on a full store"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("transfer store full") && err.contains("No space left"),
        "says why, naming the transfer store: {err}"
    );
    // The earlier commit is whole.
    ok(ferryctl(&[
        "transfer",
        "verify",
        "--commit",
        &vol,
        "--transfer",
        &t_s,
    ]));
}
