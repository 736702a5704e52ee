//! A volume writer's journal: one durable object per fsync holding the blocks written since
//! the record before, so a small fsync costs one object write instead of a chunk, four tree
//! pages and a generation record one after another.
//!
//! Layout: `volumes/<id>/journal/<name>/<seq>`, `name` chosen by the writer when it takes the
//! volume up (a fencing commit), `seq` counting from 1 with nothing skipped. A generation
//! record names the journal its root continues with and the last sequence number the root
//! already holds ([`JournalPos`]); the volume's content is that root with the journal's later
//! records applied in order.
//!
//! On a local folder the same records are frames appended to segment files, sealed by a
//! marker file instead (see [`crate::journal_log`]); the rest of this holds for both.
//!
//! Records are written with create-if-absent, so a writer appends only where nobody wrote.
//! A new writer *seals* the previous journal before it replays it: it writes a seal record
//! at the first free number. The old writer (which may not know it lost its lease) then
//! fails its next append, and nothing it acknowledged is after the seal. A seal record is
//! never pruned while the volume exists, so a stale writer cannot append where it was.
//!
//! Each record carries the SHA-256 of its bytes. On an object store a record is written
//! whole by create-if-absent, so one that does not verify is damage: reading the journal
//! (and so taking the volume up) fails naming it, and nothing past it is dropped. On a local
//! folder a frame cut short or failing its checksum ends its segment: its write never
//! returned (see [`crate::journal_log`]).

use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::journal_log;
use crate::layout;
use crate::local;
use crate::records::GenRecord;
use crate::store::Store;
use serde::{Deserialize, Serialize};

/// Where a generation's root stands in its writer's journal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JournalPos {
    /// The journal's name (a folder under the volume's `journal/`).
    pub name: String,
    /// The last record the root holds; records after it are to be applied.
    pub applied: u64,
}

/// One change a journal record carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Bytes written at an offset.
    Write {
        /// Byte offset in the volume.
        offset: u64,
        /// The bytes.
        data: Vec<u8>,
    },
    /// Whole chunks discarded: they read as zeros and take no space.
    Zero {
        /// Byte offset (chunk aligned).
        offset: u64,
        /// Length in bytes (whole chunks).
        len: u64,
    },
}

/// What a journal holds past a generation's root.
#[derive(Debug, Default)]
pub struct Tail {
    /// The records' changes in order, each with its sequence number.
    pub records: Vec<(u64, Vec<Op>)>,
    /// The last data record's sequence number (the generation's `applied` when none).
    pub last: u64,
    /// A seal (or an old torn record) ends the journal: no writer appends to it again.
    pub sealed: bool,
}

const MAGIC: &[u8; 4] = b"FJR1";
const KIND_DATA: u8 = 0;
const KIND_SEAL: u8 = 1;
const OP_WRITE: u8 = 0;
const OP_ZERO: u8 = 1;
/// Header: magic, kind, sequence number.
const HEADER: usize = 4 + 1 + 8;

enum Record {
    Data(Vec<Op>),
    Seal,
}

/// Encodes a data record: header, zstd-compressed ops, SHA-256 of all before it.
pub(crate) fn encode_data(seq: u64, ops: &[Op]) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    for op in ops {
        match op {
            Op::Write { offset, data } => {
                body.push(OP_WRITE);
                body.extend_from_slice(&offset.to_le_bytes());
                body.extend_from_slice(&(data.len() as u64).to_le_bytes());
                body.extend_from_slice(data);
            }
            Op::Zero { offset, len } => {
                body.push(OP_ZERO);
                body.extend_from_slice(&offset.to_le_bytes());
                body.extend_from_slice(&len.to_le_bytes());
            }
        }
    }
    let packed = zstd::bulk::compress(&body, 1)
        .map_err(|e| Error::Internal(format!("compressing a journal record: {e}")))?;
    Ok(seal_bytes(KIND_DATA, seq, &packed))
}

