//! Column-aligned tables, as kubectl and storkctl print them.

/// Renders `rows` under `header`, columns separated by three spaces.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.len());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}   ", w = widths[i]));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = line(header.to_vec());
    out.push('\n');
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

/// A creation timestamp as storkctl prints it (`2006-01-02 15:04:05`).
pub fn created(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    meta.creation_timestamp
        .as_ref()
        .map(|t| {
            t.0.to_string()
                .replace('T', " ")
                .trim_end_matches('Z')
                .to_string()
        })
        .unwrap_or_default()
}

/// How a migrated or cloned resource entry names what it is about, as kubectl writes a
/// type: `Kind.group namespace/name` (`Kind` alone for the core group, no namespace for a
/// cluster-scoped object), and `every Kind.group in namespace` for a kind left out as a whole.
pub fn resource(r: &ferry_migration::crd::ResourceInfo) -> String {
    let kind = if r.group.is_empty() {
        r.kind.clone()
    } else {
        format!("{}.{}", r.kind, r.group)
    };
    match (r.namespace.is_empty(), r.name.is_empty()) {
        (true, false) => format!("{kind} {}", r.name),
        (false, false) => format!("{kind} {}/{}", r.namespace, r.name),
        (false, true) => format!("every {kind} in {}", r.namespace),
        (true, true) => format!("every {kind}"),
    }
}
