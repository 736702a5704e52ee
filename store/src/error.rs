//! The one error type of the chunk store.

use crate::hash::Hash;

/// Result with the store's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong in the chunk store. Each variant is one kind a caller can act on; the
/// CSI layer maps them to gRPC codes in one place.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller asked for something malformed; the message names what to fix.
    #[error("{0}")]
    InvalidArgument(String),
    /// The named object does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A name is taken by an object with other parameters.
    #[error("{0}")]
    AlreadyExists(String),
    /// A listing token this store did not hand out.
    #[error("{0}")]
    InvalidToken(String),
    /// A capacity that cannot be met (too large, limit below what is needed).
    #[error("{0}")]
    OutOfRange(String),
    /// Someone else moved a volume's root first; the caller lost the compare-and-swap.
    #[error("{0}")]
    Conflict(String),
    /// A volume's single-writer lease is held by another node; the message names it.
    #[error("{0}")]
    Held(String),
    /// A stored object does not match its name or format: it is never returned as data.
    #[error("corrupt object {path}: {reason}")]
    Corrupt {
        /// Where the object lives in the store.
        path: String,
        /// What check failed.
        reason: String,
    },
    /// A chunk a tree names is missing from the store.
    #[error("chunk {0} is referenced but missing from the store")]
    MissingChunk(Hash),
    /// The backend cannot be reached or refused temporarily; retrying later may work.
    #[error("chunk store unavailable: {0}")]
    Unavailable(String),
    /// The backend is out of space or over its quota.
    #[error("chunk store full: {0}")]
    StoreFull(String),
    /// The store or its configuration is unusable as it is (bad credentials, bad config).
    #[error("chunk store misconfigured: {0}")]
    Config(String),
    /// Anything else: a bug or an unexpected backend answer.
    #[error("{0}")]
    Internal(String),
}

impl Error {
    /// Classifies an opendal error met while working on `path`.
    pub(crate) fn backend(op: &str, path: &str, err: opendal::Error) -> Self {
        use opendal::ErrorKind as K;
        let text = format!("{op} {path}: {err}");
        if looks_full(&text) {
            return Error::StoreFull(text);
        }
        match err.kind() {
            _ if looks_unreachable(&text) => Error::Unavailable(text),
            K::NotFound => Error::NotFound(text),
            K::ConfigInvalid | K::PermissionDenied | K::Unsupported => Error::Config(text),
            K::RateLimited => Error::Unavailable(text),
            _ if err.is_temporary() => Error::Unavailable(text),
            _ => Error::Internal(text),
        }
    }

    /// True when retrying the same call later may succeed.
    pub fn is_temporary(&self) -> bool {
        matches!(self, Error::Unavailable(_) | Error::Conflict(_))
    }
}

fn looks_full(text: &str) -> bool {
    const SIGNS: [&str; 7] = [
        "No space left on device",
        "no storage space",
        "os error 28",
        "Disk quota exceeded",
        "InsufficientStorage",
        "QuotaExceeded",
        "507",
    ];
    SIGNS.iter().any(|s| text.contains(s))
}

/// Transport failures: opendal reports them as "send http request" (whatever the cause:
/// refused, reset, closed, DNS), and marks them persistent once its retries are spent.
fn looks_unreachable(text: &str) -> bool {
    const SIGNS: [&str; 7] = [
        "send http request",
        "Connection refused",
        "connection refused",
        "connection reset",
        "error sending request",
        "dns error",
        "timed out",
    ];
    SIGNS.iter().any(|s| text.contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use opendal::ErrorKind as K;

    #[test]
    fn backend_errors_are_classified() {
        let refused = opendal::Error::new(K::Unexpected, "send http request")
            .set_source(std::io::Error::other(
                "connection closed before message completed",
            ))
            .set_persistent();
        assert!(matches!(
            Error::backend("read", "p", refused),
            Error::Unavailable(_)
        ));
        let full = opendal::Error::new(K::Unexpected, "no storage space").set_temporary();
        assert!(matches!(
            Error::backend("write", "p", full),
            Error::StoreFull(_)
        ));
        let denied = opendal::Error::new(K::PermissionDenied, "403");
        assert!(matches!(
            Error::backend("write", "p", denied),
            Error::Config(_)
        ));
        let missing = opendal::Error::new(K::NotFound, "404");
        assert!(matches!(
            Error::backend("read", "p", missing),
            Error::NotFound(_)
        ));
        let odd = opendal::Error::new(K::Unexpected, "bad xml");
        assert!(matches!(
            Error::backend("list", "p", odd),
            Error::Internal(_)
        ));
    }
}
