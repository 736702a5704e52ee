//! Pre and post exec rules: a Rule's commands run in the selected pods through the
//! `pods/exec` subresource (a websocket to the API server, as `kubectl exec` does).
//!
//! A foreground action must end with exit code 0 within its timeout. A background action
//! is started and must print a line on stdout within its timeout (the sign that it holds
//! what it is for, a lock say); it then keeps running, its session open, until the caller
//! ends it after the snapshots. A failing or timed-out action fails the rule with the
//! command's output; background actions already started are ended first.

use crate::crd::{Migration, Rule, RuleAction, RuleItem};
use crate::error::Result;
use crate::{Ctx, api, kinds_used};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{AttachParams, AttachedProcess};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt};

/// Seconds an action may take when its Rule does not say.
pub const DEFAULT_TIMEOUT_SECS: u64 = 60;
/// Output kept in a reason, per stream.
const OUTPUT_KEPT: usize = 2048;

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

fn kept(s: &str) -> String {
    let t = s.trim();
    if t.len() <= OUTPUT_KEPT {
        return t.to_string();
    }
    let mut end = OUTPUT_KEPT;
    while !t.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &t[..end])
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
    let rules: kube::Api<Rule> = kube::Api::namespaced(ctx.client.clone(), &ns);
    let Some(rule) = rules.get_opt(name).await? else {
        return Ok(Err(format!(
            "Rule {name} not found in namespace {ns}: create it or fix the Migration's rule name"
        )));
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
    let timeout = Duration::from_secs(action.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT_SECS));
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
    let (Some(stdout), Some(mut stderr), Some(status)) = (p.stdout(), p.stderr(), p.take_status())
    else {
        p.abort();
        return Ok(Err("gave no output streams".into()));
    };
    if action.background {
        let mut lines = tokio::io::BufReader::new(stdout);
        let mut first = String::new();
        return Ok(
            match tokio::time::timeout(timeout, lines.read_line(&mut first)).await {
                Ok(Ok(n)) if n > 0 => Ok(Some(p)),
                Ok(_) => {
                    let mut err = String::new();
                    let _ = stderr.read_to_string(&mut err).await;
                    let why = status.await.and_then(|s| s.message).unwrap_or_default();
                    p.abort();
                    Err(format!(
                        "(background) exited before it printed a line: {} {}",
                        kept(&err),
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
    let mut stdout = stdout;
    let work = async {
        let (mut out, mut err) = (String::new(), String::new());
        let _ = tokio::join!(
            stdout.read_to_string(&mut out),
            stderr.read_to_string(&mut err)
        );
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
                kept(&out),
                kept(&err)
            )))
        }
        Err(_) => {
            p.abort();
            Ok(Err(format!("timed out after {}s", timeout.as_secs())))
        }
    }
}
