//! Accepting gRPC clients that send a socket path as `:authority`.
//!
//! Over a unix socket, grpc-core (C++, Python, Ruby), grpc-java and others send the socket
//! path (`/csi/csi.sock`) as the HTTP/2 `:authority`. That is not a valid authority
//! (RFC 9113 section 8.3.1 wants `host[:port]`), and the HTTP/2 server under tonic resets
//! every such stream with PROTOCOL_ERROR. A CSI driver must answer whatever its sidecars and
//! tools speak, so [`FixAuthority`] sits between the socket and the server: it reads the
//! client's frames, and for each header block whose `:authority` is not a valid authority it
//! decodes the block (HPACK, with the client's dynamic table), puts `localhost` there, and
//! encodes the block again. Every other frame passes through untouched.
//!
//! Re-encoded blocks use only literal fields without indexing, so the server's HPACK table
//! never holds an entry the client does not know of; once one block has been re-encoded, all
//! later ones are too (the client's indexes refer to its own view of the table, which only
//! this decoder still has). A block that does not decode is passed on as it came, and the
//! server reports the error as it would have.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// Frames written to the server stay within the smallest maximum HTTP/2 allows.
const MAX_FRAME: usize = 16_384;
/// A header block larger than this (across CONTINUATION frames) is passed on unparsed.
const MAX_BLOCK: usize = 1 << 20;

/// A stream whose client-to-server HTTP/2 header blocks get a valid `:authority`.
pub struct FixAuthority<S> {
    inner: S,
    /// Bytes read from the client, not yet turned into output.
    input: Vec<u8>,
    /// Bytes ready for the server.
    output: Vec<u8>,
    /// How much of `output` was handed out.
    out_pos: usize,
    preface_seen: bool,
    /// A header block being collected: its first frame's header and payload so far.
    pending: Option<Pending>,
    decoder: fluke_hpack::Decoder<'static>,
    /// Once a block was re-encoded, every later one is.
    rewriting: bool,
    /// A block failed to decode: everything after passes through.
    passthrough: bool,
}

struct Pending {
    /// The raw frames as they came (for passing on unchanged).
    raw: Vec<u8>,
    stream: u32,
    flags: u8,
    priority: Option<[u8; 5]>,
    block: Vec<u8>,
}

