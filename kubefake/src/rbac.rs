//! Authorization as the real API server's RBAC authorizer does it: every request is allowed
//! only when a rule of a role bound to its identity grants the verb on the resource, in the
//! request's namespace (RoleBindings) or anywhere (ClusterRoleBindings); members of
//! `system:masters` bypass it. Also modelled:
//!
//! - the escalation check on writes of Roles, ClusterRoles and their bindings: a user may
//!   grant only permissions they hold (or with `escalate` / `bind` on the role);
//! - aggregated ClusterRoles, whose `rules` a controller fills from the ClusterRoles their
//!   `aggregationRule` selects, a moment after any ClusterRole changes (a write that sets
//!   `rules: []` on one empties it until then);
//! - SelfSubjectAccessReview and SelfSubjectRulesReview, answered from the same rules;
//! - the bootstrap roles a cluster starts with (`cluster-admin`, `admin`, `edit`, `view`
//!   and their aggregated parts, `system:basic-user`), with the rules this project's tests
//!   depend on.

use crate::identity::Identity;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The collections of RBAC objects.
pub const CLUSTER_ROLES: &str = "rbac.authorization.k8s.io/clusterroles";
/// ClusterRoleBindings.
pub const CLUSTER_ROLE_BINDINGS: &str = "rbac.authorization.k8s.io/clusterrolebindings";
/// Roles.
pub const ROLES: &str = "rbac.authorization.k8s.io/roles";
/// RoleBindings.
pub const ROLE_BINDINGS: &str = "rbac.authorization.k8s.io/rolebindings";

/// What a request asks to do, as the authorizer sees it.
#[derive(Clone, Debug, Default)]
pub struct Attributes {
    /// get, list, watch, create, update, patch, delete, deletecollection (or escalate, bind).
    pub verb: String,
    /// API group ("" for core).
    pub group: String,
    /// Resource (plural).
    pub resource: String,
    /// Subresource (`status`, `exec`), if any.
    pub subresource: String,
    /// Namespace, if namespaced.
    pub namespace: Option<String>,
    /// Object name, when the request names one.
    pub name: Option<String>,
}

impl Attributes {
    /// `resource/subresource`, or the resource.
    fn full_resource(&self) -> String {
        if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        }
    }
}

/// One RBAC rule, parsed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rule {
    api_groups: Vec<String>,
    resources: Vec<String>,
    verbs: Vec<String>,
    resource_names: Vec<String>,
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}

impl Rule {
    fn parse(v: &Value) -> Rule {
        Rule {
            api_groups: strings(&v["apiGroups"]),
            resources: strings(&v["resources"]),
            verbs: strings(&v["verbs"]),
            resource_names: strings(&v["resourceNames"]),
        }
    }

    fn to_json(&self) -> Value {
        let mut o =
            json!({"apiGroups": self.api_groups, "resources": self.resources, "verbs": self.verbs});
        if !self.resource_names.is_empty() {
            o["resourceNames"] = json!(self.resource_names);
        }
        o
    }

    /// Does this rule allow the request?
    fn allows(&self, a: &Attributes) -> bool {
        let group = self.api_groups.iter().any(|g| g == "*" || *g == a.group);
        let full = a.full_resource();
        let resource = self.resources.iter().any(|r| {
            r == "*"
                || *r == full
                || (!a.subresource.is_empty()
                    && (*r == format!("*/{}", a.subresource) || *r == format!("{}/*", a.resource)))
        });
        let verb = self.verbs.iter().any(|v| v == "*" || *v == a.verb);
        let name = self.resource_names.is_empty()
            || a.name
                .as_ref()
                .is_some_and(|n| self.resource_names.contains(n));
        group && resource && verb && name
    }

    /// Does this rule grant everything `other` grants? Wildcards in `other` are covered only
    /// by wildcards (the real server's covers check).
    fn covers(&self, other: &Rule) -> bool {
        let has = |list: &[String], x: &str| list.iter().any(|l| l == "*" || l == x);
        other.api_groups.iter().all(|g| has(&self.api_groups, g))
            && other.resources.iter().all(|r| {
                has(&self.resources, r)
                    || r.split_once('/').is_some_and(|(base, sub)| {
                        self.resources
                            .iter()
                            .any(|l| *l == format!("{base}/*") || *l == format!("*/{sub}"))
                    })
            })
            && other.verbs.iter().all(|v| has(&self.verbs, v))
            && (self.resource_names.is_empty()
                || (!other.resource_names.is_empty()
                    && other
                        .resource_names
                        .iter()
                        .all(|n| self.resource_names.contains(n))))
    }
}

