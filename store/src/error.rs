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
    /// Classifies an opendal error met while working on `path`: by its kind, its temporary
    /// flag, the I/O error behind it (ENOSPC, EDQUOT) and the service's own words for a full
    /// store or a failed connection in its message and causes. Never by the path, which is
    /// only quoted (a chunk's hex name may hold any digits, `507` included).
    pub(crate) fn backend(op: &str, path: &str, err: opendal::Error) -> Self {
        use opendal::ErrorKind as K;
        // A sentence (the service's code and message, status, address, what to fix), never
        // opendal's text with the response's headers in it.
        let text = crate::problem::store_problem(&format!("{op} {path}: {err}"));
        if is_full(&err) {
            return Error::StoreFull(text);
        }
        match err.kind() {
            K::NotFound => Error::NotFound(text),
            K::ConfigInvalid | K::PermissionDenied | K::Unsupported => Error::Config(text),
            K::RateLimited => Error::Unavailable(text),
            _ if err.is_temporary() || is_unreachable(&err) => Error::Unavailable(text),
            _ => Error::Internal(text),
        }
    }

    /// True when this says the store's bucket or container does not exist (the sentence
    /// [`crate::store_problem`] makes of such an answer).
    pub fn is_missing_bucket(&self) -> bool {
        match self {
            Error::NotFound(t) | Error::Config(t) | Error::Unavailable(t) | Error::Internal(t) => {
                t.contains(crate::problem::MISSING_BUCKET)
            }
            _ => false,
        }
    }

    /// True when retrying the same call later may succeed: the backend is unreachable or
    /// busy, another writer got there first, the volume is held by a writer, or a task of
    /// this process failed. Everything else (bad input, damaged or missing data, a full
    /// store, refused credentials) fails the same way until something is fixed.
    pub fn is_temporary(&self) -> bool {
        matches!(
            self,
            Error::Unavailable(_) | Error::Conflict(_) | Error::Held(_) | Error::Internal(_)
        )
    }
}

/// The words services and the OS use for "out of space or over quota". None of them can
/// be part of a store path (hex names and ids), so looking for them in causes is safe.
const FULL_SIGNS: [&str; 6] = [
    "No space left on device",
    "no storage space",
    "Disk quota exceeded",
    "InsufficientStorage",
    "Insufficient Storage",
    "QuotaExceeded",
];

/// Transport failures: opendal reports them as "send http request" (whatever the cause:
/// refused, reset, closed, DNS), and marks them persistent once its retries are spent.
const UNREACHABLE_SIGNS: [&str; 7] = [
    "send http request",
    "Connection refused",
    "connection refused",
    "connection reset",
    "error sending request",
    "dns error",
    "timed out",
];

/// The texts an error says of itself: its message and each cause's, without the context
/// opendal adds (which holds the path).
fn own_words(err: &opendal::Error) -> Vec<String> {
    let mut out = vec![err.message().to_string()];
    let mut cause = std::error::Error::source(err);
    while let Some(c) = cause {
        out.push(c.to_string());
        cause = c.source();
    }
    out
}

fn is_full(err: &opendal::Error) -> bool {
    let mut cause = std::error::Error::source(err);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>()
            && matches!(io.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
        {
            return true;
        }
        cause = c.source();
    }
    own_words(err)
        .iter()
        .any(|t| FULL_SIGNS.iter().any(|s| t.contains(s)))
}

fn is_unreachable(err: &opendal::Error) -> bool {
    own_words(err)
        .iter()
        .any(|t| UNREACHABLE_SIGNS.iter().any(|s| t.contains(s)))
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

    /// A refused request reads as what the service said and what to check, never as the
    /// HTTP response opendal keeps in its context.
    #[test]
    fn a_backend_error_is_a_sentence_without_the_response() {
        let denied = opendal::Error::new(
            K::PermissionDenied,
            r#"S3Error { code: "AccessDenied", message: "Access Denied", resource: "", request_id: "4442587FB7D0A2F9" }"#,
        )
        .with_operation("write")
        .with_context("uri", "http://127.0.0.1:9000/ferry/packs/ab/x")
        .with_context(
            "response",
            r#"Parts { status: 403, version: HTTP/1.1, headers: {"x-amz-request-id": "4442587FB7D0A2F9"} }"#,
        );
        let text = Error::backend("write", "packs/ab/x", denied).to_string();
        assert_eq!(
            text,
            "chunk store misconfigured: write packs/ab/x: the store refused the request \
             (AccessDenied: Access Denied; HTTP 403 from http://127.0.0.1:9000/ferry/packs/ab/x): \
             check its credentials (accessKeyId and secretAccessKey, accountName and \
             accountKey, or credential) and that they may use this bucket"
        );
        let missing = opendal::Error::new(
            K::NotFound,
            r#"S3Error { code: "NoSuchBucket", message: "The specified bucket does not exist", resource: "", request_id: "q" }"#,
        )
        .with_operation("read")
        .with_context(
            "response",
            r#"Parts { status: 404, version: HTTP/1.1, headers: {"server": "amazon.com"} }"#,
        );
        let e = Error::backend("read", "store.json", missing);
        assert!(e.is_missing_bucket(), "{e}");
        assert!(!e.to_string().contains("headers"), "{e}");
    }

    /// Issue: about 1.5 % of chunk names hold "507", and an error on such a chunk was taken
    /// for a full store (permanent, and it broke the lost-race fallback of create-if-absent).
    #[test]
    fn a_path_with_507_is_not_a_full_store() {
        let path = "chunks/ab/ab5070000000000000000000000000000000000000000000000000000000ff";
        let odd =
            opendal::Error::new(K::Unexpected, "precondition failed").with_context("path", path);
        assert!(matches!(
            Error::backend("write", path, odd),
            Error::Internal(_)
        ));
        let throttled = opendal::Error::new(K::RateLimited, "slow down").with_context("path", path);
        assert!(matches!(
            Error::backend("write", path, throttled),
            Error::Unavailable(_)
        ));
        // A real full disk behind the error still is, by its OS error.
        let enospc = opendal::Error::new(K::Unexpected, "write failed")
            .set_source(std::io::Error::from_raw_os_error(libc::ENOSPC));
        assert!(matches!(
            Error::backend("write", path, enospc),
            Error::StoreFull(_)
        ));
        let quota = opendal::Error::new(K::Unexpected, "QuotaExceeded: the account is full");
        assert!(matches!(
            Error::backend("write", "p", quota),
            Error::StoreFull(_)
        ));
    }
}
