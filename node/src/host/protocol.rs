//! What the node plugin and the volume host say to each other on the host's socket
//! (`<state>/volume-host.sock`): one JSON object a line each way, one request a
//! connection. Fields are added, never renamed, so a plugin and a host of different builds
//! (during an upgrade) understand each other; unknown fields are ignored.

use ferry_csi::Error;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// Name of the host's socket in the state folder.
pub const SOCKET_NAME: &str = "volume-host.sock";

/// How a volume server is to be run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerSpec {
    /// The volume.
    pub volume_id: String,
    /// The lease holder.
    pub node_id: String,
    /// Served read-only, without a lease.
    pub read_only: bool,
    /// Lease duration, seconds.
    pub lease_ttl_secs: f64,
    /// Read cache of the server, MiB.
    pub cache_mib: usize,
    /// The store settings file.
    pub store_config: PathBuf,
}

/// A request to the host.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum Request {
    /// Who answers.
    Ping,
    /// Serve a volume (mount its FUSE filesystem and start its server), if not served yet.
    Start(ServerSpec),
    /// Stop serving a volume: unmount its FUSE filesystem, wait for its server to end.
    #[serde(rename_all = "camelCase")]
    Stop { volume_id: String },
    /// How a volume is served.
    #[serde(rename_all = "camelCase")]
    Status { volume_id: String },
    /// From a new host: hand every volume over (see `handover`).
    #[serde(rename_all = "camelCase")]
    Handover { instance: String },
}

/// A served volume, as the host reports it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Served {
    /// The server's process id (in the host's PID namespace).
    pub pid: u32,
    /// The binary the server runs.
    pub exe: String,
    /// Servers started on this connection after one died.
    pub restarts: u32,
}

/// The host's answer.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Response {
    /// Whether the request was done.
    pub ok: bool,
    /// Why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The host handed its volumes to another: ask again (the socket now leads there).
    #[serde(default)]
    pub retry: bool,
    /// The host's instance.
    #[serde(default)]
    pub instance: String,
    /// The host's build (`ferry` version and binary).
    #[serde(default)]
    pub build: String,
    /// The volume, when served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served: Option<Served>,
}

impl Response {
    /// Success with nothing to add.
    pub fn ok() -> Response {
        Response {
            ok: true,
            ..Response::default()
        }
    }

    /// Failure saying `why`.
    pub fn failed(why: impl Into<String>) -> Response {
        Response {
            ok: false,
            error: Some(why.into()),
            ..Response::default()
        }
    }
}

/// Writes one JSON line.
///
/// # Errors
/// When the peer is gone.
pub async fn send_line<T: Serialize>(s: &mut UnixStream, msg: &T) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
    line.push(b'\n');
    s.write_all(&line).await
}

/// Reads one JSON line.
///
/// # Errors
/// When the peer is gone or sent something else than `T`.
pub async fn read_line<T: for<'de> Deserialize<'de>>(
    s: &mut BufReader<&mut UnixStream>,
) -> std::io::Result<T> {
    let mut line = String::new();
    if s.read_line(&mut line).await? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    serde_json::from_str(&line).map_err(std::io::Error::other)
}

/// How long a client keeps asking while no host answers or the host hands over.
const RETRY_FOR: Duration = Duration::from_secs(30);

/// The node plugin's side: one request, one answer, asked again while the host hands over.
#[derive(Clone, Debug)]
pub struct Client {
    socket: PathBuf,
}

impl Client {
    /// A client of the host listening on `socket`.
    pub fn new(socket: &Path) -> Client {
        Client {
            socket: socket.to_path_buf(),
        }
    }

    /// The host's socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Sends `req` once and reads the answer.
    ///
    /// # Errors
    /// When no host answers on the socket.
    pub async fn try_call(&self, req: &Request) -> std::io::Result<Response> {
        let mut s = UnixStream::connect(&self.socket).await?;
        send_line(&mut s, req).await?;
        let mut r = BufReader::new(&mut s);
        read_line(&mut r).await
    }

    /// Sends `req` until a host takes it, for at most half a minute.
    ///
    /// # Errors
    /// UNAVAILABLE when no host answers; INTERNAL with the host's reason when it fails.
    pub async fn call(&self, req: &Request) -> Result<Response, Error> {
        let started = Instant::now();
        loop {
            let why = match self.try_call(req).await {
                Ok(r) if r.ok => return Ok(r),
                Ok(r) if !r.retry => {
                    return Err(Error::Internal(r.error.unwrap_or_default()));
                }
                Ok(_) => "it is handing its volumes over to a new host".to_string(),
                Err(e) => e.to_string(),
            };
            if started.elapsed() > RETRY_FOR {
                return Err(Error::Store(ferry_store::Error::Unavailable(format!(
                    "no volume host answers on {} ({why}): is the ferry-volume-host \
                     DaemonSet running on this node?",
                    self.socket.display()
                ))));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
