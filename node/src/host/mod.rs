//! The volume host (`ferry volume-host`): the long-lived process on a node that mounts each
//! staged volume's FUSE filesystem, runs its volume server, and holds a duplicate of every
//! FUSE connection's descriptor. It runs apart from the node plugin (its own DaemonSet in
//! Kubernetes), so the plugin's container can be killed, restarted or upgraded with every
//! process in it while the volumes stay served; the plugin asks the host over
//! `<state>/volume-host.sock` ([`protocol`]).
//!
//! Because the host holds each connection:
//! - a server that dies leaves the connection, the mount, the loop device and the
//!   filesystem above in place. When its durability marker says every write it acknowledged
//!   was durable, the host starts a new server on the connection, which asks the kernel to
//!   send again what the dead one read and did not answer: the application sees a pause, no
//!   error. Otherwise (or after three deaths in a minute) the host closes the connection, so
//!   the filesystem above gets I/O errors instead of silently losing acknowledged writes,
//!   and records why in `health.json`, which NodeGetVolumeStats reports;
//! - a new host (a new build) takes every volume over from the running one ([`handover`]):
//!   each old server drains, its connection's descriptor passes to the new host, and a new
//!   server of the new build serves it. Nothing is unmounted.

pub mod handover;
mod process;
pub mod protocol;

use crate::mounts;
use crate::server::{DRAIN, DRAINED, SERVING, durability, fuse};
use crate::state::{Health, VolumeDir, write_atomic};
use ferry_csi::Error;
use handover::Frame;
use protocol::{Request, Response, Served, ServerSpec};
use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream as StdStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};
use tokio::io::BufReader;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Mutex, Notify, watch};

/// How long a server may take to serve, to drain, or to end after its unmount.
const WAIT: Duration = Duration::from_secs(60);
/// Deaths within [`RESTART_WINDOW`] after which a volume's server is not started again.
const MAX_RESTARTS: usize = 3;
const RESTART_WINDOW: Duration = Duration::from_secs(60);

/// Settings of the volume host.
#[derive(Clone, Debug)]
pub struct HostArgs {
    /// The node plugin's state folder (shared with the plugin).
    pub state_dir: PathBuf,
    /// This host's instance (its pod's uid in Kubernetes): a host that handed its volumes
    /// over and is started again under the same instance does not take them back.
    pub instance: String,
    /// How long a host asked to stop while it serves volumes waits for a successor to take
    /// them over.
    pub handover_wait: Duration,
    /// Exit after this long with no volume served and no request.
    pub idle_exit: Option<Duration>,
}

/// A volume the host serves.
struct Volume {
    spec: ServerSpec,
    dir: VolumeDir,
    /// The host's duplicate of the connection; `None` once aborted.
    fuse: Option<Arc<OwnedFd>>,
    server: Option<Server>,
    /// Servers started after one died, in all, and the times of the recent ones.
    restarts: u32,
    recent: Vec<Instant>,
    /// Why the volume is no longer served, once the connection was aborted.
    failed: Option<String>,
}

struct Server {
    pid: u32,
    control: StdStream,
    exited: watch::Receiver<bool>,
    /// Set before the host stops or drains it, so its end is not taken for a death.
    expected: bool,
}

type Slot = Arc<Mutex<Option<Volume>>>;

struct Host {
    args: HostArgs,
    slots: std::sync::Mutex<HashMap<String, Slot>>,
    handed_over: AtomicBool,
    stop_listening: Notify,
    last_request: std::sync::Mutex<Instant>,
}