impl<S> FixAuthority<S> {
    /// Wraps a freshly accepted connection.
    pub fn new(inner: S) -> Self {
        FixAuthority {
            inner,
            input: Vec::new(),
            output: Vec::new(),
            out_pos: 0,
            preface_seen: false,
            pending: None,
            decoder: fluke_hpack::Decoder::new(),
            rewriting: false,
            passthrough: false,
        }
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Turns as much of `input` as forms whole frames into `output`.
    fn process(&mut self) {
        if self.passthrough {
            self.output.append(&mut self.input);
            return;
        }
        if !self.preface_seen {
            if self.input.len() < PREFACE.len() {
                if !PREFACE.starts_with(&self.input) {
                    self.passthrough = true;
                    self.output.append(&mut self.input);
                }
                return;
            }
            if &self.input[..PREFACE.len()] != PREFACE {
                // Not HTTP/2 with prior knowledge: nothing to fix.
                self.passthrough = true;
                self.output.append(&mut self.input);
                return;
            }
            self.output.extend_from_slice(PREFACE);
            self.input.drain(..PREFACE.len());
            self.preface_seen = true;
        }
        let mut at = 0;
        while self.input.len() - at >= 9 {
            let h = &self.input[at..at + 9];
            let len = (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
            if self.input.len() - at < 9 + len {
                break;
            }
            let frame = self.input[at..at + 9 + len].to_vec();
            at += 9 + len;
            self.frame(&frame);
            if self.passthrough {
                break;
            }
        }
        self.input.drain(..at);
        if self.passthrough {
            self.output.append(&mut self.input);
        }
    }

    fn frame(&mut self, frame: &[u8]) {
        let (ty, flags) = (frame[3], frame[4]);
        let stream = u32::from_be_bytes([frame[5], frame[6], frame[7], frame[8]]) & 0x7fff_ffff;
        let payload = &frame[9..];
        match (ty, self.pending.take()) {
            (HEADERS, None) => {
                let Some((priority, fragment)) = split_headers(flags, payload) else {
                    return self.give_up(frame.to_vec());
                };
                let p = Pending {
                    raw: frame.to_vec(),
                    stream,
                    flags,
                    priority,
                    block: fragment.to_vec(),
                };
                if flags & END_HEADERS != 0 {
                    self.finish(p);
                } else {
                    self.pending = Some(p);
                }
            }
            (CONTINUATION, Some(mut p)) if stream == p.stream => {
                p.raw.extend_from_slice(frame);
                p.block.extend_from_slice(payload);
                if p.block.len() > MAX_BLOCK {
                    return self.give_up(p.raw);
                }
                if flags & END_HEADERS != 0 {
                    self.finish(p);
                } else {
                    self.pending = Some(p);
                }
            }
            // Anything else inside a header block is the client's protocol error: the
            // server says so.
            (_, Some(mut p)) => {
                p.raw.extend_from_slice(frame);
                self.give_up(p.raw);
            }
            (_, None) => self.output.extend_from_slice(frame),
        }
    }

    /// A whole header block: passed on as it came, or re-encoded with `localhost`.
    fn finish(&mut self, p: Pending) {
        let Ok(fields) = self.decoder.decode(&p.block) else {
            return self.give_up(p.raw);
        };
        let bad = fields
            .iter()
            .any(|(n, v)| n == b":authority" && !valid_authority(v));
        if !bad && !self.rewriting {
            self.output.extend_from_slice(&p.raw);
            return;
        }
        if bad {
            tracing::debug!(
                stream = p.stream,
                "replacing a socket path :authority with localhost"
            );
        }
        self.rewriting = true;
        let mut block = Vec::with_capacity(p.block.len() + 16);
        for (name, value) in &fields {
            let value: &[u8] = if name == b":authority" && !valid_authority(value) {
                b"localhost"
            } else {
                value
            };
            literal(&mut block, name, value);
        }
        self.emit(p.stream, p.flags & END_STREAM, p.priority, &block);
    }

    /// Writes a header block as HEADERS and, where it does not fit, CONTINUATION frames.
    fn emit(&mut self, stream: u32, end_stream: u8, priority: Option<[u8; 5]>, block: &[u8]) {
        let first_room = MAX_FRAME - if priority.is_some() { 5 } else { 0 };
        let (first, mut rest) = block.split_at(block.len().min(first_room));
        let mut flags = end_stream;
        if priority.is_some() {
            flags |= PRIORITY;
        }
        if rest.is_empty() {
            flags |= END_HEADERS;
        }
        let mut payload = Vec::with_capacity(first.len() + 5);
        if let Some(p) = priority {
            payload.extend_from_slice(&p);
        }
        payload.extend_from_slice(first);
        self.write_frame(HEADERS, flags, stream, &payload);
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at(rest.len().min(MAX_FRAME));
            rest = tail;
            let flags = if rest.is_empty() { END_HEADERS } else { 0 };
            self.write_frame(CONTINUATION, flags, stream, chunk);
        }
    }

    fn write_frame(&mut self, ty: u8, flags: u8, stream: u32, payload: &[u8]) {
        let len = payload.len();
        self.output
            .extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, ty, flags]);
        self.output.extend_from_slice(&stream.to_be_bytes());
        self.output.extend_from_slice(payload);
    }

    fn give_up(&mut self, raw: Vec<u8>) {
        self.output.extend_from_slice(&raw);
        self.passthrough = true;
    }
}

/// The priority fields and header block fragment of a HEADERS frame's payload.
fn split_headers(flags: u8, payload: &[u8]) -> Option<(Option<[u8; 5]>, &[u8])> {
    let mut p = payload;
    let mut pad = 0usize;
    if flags & PADDED != 0 {
        pad = usize::from(*p.first()?);
        p = &p[1..];
    }
    let mut priority = None;
    if flags & PRIORITY != 0 {
        let fields: [u8; 5] = p.get(..5)?.try_into().ok()?;
        priority = Some(fields);
        p = &p[5..];
    }
    let end = p.len().checked_sub(pad)?;
    Some((priority, &p[..end]))
}

/// Appends a literal header field without indexing, new name, no Huffman coding (RFC 7541
/// section 6.2.2).
fn literal(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.push(0x00);
    integer(out, name.len(), 7, 0x00);
    out.extend_from_slice(name);
    integer(out, value.len(), 7, 0x00);
    out.extend_from_slice(value);
}

