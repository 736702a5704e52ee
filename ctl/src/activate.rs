//! `ferryctl activate migration` / `deactivate migration`: start migrated workloads at their
//! source replica counts (from `ferry.dev/migrationReplicas`), or park them at zero.

use crate::Result;
use ferry_migration::destination::dr::workloads::{self, Scope};

/// Activates (or deactivates) the migrated workloads of each namespace; one line per change.
///
/// # Errors
/// API errors.
pub async fn set(
    client: &kube::Client,
    namespaces: &[String],
    activate: bool,
) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for ns in namespaces {
        out.extend(workloads::set(client, ns, activate, Scope::Migrated).await?);
    }
    Ok(out)
}