fn encode_seal(seq: u64, by: &str) -> Vec<u8> {
    seal_bytes(KIND_SEAL, seq, by.as_bytes())
}

fn seal_bytes(kind: u8, seq: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + payload.len() + 32);
    out.extend_from_slice(MAGIC);
    out.push(kind);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(payload);
    let sum = Hash::of(&out);
    out.extend_from_slice(&sum.0);
    out
}

fn corrupt(path: &str, reason: &str) -> Error {
    Error::Corrupt {
        path: path.to_string(),
        reason: reason.to_string(),
    }
}

/// The content of a whole record (all before its checksum), or why `bytes` are not one.
fn whole(bytes: &[u8]) -> std::result::Result<&[u8], &'static str> {
    if bytes.len() < HEADER + 32 || &bytes[..4] != MAGIC {
        return Err("not a journal record (or torn)");
    }
    let (content, sum) = bytes.split_at(bytes.len() - 32);
    if Hash::of(content).0 != sum {
        return Err("journal record checksum mismatch (torn or damaged)");
    }
    Ok(content)
}

/// True when `bytes` are a whole record: its magic and a matching checksum.
pub(crate) fn verifies(bytes: &[u8]) -> bool {
    whole(bytes).is_ok()
}

fn decode(path: &str, seq: u64, bytes: &[u8]) -> Result<Record> {
    let content = whole(bytes).map_err(|reason| corrupt(path, reason))?;
    parse(path, seq, content)
}

/// Decodes a record [`verifies`] already passed, without hashing it again.
fn decode_verified(path: &str, seq: u64, bytes: &[u8]) -> Result<Record> {
    match bytes.len().checked_sub(32) {
        Some(n) if n >= HEADER => parse(path, seq, &bytes[..n]),
        _ => Err(corrupt(path, "not a journal record (or torn)")),
    }
}

/// A record's content (checksum checked and cut off) as the record it holds.
fn parse(path: &str, seq: u64, content: &[u8]) -> Result<Record> {
    let stored_seq = u64::from_le_bytes(content[5..13].try_into().unwrap_or([0; 8]));
    if stored_seq != seq {
        return Err(corrupt(
            path,
            "journal record carries another sequence number",
        ));
    }
    let payload = &content[HEADER..];
    match content[4] {
        KIND_SEAL => Ok(Record::Seal),
        KIND_DATA => {
            let body = zstd::stream::decode_all(payload)
                .map_err(|e| corrupt(path, &format!("journal record does not decompress: {e}")))?;
            decode_ops(path, &body).map(Record::Data)
        }
        _ => Err(corrupt(path, "unknown journal record kind")),
    }
}

fn decode_ops(path: &str, mut body: &[u8]) -> Result<Vec<Op>> {
    let bad = || corrupt(path, "journal record ops are truncated");
    let mut ops = Vec::new();
    while let Some((&tag, rest)) = body.split_first() {
        if rest.len() < 16 {
            return Err(bad());
        }
        let offset = u64::from_le_bytes(rest[..8].try_into().map_err(|_| bad())?);
        let len = u64::from_le_bytes(rest[8..16].try_into().map_err(|_| bad())?);
        let rest = &rest[16..];
        match tag {
            OP_WRITE => {
                let n = usize::try_from(len).map_err(|_| bad())?;
                if rest.len() < n {
                    return Err(bad());
                }
                ops.push(Op::Write {
                    offset,
                    data: rest[..n].to_vec(),
                });
                body = &rest[n..];
            }
            OP_ZERO => {
                ops.push(Op::Zero { offset, len });
                body = rest;
            }
            _ => return Err(corrupt(path, "unknown journal op")),
        }
    }
    Ok(ops)
}

/// Where a volume's journal stands: what its head holds and the records past it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalState {
    /// The head's journal (`None`: the head names none, so there is nothing to apply).
    pub position: Option<JournalPos>,
    /// Numbers of the records past the head's root, in order.
    pub unapplied: Vec<u64>,
    /// A later writer sealed the journal.
    pub sealed: bool,
}