/// Appends an HPACK integer with an `n`-bit prefix (RFC 7541 section 5.1).
fn integer(out: &mut Vec<u8>, mut v: usize, n: u32, high: u8) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(high | v as u8);
        return;
    }
    out.push(high | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

/// True when `v` parses as a URI authority.
fn valid_authority(v: &[u8]) -> bool {
    !v.is_empty() && http::uri::Authority::try_from(v).is_ok()
}

impl<S: AsyncRead + Unpin> AsyncRead for FixAuthority<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.out_pos < this.output.len() {
                let n = buf.remaining().min(this.output.len() - this.out_pos);
                buf.put_slice(&this.output[this.out_pos..this.out_pos + n]);
                this.out_pos += n;
                if this.out_pos == this.output.len() {
                    this.output.clear();
                    this.out_pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            let mut tmp = [0u8; 16 * 1024];
            let mut rb = ReadBuf::new(&mut tmp);
            match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) if rb.filled().is_empty() => {
                    // End of stream: what is left goes as it is.
                    if let Some(p) = this.pending.take() {
                        this.output.extend_from_slice(&p.raw);
                    }
                    this.output.append(&mut this.input);
                    if this.output.is_empty() {
                        return Poll::Ready(Ok(()));
                    }
                }
                Poll::Ready(Ok(())) => {
                    this.input.extend_from_slice(rb.filled());
                    this.process();
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FixAuthority<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl<S: tonic::transport::server::Connected> tonic::transport::server::Connected
    for FixAuthority<S>
{
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut f = FixAuthority::new(());
        f.write_frame(ty, flags, stream, payload);
        f.output
    }

    fn run(input: &[u8]) -> Vec<u8> {
        let mut f = FixAuthority::new(());
        // Fed one byte at a time: frames split anywhere are put back together.
        for b in input {
            f.input.push(*b);
            f.process();
        }
        f.output
    }

    fn block(fields: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut b = Vec::new();
        for (n, v) in fields {
            literal(&mut b, n, v);
        }
        b
    }

    /// The frames after the preface, as (type, flags, payload).
    fn frames(out: &[u8]) -> Vec<(u8, u8, Vec<u8>)> {
        assert!(out.starts_with(PREFACE));
        let mut at = PREFACE.len();
        let mut v = Vec::new();
        while at < out.len() {
            let len = (usize::from(out[at]) << 16)
                | (usize::from(out[at + 1]) << 8)
                | usize::from(out[at + 2]);
            assert!(len <= MAX_FRAME);
            v.push((out[at + 3], out[at + 4], out[at + 9..at + 9 + len].to_vec()));
            at += 9 + len;
        }
        v
    }

    /// The header fields of the emitted HEADERS and CONTINUATION frames.
    fn fields_of(out: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut frag = Vec::new();
        for (ty, flags, payload) in frames(out) {
            match ty {
                HEADERS => frag.extend_from_slice(split_headers(flags, &payload).expect("h").1),
                CONTINUATION => frag.extend_from_slice(&payload),
                _ => {}
            }
        }
        fluke_hpack::Decoder::new().decode(&frag).expect("decode")
    }

    #[test]
    fn a_socket_path_authority_becomes_localhost_and_the_rest_passes() {
        let fields: [(&[u8], &[u8]); 4] = [
            (b":method", b"POST"),
            (b":path", b"/csi.v1.Identity/Probe"),
            (
                b":authority",
                b"/var/lib/kubelet/plugins/ferry.csi.dev/csi.sock",
            ),
            (b"content-type", b"application/grpc"),
        ];
        let mut input = PREFACE.to_vec();
        input.extend(frame(0x4, 0, 0, &[])); // SETTINGS
        input.extend(frame(HEADERS, END_HEADERS, 1, &block(&fields)));
        input.extend(frame(0x0, END_STREAM, 1, b"\0\0\0\0\0"));
        let out = run(&input);
        let got = fields_of(&out);
        assert!(
            got.contains(&(b":authority".to_vec(), b"localhost".to_vec())),
            "{got:?}"
        );
        assert!(got.contains(&(b":path".to_vec(), b"/csi.v1.Identity/Probe".to_vec())));
        assert!(
            out.ends_with(&frame(0x0, END_STREAM, 1, b"\0\0\0\0\0")),
            "DATA untouched"
        );
    }

    #[test]
    fn a_valid_authority_passes_byte_for_byte() {
        let fields: [(&[u8], &[u8]); 2] = [(b":method", b"POST"), (b":authority", b"localhost")];
        let mut input = PREFACE.to_vec();
        input.extend(frame(HEADERS, END_HEADERS | END_STREAM, 1, &block(&fields)));
        assert_eq!(run(&input), input);
    }

    #[test]
    fn padded_blocks_split_over_continuation_are_rewritten_whole() {
        let long = vec![b'x'; 40_000];
        let fields: [(&[u8], &[u8]); 3] = [
            (b":method", b"POST"),
            (b":authority", b"/csi/csi.sock"),
            (b"x-big", &long),
        ];
        let b = block(&fields);
        let (a, rest) = b.split_at(100);
        let mut first = vec![3u8]; // pad length
        first.extend_from_slice(a);
        first.extend_from_slice(&[0, 0, 0]);
        let mut input = PREFACE.to_vec();
        input.extend(frame(HEADERS, PADDED, 3, &first));
        input.extend(frame(CONTINUATION, END_HEADERS, 3, rest));
        let out = run(&input);
        assert!(frames(&out).len() >= 3, "split into CONTINUATION frames");
        let got = fields_of(&out);
        assert!(got.contains(&(b":authority".to_vec(), b"localhost".to_vec())));
        assert!(got.iter().any(|(n, v)| n == b"x-big" && v.len() == 40_000));
    }
}
