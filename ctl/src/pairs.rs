//! `ferryctl get clusterpair`.

use crate::Result;
use crate::table::{created, render};
use ferry_migration::crd::ClusterPair;
use kube::{Api, ResourceExt};

/// The ClusterPairs in `ns` (all namespaces when `None`) as storkctl's table:
/// NAME STORAGE-STATUS SCHEDULER-STATUS CREATED.
pub async fn get(client: &kube::Client, ns: Option<&str>) -> Result<String> {
    let api: Api<ClusterPair> = crate::scoped(client, ns);
    let list = api.list(&Default::default()).await?;
    if list.items.is_empty() {
        return Ok("No resources found.\n".into());
    }
    let mut rows = Vec::new();
    for p in &list.items {
        let st = p.status.clone().unwrap_or_default();
        let mut row = Vec::new();
        if ns.is_none() {
            row.push(p.namespace().unwrap_or_default());
        }
        row.extend([
            p.name_any(),
            st.storage_status.to_string(),
            st.scheduler_status.to_string(),
            created(&p.metadata),
        ]);
        rows.push(row);
    }
    let mut header = vec!["NAME", "STORAGE-STATUS", "SCHEDULER-STATUS", "CREATED"];
    if ns.is_none() {
        header.insert(0, "NAMESPACE");
    }
    let mut out = render(&header, &rows);
    // Reasons of pairs not Ready, under the table.
    for p in &list.items {
        let st = p.status.clone().unwrap_or_default();
        for r in st.reasons() {
            out.push_str(&format!("{}: {r}\n", p.name_any()));
        }
    }
    Ok(out)
}