/// A fresh journal name: random, so every take-up of a volume writes its own journal.
pub(crate) fn new_name() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

impl Store {
    /// The journal of volume `id` as its head names it, read without sealing it (for
    /// operators and crash tests: which fsyncs only the journal holds).
    ///
    /// # Errors
    /// As reading the head and the journal (a read racing a pruning is a conflict).
    pub async fn journal_state(&self, id: &str) -> Result<JournalState> {
        let head = self.head(id).await?;
        let tail = self.journal_tail(&head, None).await?;
        Ok(JournalState {
            position: head.journal,
            unapplied: tail.records.iter().map(|(seq, _)| *seq).collect(),
            sealed: tail.sealed,
        })
    }

    /// Appends record `seq` to journal `name` of volume `id`, durable when this returns.
    ///
    /// # Errors
    /// [`Error::Conflict`] when the place is taken: another writer sealed the journal (this
    /// writer lost the volume). Backend errors; after one the record may or may not be
    /// there, and appending the same record again settles it.
    ///
    /// On a local folder the record goes into segment `segment` (a new one, the writer's
    /// `made`-th, when `None`, which must be passed after any error) and the segment
    /// written is returned; other backends return `None`.
    pub(crate) async fn journal_append(
        &self,
        id: &str,
        name: &str,
        seq: u64,
        ops: &[Op],
        segment: Option<&str>,
        made: u64,
    ) -> Result<Option<String>> {
        let bytes = encode_data(seq, ops)?;
        if let Some(root) = self.objects().fs_root() {
            self.objects().count_write();
            let dir = local::join(root, &layout::journal(id, name));
            let segment = segment.map(str::to_string);
            return local::blocking(move || {
                journal_log::append(&dir, segment.as_deref(), made, seq, &bytes).map(Some)
            })
            .await;
        }
        let path = layout::journal_record(id, name, seq);
        if self.objects().put_if_absent(&path, bytes.clone()).await? {
            return Ok(None);
        }
        match self.objects().get(&path).await? {
            // Our own write, whose answer was lost.
            Some(found) if found == bytes => Ok(None),
            _ => Err(Error::Conflict(format!(
                "volume {id}: journal {name} was sealed by another writer at record {seq}; \
                 this node no longer holds the volume"
            ))),
        }
    }

    /// The records of `head`'s journal past what its root holds. With `seal_as`, the
    /// journal is sealed after the last record first, so its writer cannot append again.
    ///
    /// # Errors
    /// [`Error::Conflict`] when the records were pruned under the reader (the head moved:
    /// read it again); [`Error::Corrupt`] naming a damaged record (on an object store,
    /// where a record is written whole); backend errors.
    pub(crate) async fn journal_tail(
        &self,
        head: &GenRecord,
        seal_as: Option<&str>,
    ) -> Result<Tail> {
        let Some(pos) = &head.journal else {
            return Ok(Tail::default());
        };
        let id = &head.volume_id;
        let mut tail = Tail {
            last: pos.applied,
            ..Tail::default()
        };
        if let Some(root) = self.objects().fs_root() {
            let dir = local::join(root, &layout::journal(id, &pos.name));
            let by = seal_as.map(str::to_string);
            let after = pos.applied;
            let (found, sealed) = local::blocking(move || {
                if let Some(by) = &by {
                    journal_log::seal(&dir, by)?;
                }
                journal_log::read(&dir, after)
            })
            .await?;
            tail.sealed = sealed;
            for (seq, bytes) in found {
                let path = format!("{}#{seq}", layout::journal(id, &pos.name));
                // `journal_log::read` returns only records that verify.
                match decode_verified(&path, seq, &bytes)? {
                    Record::Data(ops) => {
                        tail.records.push((seq, ops));
                        tail.last = seq;
                    }
                    Record::Seal => {
                        tail.sealed = true;
                        break;
                    }
                }
            }
            return Ok(tail);
        }
        let mut seq = pos.applied + 1;
        loop {
            let path = layout::journal_record(id, &pos.name, seq);
            let Some(bytes) = self.objects().get(&path).await? else {
                let Some(by) = seal_as else { break };
                if self
                    .objects()
                    .put_if_absent(&path, encode_seal(seq, by))
                    .await?
                {
                    tail.sealed = true;
                    break;
                }
                // The writer appended one more meanwhile: read it and try after it.
                continue;
            };
            match decode(&path, seq, &bytes) {
                Ok(Record::Data(ops)) => {
                    tail.records.push((seq, ops));
                    tail.last = seq;
                    seq += 1;
                }
                Ok(Record::Seal) => {
                    tail.sealed = true;
                    break;
                }
                // Create-if-absent writes an object store's record whole: one that does
                // not verify is damage, not a torn end, and the records after it were
                // acknowledged. Nothing is sealed or replayed past it.
                Err(Error::Corrupt { reason, .. }) => {
                    return Err(Error::Corrupt {
                        path,
                        reason: format!(
                            "volume {id}: journal record {seq} is damaged ({reason}); the \
                             journal is not taken up past it, so no acknowledged write after \
                             it is dropped: restore the record from a copy of the store"
                        ),
                    });
                }
                Err(e) => return Err(e),
            }
        }
        Ok(tail)
    }