fn key(collection: &str, ns: Option<&str>, name: &str) -> String {
    format!("{collection}/{}/{name}", ns.unwrap_or(""))
}

fn objects_in<'a>(
    objects: &'a BTreeMap<String, Value>,
    collection: &str,
) -> impl Iterator<Item = &'a Value> {
    let prefix = format!("{collection}/");
    objects
        .range(prefix.clone()..)
        .take_while(move |(k, _)| k.starts_with(&prefix))
        .map(|(_, v)| v)
}

/// Does a binding's subject name this identity? A ServiceAccount subject without a
/// namespace means one in the binding's own namespace.
fn subject_matches(subject: &Value, who: &Identity, binding_ns: Option<&str>) -> bool {
    let name = subject["name"].as_str().unwrap_or_default();
    match subject["kind"].as_str().unwrap_or_default() {
        "User" => who.user == name,
        "Group" => who.groups.iter().any(|g| g == name),
        "ServiceAccount" => {
            let ns = subject["namespace"]
                .as_str()
                .filter(|n| !n.is_empty())
                .or(binding_ns)
                .unwrap_or_default();
            who.user == format!("system:serviceaccount:{ns}:{name}")
        }
        _ => false,
    }
}

/// The rules of the role a binding refers to.
fn role_rules(
    objects: &BTreeMap<String, Value>,
    binding: &Value,
    binding_ns: Option<&str>,
) -> Vec<Rule> {
    let r = &binding["roleRef"];
    let name = r["name"].as_str().unwrap_or_default();
    let role = match r["kind"].as_str().unwrap_or_default() {
        "ClusterRole" => objects.get(&key(CLUSTER_ROLES, None, name)),
        "Role" => binding_ns.and_then(|ns| objects.get(&key(ROLES, Some(ns), name))),
        _ => None,
    };
    role.map(|r| {
        r["rules"]
            .as_array()
            .into_iter()
            .flatten()
            .map(Rule::parse)
            .collect()
    })
    .unwrap_or_default()
}

/// Every rule that applies to `who` in namespace `ns` (cluster-wide ones, and those of
/// RoleBindings in `ns`).
pub fn rules_for(objects: &BTreeMap<String, Value>, who: &Identity, ns: Option<&str>) -> Vec<Rule> {
    let mut out = Vec::new();
    for b in objects_in(objects, CLUSTER_ROLE_BINDINGS) {
        let subjects = b["subjects"].as_array().cloned().unwrap_or_default();
        if subjects.iter().any(|s| subject_matches(s, who, None)) {
            out.extend(role_rules(objects, b, None));
        }
    }
    if let Some(ns) = ns {
        let prefix = format!("{ROLE_BINDINGS}/{ns}/");
        for (_, b) in objects
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
        {
            let subjects = b["subjects"].as_array().cloned().unwrap_or_default();
            if subjects.iter().any(|s| subject_matches(s, who, Some(ns))) {
                out.extend(role_rules(objects, b, Some(ns)));
            }
        }
    }
    out
}

/// Is the request allowed?
pub fn allowed(objects: &BTreeMap<String, Value>, who: &Identity, a: &Attributes) -> bool {
    who.is_master()
        || rules_for(objects, who, a.namespace.as_deref())
            .iter()
            .any(|r| r.allows(a))
}

/// The real server's 403 message for a request it refused.
pub fn forbidden_message(who: &Identity, a: &Attributes) -> String {
    let qualified = if a.group.is_empty() {
        a.resource.clone()
    } else {
        format!("{}.{}", a.resource, a.group)
    };
    let what = match &a.name {
        Some(n) => format!("{qualified} \"{n}\""),
        None => qualified,
    };
    let scope = match &a.namespace {
        Some(ns) => format!("in the namespace \"{ns}\""),
        None => "at the cluster scope".into(),
    };
    format!(
        "{what} is forbidden: User \"{}\" cannot {} resource \"{}\" in API group \"{}\" {scope}",
        who.user,
        a.verb,
        a.full_resource(),
        a.group
    )
}

