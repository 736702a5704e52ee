//! Namespace mapping: an object from source namespace `a` lands in `b`, with the namespaced
//! references inside it rewritten. Pure.
//!
//! Rewritten, wherever a mapped source namespace appears: `metadata.namespace`; a
//! Namespace's name and its `kubernetes.io/metadata.name` label; any field named
//! `namespace` holding a string (RoleBinding subjects, claim refs, operators' references);
//! lists of strings named `namespaces` (pod affinity terms); the
//! `kubernetes.io/metadata.name` key of a `namespaceSelector`'s `matchLabels`
//! (NetworkPolicies, affinity); and service-account user and group names
//! (`system:serviceaccount:<ns>:<name>`, `system:serviceaccounts:<ns>`) in RBAC subjects.
//! Not rewritten: names inside free text (DNS names such as `db.<ns>.svc` in a ConfigMap or
//! an env var); a ResourceTransformation does those.

use serde_json::Value;
use std::collections::BTreeMap;

/// The label every Namespace carries with its own name.
const NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Where namespace `ns` lands.
pub fn target<'a>(map: &'a BTreeMap<String, String>, ns: &'a str) -> &'a str {
    map.get(ns).map_or(ns, String::as_str)
}

/// Rewrites `obj` for `map` (source namespace to destination namespace).
pub fn apply(obj: &mut Value, map: &BTreeMap<String, String>) {
    if map.is_empty() {
        return;
    }
    let is_namespace = obj["kind"].as_str() == Some("Namespace");
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if let Some(Value::String(ns)) = meta.get_mut("namespace") {
            remap(ns, map);
        }
        if is_namespace {
            if let Some(Value::String(name)) = meta.get_mut("name") {
                remap(name, map);
            }
            if let Some(Value::String(l)) =
                meta.get_mut("labels").and_then(|l| l.get_mut(NAME_LABEL))
            {
                remap(l, map);
            }
        }
    }
    if let Some(top) = obj.as_object_mut() {
        for (key, v) in top.iter_mut() {
            // Free text (ConfigMap and Secret data) is left to ResourceTransformations.
            if !matches!(
                key.as_str(),
                "apiVersion"
                    | "kind"
                    | "metadata"
                    | "status"
                    | "data"
                    | "stringData"
                    | "binaryData"
            ) {
                walk(v, map);
            }
        }
    }
    if let Some(subjects) = obj.get_mut("subjects").and_then(Value::as_array_mut) {
        for s in subjects {
            if let Some(Value::String(name)) = s.get_mut("name") {
                service_account_name(name, map);
            }
        }
    }
}

fn remap(s: &mut String, map: &BTreeMap<String, String>) {
    if let Some(to) = map.get(s.as_str()) {
        *s = to.clone();
    }
}

/// `system:serviceaccount:<ns>:<name>` and `system:serviceaccounts:<ns>`.
fn service_account_name(name: &mut String, map: &BTreeMap<String, String>) {
    if let Some(rest) = name.strip_prefix("system:serviceaccount:")
        && let Some((ns, sa)) = rest.split_once(':')
        && let Some(to) = map.get(ns)
    {
        *name = format!("system:serviceaccount:{to}:{sa}");
    } else if let Some(ns) = name.strip_prefix("system:serviceaccounts:")
        && let Some(to) = map.get(ns)
    {
        *name = format!("system:serviceaccounts:{to}");
    }
}

fn walk(v: &mut Value, map: &BTreeMap<String, String>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m.iter_mut() {
                match (k.as_str(), child) {
                    ("namespace", Value::String(s)) => remap(s, map),
                    ("namespaces", Value::Array(list)) => {
                        for item in list.iter_mut() {
                            if let Value::String(s) = item {
                                remap(s, map);
                            }
                        }
                    }
                    ("namespaceSelector", sel) => {
                        if let Some(Value::String(s)) = sel
                            .get_mut("matchLabels")
                            .and_then(|l| l.get_mut(NAME_LABEL))
                        {
                            remap(s, map);
                        }
                        if let Some(exprs) = sel
                            .get_mut("matchExpressions")
                            .and_then(Value::as_array_mut)
                        {
                            for e in exprs {
                                if e["key"].as_str() != Some(NAME_LABEL) {
                                    continue;
                                }
                                if let Some(values) =
                                    e.get_mut("values").and_then(Value::as_array_mut)
                                {
                                    for item in values {
                                        if let Value::String(s) = item {
                                            remap(s, map);
                                        }
                                    }
                                }
                            }
                        }
                    }
                    // Labels and annotations are the user's text.
                    ("labels" | "annotations", _) => {}
                    (_, child) => walk(child, map),
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|c| walk(c, map)),
        _ => {}
    }
}

/// Checks a mapping against the namespaces migrated: every key is one of them, every value
/// a valid namespace name, and no two namespaces land in one.
///
/// # Errors
/// The problem, naming the field.
pub fn check(map: &BTreeMap<String, String>, namespaces: &[String]) -> Result<(), String> {
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for ns in namespaces {
        let to = target(map, ns);
        if let Some(other) = seen.insert(to, ns) {
            return Err(format!(
                "namespaceMapping: namespaces {other} and {ns} would both land in {to}; map them apart"
            ));
        }
    }
    for (from, to) in map {
        if !namespaces.contains(from) {
            return Err(format!(
                "namespaceMapping names {from}, which spec.namespaces does not migrate"
            ));
        }
        let ok = !to.is_empty()
            && to.len() <= 63
            && to
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !to.starts_with('-')
            && !to.ends_with('-');
        if !ok {
            return Err(format!(
                "namespaceMapping {from}: {to:?} is not a namespace name (lowercase letters, \
                 digits and '-', at most 63)"
            ));
        }
    }
    Ok(())
}
