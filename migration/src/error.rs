//! The migration controller's one error type, and the one place its errors become text a
//! person reads: a status reason, an Event note, a log line or `ferryctl`'s message.
//!
//! Errors of the Kubernetes API are said with the API's code, reason and message and what to
//! fix ([`kube_problem`]), never as the client's debug dump of the Status object. Errors of
//! an object store (chunk store or transfer store) are said with the service's error code and
//! message, the HTTP status and the address, and what to fix ([`store_problem`]), never
//! with the response's headers, request ids and dates that opendal's text carries.

use std::fmt::Write as _;

/// Errors of the migration controller.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kubernetes API refused or failed a request.
    #[error("{}", kube_problem(.0))]
    Kube(#[from] kube::Error),
    /// The chunk store failed.
    #[error("{}", store_problem(&.0.to_string()))]
    Store(#[from] ferry_store::Error),
    /// The transfer engine failed.
    #[error("{}", store_problem(&.0.to_string()))]
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

/// The kinds opendal names an error by, which start its one-line text.
const OPENDAL_KINDS: [&str; 13] = [
    "Unexpected",
    "Unsupported",
    "ConfigInvalid",
    "NotFound",
    "PermissionDenied",
    "IsADirectory",
    "NotADirectory",
    "AlreadyExists",
    "RateLimited",
    "IsSameFile",
    "ConditionNotMatch",
    "RangeNotSatisfied",
    "Conflict",
];

/// What the chunk store appends to a failed write where the bucket may be missing.
const BUCKET_QUESTION: &str = " (does the bucket or container exist?)";

/// An object store failure, as read from opendal's one-line text (`Kind (status) at op,
/// context: { uri: ..., response: Parts { status: 404, headers: {...} }, ... } => service
/// error, source: cause`).
#[derive(Debug, Default, PartialEq)]
struct StoreFailure {
    /// The text before opendal's (what ferry was doing: `read ferry-transfer.json: `).
    before: String,
    /// opendal's kind.
    kind: String,
    /// The operation (`read`, `write`, `list`, ...).
    op: String,
    /// The request's address, without its query.
    uri: Option<String>,
    /// The HTTP status of the answer.
    http: Option<u16>,
    /// The service's error code (`NoSuchBucket`, `ContainerNotFound`, `AccessDenied`, ...).
    code: Option<String>,
    /// What the service or opendal said.
    said: String,
    /// The cause under it, if any.
    source: Option<String>,
}

impl StoreFailure {
    /// Reads the failure out of `text`; `None` when no opendal text is in it.
    fn parse(text: &str) -> Option<StoreFailure> {
        let (at, kind, op) = OPENDAL_KINDS
            .iter()
            .flat_map(|k| {
                ["permanent", "temporary", "persistent"]
                    .iter()
                    .filter_map(move |st| {
                        let head = format!("{k} ({st}) at ");
                        text.find(&head).map(|i| (i, *k, i + head.len()))
                    })
            })
            .min_by_key(|(i, _, _)| *i)?;
        let rest = &text[op..];
        let op_end = rest.find([',', ' ']).unwrap_or(rest.len());
        let mut f = StoreFailure {
            before: text[..at].to_string(),
            kind: kind.to_string(),
            op: rest[..op_end].to_string(),
            ..Default::default()
        };
        let mut rest = &rest[op_end..];
        if let Some(ctx) = rest.strip_prefix(", context: {") {
            let end = closing_brace(ctx).unwrap_or(ctx.len());
            let context = &ctx[..end];
            f.uri = ["uri: ", "url: "]
                .iter()
                .find_map(|k| context.find(k).map(|i| &context[i + k.len()..]))
                .map(|u| {
                    let u = &u[..u.find([',', ' ']).unwrap_or(u.len())];
                    u.split('?').next().unwrap_or(u).to_string()
                });
            f.http = context.find("Parts { status: ").and_then(|i| {
                let d = &context[i + "Parts { status: ".len()..];
                d[..d.find(|c: char| !c.is_ascii_digit()).unwrap_or(d.len())]
                    .parse()
                    .ok()
            });
            rest = ctx.get(end + 1..).unwrap_or_default();
        }
        let said = rest.strip_prefix(" => ").unwrap_or_default();
        let said = said.strip_suffix(BUCKET_QUESTION).unwrap_or(said);
        let (said, source) = match said.split_once(", source: ") {
            Some((a, b)) => (a, Some(b.to_string())),
            None => (said, None),
        };
        f.source = source;
        if said.contains(" { ") {
            // A service's error, printed as a structure: its code and message.
            f.code = field(said, "code: ");
            f.said = field(said, "message: ").unwrap_or_default();
        } else {
            f.said = said.to_string();
        }
        // Azure repeats its request id and time in the message.
        if let Some(i) = f.said.find(" RequestId:") {
            f.said.truncate(i);
        }
        Some(f)
    }

    /// True when the bucket (or container) itself is missing.
    fn missing_bucket(&self) -> bool {
        matches!(
            self.code.as_deref(),
            Some("NoSuchBucket" | "ContainerNotFound")
        ) || self.said.contains("bucket does not exist")
            || self.said.contains("container does not exist")
            // A write answered 404 has no object to miss: its bucket is gone (GCS's answer).
            || (self.op == "write" && self.http == Some(404))
    }

    fn unreachable(&self) -> bool {
        self.http.is_none()
            && (self.said.contains("send http request")
                || self.source.as_deref().is_some_and(|s| {
                    s.contains("sending request") || s.contains("connect") || s.contains("dns")
                }))
    }

    /// The service's words, its HTTP status and the address: `NoSuchBucket: The specified
    /// bucket does not exist; HTTP 404 from http://...`.
    fn detail(&self) -> String {
        let said = match (&self.code, self.said.is_empty()) {
            (Some(c), false) => format!("{c}: {}", self.said),
            (Some(c), true) => c.clone(),
            (None, false) => self.said.clone(),
            (None, true) => self.kind.clone(),
        };
        let mut parts = vec![said];
        match (self.http, &self.uri) {
            (Some(h), Some(u)) => parts.push(format!("HTTP {h} from {u}")),
            (Some(h), None) => parts.push(format!("HTTP {h}")),
            (None, Some(u)) => parts.push(format!("at {u}")),
            (None, None) => {}
        }
        parts.extend(self.source.clone());
        parts.join("; ")
    }

    fn sentence(&self) -> String {
        let detail = self.detail();
        let what = if self.missing_bucket() {
            format!("the bucket or container does not exist ({detail}): create it or fix bucket")
        } else if self.kind == "PermissionDenied" || matches!(self.http, Some(401 | 403)) {
            format!(
                "the store refused the request ({detail}): check its credentials \
                 (accessKeyId and secretAccessKey, accountName and accountKey, or credential) \
                 and that they may use this bucket"
            )
        } else if self.unreachable() {
            format!("nothing answered ({detail}): check endpoint and that the store runs")
        } else if self.kind == "RateLimited" || self.http.is_some_and(|h| h == 429 || h >= 500) {
            format!("the store is busy or failing ({detail}); it is tried again")
        } else {
            detail
        };
        format!("{}{what}", self.before)
    }
}

/// The index of the `}` that closes a `{` just before `s`, skipping quoted text.
fn closing_brace(s: &str) -> Option<usize> {
    let (mut depth, mut quoted, mut escaped) = (1usize, false, false);
    for (i, c) in s.char_indices() {
        if quoted {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => quoted = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => quoted = true,
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// The value of `name` in a printed structure: a quoted string (unescaped) or a bare word.
fn field(s: &str, name: &str) -> Option<String> {
    let v = &s[s.find(name)? + name.len()..];
    let Some(q) = v.strip_prefix('"') else {
        let end = v.find([',', ' ', '}']).unwrap_or(v.len());
        return Some(v[..end].to_string());
    };
    let mut out = String::new();
    let mut chars = q.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            '"' => break,
            c => out.push(c),
        }
    }
    Some(out)
}

/// An object store's error text as a sentence: opendal's part of it (kind, a context with the
/// response's headers, the service's error structure) replaced by the service's code and
/// message, the HTTP status, the address and what to fix. Other text is returned as it is.
pub fn store_problem(text: &str) -> String {
    match StoreFailure::parse(text) {
        Some(f) => f.sentence(),
        None => text.to_string(),
    }
}

impl Error {
    /// True when this says an object store's bucket or container does not exist.
    pub fn is_missing_bucket(&self) -> bool {
        let raw = match self {
            Error::Store(s) => s.to_string(),
            Error::Transfer(t) => t.to_string(),
            _ => return false,
        };
        StoreFailure::parse(&raw).is_some_and(|f| f.missing_bucket())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What moto answered a read of a missing bucket with, in the transfer store's words.
    const S3_MISSING: &str = "transfer store misconfigured: read ferry-transfer.json: ConfigInvalid (persistent) at read, context: { service_operation: GetObject, uri: http://127.0.0.1:46787/absent/ferry-transfer.json, response: Parts { status: 404, version: HTTP/1.1, headers: {\"server\": \"amazon.com\", \"x-amzn-requestid\": \"qf7NWx6w\", \"content-length\": \"332\"} }, service: s3, path: ferry-transfer.json, range: 0- } => S3Error { code: \"NoSuchBucket\", message: \"The specified bucket does not exist\", resource: \"\", request_id: \"qf7NWx6w\" }";

    #[test]
    fn store_errors_are_sentences() {
        assert_eq!(
            store_problem(S3_MISSING),
            "transfer store misconfigured: read ferry-transfer.json: the bucket or container \
             does not exist (NoSuchBucket: The specified bucket does not exist; HTTP 404 from \
             http://127.0.0.1:46787/absent/ferry-transfer.json): create it or fix bucket"
        );
        let down = "read x: Unexpected (persistent) at read, context: { url: http://127.0.0.1:9/b/x, called: reqwest::send, service: azblob, path: x } => send http request, source: error sending request";
        assert_eq!(
            store_problem(down),
            "read x: nothing answered (send http request; at http://127.0.0.1:9/b/x; error \
             sending request): check endpoint and that the store runs"
        );
        assert_eq!(
            store_problem("chunk store full: disk"),
            "chunk store full: disk"
        );
    }
}
