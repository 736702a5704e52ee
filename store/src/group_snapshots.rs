//! Group snapshots: snapshots of several volumes at one instant, so an application that
//! spreads its state over volumes (a replicated database, a log beside its data) finds
//! them consistent with each other.
//!
//! The instant is found by reading every volume's head twice, all of the first reads before
//! any of the second: when no head moved in between, every head held its value through the
//! moment the first round ended, so that moment is a point at which all of them were
//! current together. Every write acknowledged before it (fsync'd, so committed) is in the
//! group and none committed after it. While writers keep committing, the reads are tried
//! again (with a short pause) up to a bound; after it, the call fails UNAVAILABLE and the
//! caller retries. Member records are written first (each with the group's id), the group
//! record last: a group exists only complete. A create that died between leaves members
//! that name an unfinished group; a retry of the create, or a delete of the group, removes
//! them first.

use crate::error::{Error, Result};
use crate::journal::Tail;
use crate::layout;
use crate::names::NameKind;
use crate::records::{self, GenRecord, GroupSnapshotRecord, RECORD_FORMAT, SnapshotRecord};
use crate::store::Store;
use crate::volumes::valid_id;
use std::collections::BTreeMap;
use std::time::Duration;

/// Rounds of reads tried before giving up on a quiet instant.
const CUT_ATTEMPTS: u32 = 200;
/// Longest pause between rounds.
const MAX_PAUSE: Duration = Duration::from_millis(20);

