//! An object store's failure as a sentence a person can act on: opendal's one-line text
//! (kind, a context holding the whole HTTP response with its headers, the service's error
//! structure, the cause) read back into the service's code and message, the HTTP status, the
//! address, and what to fix. Applied once, where the store meets an opendal error
//! ([`crate::Error::backend`]), so every caller (CSI replies, status reasons, `ferryctl`)
//! gets the sentence and none the dump.

/// How a sentence about a missing bucket or container starts, after what was being done.
pub(crate) const MISSING_BUCKET: &str = "the bucket or container does not exist";

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
pub(crate) const BUCKET_QUESTION: &str = " (does the bucket or container exist?)";

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
            format!("{MISSING_BUCKET} ({detail}): create it or fix bucket")
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
