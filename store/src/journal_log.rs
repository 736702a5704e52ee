//! The journal on a local folder: records appended to segment files instead of one file per
//! record, so an fsync costs one `write` and one `fdatasync` of a file that exists, not the
//! creation of a file (and, at pruning, its deletion) in a directory other writers use.
//!
//! Layout under `volumes/<id>/journal/<name>/`:
//! - `log-<first>-<n>`: a segment, frames of `[u32 LE length][record]` where a record is
//!   exactly what the object form stores (magic, kind, sequence number, zstd ops, SHA-256).
//!   `first` is the sequence number of its first record and `n` counts the writer's
//!   segments (zero-padded, so names sort in the order they were made). The writer starts a
//!   segment after each checkpoint and after a failed append (which retries the same
//!   number there), and never writes to a segment again once an append to it failed. A
//!   journal has one writer, so the count orders its segments.
//! - `sealed`: created (`O_EXCL`, synced with its directory) by the next writer before it
//!   reads the journal. Never pruned.
//!
//! Fencing without create-if-absent per record: a writer acknowledges a record only after
//! its `fdatasync` returned *and* a look for `sealed` found none. A taker creates `sealed`
//! first and reads the segments after. On one coherent filesystem these are ordered: a
//! record acknowledged was durable before the look, the look before the seal, the seal
//! before the read, so the taker reads every acknowledged record whole. A frame that is
//! short or fails its checksum ends its segment (a write in progress or cut by a crash,
//! never acknowledged: the append after it would go to a new segment). Sequence numbers
//! make the segments' order and any duplicate (a record retried in a new segment after a
//! failed append) plain; a gap means segments were pruned under the reader (its head moved).

use crate::error::{Error, Result};
use crate::local::io_error;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Records read from a journal: each number with its bytes.
pub(crate) type Found = Vec<(u64, Vec<u8>)>;

/// Name of the seal marker in a journal's folder.
pub(crate) const SEALED: &str = "sealed";
const SEGMENT: &str = "log-";

/// The sequence number a record's bytes carry (magic 4, kind 1, then the number).
fn record_seq(record: &[u8]) -> Option<u64> {
    record
        .get(5..13)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
}

fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error("sync", dir, e))
}

/// Appends `record` (number `seq`) to the segment `segment` of journal folder `dir`, or to a
/// new segment, the writer's `made`-th, when `None`; durable, and checked unsealed, when
/// this returns. Returns the segment written, to pass again next time.
///
/// # Errors
/// [`Error::Conflict`] when the journal is sealed (the writer lost the volume); file errors.
/// After any error the caller must start a new segment.
pub(crate) fn append(
    dir: &Path,
    segment: Option<&str>,
    made: u64,
    seq: u64,
    record: &[u8],
) -> Result<String> {
    let (name, mut file) = match segment {
        Some(s) => {
            let path = dir.join(s);
            let f = std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .map_err(|e| io_error("open", &path, e))?;
            (s.to_string(), f)
        }
        None => {
            std::fs::create_dir_all(dir).map_err(|e| io_error("mkdir", dir, e))?;
            let name = format!("{SEGMENT}{seq:020}-{made:020}");
            let path = dir.join(&name);
            let f = std::fs::OpenOptions::new()
                .append(true)
                .create_new(true)
                .mode(0o644)
                .open(&path)
                .map_err(|e| io_error("create", &path, e))?;
            (name, f)
        }
    };
    let path = dir.join(&name);
    let len = u32::try_from(record.len())
        .map_err(|_| Error::Internal(format!("journal record {seq} is over 4 GiB")))?;
    let mut frame = Vec::with_capacity(4 + record.len());
    frame.extend_from_slice(&len.to_le_bytes());
    frame.extend_from_slice(record);
    file.write_all(&frame)
        .map_err(|e| io_error("write", &path, e))?;
    file.sync_data().map_err(|e| io_error("sync", &path, e))?;
    if segment.is_none() {
        // The new segment's name must survive a crash as its bytes do.
        sync_dir(dir)?;
    }
    match std::fs::symlink_metadata(dir.join(SEALED)) {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(name),
        Ok(_) => Err(Error::Conflict(format!(
            "journal {} was sealed by another writer at record {seq}; this node no longer \
             holds the volume",
            dir.display()
        ))),
        Err(e) => Err(io_error("stat", &dir.join(SEALED), e)),
    }
}

/// Seals journal folder `dir` for writer `by` (already sealed is fine), durably.
///
/// # Errors
/// File errors.
pub(crate) fn seal(dir: &Path, by: &str) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| io_error("mkdir", dir, e))?;
    let path = dir.join(SEALED);
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&path)
    {
        Ok(mut f) => {
            f.write_all(by.as_bytes())
                .and_then(|_| f.sync_all())
                .map_err(|e| io_error("write", &path, e))?;
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_error("create", &path, e)),
    }
    sync_dir(dir)
}

