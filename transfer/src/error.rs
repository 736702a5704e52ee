//! The one error type of the transfer engine.

/// Result with the transfer engine's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong in a transfer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// From a chunk store or the transfer store's backend (full, unreachable, ...).
    #[error(transparent)]
    Store(#[from] ferry_store::Error),
    /// The key does not open this transfer store (or one is missing, or one was given for a
    /// store that is not encrypted).
    #[error("{0}")]
    Key(String),
    /// An object in the transfer store fails authentication or its hash: never used as data.
    #[error("{0}")]
    Tampered(String),
    /// An object a commit needs is not in the transfer store.
    #[error("{0}")]
    Missing(String),
    /// Bad input: a missing commit, a malformed key file, an unknown snapshot.
    #[error("{0}")]
    Invalid(String),
}
