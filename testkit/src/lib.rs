//! Starts real object-store servers for tests: moto (S3), Azurite (Azure Blob) and
//! fake-gcs-server (GCS), installed by `hack/install-test-servers.sh` into
//! `.cache/test-servers`. Each listens on 127.0.0.1 on a port picked here and is killed when
//! its [`TestServer`] drops.
//!
//! When a server is not installed, [`TestServer::start`] returns `None` so a developer run can
//! skip with a printed reason; with `FERRY_REQUIRE_SERVERS=1` (set by CI) it panics instead,
//! so CI never passes by skipping.

use base64::Engine;
use hmac::{Hmac, Mac};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Azurite's published development account.
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
/// Azurite's published development key.
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Which server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// moto_server, S3 API.
    S3,
    /// Azurite blob service.
    Azblob,
    /// fake-gcs-server.
    Gcs,
}

/// A running server, killed on drop.
pub struct TestServer {
    child: Child,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    /// Which server.
    pub kind: Kind,
    _dir: tempfile::TempDir,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where the install script puts the servers.
pub fn servers_dir() -> PathBuf {
    if let Ok(d) = std::env::var("FERRY_TEST_SERVERS") {
        return PathBuf::from(d);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../.cache/test-servers")
}

/// True when CI asks that every server test really runs.
pub fn servers_required() -> bool {
    std::env::var("FERRY_REQUIRE_SERVERS").is_ok_and(|v| v == "1")
}

/// Picks a free port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

impl TestServer {
    /// Starts a server of `kind`; `None` (with the reason printed) when it is not installed
    /// and CI does not require it.
    ///
    /// # Panics
    /// When the server is required but missing, or does not come up within 60 s.
    pub async fn start(kind: Kind) -> Option<TestServer> {
        let dir = servers_dir();
        let port = free_port();
        let data = tempfile::tempdir().expect("temporary folder for a test server");
        let cmd = match kind {
            Kind::S3 => {
                let bin = dir.join("venv/bin/moto_server");
                present(&bin, kind)?;
                let mut c = Command::new(bin);
                c.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
                c
            }
            Kind::Azblob => {
                let bin = dir.join("node_modules/.bin/azurite-blob");
                present(&bin, kind)?;
                let mut c = Command::new(bin);
                c.args([
                    "--blobHost",
                    "127.0.0.1",
                    "--blobPort",
                    &port.to_string(),
                    "--inMemoryPersistence",
                    "--skipApiVersionCheck",
                    "--disableTelemetry",
                    "--silent",
                ]);
                c
            }
            Kind::Gcs => {
                let path_file = dir.join("fake-gcs-server.path");
                let bin = std::fs::read_to_string(&path_file)
                    .map(|s| PathBuf::from(s.trim()))
                    .unwrap_or(path_file);
                present(&bin, kind)?;
                let mut c = Command::new(bin);
                c.args([
                    "-scheme",
                    "http",
                    "-host",
                    "127.0.0.1",
                    "-port",
                    &port.to_string(),
                    "-backend",
                    "memory",
                    "-external-url",
                    &format!("http://127.0.0.1:{port}"),
                    "-log-level",
                    "warn",
                ]);
                c
            }
        };
        let mut cmd = cmd;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {kind:?} server: {e}"));
        let server = TestServer {
            child,
            port,
            kind,
            _dir: data,
        };
        server.wait_ready().await;
        Some(server)
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", self.port)).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "{:?} server did not listen on port {} within 60 s",
            self.kind, self.port
        );
    }

    /// The endpoint URL of the server.
    pub fn endpoint(&self) -> String {
        match self.kind {
            Kind::Azblob => format!("http://127.0.0.1:{}/{AZURITE_ACCOUNT}", self.port),
            _ => format!("http://127.0.0.1:{}", self.port),
        }
    }

    /// Creates bucket (or container) `name` and returns store settings for it, as the flat
    /// map a StorageClass or Secret would hold.
    ///
    /// # Panics
    /// When the server refuses to create the bucket.
    pub async fn bucket(&self, name: &str) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        m.insert("bucket".to_string(), name.to_string());
        m.insert("endpoint".to_string(), self.endpoint());
        match self.kind {
            Kind::S3 => {
                self.http("PUT", &format!("/{name}"), &[], b"").await;
                m.insert("backend".into(), "s3".into());
                m.insert("region".into(), "us-east-1".into());
                m.insert("accessKeyId".into(), "test".into());
                m.insert("secretAccessKey".into(), "test".into());
            }
            Kind::Azblob => {
                self.create_container(name).await;
                m.insert("backend".into(), "azblob".into());
                m.insert("accountName".into(), AZURITE_ACCOUNT.into());
                m.insert("accountKey".into(), AZURITE_KEY.into());
            }
            Kind::Gcs => {
                let body = format!("{{\"name\":\"{name}\"}}");
                self.http(
                    "POST",
                    "/storage/v1/b?project=test",
                    &[("Content-Type", "application/json")],
                    body.as_bytes(),
                )
                .await;
                m.insert("backend".into(), "gcs".into());
                m.insert("anonymous".into(), "true".into());
            }
        }
        m
    }

