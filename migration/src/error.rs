//! The migration controller's one error type, and the one place its errors become text a
//! person reads: a status reason, an Event note, a log line or `ferryctl`'s message.
//!
//! Errors of the Kubernetes API are said with the API's code, reason and message and what to
//! fix ([`kube_problem`]), never as the client's debug dump of the Status object. Errors of
//! an object store (chunk store or transfer store) come as sentences from the chunk store
//! (`ferry_store::store_problem`, applied where opendal's errors are met).

use std::fmt::Write as _;

/// Errors of the migration controller.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kubernetes API refused or failed a request.
    #[error("{}", kube_problem(.0))]
    Kube(#[from] kube::Error),
    /// The chunk store failed.
    #[error(transparent)]
    Store(#[from] ferry_store::Error),
    /// The transfer engine failed.
    #[error(transparent)]
    Transfer(#[from] ferry_transfer::Error),
    /// A user-supplied setting is wrong; the message says what to fix.
    #[error("{0}")]
    Invalid(String),
    /// An object from the API did not have the shape its API documents.
    #[error("unexpected object: {0}")]
    Unexpected(String),
    /// Another error, with what was being done and what to do about it.
    #[error("{0} ({1})")]
    Context(String, Box<Error>),
    /// Something on the way passes by itself (a namespace being deleted): tried again later.
    #[error("{0}")]
    Waiting(String),
}

/// Result with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// The HTTP status code of an API error, if it is one.
    pub fn api_code(&self) -> Option<u16> {
        match self {
            Error::Kube(kube::Error::Api(s)) => Some(s.code),
            Error::Context(_, e) => e.api_code(),
            _ => None,
        }
    }

    /// This error, said with what was being done and what to do about it.
    pub fn context(self, what: impl Into<String>) -> Error {
        Error::Context(what.into(), Box::new(self))
    }

    /// The one retry policy: true when trying the same thing again will fail the same way
    /// (bad input, a refusal by the API, damaged or missing data, a full store), so the item
    /// fails with the reason; false when a later try may pass (network trouble, 5xx, 408,
    /// 409, 429, a busy or unreachable store), so it is retried with backoff.
    pub fn is_permanent(&self) -> bool {
        let store = |e: &ferry_store::Error| !e.is_temporary();
        match self {
            Error::Kube(kube::Error::Api(s)) => {
                (400..500).contains(&s.code) && !matches!(s.code, 408 | 409 | 429)
            }
            Error::Kube(_) => false,
            Error::Store(e) => store(e),
            Error::Transfer(ferry_transfer::Error::Store(e) | ferry_transfer::Error::Target(e)) => {
                store(e)
            }
            Error::Transfer(_) => true,
            Error::Invalid(_) | Error::Unexpected(_) => true,
            Error::Context(_, e) => e.is_permanent(),
            Error::Waiting(_) => false,
        }
    }

    /// True for an authorization refusal by an API server (401, or 403 other than RBAC's
    /// escalation check): final in the end, but seen for a moment after a server restarts or
    /// a role is rewritten (see `runtime::retry`).
    pub fn is_refusal(&self) -> bool {
        match self {
            Error::Kube(kube::Error::Api(s)) => {
                s.code == 401
                    || (s.code == 403
                        && !s
                            .message
                            .contains("attempting to grant RBAC permissions not currently held"))
            }
            Error::Context(_, e) => e.is_refusal(),
            _ => false,
        }
    }

    /// `permanent` or `temporary`, for metrics and logs.
    pub fn class(&self) -> &'static str {
        if self.is_permanent() {
            "permanent"
        } else {
            "temporary"
        }
    }

    /// Counts the error in `ferry_migration_errors_total{class, kind}`.
    pub fn count(&self) {
        ferry_csi::metrics::add(
            "ferry_migration_errors_total",
            "Errors met by the migration controller, by retry class and kind.",
            &[("class", self.class()), ("kind", self.kind())],
            1.0,
        );
    }

    /// A short kind for metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(s)) if s.code == 409 => "conflict",
            Error::Kube(kube::Error::Api(s)) if s.code == 422 => "invalid",
            Error::Kube(kube::Error::Api(s)) if s.code == 403 => "forbidden",
            Error::Kube(_) => "api",
            Error::Store(_) => "store",
            Error::Transfer(_) => "transfer",
            Error::Invalid(_) => "invalid_input",
            Error::Unexpected(_) => "unexpected",
            Error::Context(_, e) => e.kind(),
            Error::Waiting(_) => "waiting",
        }
    }
}

/// What went wrong talking to a destination's API, said for a person: the HTTP status when
/// there is one, and what to fix.
pub fn destination_problem(e: &Error) -> String {
    match e {
        Error::Kube(kube::Error::Api(s)) => match s.code {
            401 => format!(
                "the destination API refused the pair's credentials (401 Unauthorized: {}): put \
                 a valid token or client certificate in the pair's kubeconfig",
                s.message
            ),
            403 => format!(
                "the destination API forbids the pair's account this (403 Forbidden: {}): on the \
                 destination, bind ClusterRole ferry-migration-pair to that account and \
                 ferry-migration-destination in each namespace it migrates into",
                s.message
            ),
            code if code >= 500 => format!(
                "destination API did not answer ({code} {}: {}); it is down or overloaded, \
                 retried on the pair's next check",
                s.reason, s.message
            ),
            code => format!(
                "the destination API answered {code} {}: {}",
                s.reason, s.message
            ),
        },
        Error::Kube(e) => format!(
            "destination API did not answer ({}); check the kubeconfig's server address and \
             that the API server runs",
            causes(e)
        ),
        other => format!("destination API: {other}"),
    }
}

/// A Kubernetes API error as a sentence: the code, reason and message the API server gave
/// and what to do about it; for a request that got no answer, why, down to its first cause.
pub fn kube_problem(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => {
            let message = if s.message.is_empty() {
                "no message"
            } else {
                s.message.as_str()
            };
            let hint = match s.code {
                401 => "; the credentials were refused: renew the token or certificate",
                403 => {
                    "; the account lacks a role for this: bind the one it needs (see the \
                     Security model of docs/migration.md)"
                }
                409 => "; the object changed meanwhile, and the step runs again",
                422 => "; the object was refused: fix the field the message names",
                429 => "; the server asks to slow down, and the step runs again",
                c if c >= 500 => "; the API server is down or overloaded, and the step runs again",
                _ => "",
            };
            format!(
                "the Kubernetes API answered {} {}: {message}{hint}",
                s.code, s.reason
            )
        }
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::HttpError(_) => {
            format!(
                "the Kubernetes API did not answer: {}; check the server address and that it \
                 runs",
                causes(e)
            )
        }
        other => format!("Kubernetes API request failed: {}", causes(other)),
    }
}

/// An error and its causes, each said once: `a: b: c`.
fn causes(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            let _ = write!(out, ": {text}");
        }
        cause = c.source();
    }
    out
}

impl Error {
    /// True when this says an object store's bucket or container does not exist.
    pub fn is_missing_bucket(&self) -> bool {
        match self {
            Error::Store(s) => s.is_missing_bucket(),
            Error::Transfer(ferry_transfer::Error::Store(s) | ferry_transfer::Error::Target(s)) => {
                s.is_missing_bucket()
            }
            _ => false,
        }
    }
}
