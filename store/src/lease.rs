//! A volume's single-writer lease: which node may write it. Each take, renewal and release is
//! the next numbered record, written with create-if-absent, so two nodes racing for a free
//! lease cannot both win. A lease that its holder stops renewing lapses at `expires_ms`, and
//! then another node may take it over.
//!
//! The lease alone cannot stop a node that lost it without knowing (a paused process): a new
//! holder therefore commits a fencing generation tagged with its lease (see
//! [`crate::VolumeHandle::fence`]), after which the old holder's commits fail.

use crate::error::{Error, Result};
use crate::layout;
use crate::records::{self, GenRecord, LeaseRecord, LeaseStart, RECORD_FORMAT};
use crate::store::Store;
use crate::torn::Unreadable;
use std::time::Duration;

impl Store {
    /// Succeeds when no node holds a live lease on volume `id`.
    ///
    /// # Errors
    /// [`crate::Error::Held`] naming the holder; backend errors.
    pub async fn check_unleased(&self, id: &str) -> Result<()> {
        check_unleased(self.lease(id).await?.as_ref())
    }

    /// The current state of volume `id`'s lease, if it was ever taken.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn lease(&self, id: &str) -> Result<Option<LeaseRecord>> {
        let mut seqs: Vec<u64> = self
            .objects()
            .list_names(&layout::leases(id))
            .await?
            .iter()
            .filter_map(|n| layout::gen_of_name(n))
            .collect();
        seqs.sort_unstable_by(|a, b| b.cmp(a));
        for seq in seqs {
            let path = layout::lease_path(id, seq);
            let Some(bytes) = self.objects().get(&path).await? else {
                continue;
            };
            match records::decode::<LeaseRecord>(&path, &bytes) {
                Ok(rec) => return Ok(Some(rec)),
                Err(e @ Error::Corrupt { .. }) => match self.unreadable(&path, &bytes, e).await? {
                    // A step whose writer died while creating it was never taken.
                    Unreadable::Torn { .. } => continue,
                    // A newer build's step, or damage: the lease is not what older steps say.
                    Unreadable::Refused(e) => return Err(e),
                },
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// Takes (or renews, when `holder` already has it) volume `id`'s lease for `ttl`.
    ///
    /// # Errors
    /// [`Error::NotFound`] for a missing volume; [`Error::Held`] naming the holder when
    /// another node has a live lease; backend errors.
    pub async fn acquire_lease(
        &self,
        id: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<LeaseRecord> {
        self.get_volume(id).await?;
        for _ in 0..4 {
            let current = self.lease(id).await?;
            if let Some(cur) = &current {
                check_free(cur, holder)?;
            }
            let next = current.as_ref().map_or(0, |c| c.seq + 1);
            // A holder taking its own live lease again keeps where it took the volume up.
            let start = current
                .filter(|c| c.holder == holder && !c.released)
                .and_then(|c| c.start);
            if let Some(rec) = self.write_step(id, next, holder, ttl, false, start).await? {
                return Ok(rec);
            }
        }
        Err(Error::Conflict(format!(
            "volume {id}: its lease kept changing while taking it; retry"
        )))
    }

    /// Extends `lease` by `ttl`.
    ///
    /// # Errors
    /// [`Error::Held`] when the lease was taken over or released meanwhile; backend errors.
    pub async fn renew_lease(&self, lease: &LeaseRecord, ttl: Duration) -> Result<LeaseRecord> {
        let id = &lease.volume_id;
        let current = self.lease(id).await?;
        still_held(lease, current.as_ref())?;
        let next = current.as_ref().map_or(0, |c| c.seq + 1);
        let start = current.and_then(|c| c.start);
        self.write_step(id, next, &lease.holder, ttl, false, start)
            .await?
            .ok_or_else(|| {
                Error::Held(format!(
                    "volume {id}: node {} lost its lease to a concurrent writer",
                    lease.holder
                ))
            })
    }

    /// Records in `lease`'s volume that its holder took the volume up with `fenced`, the
    /// generation it committed under its writer tag before serving a byte (a renewal that
    /// carries it; later steps of the holder carry it on).
    ///
    /// # Errors
    /// [`Error::Held`] when the lease was taken over or released meanwhile; backend errors.
    pub async fn record_lease_start(
        &self,
        lease: &LeaseRecord,
        fenced: &GenRecord,
        ttl: Duration,
    ) -> Result<LeaseRecord> {
        let id = &lease.volume_id;
        let start = LeaseStart {
            generation: fenced.generation,
            root: fenced.root,
            writer: fenced.writer.clone().unwrap_or_default(),
        };
        for _ in 0..4 {
            let current = self.lease(id).await?;
            still_held(lease, current.as_ref())?;
            let next = current.map_or(0, |c| c.seq + 1);
            if let Some(rec) = self
                .write_step(id, next, &lease.holder, ttl, false, Some(start.clone()))
                .await?
            {
                return Ok(rec);
            }
        }
        Err(Error::Conflict(format!(
            "volume {id}: its lease kept changing while recording its start; retry"
        )))
    }

    /// Gives volume `id`'s lease back if `holder` has it; a no-op otherwise (idempotent).
    ///
    /// # Errors
    /// Backend errors.
    pub async fn release_lease(&self, id: &str, holder: &str) -> Result<()> {
        for _ in 0..4 {
            let Some(cur) = self.lease(id).await? else {
                return Ok(());
            };
            if cur.holder != holder || cur.released {
                return Ok(());
            }
            if self
                .write_step(
                    id,
                    cur.seq + 1,
                    holder,
                    Duration::ZERO,
                    true,
                    cur.start.clone(),
                )
                .await?
                .is_some()
            {
                return Ok(());
            }
        }
        Err(Error::Conflict(format!(
            "volume {id}: its lease kept changing while releasing it; retry"
        )))
    }

    /// Writes lease step `seq`; `None` when another writer took that number first.
    async fn write_step(
        &self,
        id: &str,
        seq: u64,
        holder: &str,
        ttl: Duration,
        released: bool,
        start: Option<LeaseStart>,
    ) -> Result<Option<LeaseRecord>> {
        let now = records::now_ms();
        let rec = LeaseRecord {
            format: RECORD_FORMAT,
            volume_id: id.to_string(),
            seq,
            holder: holder.to_string(),
            expires_ms: now + ttl.as_millis() as u64,
            released,
            written_ms: now,
            start,
        };
        let path = layout::lease_path(id, seq);
        if !self
            .objects()
            .put_if_absent(&path, records::encode(&rec)?)
            .await?
        {
            // Our own write whose answer was lost counts as ours.
            let mine = match self.objects().get(&path).await? {
                Some(bytes) => records::decode::<LeaseRecord>(&path, &bytes)
                    .is_ok_and(|r| r.holder == holder && r.released == released),
                None => false,
            };
            if !mine {
                return Ok(None);
            }
        }
        for old in self.objects().list_names(&layout::leases(id)).await? {
            if let Some(s) = layout::gen_of_name(&old).filter(|s| s + 1 < seq)
                && let Err(e) = self.objects().delete(&layout::lease_path(id, s)).await
            {
                tracing::debug!(volume.id = %id, error = %e, "pruning an old lease step failed");
            }
        }
        Ok(Some(rec))
    }

    /// Removes every lease step of volume `id` (used when deleting the volume).
    pub(crate) async fn drop_leases(&self, id: &str) -> Result<()> {
        for name in self.objects().list_names(&layout::leases(id)).await? {
            self.objects()
                .delete(&format!("{}{name}", layout::leases(id)))
                .await?;
        }
        Ok(())
    }
}

/// Refuses while a node holds a live lease on the volume `cur` describes.
pub(crate) fn check_unleased(cur: Option<&LeaseRecord>) -> Result<()> {
    match cur {
        Some(c) => check_free(c, ""),
        None => Ok(()),
    }
}

/// Whether `holder` may take the lease `cur` describes.
fn check_free(cur: &LeaseRecord, holder: &str) -> Result<()> {
    let now = records::now_ms();
    if cur.released || cur.holder == holder || cur.expires_ms <= now {
        return Ok(());
    }
    Err(Error::Held(format!(
        "volume {} is staged for writing on node {} (lease expires in {} s unless renewed); \
         unstage it there first, or wait for the lease to lapse if that node is gone",
        cur.volume_id,
        cur.holder,
        (cur.expires_ms - now).div_ceil(1000)
    )))
}

/// Succeeds while `lease`'s holder still holds the lease whose current step is `current`.
fn still_held(lease: &LeaseRecord, current: Option<&LeaseRecord>) -> Result<()> {
    let id = &lease.volume_id;
    match current {
        Some(cur) if cur.holder == lease.holder && !cur.released => Ok(()),
        Some(cur) => Err(lost(id, &lease.holder, cur)),
        None => Err(Error::Held(format!(
            "volume {id}: the lease of node {} is gone",
            lease.holder
        ))),
    }
}

fn lost(id: &str, holder: &str, cur: &LeaseRecord) -> Error {
    let how = if cur.released {
        "released"
    } else {
        "taken over"
    };
    Error::Held(format!(
        "volume {id}: node {holder}'s lease was {how} (now step {} of node {})",
        cur.seq, cur.holder
    ))
}

#[cfg(test)]
mod tests {
    use crate::{Store, StoreConfig, StoreOptions, VolumeSpec};
    use std::time::Duration;

    const TTL: Duration = Duration::from_secs(60);

    /// The start a holder records travels with its later steps, and goes with the holder.
    #[tokio::test]
    async fn a_recorded_start_is_carried_by_the_holders_steps_only() {
        let s = Store::open(&StoreConfig::memory(), StoreOptions::default())
            .await
            .expect("store");
        let id = s
            .create_volume(VolumeSpec {
                name: "v".into(),
                capacity_bytes: 1 << 20,
                options: Default::default(),
                parameters: Default::default(),
                source: None,
            })
            .await
            .expect("volume")
            .id()
            .to_string();
        let lease = s.acquire_lease(&id, "a", TTL).await.expect("take");
        assert_eq!(lease.start, None);
        let h = s
            .open_volume_as(&id, Some(lease.writer()))
            .await
            .expect("open");
        let fenced = h.fence().await.expect("fence");
        let rec = s
            .record_lease_start(&lease, &fenced, TTL)
            .await
            .expect("record");
        let start = rec.start.clone().expect("start");
        assert_eq!(start.generation, fenced.generation);
        assert_eq!(start.root, fenced.root);
        assert_eq!(start.writer, lease.writer());
        // A renewal and the holder taking its own lease again keep it.
        let renewed = s.renew_lease(&rec, TTL).await.expect("renew");
        assert_eq!(renewed.start.as_ref(), Some(&start));
        let again = s.acquire_lease(&id, "a", TTL).await.expect("again");
        assert_eq!(again.start.as_ref(), Some(&start));
        // The next holder starts without one; another node cannot record into the lease.
        s.release_lease(&id, "a").await.expect("release");
        let b = s.acquire_lease(&id, "b", TTL).await.expect("b");
        assert_eq!(b.start, None);
        assert!(s.record_lease_start(&lease, &fenced, TTL).await.is_err());
    }
}