impl Store {
    /// Takes group snapshot `name` of `sources`, or returns it when an identical request
    /// took it before.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for no or repeated volumes, [`Error::NotFound`] for a
    /// missing volume, [`Error::AlreadyExists`] when the name was used for other volumes or
    /// parameters, [`Error::Unavailable`] when the volumes never stood still together long
    /// enough, backend errors.
    pub async fn create_group_snapshot(
        &self,
        name: &str,
        sources: &[String],
        parameters: BTreeMap<String, String>,
    ) -> Result<(GroupSnapshotRecord, Vec<SnapshotRecord>)> {
        if sources.is_empty() {
            return Err(Error::InvalidArgument(
                "source_volume_ids is empty: name the volumes to snapshot together".into(),
            ));
        }
        let mut sorted = sources.to_vec();
        sorted.sort();
        if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
            return Err(Error::InvalidArgument(format!(
                "volume {} is named twice in source_volume_ids",
                w[0]
            )));
        }
        let path = layout::group_snapshot_name(name);
        let request = serde_json::json!({ "sourceVolumeIds": sorted, "parameters": parameters });
        if !self.objects().exists(&path).await? {
            for id in sources {
                self.get_volume(id).await?;
            }
        }
        let id = self
            .claim_name(NameKind::GroupSnapshot, &path, name, &request)
            .await?;
        if let Some(g) = self.try_get_group_snapshot(&id).await? {
            let members = self.group_members(&g).await?;
            return Ok((g, members));
        }
        // Members of an earlier try that died before the group record.
        self.delete_members_of(&id).await?;
        let mut attempt = 0;
        loop {
            let heads = self.quiet_heads(sources).await?;
            match self.write_members(&id, name, heads, &parameters).await {
                Ok(members) => {
                    let rec = GroupSnapshotRecord {
                        format: RECORD_FORMAT,
                        id: id.clone(),
                        name: name.to_string(),
                        snapshot_ids: members.iter().map(|m| m.id.clone()).collect(),
                        source_volume_ids: sources.to_vec(),
                        parameters: parameters.clone(),
                        created_ms: records::now_ms(),
                    };
                    self.objects()
                        .put(&layout::group_snapshot(&id), records::encode(&rec)?)
                        .await?;
                    return Ok((rec, members));
                }
                // A head moved on and its generation was pruned before its root was held:
                // take a new instant.
                Err(Error::Conflict(_)) if attempt < 8 => {
                    attempt += 1;
                    self.delete_members_of(&id).await?;
                }
                Err(e) => {
                    self.delete_members_of(&id).await?;
                    return Err(e);
                }
            }
        }
    }

    /// The heads of `sources` at one instant (see the module's comment).
    async fn quiet_heads(
        &self,
        sources: &[String],
    ) -> Result<Vec<(GenRecord, crate::VolumeOptions, Tail)>> {
        let heads = cut(
            sources.len(),
            |i| self.point(&sources[i]),
            |(h, t): &(GenRecord, Tail)| (h.generation, t.last),
        )
        .await?
        .ok_or_else(|| {
            Error::Unavailable(format!(
                "volumes {} kept committing through {CUT_ATTEMPTS} tries to find an \
                     instant at which none did; try again (or when the writes are quieter)",
                sources.join(",")
            ))
        })?;
        let mut out = Vec::with_capacity(heads.len());
        for (id, (h, t)) in sources.iter().zip(heads) {
            let v = self.get_volume(id).await?;
            out.push((h, v.record.spec.options, t));
        }
        Ok(out)
    }

    /// Writes one member record per head, each root held while it is written.
    async fn write_members(
        &self,
        group: &str,
        name: &str,
        heads: Vec<(GenRecord, crate::VolumeOptions, Tail)>,
        parameters: &BTreeMap<String, String>,
    ) -> Result<Vec<SnapshotRecord>> {
        let mut out = Vec::with_capacity(heads.len());
        for (i, (h, options, tail)) in heads.into_iter().enumerate() {
            // The root at the cut: the head with the journal's records read with it.
            let (root, held) = self.build_root(&h, tail).await?;
            let rec = SnapshotRecord {
                format: RECORD_FORMAT,
                id: format!("snap-{}", uuid::Uuid::new_v4().simple()),
                name: format!("{name}/{i}"),
                source_volume_id: h.volume_id.clone(),
                source_generation: h.generation,
                root,
                size_bytes: h.size_bytes,
                chunk_size: h.chunk_size,
                options,
                parameters: parameters.clone(),
                created_ms: records::now_ms(),
                group_snapshot_id: Some(group.to_string()),
            };
            let owner = format!("group snapshot {group}");
            let written = self
                .with_root_held(
                    &owner,
                    rec.root,
                    self.gen_exists(&h.volume_id, h.generation),
                    self.objects()
                        .put(&layout::snapshot(&rec.id), records::encode(&rec)?),
                )
                .await;
            if let Some(hold) = held {
                hold.release().await;
            }
            written?;
            out.push(rec);
        }
        Ok(out)
    }

    /// The group snapshot `id`.
    ///
    /// # Errors
    /// [`Error::NotFound`] when it does not exist (or `id` is not a group snapshot id).
    pub async fn get_group_snapshot(
        &self,
        id: &str,
    ) -> Result<(GroupSnapshotRecord, Vec<SnapshotRecord>)> {
        let g = self
            .try_get_group_snapshot(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("group snapshot {id} does not exist")))?;
        let members = self.group_members(&g).await?;
        Ok((g, members))
    }

    pub(crate) async fn try_get_group_snapshot(
        &self,
        id: &str,
    ) -> Result<Option<GroupSnapshotRecord>> {
        if !valid_id(id, "group-") {
            return Ok(None);
        }
        let path = layout::group_snapshot(id);
        match self.objects().get(&path).await? {
            Some(bytes) => Ok(Some(records::decode(&path, &bytes)?)),
            None => Ok(None),
        }
    }

    async fn group_members(&self, g: &GroupSnapshotRecord) -> Result<Vec<SnapshotRecord>> {
        let mut out = Vec::with_capacity(g.snapshot_ids.len());
        for s in &g.snapshot_ids {
            out.push(self.get_snapshot(s).await?);
        }
        Ok(out)
    }

    /// Deletes group snapshot `id` and its members; a group that does not exist is deleted.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn delete_group_snapshot(&self, id: &str) -> Result<()> {
        if !valid_id(id, "group-") {
            return Ok(());
        }
        if let Some(g) = self.try_get_group_snapshot(id).await? {
            // The group goes first, so its members are plain snapshots while they go (and
            // a delete that dies here leaves them to the next try below).
            self.objects().delete(&layout::group_snapshot(id)).await?;
            self.release_name(&layout::group_snapshot_name(&g.name), id)
                .await?;
        }
        self.delete_members_of(id).await
    }

    /// Deletes every snapshot record naming group `id`.
    async fn delete_members_of(&self, id: &str) -> Result<()> {
        for name in self.objects().list_names(layout::SNAPSHOTS).await? {
            let Some(sid) = name.strip_suffix(".json") else {
                continue;
            };
            if let Some(s) = self.try_get_snapshot(sid).await?
                && s.group_snapshot_id.as_deref() == Some(id)
            {
                self.objects().delete(&layout::snapshot(sid)).await?;
            }
        }
        Ok(())
    }
}

