//! Prometheus metrics of a ferry process: a small registry of labelled counters and
//! duration histograms, a tower layer that counts every gRPC call by method and status
//! code, and a plain HTTP endpoint serving the text exposition format (`/metrics`).

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Upper bounds of the duration histogram's buckets, seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0, 300.0, 1800.0,
];

type Labels = Vec<(&'static str, String)>;

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
struct Registry {
    help: BTreeMap<&'static str, (&'static str, &'static str)>,
    counters: BTreeMap<(&'static str, Labels), f64>,
    histograms: BTreeMap<(&'static str, Labels), Histogram>,
}

fn registry() -> &'static Mutex<Registry> {
    static R: OnceLock<Mutex<Registry>> = OnceLock::new();
    R.get_or_init(Mutex::default)
}

fn with<T>(f: impl FnOnce(&mut Registry) -> T) -> T {
    let mut r = registry().lock().unwrap_or_else(|p| p.into_inner());
    f(&mut r)
}

/// Adds `v` to the counter `name{labels}`.
pub fn add(name: &'static str, help: &'static str, labels: &[(&'static str, &str)], v: f64) {
    let labels = labels.iter().map(|(k, v)| (*k, v.to_string())).collect();
    with(|r| {
        r.help.entry(name).or_insert((help, "counter"));
        *r.counters.entry((name, labels)).or_default() += v;
    });
}

/// Sets the gauge `name{labels}` to `v`.
pub fn set(name: &'static str, help: &'static str, labels: &[(&'static str, &str)], v: f64) {
    let labels = labels.iter().map(|(k, v)| (*k, v.to_string())).collect();
    with(|r| {
        r.help.entry(name).or_insert((help, "gauge"));
        r.counters.insert((name, labels), v);
    });
}

/// Records one observation of `d` in the histogram `name{labels}`.
pub fn observe(
    name: &'static str,
    help: &'static str,
    labels: &[(&'static str, &str)],
    d: Duration,
) {
    let labels = labels.iter().map(|(k, v)| (*k, v.to_string())).collect();
    let secs = d.as_secs_f64();
    with(|r| {
        r.help.entry(name).or_insert((help, "histogram"));
        let h = r.histograms.entry((name, labels)).or_default();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    });
}

/// Counts one operation: `ferry_operations_total`, on failure
/// `ferry_operation_failures_total{kind}`, and its duration.
pub fn operation(op: &str, failure: Option<&str>, took: Duration) {
    add(
        "ferry_operations_total",
        "Operations run, by operation.",
        &[("operation", op)],
        1.0,
    );
    if let Some(kind) = failure {
        add(
            "ferry_operation_failures_total",
            "Operations that failed, by operation and kind of failure.",
            &[("operation", op), ("kind", kind)],
            1.0,
        );
    }
    observe(
        "ferry_operation_duration_seconds",
        "How long operations took, by operation.",
        &[("operation", op)],
        took,
    );
}

/// Counts bytes moved in `direction` (for example `export`, `import`, `flush`).
pub fn bytes_moved(direction: &str, bytes: u64) {
    add(
        "ferry_bytes_moved_total",
        "Bytes of volume data moved, by direction.",
        &[("direction", direction)],
        bytes as f64,
    );
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn label_text(labels: &Labels, extra: Option<(&str, String)>) -> String {
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    if let Some((k, v)) = extra {
        parts.push(format!("{k}=\"{v}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

/// The registry in Prometheus' text exposition format (version 0.0.4).
pub fn render() -> String {
    use std::fmt::Write;
    with(|r| {
        let mut out = String::new();
        for (name, (help, kind)) in &r.help {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for ((n, labels), v) in r.counters.iter().filter(|((n, _), _)| n == name) {
                let _ = writeln!(out, "{n}{} {v}", label_text(labels, None));
            }
            for ((n, labels), h) in r.histograms.iter().filter(|((n, _), _)| n == name) {
                for (i, b) in BUCKETS.iter().enumerate() {
                    let le = Some(("le", b.to_string()));
                    let _ = writeln!(out, "{n}_bucket{} {}", label_text(labels, le), h.counts[i]);
                }
                let inf = Some(("le", "+Inf".to_string()));
                let _ = writeln!(out, "{n}_bucket{} {}", label_text(labels, inf), h.count);
                let _ = writeln!(out, "{n}_sum{} {}", label_text(labels, None), h.sum);
                let _ = writeln!(out, "{n}_count{} {}", label_text(labels, None), h.count);
            }
        }
        out
    })
}

/// Serves `/metrics` over plain HTTP/1.1 on `addr` until the process ends.
///
/// # Errors
/// The address cannot be bound.
pub async fn serve(addr: std::net::SocketAddr) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving metrics");
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut n = 0;
                // Read the request head; bodies are not expected.
                while n < buf.len() {
                    match conn.read(&mut buf[n..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => n += k,
                    }
                    if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                let head = String::from_utf8_lossy(&buf[..n]);
                let path = head.split_whitespace().nth(1).unwrap_or("/");
                let (status, body) = match path {
                    "/metrics" => ("200 OK", render()),
                    "/healthz" => ("200 OK", "ok\n".to_string()),
                    _ => ("404 Not Found", "try /metrics\n".to_string()),
                };
                let reply = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(reply.as_bytes()).await;
            });
        }
    });
    Ok(())
}

/// A tower layer counting each gRPC call by method, with the status code of failures (read
/// from the trailers-only response a unary error is sent as).
#[derive(Clone, Copy, Default)]
pub struct GrpcMetricsLayer;

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;
    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics { inner }
    }
}

/// See [`GrpcMetricsLayer`].
#[derive(Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
}

impl<S, B, R> tower::Service<http::Request<B>> for GrpcMetrics<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let method = req
            .uri()
            .path()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let started = Instant::now();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let res = fut.await;
            let code = match &res {
                Ok(r) => r
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .filter(|c| *c != "0")
                    .map(|c| tonic::Code::from_bytes(c.as_bytes()))
                    .map(|c| format!("{c:?}")),
                Err(_) => Some("Transport".to_string()),
            };
            operation(&method, code.as_deref(), started.elapsed());
            res
        })
    }
}
