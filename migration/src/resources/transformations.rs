//! ResourceTransformation rules applied to an object: which objects a rule takes, how its
//! paths are read, and what each operation does. Pure; every change is reported so a dry
//! run can show it.

use crate::crd::{FieldChange, Operation, ResourcePath, TransformSpec, ValueType};
use serde_json::{Map, Value};

/// A step of a field path.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Step {
    /// A map key.
    Key(String),
    /// One element of a list.
    Index(usize),
    /// Every element of a list.
    All,
}

/// Parses `a.b[0].c`, `a[*].b`, `a['x.y/z']`.
fn parse_path(path: &str) -> Result<Vec<Step>, String> {
    let bad = |why: &str| format!("path {path:?}: {why}");
    let mut steps = Vec::new();
    let mut chars = path.chars().peekable();
    let mut key = String::new();
    let mut after_bracket = false;
    while let Some(c) = chars.next() {
        match c {
            '.' => {
                if key.is_empty() && !after_bracket {
                    return Err(bad("an empty field name"));
                }
                if !key.is_empty() {
                    steps.push(Step::Key(std::mem::take(&mut key)));
                }
                after_bracket = false;
            }
            '[' => {
                if !key.is_empty() {
                    steps.push(Step::Key(std::mem::take(&mut key)));
                }
                let mut inner = String::new();
                let mut closed = false;
                let quote = chars.peek().copied().filter(|q| *q == '\'' || *q == '"');
                if let Some(q) = quote {
                    chars.next();
                    for c in chars.by_ref() {
                        if c == q {
                            closed = true;
                            break;
                        }
                        inner.push(c);
                    }
                    if !closed || chars.next() != Some(']') {
                        return Err(bad("a quoted key must be closed: ['name']"));
                    }
                    steps.push(Step::Key(inner));
                } else {
                    for c in chars.by_ref() {
                        if c == ']' {
                            closed = true;
                            break;
                        }
                        inner.push(c);
                    }
                    if !closed {
                        return Err(bad("an index must be closed: [0] or [*]"));
                    }
                    if inner == "*" {
                        steps.push(Step::All);
                    } else {
                        let i = inner.parse::<usize>().map_err(|_| {
                            bad("an index is a number, [*], or a quoted key ['name']")
                        })?;
                        steps.push(Step::Index(i));
                    }
                }
                after_bracket = true;
            }
            _ => {
                if after_bracket {
                    return Err(bad("a '.' must follow ']'"));
                }
                key.push(c);
            }
        }
    }
    if !key.is_empty() {
        steps.push(Step::Key(key));
    } else if !after_bracket {
        return Err(bad("it is empty or ends with '.'"));
    }
    Ok(steps)
}

/// The fields that say which object this is and who owns it. A transformation never changes
/// them: a moved, renamed, re-owned or re-typed object would land where the migration was
/// not asked to write (`namespaceMapping` moves namespaces).
const IDENTITY: [&[&str]; 8] = [
    &["apiVersion"],
    &["kind"],
    &["metadata", "name"],
    &["metadata", "generateName"],
    &["metadata", "namespace"],
    &["metadata", "uid"],
    &["metadata", "ownerReferences"],
    &["metadata", "managedFields"],
];

/// Why a path that reaches an identity field is refused.
const IDENTITY_RULE: &str = "an object's apiVersion, kind, metadata.name, generateName, \
     namespace, uid, ownerReferences and managedFields are not transformed (use \
     namespaceMapping for the namespace)";

/// The identity field a path can change, if any: the field itself, anything under it, or a
/// map above it (`metadata`, whose keypair merge would set `namespace`). An index or `[*]`
/// counts as any key, so no spelling of a path slips by.
fn reaches_identity(steps: &[Step]) -> Option<String> {
    IDENTITY
        .iter()
        .find(|field| {
            steps.iter().zip(field.iter()).all(|(s, k)| match s {
                Step::Key(x) => x == k,
                Step::Index(_) | Step::All => true,
            })
        })
        .map(|field| field.join("."))
}