    /// Kills the server (to test an unreachable store) and waits for it to exit.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    async fn create_container(&self, name: &str) {
        let date = httpdate::fmt_http_date(std::time::SystemTime::now());
        let version = "2021-08-06";
        let path = format!("/{AZURITE_ACCOUNT}/{name}");
        let to_sign = format!(
            "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n/{AZURITE_ACCOUNT}{path}\nrestype:container"
        );
        let key = base64::engine::general_purpose::STANDARD
            .decode(AZURITE_KEY)
            .expect("Azurite key is base64");
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).expect("HMAC takes any key");
        mac.update(to_sign.as_bytes());
        let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        let auth = format!("SharedKey {AZURITE_ACCOUNT}:{sig}");
        self.http(
            "PUT",
            &format!("{path}?restype=container"),
            &[
                ("x-ms-date", &date),
                ("x-ms-version", version),
                ("Authorization", &auth),
            ],
            b"",
        )
        .await;
    }

    /// One HTTP/1.1 request; panics unless the answer is 2xx.
    async fn http(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) {
        let mut last = String::new();
        for _ in 0..50 {
            match self.try_http(method, path, headers, body).await {
                Ok(status) if (200..300).contains(&status) => return,
                Ok(status) => last = format!("HTTP {status}"),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("{:?} server: {method} {path} failed: {last}", self.kind);
    }

    async fn try_http(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<u16> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).await?;
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.port,
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).await?;
        s.write_all(body).await?;
        let mut resp = Vec::new();
        s.read_to_end(&mut resp).await?;
        let line = String::from_utf8_lossy(&resp);
        line.split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad HTTP answer: {line:.200}")))
    }
}

fn present(bin: &Path, kind: Kind) -> Option<()> {
    if bin.exists() {
        return Some(());
    }
    let msg = format!(
        "{kind:?} test server not installed ({}); run hack/install-test-servers.sh",
        bin.display()
    );
    if servers_required() {
        panic!("{msg}");
    }
    eprintln!("SKIP: {msg}");
    None
}

/// True when a test that needs root must be skipped: not root. It prints why; with
/// `FERRY_REQUIRE_ROOT=1` (which the test command sets when it runs as root) it panics
/// instead, so a run as root never passes by skipping.
pub fn skip_unless_root(why: &str) -> bool {
    if is_root() {
        return false;
    }
    if std::env::var("FERRY_REQUIRE_ROOT").is_ok_and(|v| v == "1") {
        panic!("{why} needs root, and FERRY_REQUIRE_ROOT=1 says this run must not skip it");
    }
    eprintln!("SKIP: {why} needs root");
    true
}

/// True when this process runs as root (tests that mount need it).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}
