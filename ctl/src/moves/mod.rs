//! `ferryctl move <kind>/<name> --to-node N`: moves a workload to another node of the same
//! cluster. Its ferry volumes live in the shared chunk store, so nothing is copied: the
//! workload is scaled down, its volumes are waited on until the old node has unstaged them
//! (flushed, lease released), their committed roots are read back, the pod template is
//! pinned to N and scaled back up, and each volume is checked to be taken up on N from
//! exactly the committed root.
//!
//! Everything that can stop a move (the node, its taints and labels, the volumes' node
//! affinity) is checked before anything is scaled down; a move that fails before the
//! workload is pinned scales it back where it was. The replica count and the target node
//! are kept in annotations on the workload while it is down, so a move that was interrupted
//! continues when run again.

pub mod placement;
pub mod volumes;
pub mod workload;

use crate::Result;
use ferry_store::Store;
use serde_json::json;
use std::time::{Duration, Instant};
use volumes::{Claim, Committed, LetGo, TakenUp};
use workload::{Kind, MOVE_REPLICAS, MOVE_TO_NODE, Workload};

/// What `move` takes.
#[derive(Clone, Debug)]
pub struct MoveArgs {
    /// The workload's namespace.
    pub namespace: String,
    /// `deployment/NAME` or `statefulset/NAME`.
    pub workload: String,
    /// The node to move it to.
    pub node: String,
    /// Also read back and check every chunk of each committed root (not only its pages).
    pub verify_chunks: bool,
    /// How long each wait (pods gone, volumes unstaged, pods ready) may take.
    pub timeout: Duration,
    /// How often waits look again.
    pub every: Duration,
}

/// One ferry volume of a move.
#[derive(Clone, Debug)]
pub struct MovedVolume {
    /// Its claim.
    pub claim: String,
    /// Its ferry volume id.
    pub volume_id: String,
    /// How the old node let go (`None` when the workload was already on the node).
    pub let_go: Option<LetGo>,
    /// Its committed state, read back.
    pub committed: Committed,
    /// How the new node took it up (`None` when no pod uses it after the move).
    pub taken_up: Option<TakenUp>,
}

/// What a move did.
#[derive(Clone, Debug)]
pub struct MoveReport {
    /// `deployment/web`.
    pub workload: String,
    /// The node it runs on now.
    pub node: String,
    /// Its replica count.
    pub replicas: i32,
    /// It already ran pinned on the node: nothing was scaled.
    pub already_there: bool,
    /// Its ferry volumes.
    pub volumes: Vec<MovedVolume>,
    /// Claims on other drivers (name and driver), which ferry does not check.
    pub others: Vec<(String, String)>,
}