/// The identity fields of `obj`, in [`IDENTITY`]'s order (`null` where absent).
fn identity(obj: &Value) -> Vec<Value> {
    IDENTITY
        .iter()
        .map(|field| field.iter().fold(obj, |v, k| &v[*k]).clone())
        .collect()
}

/// A path's value, read by its type.
fn parse_value(p: &ResourcePath) -> Result<Option<Value>, String> {
    let v = p.value.trim();
    let list = || {
        let inner = v
            .strip_prefix('[')
            .and_then(|s| s.strip_suffix(']'))
            .unwrap_or(v);
        inner
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| Value::String(s.to_string()))
            .collect::<Vec<_>>()
    };
    if p.operation == Operation::Delete && v.is_empty() {
        return Ok(None);
    }
    let value = match p.value_type {
        ValueType::String => Value::String(p.value.clone()),
        ValueType::Int => Value::from(v.parse::<i64>().map_err(|_| {
            format!(
                "path {:?}: value {:?} is not an integer (type int)",
                p.path, p.value
            )
        })?),
        ValueType::Bool => match v {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => {
                return Err(format!(
                    "path {:?}: value {:?} is not true or false (type bool)",
                    p.path, p.value
                ));
            }
        },
        ValueType::Slice => Value::Array(list()),
        ValueType::Keypair => {
            let mut m = Map::new();
            for pair in list() {
                let s = pair.as_str().unwrap_or_default();
                let Some((k, val)) = s.split_once(':') else {
                    return Err(format!(
                        "path {:?}: {s:?} is not key:value (type keypair)",
                        p.path
                    ));
                };
                m.insert(k.trim().to_string(), Value::String(val.trim().to_string()));
            }
            Value::Object(m)
        }
    };
    if p.prefix.is_some() && (p.operation != Operation::Modify || p.value_type != ValueType::String)
    {
        return Err(format!(
            "path {:?}: prefix goes with operation modify of type string",
            p.path
        ));
    }
    Ok(Some(value))
}

/// The `(apiVersion, kind)` a rule's `resource` names; `None` for the apiVersion when only a
/// kind is given.
fn parse_resource(resource: &str) -> Result<(Option<String>, String), String> {
    let parts: Vec<&str> = resource.split('/').collect();
    match parts.as_slice() {
        [kind] if !kind.is_empty() => Ok((None, kind.to_string())),
        [group, version, kind] if !version.is_empty() && !kind.is_empty() => {
            let api_version = if group.is_empty() {
                version.to_string()
            } else {
                format!("{group}/{version}")
            };
            Ok((Some(api_version), kind.to_string()))
        }
        _ => Err(format!(
            "resource {resource:?} is not group/version/Kind (/v1/Service for the core group) or a Kind"
        )),
    }
}

/// Checks every rule of a ResourceTransformation: resources, paths and values parse.
///
/// # Errors
/// The first problem, naming the rule and the path.
pub fn check(rules: &[TransformSpec]) -> Result<(), String> {
    for (i, r) in rules.iter().enumerate() {
        parse_resource(&r.resource).map_err(|e| format!("objects[{i}]: {e}"))?;
        if r.paths.is_empty() {
            return Err(format!("objects[{i}] ({}): no paths", r.resource));
        }
        for p in &r.paths {
            let steps = parse_path(&p.path).map_err(|e| format!("objects[{i}]: {e}"))?;
            if let Some(field) = reaches_identity(&steps) {
                return Err(format!(
                    "objects[{i}] ({}): path {:?} reaches {field}: {IDENTITY_RULE}",
                    r.resource, p.path
                ));
            }
            parse_value(p).map_err(|e| format!("objects[{i}]: {e}"))?;
        }
    }
    Ok(())
}