/// Runs the host until SIGTERM (or SIGINT): takes volumes over from a host already running
/// on the state folder, then serves requests on its socket.
///
/// # Errors
/// A state folder or socket that cannot be made.
pub async fn run(args: HostArgs) -> Result<(), Error> {
    let fail = |what: &str, e: std::io::Error| Error::Internal(format!("{what}: {e}"));
    std::fs::create_dir_all(&args.state_dir).map_err(|e| fail("state folder", e))?;
    let host = Arc::new(Host {
        args: args.clone(),
        slots: Default::default(),
        handed_over: AtomicBool::new(false),
        stop_listening: Notify::new(),
        last_request: std::sync::Mutex::new(Instant::now()),
    });
    let socket = args.state_dir.join(protocol::SOCKET_NAME);
    let mut term = signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut int = signal(tokio::signal::unix::SignalKind::interrupt())?;
    if handed_over_marker(&args).exists() {
        tracing::warn!(instance = %args.instance, "this instance handed its volumes over already; idle until stopped");
        tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        return Ok(());
    }
    host.take_over(&socket).await;
    let listener = bind(&socket).map_err(|e| fail("cannot listen on the host socket", e))?;
    write_atomic(
        &args.state_dir.join("volume-host.pid"),
        std::process::id().to_string().as_bytes(),
    )?;
    tracing::info!(socket = %socket.display(), instance = %args.instance, "volume host serving");
    let mut listening = Some(listener);
    let mut deadline: Option<Instant> = None;
    loop {
        let accept = async {
            match &listening {
                Some(l) => l.accept().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            conn = accept => match conn {
                Ok((s, _)) => {
                    let host = host.clone();
                    tokio::spawn(async move { host.serve_conn(s).await });
                }
                Err(e) => tracing::warn!(error = %e, "accept failed"),
            },
            _ = host.stop_listening.notified() => {
                listening = None;
                tracing::info!("volumes handed over; no longer listening");
            }
            _ = term.recv() => deadline = Some(Instant::now()),
            _ = int.recv() => deadline = Some(Instant::now()),
            _ = tokio::time::sleep(Duration::from_millis(200)), if deadline.is_some() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)), if args.idle_exit.is_some() => {}
        }
        if let Some(idle) = args.idle_exit
            && host.idle_for() > idle
            && host.serving_count().await == 0
        {
            tracing::info!("nothing to serve; exiting");
            break;
        }
        if let Some(since) = deadline {
            let serving = host.serving_count().await;
            if serving == 0 || since.elapsed() > args.handover_wait {
                if serving > 0 {
                    tracing::error!(
                        volumes = serving,
                        "stopping with volumes served and no successor: they fail from now on"
                    );
                }
                break;
            }
        }
    }
    Ok(())
}

fn signal(kind: tokio::signal::unix::SignalKind) -> Result<tokio::signal::unix::Signal, Error> {
    tokio::signal::unix::signal(kind)
        .map_err(|e| Error::Internal(format!("cannot watch signals: {e}")))
}

fn handed_over_marker(args: &HostArgs) -> PathBuf {
    args.state_dir
        .join(format!("volume-host.handed-over.{}", args.instance))
}