/// Moves the workload; `progress` gets a line at each step.
///
/// # Errors
/// Text saying what stopped the move and in what state it left the workload.
pub async fn run(
    client: &kube::Client,
    store: &Store,
    a: &MoveArgs,
    progress: &mut (dyn FnMut(String) + Send),
) -> Result<MoveReport> {
    let (kind, name) = Kind::parse(&a.workload)?;
    let w = Workload::read(client, &a.namespace, kind, &name).await?;
    let resumed = resumed_replicas(&w, &a.node)?;
    let replicas = resumed.unwrap_or(w.replicas);
    let pod = w.template.spec.clone().unwrap_or_default();
    let node = placement::check_node(client, &a.node, &pod).await?;
    let claims = volumes::claims(client, &a.namespace, &w.claims(replicas)).await?;
    let pvs: Vec<_> = claims.iter().map(|c| c.pv.clone()).collect();
    placement::check_volume_affinity(&pvs, &node)?;
    let mut report = MoveReport {
        workload: w.label(),
        node: a.node.clone(),
        replicas,
        already_there: false,
        volumes: Vec::new(),
        others: others(&claims),
    };
    let ferry: Vec<(String, String)> = claims
        .iter()
        .filter_map(|c| c.volume_id.clone().map(|id| (c.claim.clone(), id)))
        .collect();

    if resumed.is_none() && placement::pinned_to(&pod, &a.node) {
        // Pinned already (a move that got as far as scaling back up, or a repeat): no
        // downtime, only the wait for its pods and the check of its volumes.
        progress(format!(
            "{} is already pinned to node {}",
            w.label(),
            a.node
        ));
        wait_ready_and_taken(client, store, &w, a, replicas, &[], &[], &mut []).await?;
        report.already_there = true;
        for (claim, id) in ferry {
            let committed = volumes::committed(store, &id, a.verify_chunks).await?;
            let taken_up = if replicas > 0 {
                match volumes::holder(store, &id).await? {
                    Some(h) if h == a.node => Some(TakenUp::Unproven {
                        generation: committed.head.generation,
                    }),
                    other => {
                        return Err(not_held(&id, &claim, &a.node, other.as_deref()).into());
                    }
                }
            } else {
                None
            };
            report.volumes.push(MovedVolume {
                claim,
                volume_id: id,
                let_go: None,
                committed,
                taken_up,
            });
        }
        return Ok(report);
    }

    if resumed.is_none() {
        progress(format!(
            "scaling {} down from {replicas} replica(s)",
            w.label()
        ));
        w.patch(
            client,
            json!({
                "metadata": {"annotations": {
                    MOVE_REPLICAS: replicas.to_string(), MOVE_TO_NODE: a.node}},
                "spec": {"replicas": 0}
            }),
        )
        .await?;
    } else {
        progress(format!(
            "continuing the move of {} to node {} ({replicas} replica(s))",
            w.label(),
            a.node
        ));
    }

    let before_pin = async {
        wait_gone(client, &w, a).await?;
        progress(format!(
            "pods gone; waiting until {} volume(s) are unstaged",
            ferry.len()
        ));
        let mut left = Vec::new();
        for (claim, id) in &ferry {
            let let_go = wait_let_go(store, a, claim, id).await?;
            let committed = volumes::committed(store, id, a.verify_chunks).await?;
            left.push((let_go, committed));
        }
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(left)
    };
    let left = match before_pin.await {
        Ok(left) => left,
        Err(e) => {
            // Not pinned yet: put the workload back where it was.
            let undo = w
                .patch(
                    client,
                    json!({
                        "metadata": {"annotations": {MOVE_REPLICAS: null, MOVE_TO_NODE: null}},
                        "spec": {"replicas": replicas}
                    }),
                )
                .await;
            let e = crate::say(&*e);
            return Err(match undo {
                Ok(()) => format!(
                    "{e}; the move is undone: {} is scaled back to {replicas} replica(s) where it ran",
                    w.label()
                ),
                Err(u) => format!(
                    "{e}; scaling {} back to {replicas} replica(s) failed too ({}): run the move \
                     again to continue it",
                    w.label(),
                    crate::say(&*u)
                ),
            }
            .into());
        }
    };
    for ((claim, _), (let_go, committed)) in ferry.iter().zip(&left) {
        progress(format!(
            "volume {claim}: {}; committed generation {}, root {}",
            describe_let_go(let_go),
            committed.head.generation,
            volumes::short(&committed.head.root)
        ));
    }

    progress(format!(
        "pinning {} to node {} and scaling it to {replicas} replica(s)",
        w.label(),
        a.node
    ));
    w.patch(
        client,
        json!({
            "metadata": {"annotations": {MOVE_REPLICAS: null, MOVE_TO_NODE: null}},
            "spec": {"replicas": replicas, "template": {"spec": placement::pin_patch(&pod, &node)}}
        }),
    )
    .await?;

    let mut taken: Vec<Option<TakenUp>> = vec![None; ferry.len()];
    if replicas > 0 {
        wait_ready_and_taken(client, store, &w, a, replicas, &ferry, &left, &mut taken).await?;
    }
    for (((claim, id), (let_go, committed)), taken_up) in ferry.into_iter().zip(left).zip(taken) {
        report.volumes.push(MovedVolume {
            claim,
            volume_id: id,
            let_go: Some(let_go),
            committed,
            taken_up,
        });
    }
    Ok(report)
}

