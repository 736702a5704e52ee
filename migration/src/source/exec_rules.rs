//! Pre and post exec rules: a Rule's commands run in the selected pods through the
//! `pods/exec` subresource (a websocket to the API server, as `kubectl exec` does).
//!
//! A foreground action must end with exit code 0 within its timeout. A background action
//! is started and must print a line on stdout within its timeout (the sign that it holds
//! what it is for, a lock say); it then keeps running, its session open, until the caller
//! ends it after the snapshots. A failing or timed-out action fails the rule with the
//! command's output; background actions already started are ended first.
//!
//! A command's output is read as it arrives and only the last 2 KiB of each stream are
//! kept ([`Tail`]), so a command that prints without end (`yes`) costs the controller a few
//! KiB, however long it runs; its timeout is capped ([`crate::crd::MAX_TIMEOUT_SECONDS`]).

use crate::crd::{Migration, Rule, RuleAction, RuleItem};
use crate::error::Result;
use crate::{Ctx, api, kinds_used};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{AttachParams, AttachedProcess};
use std::collections::VecDeque;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Seconds an action may take when its Rule does not say.
pub const DEFAULT_TIMEOUT_SECS: u64 = 60;
/// Output kept in a reason, per stream: the last this many bytes.
pub const OUTPUT_KEPT: usize = 2048;
/// How much of a stream one read takes (a buffer reused for every read).
const READ_CHUNK: usize = 8192;

/// The most bytes of one stream's output this process has kept at once.
static OUTPUT_HELD_PEAK: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The most bytes of one stream of an action's output this process has kept at once (at most
/// [`OUTPUT_KEPT`]; the read buffer, [`READ_CHUNK`] bytes reused, aside).
pub fn output_held_peak() -> usize {
    OUTPUT_HELD_PEAK.load(std::sync::atomic::Ordering::Relaxed)
}

/// The end of a stream: the last [`OUTPUT_KEPT`] bytes, older ones dropped as new ones
/// arrive.
#[derive(Default)]
struct Tail {
    kept: VecDeque<u8>,
    dropped: bool,
}

impl Tail {
    fn push(&mut self, bytes: &[u8]) {
        let bytes = match bytes.len().checked_sub(OUTPUT_KEPT) {
            Some(skip) if skip > 0 => {
                self.dropped = true;
                self.kept.clear();
                &bytes[skip..]
            }
            _ => bytes,
        };
        self.kept.extend(bytes);
        if let Some(over) = self.kept.len().checked_sub(OUTPUT_KEPT)
            && over > 0
        {
            self.dropped = true;
            self.kept.drain(..over);
        }
        OUTPUT_HELD_PEAK.fetch_max(self.kept.len(), std::sync::atomic::Ordering::Relaxed);
    }

    /// The kept end as text, `...` in front when earlier output was dropped.
    fn text(&self) -> String {
        let (a, b) = self.kept.as_slices();
        let mut bytes = [a, b].concat();
        if self.dropped {
            // The cut may fall inside a character: start at the next whole one.
            let start = bytes
                .iter()
                .position(|b| b & 0xc0 != 0x80)
                .unwrap_or(bytes.len());
            bytes.drain(..start);
        }
        let t = String::from_utf8_lossy(&bytes);
        let t = t.trim();
        if self.dropped {
            format!("...{t}")
        } else {
            t.to_string()
        }
    }
}

/// Reads `r` to its end, keeping its last bytes.
async fn keep_tail<R: AsyncRead + Unpin>(mut r: R) -> Tail {
    let mut tail = Tail::default();
    let mut buf = vec![0u8; READ_CHUNK];
    while let Ok(n) = r.read(&mut buf).await {
        if n == 0 {
            break;
        }
        tail.push(&buf[..n]);
    }
    tail
}

/// Reads `r` until a newline arrives (true) or it ends (false), keeping its last bytes.
async fn first_line<R: AsyncRead + Unpin>(r: &mut R, tail: &mut Tail) -> bool {
    let mut buf = vec![0u8; READ_CHUNK];
    while let Ok(n) = r.read(&mut buf).await {
        if n == 0 {
            return false;
        }
        tail.push(&buf[..n]);
        if buf[..n].contains(&b'\n') {
            return true;
        }
    }
    false
}