/// The escalation check on a write of a Role, ClusterRole, RoleBinding or
/// ClusterRoleBinding: `Some(message)` when `who` would grant permissions not held.
pub fn escalation(
    objects: &BTreeMap<String, Value>,
    who: &Identity,
    collection: &str,
    ns: Option<&str>,
    obj: &Value,
) -> Option<String> {
    if who.is_master() {
        return None;
    }
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    let (granted, special, resource): (Vec<Rule>, Attributes, &str) = match collection {
        CLUSTER_ROLES | ROLES => {
            let resource = if collection == ROLES {
                "roles"
            } else {
                "clusterroles"
            };
            (
                obj["rules"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(Rule::parse)
                    .collect(),
                Attributes {
                    verb: "escalate".into(),
                    group: "rbac.authorization.k8s.io".into(),
                    resource: resource.into(),
                    namespace: ns.map(str::to_string),
                    name: Some(name.into()),
                    ..Default::default()
                },
                resource,
            )
        }
        CLUSTER_ROLE_BINDINGS | ROLE_BINDINGS => {
            let r = &obj["roleRef"];
            let role = r["name"].as_str().unwrap_or_default();
            let kind = r["kind"].as_str().unwrap_or_default();
            let resource = if collection == ROLE_BINDINGS {
                "rolebindings"
            } else {
                "clusterrolebindings"
            };
            (
                role_rules(objects, obj, ns),
                Attributes {
                    verb: "bind".into(),
                    group: "rbac.authorization.k8s.io".into(),
                    resource: if kind == "Role" {
                        "roles".into()
                    } else {
                        "clusterroles".into()
                    },
                    namespace: ns.map(str::to_string),
                    name: Some(role.into()),
                    ..Default::default()
                },
                resource,
            )
        }
        _ => return None,
    };
    if allowed(objects, who, &special) {
        return None;
    }
    let held = rules_for(objects, who, ns);
    let first = granted
        .iter()
        .flat_map(atoms)
        .find(|atom| !held.iter().any(|h| h.covers(atom)))?;
    Some(format!(
        "{resource}.rbac.authorization.k8s.io \"{name}\" is forbidden: user \"{}\" (groups={:?}) \
         is attempting to grant RBAC permissions not currently held:\n{{APIGroups:{:?}, \
         Resources:{:?}, Verbs:{:?}}}",
        who.user, who.groups, first.api_groups, first.resources, first.verbs
    ))
}

/// A rule split into one rule per (group, resource, verb, name).
fn atoms(r: &Rule) -> Vec<Rule> {
    let names: Vec<Vec<String>> = if r.resource_names.is_empty() {
        vec![Vec::new()]
    } else {
        r.resource_names.iter().map(|n| vec![n.clone()]).collect()
    };
    let mut out = Vec::new();
    for g in &r.api_groups {
        for res in &r.resources {
            for v in &r.verbs {
                for n in &names {
                    out.push(Rule {
                        api_groups: vec![g.clone()],
                        resources: vec![res.clone()],
                        verbs: vec![v.clone()],
                        resource_names: n.clone(),
                    });
                }
            }
        }
    }
    out
}

/// The answer to a SelfSubjectAccessReview.
pub fn access_review(objects: &BTreeMap<String, Value>, who: &Identity, body: &Value) -> Value {
    let ra = &body["spec"]["resourceAttributes"];
    let text = |k: &str| ra[k].as_str().unwrap_or_default().to_string();
    let mut a = Attributes {
        verb: text("verb"),
        group: text("group"),
        resource: text("resource"),
        subresource: text("subresource"),
        namespace: Some(text("namespace")).filter(|n| !n.is_empty()),
        name: Some(text("name")).filter(|n| !n.is_empty()),
    };
    if a.group.is_empty() && a.resource == "namespaces" && a.name.is_some() {
        a.namespace = a.name.clone();
    }
    let ok = allowed(objects, who, &a);
    let mut out = body.clone();
    out["apiVersion"] = json!("authorization.k8s.io/v1");
    out["kind"] = json!("SelfSubjectAccessReview");
    out["status"] = if ok {
        json!({"allowed": true, "reason": "RBAC: allowed"})
    } else {
        json!({"allowed": false})
    };
    out
}

/// The answer to a SelfSubjectRulesReview.
pub fn rules_review(objects: &BTreeMap<String, Value>, who: &Identity, body: &Value) -> Value {
    let ns = body["spec"]["namespace"].as_str().filter(|n| !n.is_empty());
    let rules: Vec<Value> = if who.is_master() {
        vec![json!({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]})]
    } else {
        rules_for(objects, who, ns)
            .iter()
            .map(Rule::to_json)
            .collect()
    };
    let mut out = body.clone();
    out["apiVersion"] = json!("authorization.k8s.io/v1");
    out["kind"] = json!("SelfSubjectRulesReview");
    out["status"] = json!({"resourceRules": rules, "nonResourceRules": [], "incomplete": false});
    out
}

