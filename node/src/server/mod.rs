//! The volume server: one process per staged volume that serves the volume as a FUSE file
//! (see [`image_fs`]) and keeps its lease alive.
//!
//! It runs apart from the node plugin (the plugin starts it in its own process group), so a
//! plugin restart leaves staged volumes working. It ends when its FUSE mount is unmounted
//! (NodeUnstageVolume does that after detaching the loop device): it flushes, gives the
//! lease back and exits. SIGTERM and SIGINT only make it flush: stopping it while the
//! filesystem above is mounted would fail every I/O, so the unmount stays the way to stop.

pub mod image_fs;
pub mod status;

use crate::mounts;
use crate::state::VolumeDir;
use ferry_csi::Error;
use ferry_store::{Error as StoreError, LeaseRecord, Store};
use fuser::MountOption;
use status::Status;
use std::sync::Arc;
use std::time::Duration;

/// Name of the `ferry` subcommand that runs a volume server.
pub const SUBCOMMAND: &str = "volume-server";

/// What a volume server needs to know.
#[derive(Clone, Debug)]
pub struct ServerArgs {
    /// The volume to serve.
    pub volume_id: String,
    /// The node (lease holder) it serves for.
    pub node_id: String,
    /// The node plugin's state folder.
    pub state_dir: std::path::PathBuf,
    /// Serve without a lease and refuse writes.
    pub read_only: bool,
    /// Lease duration; it is renewed every third of it.
    pub lease_ttl: Duration,
}

/// Serves one volume until its mount is removed.
///
/// # Errors
/// A volume that cannot be opened or fenced, a lease held elsewhere, a mount that fails.
pub async fn run(store: Store, args: ServerArgs) -> Result<(), Error> {
    let dir = VolumeDir::new(&args.state_dir, &args.volume_id)?;
    std::fs::create_dir_all(dir.fuse())
        .map_err(|e| Error::Internal(format!("cannot create {}: {e}", dir.fuse().display())))?;
    dir.write_pid(std::process::id())?;
    if mounts::at(&dir.fuse())?.is_some() {
        if mounts::is_dead(&dir.fuse()) {
            mounts::unmount_all(&dir.fuse()).await?;
        } else {
            return Err(Error::FailedPrecondition(format!(
                "volume {} is already served at {}",
                args.volume_id,
                dir.fuse().display()
            )));
        }
    }
    let lease = if args.read_only {
        None
    } else {
        Some(
            store
                .acquire_lease(&args.volume_id, &args.node_id, args.lease_ttl)
                .await?,
        )
    };
    let volume = store
        .open_volume_as(&args.volume_id, lease.as_ref().map(LeaseRecord::writer))
        .await?;
    let (head, lease) = match lease {
        Some(lease) => {
            let fenced = volume.fence().await?;
            // Where this staging took the volume up, kept in the lease for whoever checks
            // it later (ferryctl move), since generations are pruned.
            let lease = store
                .record_lease_start(&lease, &fenced, args.lease_ttl)
                .await?;
            (fenced, Some(lease))
        }
        None => (volume.head().await, None),
    };
    let status = Arc::new(Status::new(
        &args.volume_id,
        volume.size().await,
        head.generation,
    ));
    let fs = image_fs::ImageFs::new(
        tokio::runtime::Handle::current(),
        volume.clone(),
        status.clone(),
        args.read_only,
    );
    let mut options = vec![
        MountOption::FSName(format!("ferry:{}", args.volume_id)),
        MountOption::Subtype("ferry".into()),
        MountOption::NoDev,
        MountOption::NoSuid,
    ];
    if args.read_only {
        options.push(MountOption::RO);
    }
    let mut session = fuser::Session::new(fs, dir.fuse(), &options).map_err(|e| {
        Error::Internal(format!(
            "cannot mount FUSE at {}: {e}",
            dir.fuse().display()
        ))
    })?;
    tracing::info!(volume.id = %args.volume_id, generation = head.generation, "serving");

    let keeper =
        lease.map(|l| tokio::spawn(keep_lease(store.clone(), l, args.lease_ttl, status.clone())));
    let flusher = tokio::spawn(flush_on_signal(volume.clone(), status.clone()));
    let checkpointer =
        (!args.read_only).then(|| tokio::spawn(checkpoints(volume.clone(), status.clone())));
    let served = tokio::task::spawn_blocking(move || session.run())
        .await
        .map_err(|e| Error::Internal(format!("FUSE session thread failed: {e}")))?;
    flusher.abort();
    if let Some(c) = checkpointer {
        c.abort();
    }
    if let Some(k) = keeper {
        k.abort();
    }
    if let Err(e) = served {
        tracing::error!(error = %e, "FUSE session ended with an error");
    }
    if !args.read_only {
        // The session's end flushed (ImageFs::destroy); give the volume back only when
        // nothing is left unwritten.
        let left = volume.checkpoint().await;
        status.flushed(&left);
        left?;
        store.release_lease(&args.volume_id, &args.node_id).await?;
    }
    dir.remove_pid();
    tracing::info!(volume.id = %args.volume_id, "unmounted; server done");
    Ok(())
}

/// Renews the lease every third of its duration; on losing it, marks the status so the
/// plugin reports the volume abnormal (commits fail by themselves, fenced by the new holder).
async fn keep_lease(store: Store, mut lease: LeaseRecord, ttl: Duration, status: Arc<Status>) {
    loop {
        tokio::time::sleep(ttl / 3).await;
        match store.renew_lease(&lease, ttl).await {
            Ok(l) => lease = l,
            Err(StoreError::Held(why)) => {
                status.lease_lost(why);
                return;
            }
            Err(e) => tracing::warn!(error = %e, "lease renewal failed; retrying"),
        }
    }
}

async fn flush_on_signal(volume: Arc<ferry_store::VolumeHandle>, status: Arc<Status>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("signal: checkpointing (unmount the volume to stop this server)");
        let r = volume.checkpoint().await;
        status.flushed(&r);
    }
}

/// How long the journal may go without a record before its records are checkpointed.
const CHECKPOINT_IDLE: Duration = Duration::from_secs(2);

/// Checkpoints the journal when it has been idle for [`CHECKPOINT_IDLE`] or grown long, so
/// the volume's head catches up and a restage replays little.
async fn checkpoints(volume: Arc<ferry_store::VolumeHandle>, status: Arc<Status>) {
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if volume.checkpoint_due(CHECKPOINT_IDLE).await {
            let r = volume.checkpoint().await;
            if let Err(e) = &r {
                tracing::warn!(error = %e, "checkpoint failed; the journal keeps the writes");
            }
            status.flushed(&r);
        }
    }
}
