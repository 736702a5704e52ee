//! Ratio and speed of each chunk codec on the bytes of a file (a disk image, say): the file
//! is cut into 64 KiB chunks as a volume would be, all-zero chunks (holes) left out, and each
//! chunk is encoded with each codec under the store's rules (a probe first, compressed only
//! where that saves 1/32) and decoded back. One thread. Prints stored/raw bytes, encode and
//! decode MB/s of raw bytes.
//!
//! Usage: cargo run --release -p ferry-store --example codec_bench FILE

use ferry_store::Hash;
use ferry_store::codec::{self, Codec, CodecPolicy, Kind};
use std::io::Read;
use std::time::Instant;

const CHUNK: usize = 64 << 10;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: codec_bench FILE (the bytes to cut into chunks)")?;
    let mut chunks = Vec::new();
    let mut f = std::fs::File::open(&path)?;
    loop {
        let mut buf = vec![0u8; CHUNK];
        let mut got = 0;
        while got < CHUNK {
            let n = f.read(&mut buf[got..])?;
            if n == 0 {
                break;
            }
            got += n;
        }
        if got == 0 {
            break;
        }
        buf.truncate(got);
        if buf.iter().any(|b| *b != 0) {
            chunks.push(buf);
        }
        if got < CHUNK {
            break;
        }
    }
    let raw: usize = chunks.iter().map(Vec::len).sum();
    println!("{path}: {} non-zero chunks, {raw} bytes", chunks.len());
    println!("codec    stored/raw  encode MB/s  decode MB/s");
    for codec in [Codec::None, Codec::Deflate, Codec::Zstd] {
        let policy = CodecPolicy { codec };
        let t = Instant::now();
        let blobs: Vec<(Hash, Vec<u8>)> = chunks
            .iter()
            .map(|c| (Hash::of(c), codec::encode(Kind::Chunk, c, policy).0))
            .collect();
        let enc = t.elapsed().as_secs_f64();
        let stored: usize = blobs.iter().map(|(_, b)| b.len()).sum();
        let t = Instant::now();
        for (h, b) in &blobs {
            codec::decode("bench", Kind::Chunk, h, b)?;
        }
        let dec = t.elapsed().as_secs_f64();
        let mb = raw as f64 / 1e6;
        println!(
            "{:<8} {:>10.3}  {:>11.0}  {:>11.0}",
            format!("{codec:?}").to_lowercase(),
            stored as f64 / raw as f64,
            mb / enc,
            mb / dec
        );
    }
    Ok(())
}
