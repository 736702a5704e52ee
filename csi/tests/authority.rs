//! Defect: a gRPC client that sends the socket path as `:authority` (grpc-core's and
//! grpc-java's default for `unix:///path`) had every stream reset. Here a real tonic server
//! on a real unix socket gets exactly those bytes, HTTP/2 frames written by hand as such a
//! client writes them, and must answer Probe.

use ferry_csi::IdentityService;
use ferry_proto::v1::identity_server::IdentityServer;
use ferry_store::{Store, StoreConfig, StoreOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn frame(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, ty, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// HPACK literal fields without indexing (lengths under 127).
fn block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut b = Vec::new();
    for (n, v) in fields {
        b.push(0);
        b.push(n.len() as u8);
        b.extend_from_slice(n.as_bytes());
        b.push(v.len() as u8);
        b.extend_from_slice(v.as_bytes());
    }
    b
}

#[tokio::test]
async fn probe_with_a_socket_path_authority_is_answered() {
    let dir = tempfile::tempdir().expect("tmp");
    let socket = dir.path().join("csi.sock");
    let store = Store::open(&StoreConfig::memory(), StoreOptions::default())
        .await
        .expect("store");
    let router = ferry_csi::serve::server()
        .add_service(IdentityServer::new(IdentityService::new(store, true)));
    let path = socket.clone();
    let server = tokio::spawn(async move {
        ferry_csi::serve::serve_unix(router, &path, std::future::pending()).await
    });
    let mut conn = loop {
        if let Ok(c) = tokio::net::UnixStream::connect(&socket).await {
            break c;
        }
        tokio::task::yield_now().await;
    };
    let authority = socket.to_string_lossy().to_string();
    let mut out = PREFACE.to_vec();
    out.extend(frame(0x4, 0, 0, &[])); // SETTINGS
    out.extend(frame(
        0x1,
        0x4, // END_HEADERS
        1,
        &block(&[
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/csi.v1.Identity/Probe"),
            (":authority", &authority),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ]),
    ));
    out.extend(frame(0x0, 0x1, 1, &[0, 0, 0, 0, 0])); // an empty ProbeRequest, END_STREAM
    conn.write_all(&out).await.expect("write");

    // Read frames until stream 1 ends with trailers or is reset.
    let mut decoder = fluke_hpack::Decoder::new();
    let mut fields = Vec::new();
    let mut buf = Vec::new();
    let mut data = Vec::new();
    let outcome = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        loop {
            while buf.len() >= 9 {
                let len =
                    (usize::from(buf[0]) << 16) | (usize::from(buf[1]) << 8) | usize::from(buf[2]);
                if buf.len() < 9 + len {
                    break;
                }
                let (ty, flags) = (buf[3], buf[4]);
                let stream = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]);
                let payload: Vec<u8> = buf[9..9 + len].to_vec();
                buf.drain(..9 + len);
                match (ty, stream) {
                    (0x4, 0) if flags & 1 == 0 => {
                        conn.write_all(&frame(0x4, 1, 0, &[])).await.expect("ack");
                    }
                    (0x3, 1) => return "reset",
                    (0x1, 1) => {
                        fields.extend(decoder.decode(&payload).expect("hpack"));
                        if flags & 1 != 0 {
                            return "ended";
                        }
                    }
                    (0x0, 1) => data.extend_from_slice(&payload),
                    _ => {}
                }
            }
            let mut chunk = [0u8; 4096];
            let n = conn.read(&mut chunk).await.expect("read");
            if n == 0 {
                return "closed";
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .expect("the server answered");
    server.abort();
    assert_eq!(outcome, "ended", "{fields:?}");
    let has = |n: &str, v: &str| {
        fields
            .iter()
            .any(|(a, b)| a == n.as_bytes() && b == v.as_bytes())
    };
    assert!(has(":status", "200"), "{fields:?}");
    assert!(has("grpc-status", "0"), "{fields:?}");
    // ProbeResponse { ready: true }: a gRPC frame holding field 1 = true.
    assert!(data.len() >= 5, "{data:?}");
}