/// Does rule `r` take object `obj`?
fn selects(r: &TransformSpec, obj: &Value) -> bool {
    let Ok((api_version, kind)) = parse_resource(&r.resource) else {
        return false;
    };
    if obj["kind"].as_str() != Some(kind.as_str()) {
        return false;
    }
    if let Some(av) = api_version
        && obj["apiVersion"].as_str() != Some(av.as_str())
    {
        return false;
    }
    let labels = &obj["metadata"]["labels"];
    r.selectors
        .iter()
        .all(|(k, v)| labels[k].as_str() == Some(v.as_str()))
}

/// Applies the rules of ResourceTransformation `name` to `obj`, returning every change.
///
/// Whatever [`check`] let through, each operation is followed by a look at the object's
/// identity fields: one that changed them fails the object, naming the rule and path.
///
/// # Errors
/// A rule that does not parse (checked before a run, so not expected here); an operation
/// that changed the object's identity.
pub fn apply(
    name: &str,
    rules: &[TransformSpec],
    obj: &mut Value,
) -> Result<Vec<FieldChange>, String> {
    let mut changes = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        if !selects(r, obj) {
            continue;
        }
        for p in &r.paths {
            let steps = parse_path(&p.path)?;
            let value = parse_value(p)?;
            let before = identity(obj);
            let mut cx = Apply {
                name,
                p,
                value: value.as_ref(),
                changes: &mut changes,
            };
            cx.walk(obj, &steps, String::new());
            let after = identity(obj);
            if let Some(k) = (0..IDENTITY.len()).find(|k| before[*k] != after[*k]) {
                return Err(format!(
                    "ResourceTransformation {name}: objects[{i}] ({}) path {:?} would change \
                     {} of {} from {} to {}: refused, {IDENTITY_RULE}",
                    r.resource,
                    p.path,
                    IDENTITY[k].join("."),
                    describe_identity(&before),
                    before[k],
                    after[k]
                ));
            }
        }
    }
    Ok(changes)
}

/// `kind namespace/name` from an [`identity`] snapshot, for reasons.
fn describe_identity(id: &[Value]) -> String {
    let kind = id[1].as_str().unwrap_or("object");
    let name = id[2].as_str().unwrap_or_default();
    match id[4].as_str() {
        Some(ns) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} {name}"),
    }
}

struct Apply<'a> {
    name: &'a str,
    p: &'a ResourcePath,
    value: Option<&'a Value>,
    changes: &'a mut Vec<FieldChange>,
}

fn join(at: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match (at.is_empty(), plain) {
        (true, true) => key.to_string(),
        (false, true) => format!("{at}.{key}"),
        (_, false) => format!("{at}['{key}']"),
    }
}

