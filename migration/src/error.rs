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
}

/// Result with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// The HTTP status code of an API error, if it is one.
    pub fn api_code(&self) -> Option<u16> {
        match self {
            Error::Kube(kube::Error::Api(s)) => Some(s.code),
            _ => None,
        }
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
        }
    }
}
