//! The migration controller's one error type.

/// Errors of the migration controller.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kubernetes API refused or failed a request.
    #[error("kubernetes API: {0}")]
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
                "the destination API forbids the pair's account this (403 Forbidden: {}): bind \
                 ClusterRole ferry-migration-destination to that account on the destination",
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
        other => format!(
            "destination API did not answer: {other}; check the kubeconfig's server address"
        ),
    }
}