/// Listens on `socket`: bound under a temporary name and renamed into place, so a client
/// finds either the old host's socket or this one, never none.
fn bind(socket: &Path) -> std::io::Result<UnixListener> {
    let tmp = socket.with_extension(format!("sock.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let l = UnixListener::bind(&tmp)?;
    std::fs::rename(&tmp, socket)?;
    Ok(l)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn build() -> String {
    format!(
        "ferry {} ({})",
        env!("CARGO_PKG_VERSION"),
        process::exe_of(std::process::id())
    )
}

impl Host {
    fn slot(&self, id: &str) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.entry(id.to_string()).or_default().clone()
    }

    fn all_slots(&self) -> Vec<Slot> {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.values().cloned().collect()
    }

    async fn serving_count(&self) -> usize {
        let mut n = 0;
        for s in self.all_slots() {
            if s.lock().await.as_ref().is_some_and(|v| v.fuse.is_some()) {
                n += 1;
            }
        }
        n
    }

    fn idle_for(&self) -> Duration {
        self.last_request
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed()
    }

    async fn serve_conn(self: Arc<Self>, mut s: UnixStream) {
        *self.last_request.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        let req: Request = {
            let mut r = BufReader::new(&mut s);
            match protocol::read_line(&mut r).await {
                Ok(r) => r,
                Err(e) => {
                    let _ = protocol::send_line(&mut s, &Response::failed(e.to_string())).await;
                    return;
                }
            }
        };
        if let Request::Handover { instance } = req {
            return self.hand_over(s, instance).await;
        }
        let mut resp = if self.handed_over.load(Ordering::SeqCst) {
            Response {
                retry: true,
                ..Response::failed("this volume host handed its volumes over")
            }
        } else {
            match req {
                Request::Ping => Response::ok(),
                Request::Start(spec) => self.start(spec).await,
                Request::Stop { volume_id } => self.stop(&volume_id).await,
                Request::Status { volume_id } => self.status(&volume_id).await,
                Request::Handover { .. } => Response::failed("unreachable"),
            }
        };
        resp.instance.clone_from(&self.args.instance);
        resp.build = build();
        let _ = protocol::send_line(&mut s, &resp).await;
    }

    async fn status(&self, id: &str) -> Response {
        let slot = self.slot(id);
        let v = slot.lock().await;
        let mut r = Response::ok();
        r.served = v.as_ref().and_then(served);
        if let Some(why) = v.as_ref().and_then(|v| v.failed.clone()) {
            r.error = Some(why);
        }
        r
    }

    /// Serves volume `spec.volume_id` if it is not served yet.
    async fn start(self: &Arc<Self>, spec: ServerSpec) -> Response {
        let slot = self.slot(&spec.volume_id);
        let mut guard = slot.lock().await;
        if self.handed_over.load(Ordering::SeqCst) {
            return Response {
                retry: true,
                ..Response::failed("this volume host handed its volumes over")
            };
        }
        if let Some(v) = guard.as_ref()
            && v.failed.is_none()
            && v.server.is_some()
        {
            if v.spec.read_only != spec.read_only {
                return Response::failed(format!(
                    "volume {} is served {}; unstage it first",
                    spec.volume_id,
                    if v.spec.read_only {
                        "read-only"
                    } else {
                        "read-write"
                    }
                ));
            }
            let mut r = Response::ok();
            r.served = served(v);
            return r;
        }
        // Nothing served, or a connection that was aborted: start over on a new mount.
        *guard = None;
        let dir = match VolumeDir::new(&self.args.state_dir, &spec.volume_id) {
            Ok(d) => d,
            Err(e) => return Response::failed(e.to_string()),
        };
        match self.mount_and_serve(&spec, &dir).await {
            Ok(v) => {
                let mut r = Response::ok();
                r.served = served(&v);
                *guard = Some(v);
                r
            }
            Err(e) => Response::failed(e.to_string()),
        }
    }

    async fn mount_and_serve(
        self: &Arc<Self>,
        spec: &ServerSpec,
        dir: &VolumeDir,
    ) -> Result<Volume, Error> {
        dir.remove_health();
        if mounts::at(&dir.fuse())?.is_some() {
            // Left by a host that died with its servers, or aborted: nothing serves it.
            mounts::unmount_all(&dir.fuse()).await?;
        }
        std::fs::create_dir_all(dir.fuse())
            .map_err(|e| Error::Internal(format!("cannot create {}: {e}", dir.fuse().display())))?;
        let fd = fuse::mount(
            &dir.fuse(),
            &format!("ferry:{}", spec.volume_id),
            spec.read_only,
        )
        .map_err(|e| {
            Error::Internal(format!(
                "cannot mount FUSE at {}: {e}",
                dir.fuse().display()
            ))
        })?;
        let mut v = Volume {
            spec: spec.clone(),
            dir: dir.clone(),
            fuse: Some(Arc::new(fd)),
            server: None,
            restarts: 0,
            recent: Vec::new(),
            failed: None,
        };
        if let Err(e) = self.launch(&mut v, false).await {
            v.fuse = None;
            let _ = mounts::unmount_all(&dir.fuse()).await;
            return Err(e);
        }
        Ok(v)
    }

    /// Starts a server on the volume's connection and waits until it serves.
    async fn launch(self: &Arc<Self>, v: &mut Volume, resend: bool) -> Result<(), Error> {
        let Some(fuse) = v.fuse.clone() else {
            return Err(Error::Internal("the connection was aborted".into()));
        };
        let id = v.spec.volume_id.clone();
        let started = process::spawn(
            Path::new(process::OWN_EXE),
            &v.spec,
            &self.args.state_dir,
            &v.dir,
            &fuse,
            resend,
        )
        .map_err(|e| Error::Internal(format!("cannot start the volume server for {id}: {e}")))?;
        let process::Started { mut child, control } = started;
        let pid = child.id().unwrap_or_default();
        if !process::wait_for(&control, SERVING, WAIT).await {
            let _ = child.start_kill();
            let _ = child.wait().await;
            return Err(Error::Internal(format!(
                "volume server for {id} ended before serving: {}",
                v.dir.log_tail()
            )));
        }
        let (tx, exited) = watch::channel(false);
        let host = self.clone();
        tokio::spawn(async move {
            let status = child.wait().await;
            let _ = tx.send(true);
            host.after_exit(id, pid, status.ok()).await;
        });
        v.server = Some(Server {
            pid,
            control,
            exited,
            expected: false,
        });
        Ok(())
    }

    /// [`Host::on_exit`] behind a box: a server that dies is replaced by [`Host::launch`],
    /// which watches the new one with this, a cycle only a boxed future can close.
    fn after_exit(
        self: Arc<Self>,
        id: String,
        pid: u32,
        status: Option<std::process::ExitStatus>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        Box::pin(async move { self.on_exit(&id, pid, status).await })
    }

    /// A server ended: if nobody asked it to, take the connection up again when that is
    /// safe, otherwise abort it and say why.
    async fn on_exit(
        self: &Arc<Self>,
        id: &str,
        pid: u32,
        status: Option<std::process::ExitStatus>,
    ) {
        let slot = self.slot(id);
        let mut guard = slot.lock().await;
        let Some(v) = guard.as_mut() else { return };
        if v.server.as_ref().is_none_or(|s| s.pid != pid || s.expected) {
            return;
        }
        v.server = None;
        let how = status.map_or("an unknown status".to_string(), |s| s.to_string());
        let marker = durability::read(&v.dir.root().join(durability::FILE_NAME));
        v.recent.retain(|t| t.elapsed() < RESTART_WINDOW);
        let reason = if !v.spec.read_only && marker == durability::Found::Dirty {
            format!(
                "the volume server died ({how}) holding writes it had acknowledged but not \
                 yet made durable"
            )
        } else if v.recent.len() >= MAX_RESTARTS {
            format!(
                "the volume server died ({how}) {MAX_RESTARTS} times within {} s",
                RESTART_WINDOW.as_secs()
            )
        } else {
            v.recent.push(Instant::now());
            v.restarts += 1;
            match self.launch(v, true).await {
                Ok(()) => {
                    tracing::warn!(volume.id = %id, %how, "volume server died; a new one took the connection up (nothing acknowledged was lost)");
                    let _ = v.dir.save_health(&Health {
                        abnormal: false,
                        message: format!(
                            "the volume server died ({how}) with every acknowledged write \
                             durable; a new server took the volume up ({} restarts)",
                            v.restarts
                        ),
                        at_ms: now_ms(),
                    });
                    return;
                }
                Err(e) => format!("the volume server died ({how}) and a new one failed: {e}"),
            }
        };
        abort(v, reason);
    }

    async fn stop(&self, id: &str) -> Response {
        let slot = self.slot(id);
        let mut guard = slot.lock().await;
        if self.handed_over.load(Ordering::SeqCst) {
            return Response {
                retry: true,
                ..Response::failed("this volume host handed its volumes over")
            };
        }
        let dir = match VolumeDir::new(&self.args.state_dir, id) {
            Ok(d) => d,
            Err(e) => return Response::failed(e.to_string()),
        };
        let mut exited = None;
        if let Some(s) = guard.as_mut().and_then(|v| v.server.as_mut()) {
            s.expected = true;
            exited = Some(s.exited.clone());
        }
        // Unmounting ends the session: the server answers, checkpoints, releases the lease.
        if let Err(e) = mounts::unmount_all(&dir.fuse()).await {
            return Response::failed(e.to_string());
        }
        if let Some(mut rx) = exited {
            let ended = tokio::time::timeout(WAIT, rx.wait_for(|e| *e)).await;
            if ended.is_err() {
                return Response::failed(format!(
                    "volume server of {id} did not end within {} s after its unmount: {}",
                    WAIT.as_secs(),
                    dir.log_tail()
                ));
            }
        }
        *guard = None;
        dir.remove_health();
        Response::ok()
    }

    /// Takes the volumes of the host answering on `socket` over, if one does.
    async fn take_over(self: &Arc<Self>, socket: &Path) {
        let client = protocol::Client::new(socket);
        let Ok(pong) = client.try_call(&Request::Ping).await else {
            let _ = std::fs::remove_file(socket);
            return;
        };
        tracing::info!(from = %pong.instance, build = %pong.build, "taking the volumes over from the running host");
        let Ok(mut s) = UnixStream::connect(socket).await else {
            return;
        };
        let req = Request::Handover {
            instance: self.args.instance.clone(),
        };
        if protocol::send_line(&mut s, &req).await.is_err() {
            return;
        }
        let Ok(s) = s.into_std() else { return };
        if s.set_nonblocking(false).is_err() {
            return;
        }
        let s = Arc::new(s);
        let mut launches = Vec::new();
        loop {
            let rx = s.clone();
            let got = tokio::task::spawn_blocking(move || handover::recv(&rx)).await;
            match got {
                Ok(Ok((
                    Frame::Volume {
                        spec,
                        drained,
                        restarts,
                    },
                    Some(fd),
                ))) => {
                    // Start each as it arrives, while the old host drains the next.
                    let host = self.clone();
                    launches.push(tokio::spawn(async move {
                        host.adopt(spec, fd, drained, restarts).await
                    }));
                }
                Ok(Ok((Frame::Done, _))) => break,
                Ok(Ok((frame, None))) => {
                    tracing::error!(?frame, "a volume arrived without its connection");
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "the handover broke off");
                    break;
                }
                Err(e) => {
                    tracing::error!(error = %e, "handover thread failed");
                    break;
                }
            }
        }
        for l in launches {
            let _ = l.await;
        }
    }

    /// Serves a connection handed over by the old host.
    async fn adopt(self: Arc<Self>, spec: ServerSpec, fd: OwnedFd, drained: bool, restarts: u32) {
        let id = spec.volume_id.clone();
        let Ok(dir) = VolumeDir::new(&self.args.state_dir, &id) else {
            return;
        };
        let slot = self.slot(&id);
        let mut guard = slot.lock().await;
        let mut v = Volume {
            spec,
            dir,
            fuse: Some(Arc::new(fd)),
            server: None,
            restarts,
            recent: Vec::new(),
            failed: None,
        };
        let marker = durability::read(&v.dir.root().join(durability::FILE_NAME));
        if !drained && !v.spec.read_only && marker == durability::Found::Dirty {
            abort(&mut v, "the volume server died during a handover holding writes it had acknowledged but not yet made durable".into());
        } else if let Err(e) = self.launch(&mut v, !drained).await {
            abort(
                &mut v,
                format!("the new volume server failed to take the volume over: {e}"),
            );
        } else {
            tracing::info!(volume.id = %id, drained, "took the volume over");
        }
        *guard = Some(v);
    }

    /// Hands every volume to the host on `s`: drains each server and sends its connection.
    async fn hand_over(self: Arc<Self>, s: UnixStream, to: String) {
        if to == self.args.instance || self.handed_over.swap(true, Ordering::SeqCst) {
            return;
        }
        tracing::info!(to = %to, "handing the volumes over");
        let Ok(s) = s.into_std() else { return };
        if s.set_nonblocking(false).is_err() {
            return;
        }
        let s = Arc::new(s);
        for slot in self.all_slots() {
            let mut guard = slot.lock().await;
            let Some(mut v) = guard.take() else { continue };
            let Some(fuse) = v.fuse.clone() else {
                *guard = Some(v);
                continue;
            };
            let drained = match v.server.as_mut() {
                Some(server) => {
                    server.expected = true;
                    let ok = process::tell(&server.control, DRAIN)
                        && process::wait_for(&server.control, DRAINED, WAIT).await;
                    let mut rx = server.exited.clone();
                    let _ = tokio::time::timeout(WAIT, rx.wait_for(|e| *e)).await;
                    ok
                }
                None => false,
            };
            let frame = Frame::Volume {
                spec: v.spec.clone(),
                drained,
                restarts: v.restarts,
            };
            let tx = s.clone();
            let sent = tokio::task::spawn_blocking(move || {
                handover::send(&tx, &frame, Some(fuse.as_fd()))
            })
            .await;
            if !matches!(sent, Ok(Ok(()))) {
                tracing::error!(volume.id = %v.spec.volume_id, "could not hand the volume over; it fails from now on");
            } else {
                tracing::info!(volume.id = %v.spec.volume_id, drained, "volume handed over");
            }
        }
        let tx = s.clone();
        let _ = tokio::task::spawn_blocking(move || handover::send(&tx, &Frame::Done, None)).await;
        let _ = std::fs::write(handed_over_marker(&self.args), to.as_bytes());
        self.stop_listening.notify_one();
    }
}

fn served(v: &Volume) -> Option<Served> {
    let s = v.server.as_ref()?;
    Some(Served {
        pid: s.pid,
        exe: process::exe_of(s.pid),
        restarts: v.restarts,
    })
}

/// Closes the host's duplicate of the connection (the last one once its server is dead):
/// the kernel aborts it, so every request fails with an error, and records why.
fn abort(v: &mut Volume, reason: String) {
    tracing::error!(volume.id = %v.spec.volume_id, %reason, "aborting the volume's FUSE connection");
    v.fuse = None;
    v.server = None;
    let message = format!(
        "{reason}; its FUSE connection was aborted so the filesystem sees I/O errors rather than \
         silently lost writes: delete the pods using it so the volume is staged again (every \
         write an fsync acknowledged is in the store)"
    );
    let _ = v.dir.save_health(&Health {
        abnormal: true,
        message: message.clone(),
        at_ms: now_ms(),
    });
    v.failed = Some(message);
}
