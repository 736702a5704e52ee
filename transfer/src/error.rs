//! The one error type of the transfer engine.

/// Result with the transfer engine's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong in a transfer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// From a chunk store (the source or the destination of a transfer).
    #[error(transparent)]
    Store(#[from] ferry_store::Error),
    /// From the transfer store's backend (full, unreachable, misconfigured, ...): said as the
    /// transfer store's, not the chunk store's.
    #[error("{}", target_text(.0))]
    Target(ferry_store::Error),
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

/// A transfer store backend's error, named as the transfer store's.
fn target_text(e: &ferry_store::Error) -> String {
    use ferry_store::Error as S;
    match e {
        S::Unavailable(t) => format!("transfer store unavailable: {t}"),
        S::StoreFull(t) => format!("transfer store full: {t}"),
        S::Config(t) => format!("transfer store misconfigured: {t}"),
        other => format!("transfer store: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfer_store_errors_say_transfer_store() {
        let full = Error::Target(ferry_store::Error::StoreFull(
            "No space left on device".into(),
        ));
        assert_eq!(
            full.to_string(),
            "transfer store full: No space left on device"
        );
        let down = Error::Target(ferry_store::Error::Unavailable("refused".into()));
        assert!(down.to_string().starts_with("transfer store unavailable"));
        assert!(!down.to_string().contains("chunk store"));
    }
}