/// The replica count of an interrupted move of `w` to `node`, if one is under way.
fn resumed_replicas(w: &Workload, node: &str) -> Result<Option<i32>> {
    let Some(r) = w.annotations.get(MOVE_REPLICAS) else {
        return Ok(None);
    };
    if let Some(other) = w.annotations.get(MOVE_TO_NODE)
        && other != node
    {
        return Err(format!(
            "{} is being moved to node {other}: finish that move first (ferryctl move {} \
             --to-node {other})",
            w.label(),
            w.label()
        )
        .into());
    }
    r.parse::<i32>()
        .ok()
        .filter(|n| *n >= 0)
        .map(Some)
        .ok_or_else(|| {
            format!(
                "{} has annotation {MOVE_REPLICAS}={r:?}, which is not a replica count: set it \
                 to the count to scale back to",
                w.label()
            )
            .into()
        })
}

fn others(claims: &[Claim]) -> Vec<(String, String)> {
    claims
        .iter()
        .filter(|c| c.volume_id.is_none())
        .map(|c| {
            let driver =
                c.pv.spec
                    .as_ref()
                    .and_then(|s| s.csi.as_ref())
                    .map_or("an in-tree or local volume".to_string(), |c| {
                        c.driver.clone()
                    });
            (c.claim.clone(), driver)
        })
        .collect()
}

/// Waits until no pod of `w` is left (terminating ones included).
async fn wait_gone(client: &kube::Client, w: &Workload, a: &MoveArgs) -> Result<()> {
    let deadline = Instant::now() + a.timeout;
    loop {
        let pods = w.pods(client).await?;
        if pods.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let list: Vec<String> = pods.iter().map(workload::describe).collect();
            return Err(format!(
                "{} still has pods after {}s: {}",
                w.label(),
                a.timeout.as_secs(),
                list.join(", ")
            )
            .into());
        }
        tokio::time::sleep(a.every).await;
    }
}

/// Waits until the node that wrote volume `id` has let go of it.
async fn wait_let_go(store: &Store, a: &MoveArgs, claim: &str, id: &str) -> Result<LetGo> {
    let deadline = Instant::now() + a.timeout;
    loop {
        if let Some(l) = volumes::let_go(store, id).await? {
            return Ok(l);
        }
        if Instant::now() >= deadline {
            let holder = volumes::holder(store, id).await?.unwrap_or_default();
            return Err(format!(
                "volume {id} (claim {claim}) is still staged for writing by node {holder} \
                 {}s after its pods went: is ferry's node plugin on {holder} running?",
                a.timeout.as_secs()
            )
            .into());
        }
        tokio::time::sleep(a.every).await;
    }
}

/// Counts `w`'s pods: (ready on `node`, any elsewhere or not ready, their descriptions).
async fn census(
    client: &kube::Client,
    w: &Workload,
    node: &str,
) -> Result<(usize, usize, Vec<String>)> {
    let pods = w.pods(client).await?;
    let here = pods
        .iter()
        .filter(|p| {
            workload::ready(p) && p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node)
        })
        .count();
    Ok((
        here,
        pods.len() - here,
        pods.iter().map(workload::describe).collect(),
    ))
}

