//! `pods/exec` as the real API server serves it: an HTTP upgrade to a websocket with the
//! `v4.channel.k8s.io` subprotocol, stdout on channel 1, stderr on 2, and the command's
//! outcome as a `Status` object on channel 3 (`Success`, or `Failure` with reason
//! `NonZeroExitCode` and the exit code as a cause), then a close. No container runs here:
//! what a command prints and how it ends is the test's [`ExecReply`], from the handler set
//! with [`crate::FakeApi::on_exec`]. A command that "runs for" a while, or streams output
//! ([`ExecStream`], `yes` say), ends early when the client closes the connection, as a killed
//! `kubectl exec` does.

use futures::{SinkExt, StreamExt};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// One exec request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecCall {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod.
    pub pod: String,
    /// The container asked for, if any.
    pub container: Option<String>,
    /// The command and its arguments.
    pub command: Vec<String>,
}

/// How a command behaves.
#[derive(Clone, Debug, Default)]
pub struct ExecReply {
    /// Written to stdout at once.
    pub stdout: String,
    /// Written to stderr at once.
    pub stderr: String,
    /// Its exit code.
    pub exit_code: i32,
    /// How long it runs before it exits (after printing); `None`: it exits at once.
    pub runs_for: Option<Duration>,
    /// Output it goes on printing, after `stdout` and `stderr` and before it runs for
    /// `runs_for` and exits.
    pub stream: Option<ExecStream>,
}

/// Output a command prints over time: `chunk` on stdout (and on stderr with `stderr`),
/// `times` times, `every` apart.
#[derive(Clone, Debug, Default)]
pub struct ExecStream {
    /// What each write prints.
    pub chunk: String,
    /// How many writes.
    pub times: usize,
    /// The pause between writes.
    pub every: Duration,
    /// Also print each chunk on stderr.
    pub stderr: bool,
}

/// What happened to one exec.
#[derive(Clone, Debug)]
pub struct ExecRecord {
    /// The request.
    pub call: ExecCall,
    /// True when the client closed the connection before the command exited.
    pub ended_by_client: bool,
    /// True once the connection is over.
    pub done: bool,
    /// Bytes of [`ExecStream`] output the client was sent.
    pub streamed: u64,
}

/// The test's commands.
pub type ExecHandler = Arc<dyn Fn(&ExecCall) -> ExecReply + Send + Sync>;

/// Exec calls so far, shared with the serving tasks.
pub type ExecLog = Arc<Mutex<Vec<ExecRecord>>>;

/// The `Status` a finished command reports on channel 3.
fn outcome(call: &ExecCall, code: i32) -> serde_json::Value {
    if code == 0 {
        json!({"metadata": {}, "status": "Success"})
    } else {
        json!({"metadata": {}, "status": "Failure",
            "message": format!("command terminated with non-zero exit code: error executing command {:?}: exit status {code}", call.command),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]}})
    }
}

fn frame(channel: u8, bytes: &[u8]) -> Message {
    let mut v = Vec::with_capacity(bytes.len() + 1);
    v.push(channel);
    v.extend_from_slice(bytes);
    Message::Binary(v.into())
}

/// True when what the client sent ends the session (a close, or the connection gone).
fn closed(m: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>) -> bool {
    matches!(m, Some(Ok(Message::Close(_))) | None | Some(Err(_)))
}

/// Runs one exec over an upgraded connection.
pub async fn serve<S>(
    ws: tokio_tungstenite::WebSocketStream<S>,
    call: ExecCall,
    reply: ExecReply,
    log: ExecLog,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let index = {
        let mut l = log.lock().unwrap_or_else(|p| p.into_inner());
        l.push(ExecRecord {
            call: call.clone(),
            ended_by_client: false,
            done: false,
            streamed: 0,
        });
        l.len() - 1
    };
    let (mut tx, mut rx) = ws.split();
    let mut ended_by_client = false;
    let mut streamed = 0u64;
    let mut sent = async {
        // A message of the channel number alone opens each channel.
        for c in [1u8, 2, 3] {
            tx.send(frame(c, &[])).await?;
        }
        if !reply.stdout.is_empty() {
            tx.send(frame(1, reply.stdout.as_bytes())).await?;
        }
        if !reply.stderr.is_empty() {
            tx.send(frame(2, reply.stderr.as_bytes())).await?;
        }
        Ok::<_, tokio_tungstenite::tungstenite::Error>(())
    }
    .await
    .is_ok();
    if sent && let Some(stream) = &reply.stream {
        let mut channels = vec![1u8];
        if stream.stderr {
            channels.push(2);
        }
        'writes: for _ in 0..stream.times {
            for c in &channels {
                let write = tx.send(frame(*c, stream.chunk.as_bytes()));
                tokio::select! {
                    r = write => {
                        if r.is_err() {
                            sent = false;
                            break 'writes;
                        }
                        streamed += stream.chunk.len() as u64;
                    }
                    m = rx.next() => if closed(m) {
                        ended_by_client = true;
                        sent = false;
                        break 'writes;
                    },
                }
            }
            if !stream.every.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(stream.every) => {}
                    m = rx.next() => if closed(m) {
                        ended_by_client = true;
                        sent = false;
                        break 'writes;
                    },
                }
            }
        }
    }
    if sent && let Some(d) = reply.runs_for {
        let sleep = tokio::time::sleep(d);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => break,
                m = rx.next() => if closed(m) {
                    ended_by_client = true;
                    sent = false;
                    break;
                },
            }
        }
    }
    if sent {
        let status = outcome(&call, reply.exit_code).to_string();
        let _ = tx.send(frame(3, status.as_bytes())).await;
        let _ = tx.send(Message::Close(None)).await;
    }
    let mut l = log.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(r) = l.get_mut(index) {
        r.ended_by_client = ended_by_client;
        r.done = true;
        r.streamed = streamed;
    }
}
