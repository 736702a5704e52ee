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
    /// Unstaged by `node`: flushed, and its lease given back at step `seq`.
    Released {
        /// The node.
        node: String,
        /// The lease step of the release.
        seq: u64,
    },
    /// `node`'s lease (last step `seq`) ran out without an unstage (the node or its plugin
    /// died): what it had not flushed is not in the store.
    Lapsed {
        /// The node.
        node: String,
        /// The lease's last step.
        seq: u64,
    },
}

impl LetGo {
    /// The lease step the next node to stage the volume takes.
    pub fn next_seq(&self) -> u64 {
        match self {
            LetGo::NeverStaged => 0,
            LetGo::Released { seq, .. } | LetGo::Lapsed { seq, .. } => seq + 1,
        }
    }
}

/// Whether the volume's writer has let go: `None` while a node holds a live lease.
///
/// # Errors
/// Store errors.
pub async fn let_go(store: &Store, id: &str) -> Result<Option<LetGo>> {
    Ok(match store.lease(id).await? {
        None => Some(LetGo::NeverStaged),
        Some(l) if l.released => Some(LetGo::Released {
            node: l.holder,
            seq: l.seq,
        }),
        Some(l) if l.expires_ms <= now_ms() => Some(LetGo::Lapsed {
            node: l.holder,
            seq: l.seq,
        }),
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
    /// Seen directly: the new node's first generation holds exactly the committed root.
    FromRoot {
        /// That generation.
        generation: u64,
        /// The writer tag (`node#lease step`).
        writer: String,
    },
    /// The new node's first generation is pruned already (it has committed twice since),
    /// but its lease is the step right after the old node let go, so no writer came in
    /// between: it opened the volume at the committed root. Its head now is `generation`.
    AfterRelease {
        /// The head generation when checked.
        generation: u64,
        /// The writer tag (`node#lease step`).
        writer: String,
    },
    /// The new node holds the lease, but where it took the volume up cannot be shown (it
    /// staged the volume more than once since, or another commit came last).
    Unproven {
        /// The head generation when checked.
        generation: u64,
    },
}

impl TakenUp {
    /// Is the volume shown to be taken up from the committed root?
    pub fn verified(&self) -> bool {
        !matches!(self, TakenUp::Unproven { .. })
    }
}

/// Checks, once `node` holds volume `id`'s lease, how it took the volume up from the
/// committed generation `base`, the old writer having let go as `left`: `None` while
/// another node or nobody holds it, or before the new node's fencing commit.
///
/// A node that stages a volume for writing takes the lease's next step and commits the
/// root it opened again under the tag `node#step` (its fencing generation) before it serves
/// a byte; every later commit of that staging carries the same tag.
///
/// # Errors
/// A generation after `base` written by another writer, or the new node's first generation
/// holding another root: the data is not verified. Store errors.
pub async fn taken_up(
    store: &Store,
    id: &str,
    node: &str,
    base: &GenRecord,
    left: &LetGo,
) -> Result<Option<TakenUp>> {
    if holder(store, id).await?.as_deref() != Some(node) {
        return Ok(None);
    }
    let tag = format!("{node}#{}", left.next_seq());
    match store.generation(id, base.generation + 1).await? {
        Some(g) if g.writer.as_deref() == Some(tag.as_str()) && g.root == base.root => {
            Ok(Some(TakenUp::FromRoot {
                generation: g.generation,
                writer: tag,
            }))
        }
        Some(g) => Err(format!(
            "volume {id}: generation {} after the committed one holds root {} written by {}, \
             where node {node} was to take up root {} as {tag}: the data is not verified",
            g.generation,
            g.root,
            g.writer.as_deref().unwrap_or("the controller"),
            base.root
        )
        .into()),
        None => {
            let head = store.head(id).await?;
            if head.generation <= base.generation {
                return Ok(None); // leased, not yet fenced
            }
            Ok(Some(if head.writer.as_deref() == Some(tag.as_str()) {
                TakenUp::AfterRelease {
                    generation: head.generation,
                    writer: tag,
                }
            } else {
                TakenUp::Unproven {
                    generation: head.generation,
                }
            }))
        }
    }
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