/// Reads Rule `name` of namespace `ns` and checks it ([`crate::crd::RuleSpec::check`]):
/// `Ok(Err(reason))` when it is missing or refused, so nothing of it runs.
///
/// # Errors
/// API errors a retry may cure.
pub async fn load(ctx: &Ctx, ns: &str, name: &str) -> Result<std::result::Result<Rule, String>> {
    let rules: kube::Api<Rule> = kube::Api::namespaced(ctx.client.clone(), ns);
    let Some(rule) = rules.get_opt(name).await? else {
        return Ok(Err(format!(
            "Rule {name} not found in namespace {ns}: create it or fix the Migration's rule name"
        )));
    };
    Ok(match rule.spec.check() {
        Ok(()) => Ok(rule),
        Err(why) => Err(format!("Rule {ns}/{name}: {why}")),
    })
}

/// Background actions started by a rule, kept running until [`Running::end`].
#[derive(Default)]
pub struct Running {
    procs: Vec<(String, AttachedProcess)>,
}

impl Running {
    /// Ends every background action (closes its session, which ends the command).
    pub async fn end(self) {
        for (pod, p) in self.procs {
            p.abort();
            if let Err(e) = p.join().await {
                tracing::debug!(pod, error = %e, "background action ended");
            }
        }
    }
}

