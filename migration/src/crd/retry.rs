//! The retry record every resource's status shares: a step that failed for a reason a later
//! try may cure, how often it was tried, since when, why, and when it is tried next.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A step being retried after temporary failures (cleared when it passes).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetryStatus {
    /// Failed tries in a row.
    pub attempt: u32,
    /// When the first of them failed (RFC 3339).
    pub since: String,
    /// When the next try is due (RFC 3339).
    pub next_attempt: String,
    /// What went wrong on the last try, for a person.
    pub cause: String,
    /// When the destination (or this cluster) first refused the account in this run of
    /// failures (401 or 403); such a refusal right after an outage or a role change is
    /// retried for a bounded time, then it is final.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused_since: Option<String>,
}
