//! The volume server: one process per staged volume that serves the volume as a FUSE file
//! (see [`image_fs`]) and keeps its lease alive.
//!
//! It does not mount anything itself: the volume host ([`crate::host`]) mounts the FUSE
//! filesystem, keeps a duplicate of the connection's descriptor, and starts the server with
//! the connection as its standard input and a control socket to the host as its standard
//! output. So the connection outlives the server: a server that dies is replaced on the same
//! connection (the kernel sends again what the dead one read and did not answer), and a
//! server of a new build takes the connection over from the old one without an unmount.
//!
//! It ends in one of three ways:
//! - the FUSE filesystem is unmounted (NodeUnstageVolume does that after detaching the loop
//!   device): it answers what it read, checkpoints, gives the lease back and exits;
//! - the host asks it to drain (a handover to a new server): it stops reading the connection,
//!   answers every request it read, makes every acknowledged write durable (a journal
//!   record), says `drained` and exits, keeping the lease for the node;
//! - it dies: the host decides from the durability marker ([`durability`]) whether a new
//!   server may take the connection up.
//!
//! SIGTERM and SIGINT only make it flush: stopping it under a mounted filesystem would fail
//! every I/O.

pub mod durability;
pub mod fuse;
pub mod image_fs;
pub mod status;

use crate::state::VolumeDir;
use durability::Durability;
use ferry_csi::Error;
use ferry_store::{Error as StoreError, LeaseRecord, Store, VolumeHandle};
use status::Status;
use std::io::{BufRead, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Name of the `ferry` subcommand that runs a volume server.
pub const SUBCOMMAND: &str = "volume-server";

/// The line a server writes on its control socket once it serves.
pub const SERVING: &str = "serving";
/// The line the host writes to ask a server to drain.
pub const DRAIN: &str = "drain";
/// The line a server writes once drained.
pub const DRAINED: &str = "drained";

/// How long a server waits for the requests it read to be answered before it ends.
const ANSWER_WAIT: Duration = Duration::from_secs(60);

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
    /// The connection was served before by a server that died: ask the kernel to send
    /// again what it read and did not answer.
    pub resend: bool,
}

/// Serves one volume on the FUSE connection `fuse` until it is unmounted or the host asks
/// for a drain on `control`.
///
/// # Errors
/// A volume that cannot be opened or fenced, a lease held elsewhere, a connection that
/// cannot be read.
pub async fn run(
    store: Store,
    args: ServerArgs,
    fuse: OwnedFd,
    control: Option<UnixStream>,
) -> Result<(), Error> {
    let dir = VolumeDir::new(&args.state_dir, &args.volume_id)?;
    dir.write_pid(std::process::id())?;
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
    let durability = if args.read_only {
        None
    } else {
        let path = dir.root().join(durability::FILE_NAME);
        Some(Arc::new(Durability::create(&path).map_err(|e| {
            Error::Internal(format!("cannot write {}: {e}", path.display()))
        })?))
    };
    let fs = image_fs::ImageFs::new(
        tokio::runtime::Handle::current(),
        volume.clone(),
        status.clone(),
        durability.clone(),
    );
    let conn = fuse::Connection::new(fuse);
    if args.resend {
        conn.resend().map_err(|e| {
            Error::Internal(format!(
                "the kernel refused to send the dead server's requests again ({e}); \
                 FUSE_NOTIFY_RESEND needs Linux 6.9 or later"
            ))
        })?;
    }
    let (stop_rx, stop_tx) =
        rustix::pipe::pipe().map_err(|e| Error::Internal(format!("cannot make a pipe: {e}")))?;
    let mut control = control;
    if let Some(c) = control.as_mut() {
        say(c, SERVING);
        watch_control(c, stop_tx)?;
    }
    tracing::info!(volume.id = %args.volume_id, generation = head.generation, resend = args.resend, "serving");

    let stopping = Arc::new(AtomicBool::new(false));
    let keeper =
        lease.map(|l| tokio::spawn(keep_lease(store.clone(), l, args.lease_ttl, status.clone())));
    let flusher = tokio::spawn(flush_on_signal(
        volume.clone(),
        status.clone(),
        durability.clone(),
    ));
    let checkpointer = durability.clone().map(|d| {
        tokio::spawn(checkpoints(
            volume.clone(),
            status.clone(),
            d,
            stopping.clone(),
        ))
    });
    let serving = conn.clone();
    let ended = tokio::task::spawn_blocking(move || {
        let ended = fuse::serve(&serving, &fs, Some(&stop_rx));
        // Every request read is answered before the server goes on: a drained connection
        // owes nothing to the kernel, so the next server needs no resend.
        if !serving.in_flight().wait_idle(ANSWER_WAIT) {
            tracing::error!(
                unanswered = serving.in_flight().count(),
                "requests still unanswered after {} s",
                ANSWER_WAIT.as_secs()
            );
        }
        ended
    })
    .await
    .map_err(|e| Error::Internal(format!("FUSE thread failed: {e}")))?;
    stopping.store(true, Ordering::SeqCst);
    flusher.abort();
    if let Some(k) = keeper {
        k.abort();
    }
    let ended = match ended {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(error = %e, "FUSE connection failed");
            fuse::Ended::Unmounted
        }
    };
    if let Some(c) = checkpointer {
        // It sees `stopping` within a quarter second; a checkpoint under way finishes first.
        let _ = c.await;
    }
    match ended {
        fuse::Ended::Stopped => {
            if durability.is_some() {
                make_durable(&volume, &status, durability.as_deref(), Durable::Journal).await?;
            }
            if let Some(c) = control.as_mut() {
                say(c, DRAINED);
            }
            tracing::info!(volume.id = %args.volume_id, "drained; the connection is handed over");
        }
        fuse::Ended::Unmounted => {
            if durability.is_some() {
                // Give the volume back only when nothing is left unwritten.
                make_durable(&volume, &status, durability.as_deref(), Durable::Checkpoint).await?;
                store.release_lease(&args.volume_id, &args.node_id).await?;
            }
            tracing::info!(volume.id = %args.volume_id, "unmounted; server done");
        }
    }
    dir.remove_pid();
    Ok(())
}

