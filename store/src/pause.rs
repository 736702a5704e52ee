//! Named steps of the volume writer where a process can be told to stop and wait to be
//! killed, so crash tests can `kill -9` a real volume server at an exact point of a
//! checkpoint or a take-up (the store-level crash tests cut those steps short in process;
//! these reach the same states in the shipped binary).
//!
//! Steps are armed only through the environment of the process: `FERRY_PAUSE_FILE` names
//! a file that the process reads at each step. When the file holds the step's name, the
//! process writes its pid to `<file>.paused` and waits forever, so a test can arm a step at
//! the moment it wants (after its writes, say) and kill the process once it got there.
//! The variable is not set in a deployment, and then a step costs one look at a value read
//! once.

use std::path::PathBuf;
use std::sync::OnceLock;

/// The steps that can be armed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// A journal writer's checkpoint, before it uploads anything.
    CheckpointStart,
    /// A journal writer's checkpoint with its chunks and pages uploaded, before the commit.
    CheckpointCommit,
    /// A take-up that sealed and replayed the old journal and uploaded the result, before
    /// its commit.
    TakeUpCommit,
}

impl Step {
    fn name(self) -> &'static str {
        match self {
            Step::CheckpointStart => "checkpoint-start",
            Step::CheckpointCommit => "checkpoint-commit",
            Step::TakeUpCommit => "take-up-commit",
        }
    }
}

fn armed() -> Option<&'static PathBuf> {
    static FILE: OnceLock<Option<PathBuf>> = OnceLock::new();
    FILE.get_or_init(|| std::env::var_os("FERRY_PAUSE_FILE").map(PathBuf::from))
        .as_ref()
}

/// Waits forever when `step` is armed; returns at once otherwise.
pub(crate) async fn at(step: Step) {
    let Some(file) = armed() else {
        return;
    };
    let name = step.name();
    match tokio::fs::read_to_string(file).await {
        Ok(s) if s.trim() == name => {}
        _ => return,
    }
    tracing::warn!(
        step = name,
        "paused by FERRY_PAUSE_FILE; waiting to be killed"
    );
    let mut mark = file.clone().into_os_string();
    mark.push(".paused");
    if let Err(e) = std::fs::write(&mark, std::process::id().to_string()) {
        tracing::error!(error = %e, "cannot write the pause mark {mark:?}");
    }
    std::future::pending::<()>().await;
}