/// Does a ClusterRole's labels match one of the selectors of an aggregation rule?
fn selected(role: &Value, aggregation: &Value) -> bool {
    aggregation["clusterRoleSelectors"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|sel| {
            let labels = &sel["matchLabels"];
            labels.as_object().is_some_and(|m| {
                !m.is_empty() && m.iter().all(|(k, v)| role["metadata"]["labels"][k] == *v)
            })
        })
}

/// The aggregated ClusterRoles whose rules the aggregation controller would set now, with
/// their new rules (until nothing changes, as roles may aggregate aggregated roles).
pub fn aggregate(objects: &BTreeMap<String, Value>) -> Vec<(String, Value)> {
    let mut roles: BTreeMap<String, Value> = objects_in(objects, CLUSTER_ROLES)
        .map(|r| {
            (
                r["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                r.clone(),
            )
        })
        .collect();
    let mut changed = BTreeMap::new();
    for _ in 0..8 {
        let mut any = false;
        let names: Vec<String> = roles.keys().cloned().collect();
        for name in names {
            let agg = roles[&name]["aggregationRule"].clone();
            if agg.is_null() {
                continue;
            }
            let mut rules: Vec<Value> = Vec::new();
            for (other, r) in &roles {
                if *other != name && selected(r, &agg) {
                    for rule in r["rules"].as_array().into_iter().flatten() {
                        if !rules.contains(rule) {
                            rules.push(rule.clone());
                        }
                    }
                }
            }
            let rules = Value::Array(rules);
            if roles[&name]["rules"] != rules {
                if let Some(r) = roles.get_mut(&name) {
                    r["rules"] = rules.clone();
                }
                changed.insert(name.clone(), rules);
                any = true;
            }
        }
        if !any {
            break;
        }
    }
    changed
        .into_iter()
        .map(|(name, rules)| (key(CLUSTER_ROLES, None, &name), rules))
        .collect()
}

/// The bootstrap roles and bindings of a new cluster that matter here: `cluster-admin`;
/// `view`, `edit` and `admin` (aggregated, as on a real cluster: `view` into `edit` into
/// `admin`) with the namespaced rules of their aggregated parts; `system:basic-user` for
/// self reviews, bound to every authenticated user.
pub fn bootstrap() -> Vec<Value> {
    let role = |name: &str, labels: Value, rules: Value| {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
               "metadata": {"name": name, "labels": labels}, "rules": rules})
    };
    let aggregated = |name: &str, labels: Value, selector: &str| {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
               "metadata": {"name": name, "labels": labels},
               "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {selector: "true"}}]},
               "rules": []})
    };
    const AGG: &str = "rbac.authorization.k8s.io/aggregate-to-";
    let read = json!(["get", "list", "watch"]);
    let write = json!(["create", "delete", "deletecollection", "patch", "update"]);
    let core = json!([
        "configmaps",
        "endpoints",
        "persistentvolumeclaims",
        "pods",
        "replicationcontrollers",
        "secrets",
        "serviceaccounts",
        "services"
    ]);
    let apps = json!([
        "daemonsets",
        "deployments",
        "deployments/scale",
        "replicasets",
        "replicasets/scale",
        "statefulsets",
        "statefulsets/scale"
    ]);
    vec![
        role(
            "cluster-admin",
            json!({}),
            json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]),
        ),
        role(
            "system:basic-user",
            json!({}),
            json!([{"apiGroups": ["authorization.k8s.io"],
                    "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"], "verbs": ["create"]}]),
        ),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": "system:basic-user"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:basic-user"},
               "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:authenticated"}]}),
        role(
            "system:aggregate-to-view",
            json!({format!("{AGG}view"): "true"}),
            json!([
                {"apiGroups": [""], "resources": ["configmaps", "endpoints", "persistentvolumeclaims", "pods",
                  "replicationcontrollers", "serviceaccounts", "services", "events", "limitranges",
                  "namespaces", "resourcequotas"], "verbs": read},
                {"apiGroups": ["apps"], "resources": apps, "verbs": read},
                {"apiGroups": ["batch"], "resources": ["cronjobs", "jobs"], "verbs": read},
                {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"], "verbs": read},
                {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses", "networkpolicies"], "verbs": read},
                {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": read},
            ]),
        ),
        role(
            "system:aggregate-to-edit",
            json!({format!("{AGG}edit"): "true"}),
            json!([
                {"apiGroups": [""], "resources": ["pods/attach", "pods/exec", "pods/portforward", "pods/proxy", "secrets",
                  "services/proxy"], "verbs": read},
                {"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["impersonate"]},
                {"apiGroups": [""], "resources": ["pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy"],
                  "verbs": write},
                {"apiGroups": [""], "resources": core, "verbs": write},
                {"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]},
                {"apiGroups": ["apps"], "resources": apps, "verbs": write},
                {"apiGroups": ["batch"], "resources": ["cronjobs", "jobs"], "verbs": write},
                {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"], "verbs": write},
                {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses", "networkpolicies"], "verbs": write},
                {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": write},
            ]),
        ),
        role(
            "system:aggregate-to-admin",
            json!({format!("{AGG}admin"): "true"}),
            json!([
                {"apiGroups": ["authorization.k8s.io"], "resources": ["localsubjectaccessreviews"], "verbs": ["create"]},
                {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["rolebindings", "roles"],
                  "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]},
            ]),
        ),
        {
            let mut v = aggregated(
                "view",
                json!({format!("{AGG}edit"): "true"}),
                &format!("{AGG}view"),
            );
            v["metadata"]["labels"] = json!({format!("{AGG}edit"): "true"});
            v
        },
        aggregated(
            "edit",
            json!({format!("{AGG}admin"): "true"}),
            &format!("{AGG}edit"),
        ),
        aggregated("admin", json!({}), &format!("{AGG}admin")),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(objects: &mut BTreeMap<String, Value>, collection: &str, o: Value) {
        let ns = o["metadata"]["namespace"].as_str().map(str::to_string);
        let name = o["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        objects.insert(key(collection, ns.as_deref(), &name), o);
    }

    fn world() -> BTreeMap<String, Value> {
        let mut objects = BTreeMap::new();
        for o in bootstrap() {
            let c = if o["kind"] == "ClusterRole" {
                CLUSTER_ROLES
            } else {
                CLUSTER_ROLE_BINDINGS
            };
            put(&mut objects, c, o);
        }
        for (k, rules) in aggregate(&objects) {
            if let Some(r) = objects.get_mut(&k) {
                r["rules"] = rules;
            }
        }
        objects
    }

    fn attrs(verb: &str, group: &str, resource: &str, ns: Option<&str>) -> Attributes {
        Attributes {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            namespace: ns.map(str::to_string),
            ..Default::default()
        }
    }

    #[test]
    fn a_role_binding_grants_in_its_namespace_only() {
        let mut o = world();
        put(
            &mut o,
            ROLE_BINDINGS,
            json!({"metadata": {"name": "e", "namespace": "a"},
                   "roleRef": {"kind": "ClusterRole", "name": "edit"},
                   "subjects": [{"kind": "User", "name": "alice"}]}),
        );
        let alice = Identity::user("alice");
        assert!(allowed(
            &o,
            &alice,
            &attrs("create", "apps", "deployments", Some("a"))
        ));
        assert!(!allowed(
            &o,
            &alice,
            &attrs("create", "apps", "deployments", Some("b"))
        ));
        assert!(!allowed(
            &o,
            &alice,
            &attrs("create", "rbac.authorization.k8s.io", "roles", Some("a"))
        ));
        assert!(!allowed(&o, &alice, &attrs("list", "", "namespaces", None)));
        assert!(allowed(
            &o,
            &Identity::admin(),
            &attrs("delete", "", "nodes", None)
        ));
        let msg = forbidden_message(&alice, &attrs("list", "", "secrets", Some("b")));
        assert_eq!(
            msg,
            "secrets is forbidden: User \"alice\" cannot list resource \"secrets\" in API group \"\" in the namespace \"b\""
        );
    }

    #[test]
    fn granting_more_than_held_is_refused_unless_bind_is_held() {
        let mut o = world();
        put(
            &mut o,
            ROLE_BINDINGS,
            json!({"metadata": {"name": "e", "namespace": "a"},
                   "roleRef": {"kind": "ClusterRole", "name": "admin"},
                   "subjects": [{"kind": "User", "name": "alice"}]}),
        );
        let alice = Identity::user("alice");
        let to_edit = json!({"metadata": {"name": "x", "namespace": "a"},
            "roleRef": {"kind": "ClusterRole", "name": "edit"}, "subjects": [{"kind": "User", "name": "bob"}]});
        assert_eq!(
            escalation(&o, &alice, ROLE_BINDINGS, Some("a"), &to_edit),
            None
        );
        let to_admin = json!({"metadata": {"name": "x", "namespace": "a"},
            "roleRef": {"kind": "ClusterRole", "name": "cluster-admin"}, "subjects": [{"kind": "User", "name": "bob"}]});
        let refused = escalation(&o, &alice, ROLE_BINDINGS, Some("a"), &to_admin).expect("refused");
        assert!(
            refused.contains("attempting to grant RBAC permissions not currently held"),
            "{refused}"
        );
    }
}
