//! Serving gRPC on a unix socket, with a graceful stop on SIGTERM or SIGINT.

use crate::authority::FixAuthority;
use std::path::{Path, PathBuf};
use tokio::net::UnixListener;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::server::Router;

/// Turns a CSI endpoint (`unix:///csi/csi.sock`, `unix:/csi/csi.sock` or a plain path) into a
/// socket path.
///
/// # Errors
/// A message naming the endpoint when it is not a unix socket.
pub fn socket_path(endpoint: &str) -> Result<PathBuf, String> {
    let p = endpoint
        .strip_prefix("unix://")
        .or_else(|| endpoint.strip_prefix("unix:"))
        .unwrap_or(endpoint);
    if p.is_empty() || p.contains("://") {
        return Err(format!(
            "endpoint {endpoint:?} is not a unix socket: use unix:///path/to/csi.sock"
        ));
    }
    Ok(PathBuf::from(p))
}

/// A router whose calls are counted by [`crate::metrics::GrpcMetricsLayer`].
pub type MeteredRouter = Router<
    tower::layer::util::Stack<crate::metrics::GrpcMetricsLayer, tower::layer::util::Identity>,
>;

/// A server builder with ferry's metrics layer.
pub fn server() -> tonic::transport::Server<
    tower::layer::util::Stack<crate::metrics::GrpcMetricsLayer, tower::layer::util::Identity>,
> {
    tonic::transport::Server::builder().layer(crate::metrics::GrpcMetricsLayer)
}

/// Binds `path` (replacing a stale socket file) and serves `router` until `shutdown`
/// resolves, then removes the socket.
///
/// # Errors
/// I/O errors binding the socket; transport errors.
pub async fn serve_unix(
    router: MeteredRouter,
    path: &Path,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    let listener = UnixListener::bind(path)?;
    tracing::info!(socket = %path.display(), "serving CSI");
    // Clients that send the socket path as :authority are answered too (see authority.rs).
    let incoming = UnixListenerStream::new(listener).map(|c| c.map(FixAuthority::new));
    router
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    let _ = std::fs::remove_file(path);
    Ok(())
}

/// Resolves on SIGTERM or SIGINT.
pub async fn termination() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the process still stops when killed.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("stopping on signal");
}

/// A tonic channel over a unix socket, for clients and tests.
///
/// # Errors
/// Transport errors when the socket does not answer.
pub async fn connect_unix(
    path: &Path,
) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    let path = path.to_path_buf();
    tonic::transport::Endpoint::from_static("http://[::1]:50051")
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move {
                let s = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(s))
            }
        }))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(
            socket_path("unix:///csi/csi.sock").unwrap(),
            PathBuf::from("/csi/csi.sock")
        );
        assert_eq!(
            socket_path("unix:/a.sock").unwrap(),
            PathBuf::from("/a.sock")
        );
        assert_eq!(socket_path("/b.sock").unwrap(), PathBuf::from("/b.sock"));
        assert!(socket_path("tcp://1.2.3.4:5").is_err());
    }
}