/// A label selector in the list API's form, `k1=v1,k2=v2`.
fn label_selector(labels: &std::collections::BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Runs Rule `name` of `mig`'s namespace. `Ok(Err(reason))` when the rule fails (nothing of
/// it keeps running then); `Ok(Ok(running))` with its background actions otherwise.
///
/// # Errors
/// API errors a retry may cure.
pub async fn run(
    ctx: &Ctx,
    mig: &Migration,
    name: &str,
) -> Result<std::result::Result<Running, String>> {
    let ns = mig.namespace().unwrap_or_default();
    let rule = match load(ctx, &ns, name).await? {
        Ok(rule) => rule,
        Err(why) => return Ok(Err(why)),
    };
    let pods: kube::Api<Pod> = kube::Api::namespaced(ctx.client.clone(), &ns);
    let mut running = Running::default();
    for (i, item) in rule.spec.rules.iter().enumerate() {
        let selector = label_selector(&item.pod_selector);
        let targets = targets(ctx, &ns, item).await?;
        if targets.is_empty() {
            running.end().await;
            return Ok(Err(format!(
                "Rule {name}: rules[{i}]: no running pod in {ns} matches podSelector {selector:?}"
            )));
        }
        for action in &item.actions {
            if action.action_type != "command" {
                running.end().await;
                return Ok(Err(format!(
                    "Rule {name}: rules[{i}]: action type {:?} is not known (only command)",
                    action.action_type
                )));
            }
            let on = if action.run_in_single_pod {
                &targets[..1]
            } else {
                &targets[..]
            };
            for (pod, container) in on {
                match one(&pods, pod, container, action).await? {
                    Ok(Some(p)) => running.procs.push((pod.clone(), p)),
                    Ok(None) => {}
                    Err(why) => {
                        running.end().await;
                        return Ok(Err(format!(
                            "Rule {name}: pod {ns}/{pod}: `{}` {why}",
                            action.value
                        )));
                    }
                }
            }
        }
    }
    Ok(Ok(running))
}

/// What Rule `name` would do now, one line per item (a dry run's view): the pods it
/// selects and how many actions run there. `None` when the Rule does not exist.
///
/// # Errors
/// API errors a retry may cure.
pub async fn describe(ctx: &Ctx, mig: &Migration, name: &str) -> Result<Option<Vec<String>>> {
    let ns = mig.namespace().unwrap_or_default();
    let rules: kube::Api<Rule> = kube::Api::namespaced(ctx.client.clone(), &ns);
    let Some(rule) = rules.get_opt(name).await? else {
        return Ok(None);
    };
    let mut out = Vec::new();
    for (i, item) in rule.spec.rules.iter().enumerate() {
        let selector = label_selector(&item.pod_selector);
        let pods: Vec<String> = targets(ctx, &ns, item)
            .await?
            .into_iter()
            .map(|(pod, _)| pod)
            .collect();
        let background = item.actions.iter().filter(|a| a.background).count();
        out.push(format!(
            "rules[{i}] podSelector {selector}: {} action(s) ({background} background) in {}",
            item.actions.len(),
            if pods.is_empty() {
                "no running pod: the run would fail here".to_string()
            } else {
                format!("pods {}", pods.join(","))
            }
        ));
    }
    Ok(Some(out))
}

/// The Running pods (not being deleted) of `ns` that `item` selects, each with the
/// container its commands run in.
///
/// # Errors
/// API errors.
async fn targets(ctx: &Ctx, ns: &str, item: &RuleItem) -> Result<Vec<(String, String)>> {
    let selector = label_selector(&item.pod_selector);
    let listed = api::list(&ctx.client, &kinds_used::pod(), Some(ns), Some(&selector)).await?;
    Ok(listed
        .iter()
        .filter(|p| p["status"]["phase"].as_str() == Some("Running"))
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .filter_map(|p| {
            let name = p["metadata"]["name"].as_str()?.to_string();
            let container = item.container.clone().or_else(|| {
                p["spec"]["containers"][0]["name"]
                    .as_str()
                    .map(str::to_string)
            })?;
            Some((name, container))
        })
        .collect())
}

/// Runs one action in one pod: `Ok(Some)` for a started background one, `Ok(None)` for a
/// foreground one that succeeded, `Err(why)` otherwise.
async fn one(
    pods: &kube::Api<Pod>,
    pod: &str,
    container: &str,
    action: &RuleAction,
) -> Result<std::result::Result<Option<AttachedProcess>, String>> {
    let ap = AttachParams::default()
        .container(container)
        .stdin(false)
        .stdout(true)
        .stderr(true);
    let timeout = Duration::from_secs(
        action
            .timeout_seconds
            .unwrap_or(DEFAULT_TIMEOUT_SECS)
            .min(crate::crd::MAX_TIMEOUT_SECONDS),
    );
    let mut p = match pods
        .exec(pod, ["sh", "-c", action.value.as_str()], &ap)
        .await
    {
        Ok(p) => p,
        Err(kube::Error::Api(s)) if matches!(s.code, 403 | 404) => {
            return Ok(Err(format!(
                "could not be started ({} {}): {}{}",
                s.code,
                s.reason,
                s.message,
                if s.code == 403 {
                    "; the migration controller needs create on pods/exec"
                } else {
                    ""
                }
            )));
        }
        Err(e) => return Err(e.into()),
    };
    let (Some(mut stdout), Some(stderr), Some(status)) = (p.stdout(), p.stderr(), p.take_status())
    else {
        p.abort();
        return Ok(Err("gave no output streams".into()));
    };
    if action.background {
        let mut out = Tail::default();
        return Ok(
            match tokio::time::timeout(timeout, first_line(&mut stdout, &mut out)).await {
                Ok(true) => Ok(Some(p)),
                Ok(false) => {
                    let err = keep_tail(stderr).await;
                    let why = status.await.and_then(|s| s.message).unwrap_or_default();
                    p.abort();
                    Err(format!(
                        "(background) exited before it printed a line: {} {}",
                        err.text(),
                        why
                    ))
                }
                Err(_) => {
                    p.abort();
                    Err(format!(
                        "(background) printed no line within {}s; it must print one when ready",
                        timeout.as_secs()
                    ))
                }
            },
        );
    }
    let work = async {
        let (out, err) = tokio::join!(keep_tail(stdout), keep_tail(stderr));
        (out, err, status.await)
    };
    match tokio::time::timeout(timeout, work).await {
        Ok((_, _, Some(s))) if s.status.as_deref() == Some("Success") => Ok(Ok(None)),
        Ok((out, err, s)) => {
            let code = s
                .as_ref()
                .and_then(|s| s.details.as_ref())
                .and_then(|d| d.causes.as_ref())
                .and_then(|c| c.iter().find(|c| c.reason.as_deref() == Some("ExitCode")))
                .and_then(|c| c.message.clone())
                .unwrap_or_else(|| "unknown".into());
            Ok(Err(format!(
                "failed (exit code {code}): stdout: {:?}; stderr: {:?}",
                out.text(),
                err.text()
            )))
        }
        Err(_) => {
            p.abort();
            Ok(Err(format!("timed out after {}s", timeout.as_secs())))
        }
    }
}
