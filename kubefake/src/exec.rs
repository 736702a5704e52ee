//! `pods/exec` as the real API server serves it: an HTTP upgrade to a websocket with the
//! `v4.channel.k8s.io` subprotocol, stdout on channel 1, stderr on 2, and the command's
//! outcome as a `Status` object on channel 3 (`Success`, or `Failure` with reason
//! `NonZeroExitCode` and the exit code as a cause), then a close. No container runs here:
//! what a command prints and how it ends is the test's [`ExecReply`], from the handler set
//! with [`crate::FakeApi::on_exec`]. A command that "runs for" a while ends early when the
//! client closes the connection, as a killed `kubectl exec` does.

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
        });
        l.len() - 1
    };
    let (mut tx, mut rx) = ws.split();
    let mut ended_by_client = false;
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
    if sent && let Some(d) = reply.runs_for {
        let sleep = tokio::time::sleep(d);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => break,
                m = rx.next() => match m {
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                        ended_by_client = true;
                        sent = false;
                        break;
                    }
                    Some(Ok(_)) => {}
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
    }
}