/// Reads `n` heads with `read` in two rounds, all of the first before any of the second,
/// until no generation moved between its two reads; the first round's heads then. `None`
/// when no such pair of rounds came in [`CUT_ATTEMPTS`] tries.
async fn cut<T, K, F, Fut>(n: usize, mut read: F, key: impl Fn(&T) -> K) -> Result<Option<Vec<T>>>
where
    K: PartialEq,
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut pause = Duration::from_millis(1);
    for _ in 0..CUT_ATTEMPTS {
        let mut first = Vec::with_capacity(n);
        for i in 0..n {
            first.push(read(i).await?);
        }
        let mut moved = false;
        for (i, h) in first.iter().enumerate() {
            if key(&read(i).await?) != key(h) {
                moved = true;
                break;
            }
        }
        if !moved {
            return Ok(Some(first));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A scripted writer: `steps[k]` is the volume it commits to just before the k-th read
    /// (a database writing its log, volume 0, then its data, volume 1, ...). Returns what
    /// the reads saw and whether each moment's heads were all current together.
    struct Script {
        gens: Vec<u64>,
        commits_before_read: Vec<Vec<usize>>,
        reads: usize,
        history: Vec<Vec<u64>>,
    }

    impl Script {
        fn read(&mut self, i: usize) -> GenRecord {
            if let Some(c) = self.commits_before_read.get(self.reads) {
                for &v in c {
                    self.gens[v] += 1;
                    self.history.push(self.gens.clone());
                }
            }
            self.reads += 1;
            GenRecord {
                format: 1,
                volume_id: format!("v{i}"),
                generation: self.gens[i],
                root: crate::Hash::ZERO,
                size_bytes: 0,
                chunk_size: 4096,
                committed_ms: 0,
                writer: None,
                journal: None,
            }
        }
    }

    async fn run(commits: Vec<Vec<usize>>) -> (Vec<u64>, Vec<Vec<u64>>) {
        let s = Mutex::new(Script {
            gens: vec![0, 0, 0],
            commits_before_read: commits,
            reads: 0,
            history: vec![vec![0, 0, 0]],
        });
        let got = cut(
            3,
            |i| {
                let h = s.lock().map(|mut s| s.read(i));
                async move { h.map_err(|_| Error::Internal("poisoned".into())) }
            },
            |h: &GenRecord| h.generation,
        )
        .await
        .expect("cut")
        .expect("a quiet instant");
        let history = s.into_inner().map(|s| s.history).unwrap_or_default();
        (got.iter().map(|h| h.generation).collect(), history)
    }

    /// Between the reads of volumes 0 and 1 the writer commits to 0 and then 1: reading the
    /// heads once, one after another, would give [0, 1, 0], a state that never existed
    /// (volume 1 ahead of the volume 0 write it follows). The cut sees the move and takes
    /// the next round.
    #[tokio::test]
    async fn a_write_between_two_reads_is_never_half_taken() {
        // Read 0 sees v0=0; then the writer commits v0 and v1; read 1 sees v1=1.
        let (got, history) = run(vec![vec![], vec![0, 1]]).await;
        assert!(history.contains(&got), "{got:?} never existed: {history:?}");
        assert_eq!(got, vec![1, 1, 0]);
    }

    #[tokio::test]
    async fn writes_during_the_second_round_are_caught_too() {
        // Round one reads 0..2; a commit to v2 during round two's reads.
        let (got, history) = run(vec![vec![], vec![], vec![], vec![], vec![2], vec![]]).await;
        assert!(history.contains(&got), "{got:?} never existed: {history:?}");
        assert_eq!(got, vec![0, 0, 1]);
    }

    #[tokio::test]
    async fn quiet_volumes_are_cut_in_one_try() {
        let (got, _) = run(vec![]).await;
        assert_eq!(got, vec![0, 0, 0]);
    }
}