impl Apply<'_> {
    fn record(&mut self, path: String, before: Option<&Value>, after: Option<&Value>) {
        if before == after {
            return;
        }
        self.changes.push(FieldChange {
            transformation: self.name.to_string(),
            path,
            before: before.map(Value::to_string),
            after: after.map(Value::to_string),
        });
    }

    /// Follows `steps` from `node`; the last step is where the operation happens.
    fn walk(&mut self, node: &mut Value, steps: &[Step], at: String) {
        let Some((step, rest)) = steps.split_first() else {
            return;
        };
        if rest.is_empty() {
            return self.last(node, step, at);
        }
        match step {
            Step::Key(k) => {
                let creating = self.p.operation == Operation::Add;
                let Some(m) = node.as_object_mut() else {
                    return;
                };
                if !m.contains_key(k) {
                    if !creating {
                        return;
                    }
                    let fresh = match rest.first() {
                        Some(Step::Key(_)) => Value::Object(Map::new()),
                        _ => return, // a list is not made up to index into
                    };
                    m.insert(k.clone(), fresh);
                }
                if let Some(child) = m.get_mut(k) {
                    self.walk(child, rest, join(&at, k));
                }
            }
            Step::Index(i) => {
                if let Some(child) = node.as_array_mut().and_then(|a| a.get_mut(*i)) {
                    self.walk(child, rest, format!("{at}[{i}]"));
                }
            }
            Step::All => {
                if let Some(a) = node.as_array_mut() {
                    for (i, child) in a.iter_mut().enumerate() {
                        self.walk(child, rest, format!("{at}[{i}]"));
                    }
                }
            }
        }
    }

    fn last(&mut self, node: &mut Value, step: &Step, at: String) {
        match step {
            Step::Key(k) => {
                let path = join(&at, k);
                let Some(m) = node.as_object_mut() else {
                    return;
                };
                let before = m.get(k).cloned();
                let after = self.operate(before.as_ref());
                match &after {
                    Some(v) => {
                        m.insert(k.clone(), v.clone());
                    }
                    None => {
                        m.remove(k);
                    }
                }
                self.record(path, before.as_ref(), after.as_ref());
            }
            Step::Index(i) => {
                let path = format!("{at}[{i}]");
                let Some(a) = node.as_array_mut() else { return };
                if *i >= a.len() {
                    return;
                }
                let before = a[*i].clone();
                let after = self.operate(Some(&before));
                match &after {
                    Some(v) => a[*i] = v.clone(),
                    None => {
                        a.remove(*i);
                    }
                }
                self.record(path, Some(&before), after.as_ref());
            }
            Step::All => {
                let Some(a) = node.as_array_mut() else { return };
                let old = std::mem::take(a);
                for (i, before) in old.into_iter().enumerate() {
                    let after = self.operate(Some(&before));
                    let path = format!("{at}[{i}]");
                    self.record(path, Some(&before), after.as_ref());
                    if let (Some(v), Some(a)) = (after, node.as_array_mut()) {
                        a.push(v);
                    }
                }
            }
        }
    }

    /// The field's value after the operation (`None`: the field goes).
    fn operate(&self, before: Option<&Value>) -> Option<Value> {
        let p = self.p;
        match p.operation {
            Operation::Modify => {
                let before = before?;
                let v = self.value?;
                match (&p.prefix, before.as_str(), v.as_str()) {
                    (Some(prefix), Some(s), Some(to)) => Some(match s.strip_prefix(prefix) {
                        Some(rest) => Value::String(format!("{to}{rest}")),
                        None => before.clone(),
                    }),
                    (Some(_), _, _) => Some(before.clone()),
                    (None, _, _) => Some(v.clone()),
                }
            }
            Operation::Add => {
                let v = self.value?;
                match (before, v) {
                    (Some(Value::Array(old)), Value::Array(more)) => {
                        let mut out = old.clone();
                        out.extend(more.iter().filter(|x| !old.contains(x)).cloned());
                        Some(Value::Array(out))
                    }
                    (Some(Value::Object(old)), Value::Object(more)) => {
                        let mut out = old.clone();
                        out.extend(more.clone());
                        Some(Value::Object(out))
                    }
                    (_, v) => Some(v.clone()),
                }
            }
            Operation::Delete => match (before, self.value) {
                (None, _) => None,
                (Some(_), None) => None,
                (Some(Value::Object(old)), Some(Value::Object(keys))) => {
                    let mut out = old.clone();
                    out.retain(|k, _| !keys.contains_key(k));
                    Some(Value::Object(out))
                }
                (Some(Value::Array(old)), Some(Value::Array(gone))) => Some(Value::Array(
                    old.iter().filter(|x| !gone.contains(x)).cloned().collect(),
                )),
                (Some(_), Some(_)) => None,
            },
        }
    }
}

/// The named rules, in the order the Migration lists them.
pub type RuleSet = Vec<(String, Vec<TransformSpec>)>;

/// Applies every rule set in order; the changes of all, in order.
pub fn apply_all(sets: &RuleSet, obj: &mut Value) -> Result<Vec<FieldChange>, String> {
    let mut all = Vec::new();
    for (name, rules) in sets {
        all.extend(apply(name, rules, obj)?);
    }
    Ok(all)
}
