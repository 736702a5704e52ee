//! Reaching the source cluster from its destination, through a ClusterPair in the Action's
//! namespace (so with the credentials the Action's author put there, never ferry's own).
//!
//! A failover counts a source as gone once it has not answered [`TRIES`] tries spread over
//! [`GONE_AFTER`] (on the controller's clock, whatever else brings the Action back), and goes
//! on without it; a failback, which needs the source, waits for it.

use super::action::Progress;
use crate::Ctx;
use crate::crd::{Action, ActionStatus, ActionType, ClusterPair};
use crate::error::{Error, Result};
use crate::pair::PairSettings;
use kube::{Api, ResourceExt};
use std::time::Duration;

/// Failed tries in a row after which a failover counts the source as gone, once they span
/// [`GONE_AFTER`].
pub const TRIES: u32 = 3;
/// How long the source must not answer before a failover counts it as gone.
pub const GONE_AFTER: Duration = Duration::from_secs(60);
/// The wait between two tries of a silent source.
pub const TRY_EVERY: Duration = Duration::from_secs(30);

/// How long the source gets to answer one request.
const ANSWER_WITHIN: Duration = Duration::from_secs(15);

/// The source, or why a step does without it.
pub enum Source {
    /// A client for the source cluster.
    Up(kube::Client),
    /// Not used: the reason.
    Gone(String),
}

/// Whether an error says the other cluster did not answer (rather than refused).
pub fn unreachable(e: &Error) -> bool {
    match e {
        Error::Kube(kube::Error::Api(s)) => matches!(s.code, 502..=504),
        Error::Kube(_) => true,
        _ => false,
    }
}

/// A client for the source cluster, after it answered, or the reason not to use it.
///
/// # Errors
/// A pair that is missing or invalid ([`Error::Invalid`]); a source that does not answer
/// (see [`unreachable`]).
pub async fn source(ctx: &Ctx, a: &Action, st: &mut ActionStatus) -> Result<Source> {
    if st.source_reachable == Some(false) {
        return Ok(Source::Gone(format!(
            "the source cluster did not answer ({} tries over {}s)",
            st.source_attempts,
            GONE_AFTER.as_secs()
        )));
    }
    if a.spec.skip_source() {
        return Ok(Source::Gone("skipSourceOperations is set".into()));
    }
    let ns = a.namespace().unwrap_or_default();
    let Some(name) = a.spec.cluster_pair() else {
        return Ok(Source::Gone(
            "no clusterPair reaches the source cluster".into(),
        ));
    };
    let pairs: Api<ClusterPair> = Api::namespaced(ctx.client.clone(), &ns);
    let pair = pairs.get_opt(name).await?.ok_or_else(|| {
        Error::Invalid(format!(
            "ClusterPair {ns}/{name} not found: make the pair that reaches the source cluster \
             (ferryctl create clusterpair, run against this cluster's pair of the source)"
        ))
    })?;
    let settings = PairSettings::load(ctx, &pair).await?;
    let client = settings.connect(ctx).await?;
    match tokio::time::timeout(ANSWER_WITHIN, client.apiserver_version()).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(e.into()),
        Err(_) => {
            return Err(Error::Kube(kube::Error::Service(
                format!("no answer within {}s", ANSWER_WITHIN.as_secs()).into(),
            )));
        }
    }
    if st.source_reachable.is_none() {
        st.source_reachable = Some(true);
    }
    st.source_attempts = 0;
    st.source_unreachable_since = None;
    Ok(Source::Up(client))
}

/// After a source step found the source silent: try again a while later, or (a failover,
/// once the source has not answered [`TRIES`] tries spanning [`GONE_AFTER`]) record it as
/// gone so the source's steps are skipped.
///
/// # Errors
/// None; the result is a [`Progress`].
pub async fn count_failure(
    ctx: &Ctx,
    a: &Action,
    st: &mut ActionStatus,
    e: &Error,
) -> Result<Progress> {
    let now = ctx.now();
    let since = st
        .source_unreachable_since
        .as_deref()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .unwrap_or(now);
    st.source_unreachable_since = Some(crate::runtime::retry::stamp(since));
    st.source_attempts = st.source_attempts.saturating_add(1);
    let silent = now.duration_since(since).unsigned_abs();
    if a.spec.action_type == ActionType::Failback {
        // However long the source is away: tried again on the usual backoff.
        return Ok(Progress::WaitFor(
            crate::runtime::retry::delay(st.source_attempts),
            format!("waiting for the source cluster to answer (a failback needs it): {e}"),
        ));
    }
    if st.source_attempts < TRIES || silent < GONE_AFTER {
        return Ok(Progress::WaitFor(
            TRY_EVERY,
            format!(
                "the source cluster does not answer (try {} of {TRIES}, silent for {}s of \
                 {}s): {e}",
                st.source_attempts,
                silent.as_secs(),
                GONE_AFTER.as_secs()
            ),
        ));
    }
    st.source_reachable = Some(false);
    ctx.event(
        a,
        true,
        "SourceUnreachable",
        format!(
            "the source cluster did not answer {} tries over {}s ({e}): going on with this \
             cluster alone; the source's applications were not stopped",
            st.source_attempts,
            silent.as_secs()
        ),
    )
    .await;
    Ok(Progress::Again)
}
