//! `ferryctl clone namespace SRC --to DST`: an ApplicationClone in the controller's
//! namespace, followed to its end.

use crate::Result;
use ferry_migration::crd::{ApplicationClone, ApplicationCloneSpec, ApplicationCloneStatus};
use kube::Api;
use kube::api::PostParams;

/// What `clone namespace` takes.
#[derive(Clone, Debug, Default)]
pub struct CloneArgs {
    /// The namespace copied.
    pub source: String,
    /// Where the copy lands.
    pub destination: String,
    /// Start the copied workloads.
    pub start_applications: bool,
    /// Replace objects of the same name in the destination (`Delete`) or keep them.
    pub replace: bool,
    /// The ApplicationClone's name (default `<src>-to-<dst>`).
    pub name: Option<String>,
}

/// Creates the ApplicationClone in `controller_ns`; returns its name.
///
/// # Errors
/// API errors; an existing clone of that name is one that says so.
pub async fn create(client: &kube::Client, controller_ns: &str, a: &CloneArgs) -> Result<String> {
    if a.source.is_empty() || a.destination.is_empty() {
        return Err("name the namespace to clone and --to, the namespace of the copy".into());
    }
    let name = a
        .name
        .clone()
        .unwrap_or_else(|| format!("{}-to-{}", a.source, a.destination));
    let mut c = ApplicationClone::new(
        &name,
        ApplicationCloneSpec {
            source_namespace: a.source.clone(),
            destination_namespace: a.destination.clone(),
            selectors: Default::default(),
            start_applications: a.start_applications,
            replace_policy: Some(if a.replace { "Delete" } else { "Retain" }.into()),
        },
    );
    c.metadata.namespace = Some(controller_ns.to_string());
    let api: Api<ApplicationClone> = Api::namespaced(client.clone(), controller_ns);
    match api.create(&PostParams::default(), &c).await {
        Ok(_) => Ok(name),
        Err(kube::Error::Api(s)) if s.code == 409 => Err(format!(
            "ApplicationClone {controller_ns}/{name} already exists: pick another --name"
        )
        .into()),
        Err(e) => Err(e.into()),
    }
}

/// Waits until clone `name` ends; its status.
///
/// # Errors
/// API errors; the clone deleted meanwhile.
pub async fn wait(
    client: &kube::Client,
    controller_ns: &str,
    name: &str,
    every: std::time::Duration,
) -> Result<ApplicationCloneStatus> {
    let api: Api<ApplicationClone> = Api::namespaced(client.clone(), controller_ns);
    loop {
        let c = api
            .get_opt(name)
            .await?
            .ok_or_else(|| format!("ApplicationClone {controller_ns}/{name} not found"))?;
        let st = c.status.unwrap_or_default();
        if st.finish_timestamp.is_some() {
            return Ok(st);
        }
        tokio::time::sleep(every).await;
    }
}

/// A clone's outcome as text: each volume and each object not copied, with the reason.
pub fn describe(st: &ApplicationCloneStatus) -> String {
    use ferry_migration::crd::ItemStatus;
    let mut out = format!(
        "{}{}\n",
        st.status,
        st.reason
            .as_deref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default()
    );
    for v in &st.volumes {
        out.push_str(&format!(
            "volume {}: {}{}\n",
            v.persistent_volume_claim,
            v.status,
            match (&v.persistent_volume, &v.reason) {
                (Some(pv), _) if v.status == ItemStatus::Successful => format!(" (PV {pv})"),
                (_, Some(r)) => format!(" ({r})"),
                _ => String::new(),
            }
        ));
    }
    let copied = st
        .resources
        .iter()
        .filter(|r| r.status == ItemStatus::Successful)
        .count();
    out.push_str(&format!("{copied} object(s) copied\n"));
    for r in st
        .resources
        .iter()
        .filter(|r| r.status != ItemStatus::Successful)
    {
        out.push_str(&format!(
            "{}: {} ({})\n",
            crate::table::resource(r),
            r.status,
            r.reason.as_deref().unwrap_or("")
        ));
    }
    out
}
