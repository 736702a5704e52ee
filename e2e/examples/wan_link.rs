//! A wide-area link on loopback: a TCP proxy that puts a set round-trip time and bandwidth
//! between its clients and one server, for benchmarks against an object store that is far
//! away (`hack/bench-wan.sh`). This machine's kernel has no `netem`, so the delay is made
//! here, in user space.
//!
//! What it models: each direction is one FIFO link of `--mbit` megabits a second shared by
//! every connection (a byte waits for the bytes before it to be sent), followed by a one-way
//! delay of half the round-trip time; a new connection waits one round trip before its first
//! byte goes through (the TCP handshake). Bytes cross in the order sent, none are lost.
//! What it does not: TCP's own behaviour on a long path (slow start, the congestion window,
//! receive windows smaller than the bandwidth-delay product: the kernel's TCP here sees
//! loopback's round trip on both legs), loss, jitter, or a queue limit of the link
//! (each connection's backlog waits in this process instead).
//!
//! It counts bytes each way and, on the client-to-server stream, HTTP/1.1 requests (by their
//! framing: headers, then a `Content-Length` or chunked body), and serves the counts as
//! JSON on `--stats` (`{"up":..,"down":..,"requests":..,"connections":..}`).
//!
//! Usage: wan_link --listen 127.0.0.1:P --to 127.0.0.1:Q --rtt-ms 20 --mbit 1000
//! --stats 127.0.0.1:R

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, mpsc};
use tokio::time::Instant;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One direction of the link.
struct Link {
    bytes_per_sec: f64,
    one_way: Duration,
    free_at: Mutex<Instant>,
    bytes: AtomicU64,
}

impl Link {
    /// When `n` bytes handed to the link now arrive at the far end.
    async fn arrival(&self, n: usize) -> Instant {
        let now = Instant::now();
        let mut free = self.free_at.lock().await;
        let start = (*free).max(now);
        *free = start + Duration::from_secs_f64(n as f64 / self.bytes_per_sec);
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        *free + self.one_way
    }
}

#[derive(Default)]
struct Counts {
    requests: AtomicU64,
    connections: AtomicU64,
}

fn arg(name: &str) -> Result<String, BoxError> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .ok_or_else(|| format!("missing {name}").into())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let listen = arg("--listen")?;
    let to = arg("--to")?;
    let rtt = Duration::from_secs_f64(arg("--rtt-ms")?.parse::<f64>()? / 1000.0);
    let mbit: f64 = arg("--mbit")?.parse()?;
    let link = |_: ()| {
        Arc::new(Link {
            bytes_per_sec: mbit * 1e6 / 8.0,
            one_way: rtt / 2,
            free_at: Mutex::new(Instant::now()),
            bytes: AtomicU64::new(0),
        })
    };
    let (up, down) = (link(()), link(()));
    let counts = Arc::new(Counts::default());
    if let Ok(stats) = arg("--stats") {
        let l = TcpListener::bind(&stats).await?;
        let (up, down, counts) = (up.clone(), down.clone(), counts.clone());
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let body = format!(
                    "{{\"up\":{},\"down\":{},\"requests\":{},\"connections\":{}}}",
                    up.bytes.load(Ordering::Relaxed),
                    down.bytes.load(Ordering::Relaxed),
                    counts.requests.load(Ordering::Relaxed),
                    counts.connections.load(Ordering::Relaxed)
                );
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(reply.as_bytes()).await;
            }
        });
    }
    let l = TcpListener::bind(&listen).await?;
    eprintln!("wan_link: {listen} -> {to}, RTT {rtt:?}, {mbit} Mbit/s each way");
    loop {
        let (client, _) = l.accept().await?;
        let (up, down, counts, to) = (up.clone(), down.clone(), counts.clone(), to.clone());
        counts.connections.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            // The handshake's round trip before anything crosses.
            tokio::time::sleep(rtt).await;
            let Ok(server) = TcpStream::connect(&to).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            let a = tokio::spawn(pump(cr, sw, up, Some(counts)));
            let b = tokio::spawn(pump(sr, cw, down, None));
            let _ = tokio::join!(a, b);
        });
    }
}