fn say(control: &mut UnixStream, line: &str) {
    if let Err(e) = control.write_all(format!("{line}\n").as_bytes()) {
        tracing::warn!(error = %e, line, "cannot tell the volume host");
    }
}

/// Reads the host's lines on a thread; a drain request (or the host going away, which is
/// not a reason to stop serving) writes to `stop`.
fn watch_control(control: &UnixStream, stop: OwnedFd) -> Result<(), Error> {
    let reader = control
        .try_clone()
        .map_err(|e| Error::Internal(format!("control socket: {e}")))?;
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(reader).lines() {
            match line {
                Ok(l) if l.trim() == DRAIN => {
                    tracing::info!("drain asked: answering what was read, then handing over");
                    let _ = rustix::io::write(&stop, b"x");
                    return;
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
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

/// Makes everything durable and records it (the status, the durability marker).
/// How [`make_durable`] makes writes durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Durable {
    /// A journal record (what an fsync does).
    Journal,
    /// Chunks, pages and a commit.
    Checkpoint,
}

/// Makes every write acknowledged so far durable, and records it: the status, and the
/// durability marker once it succeeded.
pub(crate) async fn make_durable(
    volume: &VolumeHandle,
    status: &Status,
    durability: Option<&Durability>,
    how: Durable,
) -> ferry_store::Result<ferry_store::FlushReport> {
    let upto = durability.map(Durability::flush_started);
    let r = match how {
        Durable::Journal => volume.flush().await,
        Durable::Checkpoint => volume.checkpoint().await,
    };
    status.flushed(&r);
    if let (Ok(_), Some(d), Some(upto)) = (&r, durability, upto) {
        d.flushed(upto);
    }
    r
}

async fn flush_on_signal(
    volume: Arc<VolumeHandle>,
    status: Arc<Status>,
    durability: Option<Arc<Durability>>,
) {
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
        let _ = make_durable(&volume, &status, durability.as_deref(), Durable::Checkpoint).await;
    }
}

/// How long the journal may go without a record before its records are checkpointed.
const CHECKPOINT_IDLE: Duration = Duration::from_secs(2);

/// Checkpoints the journal when it has been idle for [`CHECKPOINT_IDLE`] or grown long, so
/// the volume's head catches up and a restage replays little.
async fn checkpoints(
    volume: Arc<VolumeHandle>,
    status: Arc<Status>,
    durability: Arc<Durability>,
    stopping: Arc<AtomicBool>,
) {
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if stopping.load(Ordering::SeqCst) {
            return;
        }
        if volume.checkpoint_due(CHECKPOINT_IDLE).await
            && let Err(e) =
                make_durable(&volume, &status, Some(&durability), Durable::Checkpoint).await
        {
            tracing::warn!(error = %e, "checkpoint failed; the journal keeps the writes");
        }
    }
}
