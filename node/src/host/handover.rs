//! Frames sent between two volume hosts during a handover, each one JSON message with, when
//! it hands a volume over, the FUSE connection's descriptor attached (`SCM_RIGHTS`).
//!
//! A frame is a 4-byte little-endian length and that many bytes of JSON; the descriptor
//! travels with the length, so the receiver gets it from the first read of the frame.

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, recvmsg, sendmsg,
};
use serde::{Deserialize, Serialize};
use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;

use super::protocol::ServerSpec;

/// Largest frame accepted.
const MAX_FRAME: u32 = 1 << 20;

/// One message of the old host during a handover.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Frame {
    /// A volume: its spec, whether its server drained (answered everything it read and made
    /// every acknowledged write durable), and how often its server was restarted. The
    /// connection's descriptor is attached.
    #[serde(rename_all = "camelCase")]
    Volume {
        spec: ServerSpec,
        drained: bool,
        restarts: u32,
    },
    /// Every volume was handed over.
    Done,
}

/// Sends `frame`, with `fd` attached when given.
///
/// # Errors
/// When the peer is gone.
pub fn send(s: &UnixStream, frame: &Frame, fd: Option<BorrowedFd<'_>>) -> std::io::Result<()> {
    let body = serde_json::to_vec(frame).map_err(std::io::Error::other)?;
    let len = (body.len() as u32).to_le_bytes();
    let fds: Vec<BorrowedFd<'_>> = fd.into_iter().collect();
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(std::io::Error::other("no room for the descriptor"));
    }
    let sent = sendmsg(s, &[IoSlice::new(&len)], &mut control, SendFlags::empty())?;
    if sent < len.len() {
        (&*s).write_all(&len[sent..])?;
    }
    (&*s).write_all(&body)
}

/// Receives one frame and the descriptor sent with it.
///
/// # Errors
/// When the peer is gone or sends something malformed.
pub fn recv(s: &UnixStream) -> std::io::Result<(Frame, Option<OwnedFd>)> {
    let mut len = [0u8; 4];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let got = recvmsg(
        s,
        &mut [IoSliceMut::new(&mut len)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )?
    .bytes;
    if got == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let mut fd = None;
    for msg in control.drain() {
        if let RecvAncillaryMessage::ScmRights(fds) = msg {
            fd = fds.into_iter().next();
        }
    }
    (&*s).read_exact(&mut len[got..])?;
    let n = u32::from_le_bytes(len);
    if n > MAX_FRAME {
        return Err(std::io::Error::other(format!("frame of {n} bytes refused")));
    }
    let mut body = vec![0u8; n as usize];
    (&*s).read_exact(&mut body)?;
    let frame = serde_json::from_slice(&body).map_err(std::io::Error::other)?;
    Ok((frame, fd))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn a_descriptor_travels_with_its_frame() {
        let (a, b) = UnixStream::pair().expect("pair");
        let file = tempfile::tempfile().expect("tmp");
        (&file).write_all(b"connection").expect("write");
        let spec = ServerSpec {
            volume_id: "v1".into(),
            node_id: "n".into(),
            read_only: false,
            lease_ttl_secs: 30.0,
            cache_mib: 8,
            store_config: "/s.json".into(),
        };
        let frame = Frame::Volume {
            spec: spec.clone(),
            drained: true,
            restarts: 1,
        };
        send(&a, &frame, Some(file.as_fd())).expect("send");
        send(&a, &Frame::Done, None).expect("send");
        let (got, fd) = recv(&b).expect("recv");
        match got {
            Frame::Volume {
                spec: s,
                drained,
                restarts,
            } => assert_eq!((s, drained, restarts), (spec, true, 1)),
            other => panic!("{other:?}"),
        }
        let mut text = String::new();
        let mut f = std::fs::File::from(fd.expect("a descriptor"));
        use std::io::Seek;
        f.seek(std::io::SeekFrom::Start(0)).expect("seek");
        f.read_to_string(&mut text).expect("read");
        assert_eq!(text, "connection", "the same open file arrives");
        let (done, none) = recv(&b).expect("recv");
        assert!(matches!(done, Frame::Done) && none.is_none());
    }
}