/// Waits until `replicas` pods of `w` are ready on the node and no other is left, and each
/// of the `ferry` volumes is taken up there, checking that it was taken up from its
/// committed root.
#[allow(clippy::too_many_arguments)]
async fn wait_ready_and_taken(
    client: &kube::Client,
    store: &Store,
    w: &Workload,
    a: &MoveArgs,
    replicas: i32,
    ferry: &[(String, String)],
    left: &[(LetGo, Committed)],
    taken: &mut [Option<TakenUp>],
) -> Result<()> {
    let deadline = Instant::now() + a.timeout;
    loop {
        // Look at the volumes first and often: the generation where the node took a
        // volume up is pruned once the workload has committed twice more.
        for (i, (_, id)) in ferry.iter().enumerate() {
            if taken[i].is_none() {
                taken[i] = volumes::taken_up(store, id, &a.node, &left[i].1.head).await?;
            }
        }
        let (here, rest, list) = census(client, w, &a.node).await?;
        if here >= replicas.max(0) as usize && rest == 0 && taken.iter().all(Option::is_some) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let waiting: Vec<&str> = ferry
                .iter()
                .zip(taken.iter())
                .filter(|(_, t)| t.is_none())
                .map(|((c, _), _)| c.as_str())
                .collect();
            let mut msg = not_ready(w, a, replicas, here, &list);
            if !waiting.is_empty() {
                msg.push_str(&format!(
                    "; not yet staged on {}: {}",
                    a.node,
                    waiting.join(", ")
                ));
            }
            return Err(msg.into());
        }
        tokio::time::sleep(a.every).await;
    }
}

fn not_ready(w: &Workload, a: &MoveArgs, replicas: i32, here: usize, pods: &[String]) -> String {
    format!(
        "{} has {here} of {replicas} pod(s) ready on node {} after {}s (pods: {}); its volumes' \
         data is committed in the store and it stays pinned to {}",
        w.label(),
        a.node,
        a.timeout.as_secs(),
        if pods.is_empty() {
            "none".to_string()
        } else {
            pods.join(", ")
        },
        a.node
    )
}

fn not_held(id: &str, claim: &str, node: &str, holder: Option<&str>) -> String {
    match holder {
        Some(h) => {
            format!("volume {id} (claim {claim}) is staged for writing by node {h}, not by {node}")
        }
        None => format!("volume {id} (claim {claim}) is not staged on node {node}"),
    }
}

fn describe_let_go(l: &LetGo) -> String {
    match l {
        LetGo::NeverStaged => "never staged for writing".into(),
        LetGo::Released { node: n } => {
            format!("unstaged by node {n} (flushed, lease released)")
        }
        LetGo::Lapsed { node: n } => format!(
            "node {n}'s lease ran out without an unstage: only what it had flushed is in the \
             store"
        ),
    }
}

/// The report as text: one line for the move, then each volume.
pub fn describe(r: &MoveReport) -> String {
    let mut out = if r.already_there {
        format!(
            "{} already runs on node {} ({} replica(s)): nothing was scaled\n",
            r.workload, r.node, r.replicas
        )
    } else {
        format!(
            "{} moved to node {} ({} replica(s))\n",
            r.workload, r.node, r.replicas
        )
    };
    for v in &r.volumes {
        let c = &v.committed;
        out.push_str(&format!("volume {} ({}):", v.claim, v.volume_id));
        if let Some(l) = &v.let_go {
            out.push_str(&format!(" {};", describe_let_go(l)));
        }
        out.push_str(&format!(
            " committed generation {}, root {}: {} tree page(s) read back and checked",
            c.head.generation, c.head.root, c.check.pages
        ));
        if c.check.chunks_read > 0 || c.check.chunk_refs == 0 {
            out.push_str(&format!(
                ", {} chunk(s) ({} bytes stored) read back and checked",
                c.check.chunks_read, c.check.chunk_bytes_read
            ));
        } else {
            out.push_str(&format!(
                ", {} chunk reference(s) (chunks not read: --verify-chunks reads them)",
                c.check.chunk_refs
            ));
        }
        out.push('\n');
        match &v.taken_up {
            Some(TakenUp::FromRoot { generation, writer }) => out.push_str(&format!(
                "  data verified: staged on node {} from that root (generation {generation}, \
                 writer {writer})\n",
                r.node
            )),
            Some(TakenUp::Unproven { generation }) => out.push_str(&format!(
                "  staged on node {} (lease held, generation {generation} now); where it took \
                 the volume up is not shown\n",
                r.node
            )),
            None => out.push_str("  not staged: no pod uses it now\n"),
        }
    }
    for (claim, driver) in &r.others {
        out.push_str(&format!(
            "claim {claim}: not a ferry volume ({driver}): not checked\n"
        ));
    }
    out
}
