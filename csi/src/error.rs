//! The driver's error type and its one mapping to gRPC status codes.
//!
//! Codes follow the CSI specification's error tables: bad input is INVALID_ARGUMENT, missing
//! objects NOT_FOUND, a name reused with other parameters ALREADY_EXISTS, a call for an object
//! that another call is working on ABORTED, capacity that cannot be met OUT_OF_RANGE, a store
//! that cannot be reached UNAVAILABLE, a full store RESOURCE_EXHAUSTED, the rest INTERNAL.

use tonic::{Code, Status};

/// Result with the driver's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors of the CSI services.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request field is missing or malformed; the message names the field.
    #[error("{0}")]
    InvalidArgument(String),
    /// Another call for the same object is in flight.
    #[error("{0}")]
    Aborted(String),
    /// The object is not in a state that allows the call.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The service does not offer this call (its capability is not advertised).
    #[error("{0}")]
    Unsupported(String),
    /// A volume or path the call names is not there.
    #[error("{0}")]
    NotFound(String),
    /// A node-side step (a mount, a device, a filesystem tool) failed; the message has the
    /// command and what it printed.
    #[error("{0}")]
    Internal(String),
    /// From the chunk store.
    #[error(transparent)]
    Store(#[from] ferry_store::Error),
}

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        use ferry_store::Error as S;
        let code = match &e {
            Error::InvalidArgument(_) => Code::InvalidArgument,
            Error::Aborted(_) => Code::Aborted,
            Error::FailedPrecondition(_) => Code::FailedPrecondition,
            Error::Unsupported(_) => Code::Unimplemented,
            Error::NotFound(_) => Code::NotFound,
            Error::Internal(_) => Code::Internal,
            Error::Store(s) => match s {
                S::InvalidArgument(_) => Code::InvalidArgument,
                S::NotFound(_) => Code::NotFound,
                S::AlreadyExists(_) => Code::AlreadyExists,
                S::InvalidToken(_) => Code::Aborted,
                S::OutOfRange(_) => Code::OutOfRange,
                S::Conflict(_) => Code::Aborted,
                S::Held(_) => Code::FailedPrecondition,
                S::Unavailable(_) | S::Config(_) => Code::Unavailable,
                S::StoreFull(_) => Code::ResourceExhausted,
                S::Corrupt { .. } | S::MissingChunk(_) | S::Internal(_) => Code::Internal,
            },
        };
        Status::new(code, e.to_string())
    }
}

/// Shorthand for an INVALID_ARGUMENT naming a missing field.
pub fn required(field: &str) -> Error {
    Error::InvalidArgument(format!("{field} is required"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_store::Error as S;

    #[test]
    fn codes_follow_the_spec() {
        let cases: Vec<(Error, Code)> = vec![
            (required("name"), Code::InvalidArgument),
            (S::NotFound("v".into()).into(), Code::NotFound),
            (S::AlreadyExists("n".into()).into(), Code::AlreadyExists),
            (S::InvalidToken("t".into()).into(), Code::Aborted),
            (S::OutOfRange("c".into()).into(), Code::OutOfRange),
            (S::Unavailable("down".into()).into(), Code::Unavailable),
            (S::StoreFull("full".into()).into(), Code::ResourceExhausted),
            (S::Internal("x".into()).into(), Code::Internal),
            (Error::Aborted("busy".into()), Code::Aborted),
            (S::Held("node-b".into()).into(), Code::FailedPrecondition),
        ];
        for (e, code) in cases {
            let msg = e.to_string();
            let st = Status::from(e);
            assert_eq!(st.code(), code, "{msg}");
            assert_eq!(st.message(), msg);
        }
    }
}
