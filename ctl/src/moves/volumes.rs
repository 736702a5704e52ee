//! The workload's ferry volumes during a move: found through its claims, waited on until
//! the old node has unstaged them (flushed, lease released), their committed roots read
//! back, and their staging on the new node checked against those roots.

use crate::Result;
use ferry_store::{GenRecord, Hash, RootCheck, Store};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::Api;
use std::time::{SystemTime, UNIX_EPOCH};

/// One of the workload's claims.
#[derive(Clone, Debug)]
pub struct Claim {
    /// The claim's name.
    pub claim: String,
    /// Its PV.
    pub pv: PersistentVolume,
    /// The ferry volume id, when the PV is ferry's.
    pub volume_id: Option<String>,
}

/// Reads the workload's claims and their PVs. A claim that does not exist yet (a
/// StatefulSet ordinal never started) is left out; an unbound one is an error.
///
/// # Errors
/// An unbound claim or a missing PV, named; API errors.
pub async fn claims(client: &kube::Client, ns: &str, names: &[String]) -> Result<Vec<Claim>> {
    let pvcs = Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns);
    let pvs = Api::<PersistentVolume>::all(client.clone());
    let mut out = Vec::new();
    for name in names {
        let Some(pvc) = pvcs.get_opt(name).await? else {
            continue;
        };
        let pv_name = pvc
            .spec
            .and_then(|s| s.volume_name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("claim {ns}/{name} is not bound to a PV yet"))?;
        let pv = pvs
            .get_opt(&pv_name)
            .await?
            .ok_or_else(|| format!("claim {ns}/{name} is bound to PV {pv_name}, which is gone"))?;
        let volume_id = pv
            .spec
            .as_ref()
            .and_then(|s| s.csi.as_ref())
            .filter(|c| c.driver == ferry_csi::DRIVER_NAME)
            .map(|c| c.volume_handle.clone());
        out.push(Claim {
            claim: name.clone(),
            pv,
            volume_id,
        });
    }
    Ok(out)
}

/// How the old node let go of a volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LetGo {
    /// Never staged for writing.
    NeverStaged,
    /// Unstaged by `node`: flushed, and its lease given back.
    Released {
        /// The node.
        node: String,
    },
    /// `node`'s lease ran out without an unstage (the node or its plugin died): what it
    /// had not flushed is not in the store.
    Lapsed {
        /// The node.
        node: String,
    },
}

/// Whether the volume's writer has let go: `None` while a node holds a live lease.
///
/// # Errors
/// Store errors.
pub async fn let_go(store: &Store, id: &str) -> Result<Option<LetGo>> {
    Ok(match store.lease(id).await? {
        None => Some(LetGo::NeverStaged),
        Some(l) if l.released => Some(LetGo::Released { node: l.holder }),
        Some(l) if l.expires_ms <= now_ms() => Some(LetGo::Lapsed { node: l.holder }),
        Some(_) => None,
    })
}

/// The node holding a live lease on volume `id`, if any.
///
/// # Errors
/// Store errors.
pub async fn holder(store: &Store, id: &str) -> Result<Option<String>> {
    Ok(store
        .lease(id)
        .await?
        .filter(|l| !l.released && l.expires_ms > now_ms())
        .map(|l| l.holder))
}

/// A volume's committed state once its writer has let go.
#[derive(Clone, Debug)]
pub struct Committed {
    /// The generation last committed.
    pub head: GenRecord,
    /// What reading its root back found.
    pub check: RootCheck,
}

/// Reads volume `id`'s head and every page (with `chunks`, every chunk) of its root.
///
/// # Errors
/// A damaged or missing page or chunk; store errors.
pub async fn committed(store: &Store, id: &str, chunks: bool) -> Result<Committed> {
    let head = store.head(id).await?;
    let check = store.check_root(head.root, chunks).await.map_err(|e| {
        format!(
            "volume {id}: its committed root {} does not read back: {e}",
            head.root
        )
    })?;
    Ok(Committed { head, check })
}

/// How the new node took up a volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TakenUp {
    /// The new node's first generation is the one right after the committed one and holds
    /// exactly its root: seen in the generation itself while the store keeps it, and after
    /// in the start the node recorded in its lease.
    FromRoot {
        /// That generation.
        generation: u64,
        /// Its writer tag (`node#lease step`).
        writer: String,
    },
    /// The new node holds the lease, but where it took the volume up cannot be shown (it
    /// staged the volume again since, or its plugin records no start).
    Unproven {
        /// The head generation when checked.
        generation: u64,
    },
}

impl TakenUp {
    /// Is the volume shown to be taken up from the committed root?
    pub fn verified(&self) -> bool {
        matches!(self, TakenUp::FromRoot { .. })
    }
}

/// Checks, once `node` holds volume `id`'s lease, how it took the volume up from the
/// committed generation `base`: `None` while another node or nobody holds it, or before
/// the new node's fencing commit.
///
/// A node that stages a volume for writing commits the root it opened again under its
/// writer tag (`node#lease step`, its fencing generation) before it serves a byte, and
/// records that generation in its lease (`start`), which outlives the generation itself:
/// a commit prunes all but the generation before it.
///
/// # Errors
/// The generation after `base` written by another writer, or holding another root: the
/// data is not verified. Store errors.
pub async fn taken_up(
    store: &Store,
    id: &str,
    node: &str,
    base: &GenRecord,
) -> Result<Option<TakenUp>> {
    let Some(lease) = store
        .lease(id)
        .await?
        .filter(|l| !l.released && l.expires_ms > now_ms() && l.holder == node)
    else {
        return Ok(None);
    };
    let mine = |w: Option<&str>| {
        w.and_then(|w| w.rsplit_once('#'))
            .is_some_and(|(n, _)| n == node)
    };
    let next = base.generation + 1;
    if let Some(g) = store.generation(id, next).await? {
        if mine(g.writer.as_deref()) && g.root == base.root {
            return Ok(Some(TakenUp::FromRoot {
                generation: g.generation,
                writer: g.writer.unwrap_or_default(),
            }));
        }
        return Err(format!(
            "volume {id}: generation {next}, the one after the committed one, holds root {} \
             written by {}, where node {node} was to take up root {}: the data is not verified",
            g.root,
            g.writer.as_deref().unwrap_or("the controller"),
            base.root
        )
        .into());
    }
    let head = store.head(id).await?;
    if head.generation <= base.generation {
        return Ok(None); // leased, not yet fenced
    }
    Ok(Some(match lease.start {
        Some(s) if s.generation == next && s.root == base.root && mine(Some(&s.writer)) => {
            TakenUp::FromRoot {
                generation: s.generation,
                writer: s.writer,
            }
        }
        Some(s) if s.generation == next => {
            return Err(format!(
                "volume {id}: node {node} recorded taking it up at generation {next} with root \
                 {}, not the committed root {}: the data is not verified",
                s.root, base.root
            )
            .into());
        }
        _ => TakenUp::Unproven {
            generation: head.generation,
        },
    }))
}

/// A root as the report shows it.
pub fn short(root: &Hash) -> String {
    let s = root.to_string();
    s.chars().take(16).collect()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