/// What a journal folder holds after record `after`: the whole records in order, each with
/// its number, and whether it is sealed.
///
/// # Errors
/// [`Error::Conflict`] when segments were pruned under the reader; file errors.
pub(crate) fn read(dir: &Path, after: u64) -> Result<(Found, bool)> {
    let mut names = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect::<Vec<_>>(),
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok((Vec::new(), false)),
        Err(e) => return Err(io_error("list", dir, e)),
    };
    names.sort();
    let sealed = names.iter().any(|n| n == SEALED);
    let mut next = after + 1;
    let mut records = Vec::new();
    for name in names.iter().filter(|n| n.starts_with(SEGMENT)) {
        let path = dir.join(name);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => return Err(pruned(dir)),
            Err(e) => return Err(io_error("read", &path, e)),
        };
        let mut pos = 0usize;
        while let Some(len) = bytes
            .get(pos..pos + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
        {
            let Some(record) = bytes.get(pos + 4..pos + 4 + len as usize) else {
                break;
            };
            let Some(seq) = record_seq(record).filter(|_| crate::journal::verifies(record)) else {
                break;
            };
            pos += 4 + len as usize;
            if seq < next {
                continue;
            }
            if seq > next {
                return Err(pruned(dir));
            }
            records.push((seq, record.to_vec()));
            next += 1;
        }
    }
    Ok((records, sealed))
}

fn pruned(dir: &Path) -> Error {
    Error::Conflict(format!(
        "journal {} was pruned while being read; read the head again",
        dir.display()
    ))
}

/// Deletes the segments of journal folder `dir` that hold only records up to `through`:
/// each followed by a segment starting at or before `through + 1`, and in a sealed journal
/// every segment starting at or before `through`. Best effort; `sealed` stays.
pub(crate) fn prune(dir: &Path, through: u64) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut segments: Vec<(u64, String)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter_map(|n| {
            let first = n.strip_prefix(SEGMENT)?.get(..20)?.parse().ok()?;
            Some((first, n))
        })
        .collect();
    segments.sort();
    // A sealed journal was replayed through `through` by the writer that sealed it: nothing
    // after that was acknowledged, so its last segment goes too.
    let sealed = dir.join(SEALED).exists();
    let keep_from = if sealed {
        segments.partition_point(|(first, _)| *first <= through)
    } else {
        match segments
            .iter()
            .rposition(|(first, _)| *first <= through + 1)
        {
            Some(i) => i,
            None => return,
        }
    };
    for (_, name) in &segments[..keep_from] {
        if let Err(e) = std::fs::remove_file(dir.join(name))
            && e.kind() != ErrorKind::NotFound
        {
            tracing::warn!(segment = %dir.join(name).display(), error = %e, "pruning a journal segment failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{Op, encode_data};

    fn record(seq: u64) -> Vec<u8> {
        let ops = [Op::Write {
            offset: seq * 4096,
            data: vec![seq as u8; 100],
        }];
        encode_data(seq, &ops).unwrap()
    }

    fn seqs(dir: &Path, after: u64) -> Vec<u64> {
        read(dir, after)
            .unwrap()
            .0
            .into_iter()
            .map(|(s, _)| s)
            .collect()
    }

    #[test]
    fn segments_read_in_order_past_torn_frames_and_retried_records() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("j");
        let a = append(&dir, None, 0, 1, &record(1)).unwrap();
        assert_eq!(append(&dir, Some(&a), 0, 2, &record(2)).unwrap(), a);
        // A frame cut short, then the retry of record 3 in a new segment (with 4 after it).
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join(&a))
            .unwrap();
        let r3 = record(3);
        f.write_all(&(r3.len() as u32).to_le_bytes()).unwrap();
        f.write_all(&r3[..r3.len() / 2]).unwrap();
        let b = append(&dir, None, 1, 3, &r3).unwrap();
        append(&dir, Some(&b), 1, 4, &record(4)).unwrap();
        assert_eq!(seqs(&dir, 0), vec![1, 2, 3, 4]);
        assert_eq!(seqs(&dir, 2), vec![3, 4]);
        // A whole duplicate (a retry whose first try had landed) is read once.
        let c = append(&dir, None, 2, 4, &record(4)).unwrap();
        append(&dir, Some(&c), 2, 5, &record(5)).unwrap();
        assert_eq!(seqs(&dir, 0), vec![1, 2, 3, 4, 5]);
        // Pruning through 3 keeps the segment that holds 4 (the last to start at or before
        // it); a reader of an older head then finds the gap and reads the head again.
        prune(&dir, 2);
        assert!(!dir.join(&a).exists());
        assert!(dir.join(&b).exists() && dir.join(&c).exists());
        prune(&dir, 3);
        assert!(!dir.join(&b).exists() && dir.join(&c).exists());
        assert_eq!(seqs(&dir, 3), vec![4, 5]);
        assert!(matches!(read(&dir, 0), Err(Error::Conflict(_))));
    }

    #[test]
    fn a_sealed_journal_refuses_appends_and_prunes_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("j");
        let a = append(&dir, None, 0, 1, &record(1)).unwrap();
        seal(&dir, "node-b").unwrap();
        seal(&dir, "node-c").unwrap();
        assert!(matches!(
            append(&dir, Some(&a), 0, 2, &record(2)),
            Err(Error::Conflict(_))
        ));
        assert!(matches!(
            append(&dir, None, 1, 2, &record(2)),
            Err(Error::Conflict(_))
        ));
        let (found, sealed) = read(&dir, 0).unwrap();
        assert!(sealed);
        // What the refused appends wrote may be read; it was never acknowledged.
        assert_eq!(found[0].0, 1);
        prune(&dir, 1);
        let left: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(left.contains(&SEALED.to_string()));
        assert!(!left.contains(&a), "{left:?}");
        // Never unsealed by pruning.
        assert!(matches!(
            append(&dir, None, 2, 3, &record(3)),
            Err(Error::Conflict(_))
        ));
    }
}