/// Copies `from` to `to` through `link`, counting HTTP requests when `counts` is given.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    link: Arc<Link>,
    counts: Option<Arc<Counts>>,
) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(256);
    let writer = tokio::spawn(async move {
        while let Some((at, bytes)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    });
    let mut parser = Http::default();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(c) = &counts {
            let done = parser.feed(&buf[..n]);
            c.requests.fetch_add(done, Ordering::Relaxed);
        }
        let at = link.arrival(n).await;
        if tx.send((at, buf[..n].to_vec())).await.is_err() {
            break;
        }
    }
    drop(tx);
    let _ = writer.await;
}

/// HTTP/1.1 request framing, enough to count requests in a stream.
#[derive(Default)]
struct Http {
    state: State,
    /// A header or chunk-size line not yet ended.
    partial: Vec<u8>,
    /// Header lines of the request being read.
    head: Vec<String>,
}

#[derive(Default, Clone, Copy)]
enum State {
    #[default]
    Head,
    Body(u64),
    ChunkSize,
    ChunkData(u64),
    /// The CRLF after a chunk's data.
    ChunkEnd,
    Trailer,
    Lost,
}

impl Http {
    /// Feeds bytes; returns the requests whose headers ended in them.
    fn feed(&mut self, mut data: &[u8]) -> u64 {
        let mut done = 0;
        while !data.is_empty() {
            match self.state {
                State::Lost => return done,
                State::Body(n) | State::ChunkData(n) => {
                    let take = n.min(data.len() as u64);
                    data = &data[take as usize..];
                    let left = n - take;
                    self.state = match (self.state, left) {
                        (State::Body(_), 0) => State::Head,
                        (State::Body(_), l) => State::Body(l),
                        (_, 0) => State::ChunkEnd,
                        (_, l) => State::ChunkData(l),
                    };
                }
                _ => {
                    let Some(pos) = data.iter().position(|b| *b == b'\n') else {
                        self.partial.extend_from_slice(data);
                        break;
                    };
                    self.partial.extend_from_slice(&data[..=pos]);
                    data = &data[pos + 1..];
                    let text = String::from_utf8_lossy(&self.partial).into_owned();
                    self.partial.clear();
                    self.line(text.trim_end_matches(['\r', '\n']), &mut done);
                }
            }
        }
        done
    }

    fn line(&mut self, t: &str, done: &mut u64) {
        match self.state {
            State::Head if t.is_empty() && self.head.is_empty() => {} // stray CRLF
            State::Head if !t.is_empty() => self.head.push(t.to_ascii_lowercase()),
            State::Head => {
                *done += 1;
                let len = self
                    .head
                    .iter()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<u64>().ok());
                let chunked = self
                    .head
                    .iter()
                    .any(|l| l.starts_with("transfer-encoding:") && l.contains("chunked"));
                self.head.clear();
                self.state = match (chunked, len) {
                    (true, _) => State::ChunkSize,
                    (false, Some(n)) if n > 0 => State::Body(n),
                    _ => State::Head,
                };
            }
            State::ChunkEnd => self.state = State::ChunkSize,
            State::ChunkSize => {
                let size = t.split(';').next().unwrap_or("").trim();
                self.state = match u64::from_str_radix(size, 16) {
                    Ok(0) => State::Trailer,
                    Ok(n) => State::ChunkData(n),
                    Err(_) => State::Lost,
                };
            }
            State::Trailer if t.is_empty() => self.state = State::Head,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Http;

    #[test]
    fn requests_are_counted_across_reads() {
        let stream = b"PUT /b/k HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET /b/k HTTP/1.1\r\nHost: x\r\n\r\nPUT /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nHEAD / HTTP/1.1\r\n\r\n";
        for cut in 1..stream.len() {
            let mut h = Http::default();
            let n = h.feed(&stream[..cut]) + h.feed(&stream[cut..]);
            assert_eq!(n, 4, "cut at {cut}");
        }
    }
}
