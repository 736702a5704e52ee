//! The Kubernetes half of `ferryctl`: storkctl's verbs for ClusterPairs and Migrations, as
//! functions over a kube client so they can be tested without a cluster.

pub mod actions;
pub mod activate;
pub mod clones;
pub mod generate;
pub mod migrations;
pub mod moves;
pub mod pairs;
pub mod schedules;
pub mod table;

/// Errors of ferryctl's Kubernetes commands, as text for the user.
pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// An error as ferryctl says it: one of the Kubernetes API as the API's code and message and
/// what to fix (never the client's dump of the Status object), one of an object store as the
/// service's code and message, status and address (never the response's headers), anything
/// else as it says itself (the migration controller's errors already read so).
pub fn say(e: &(dyn std::error::Error + 'static)) -> String {
    if let Some(k) = e.downcast_ref::<kube::Error>() {
        return ferry_migration::kube_problem(k);
    }
    if e.is::<ferry_store::Error>() || e.is::<ferry_transfer::Error>() {
        return ferry_migration::store_problem(&e.to_string());
    }
    e.to_string()
}

/// The API of `K` in namespace `ns`, or across every namespace when `None`.
pub(crate) fn scoped<K>(client: &kube::Client, ns: Option<&str>) -> kube::Api<K>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>,
{
    match ns {
        Some(ns) => kube::Api::namespaced(client.clone(), ns),
        None => kube::Api::all(client.clone()),
    }
}

/// The object `name` of `api` when given (an error naming `kind` and `ns` when absent), else
/// every object `lp` selects: what `get KIND [NAME]` lists.
pub(crate) async fn named_or_listed<K>(
    api: &kube::Api<K>,
    kind: &str,
    ns: Option<&str>,
    name: Option<&str>,
    lp: &kube::api::ListParams,
) -> Result<Vec<K>>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    Ok(match name {
        Some(n) => vec![api.get_opt(n).await?.ok_or_else(|| {
            format!(
                "{kind} {n} not found in namespace {}",
                ns.unwrap_or("(all)")
            )
        })?],
        None => api.list(lp).await?.items,
    })
}