    /// Deletes journal `name`'s records up to `through`, the last data record a committed
    /// root holds. A seal is always past that (it follows the last data record), so seals
    /// stay. Best effort: a record left behind is at or below the generation's `applied`
    /// and never read again.
    pub(crate) async fn journal_prune(&self, id: &str, name: &str, through: u64) {
        let dir = layout::journal(id, name);
        if let Some(root) = self.objects().fs_root() {
            let dir = local::join(root, &dir);
            let _ = local::blocking(move || {
                journal_log::prune(&dir, through);
                Ok(())
            })
            .await;
            return;
        }
        let names = match self.objects().list_names(&dir).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(volume.id = %id, journal = %name, error = %e, "listing a journal to prune failed");
                return;
            }
        };
        for seq in names.iter().filter_map(|n| n.parse::<u64>().ok()) {
            if seq > through {
                continue;
            }
            let path = layout::journal_record(id, name, seq);
            if let Err(e) = self.objects().delete(&path).await {
                tracing::warn!(volume.id = %id, journal = %name, seq, error = %e, "pruning a journal record failed");
            }
        }
    }

    /// Deletes every journal of volume `id` (its deletion).
    pub(crate) async fn journal_delete_all(&self, id: &str) -> Result<()> {
        let dir = layout::journals(id);
        for name in self.objects().list_names(&dir).await? {
            let folder = layout::journal(id, &name);
            for rec in self.objects().list_names(&folder).await? {
                self.objects().delete(&format!("{folder}{rec}")).await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_damage_is_caught() {
        let ops = vec![
            Op::Write {
                offset: 4096,
                data: vec![7; 8192],
            },
            Op::Zero {
                offset: 1 << 20,
                len: 1 << 16,
            },
        ];
        let bytes = encode_data(3, &ops).unwrap();
        match decode("p", 3, &bytes).unwrap() {
            Record::Data(got) => assert_eq!(got, ops),
            Record::Seal => panic!("a data record read as a seal"),
        }
        assert!(matches!(decode("p", 4, &bytes), Err(Error::Corrupt { .. })));
        let mut torn = bytes.clone();
        torn.truncate(bytes.len() - 5);
        assert!(matches!(decode("p", 3, &torn), Err(Error::Corrupt { .. })));
        let mut flipped = bytes;
        flipped[HEADER + 2] ^= 1;
        assert!(matches!(
            decode("p", 3, &flipped),
            Err(Error::Corrupt { .. })
        ));
        assert!(matches!(
            decode("p", 9, &encode_seal(9, "x")).unwrap(),
            Record::Seal
        ));
    }
}
