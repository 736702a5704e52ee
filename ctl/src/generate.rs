//! `ferryctl generate clusterpair`: a ClusterPair and its Secret from a kubeconfig context
//! and transfer store settings, printed as YAML to apply on the source cluster.

use crate::Result;
use base64::Engine;
use serde_yaml::{Mapping, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// What `generate clusterpair` takes.
#[derive(Clone, Debug, Default)]
pub struct GenerateArgs {
    /// ClusterPair name.
    pub name: String,
    /// Namespace of the ClusterPair and its Secret.
    pub namespace: String,
    /// The destination's kubeconfig text.
    pub kubeconfig: String,
    /// Folder the kubeconfig's relative file paths are relative to.
    pub kubeconfig_dir: Option<std::path::PathBuf>,
    /// Context to take; the current one when `None`.
    pub context: Option<String>,
    /// Transfer store settings (`backend`, `bucket`, ...), as Secret keys.
    pub transfer: BTreeMap<String, String>,
    /// Encryption key text, if the transfer store is encrypted.
    pub encryption_key: Option<String>,
    /// Where ferry runs on the destination, when not `ferry-system`.
    pub ferry_namespace: Option<String>,
}

fn named<'a>(list: &'a Value, name: &str) -> Option<&'a Value> {
    list.as_sequence()?
        .iter()
        .find(|e| e["name"].as_str() == Some(name))
}

/// Replaces `file_key: path` by `data_key: base64(file contents)` in `m`.
fn inline(m: &mut Mapping, file_key: &str, data_key: &str, dir: Option<&Path>) -> Result<()> {
    let Some(path) = m.get(file_key).and_then(Value::as_str).map(str::to_string) else {
        return Ok(());
    };
    let p = Path::new(&path);
    let p = match dir {
        Some(d) if p.is_relative() => d.join(p),
        _ => p.to_path_buf(),
    };
    let bytes = std::fs::read(&p)
        .map_err(|e| format!("reading {} named by the kubeconfig: {e}", p.display()))?;
    m.remove(file_key);
    m.insert(
        data_key.into(),
        base64::engine::general_purpose::STANDARD
            .encode(bytes)
            .into(),
    );
    Ok(())
}

/// Keeps only `context` (and its cluster and user) and inlines the files they name, so the
/// kubeconfig works from inside the source cluster.
pub fn minify(kubeconfig: &str, context: Option<&str>, dir: Option<&Path>) -> Result<String> {
    let kc: Value = serde_yaml::from_str(kubeconfig).map_err(|e| format!("kubeconfig: {e}"))?;
    let ctx_name = match context {
        Some(c) => c.to_string(),
        None => kc["current-context"]
            .as_str()
            .filter(|s| !s.is_empty())
            .ok_or("the kubeconfig has no current-context: pass --context")?
            .to_string(),
    };
    let ctx = named(&kc["contexts"], &ctx_name)
        .ok_or_else(|| format!("context {ctx_name} is not in the kubeconfig"))?;
    let cluster_name = ctx["context"]["cluster"].as_str().unwrap_or_default();
    let user_name = ctx["context"]["user"].as_str().unwrap_or_default();
    let mut cluster = named(&kc["clusters"], cluster_name)
        .ok_or_else(|| {
            format!("cluster {cluster_name} of context {ctx_name} is not in the kubeconfig")
        })?
        .clone();
    if let Some(c) = cluster.get_mut("cluster").and_then(Value::as_mapping_mut) {
        inline(
            c,
            "certificate-authority",
            "certificate-authority-data",
            dir,
        )?;
    }
    let mut user = named(&kc["users"], user_name).cloned().unwrap_or_else(|| {
        serde_yaml::from_str(&format!("{{name: {user_name:?}, user: {{}}}}")).unwrap_or_default()
    });
    if let Some(u) = user.get_mut("user").and_then(Value::as_mapping_mut) {
        inline(u, "client-certificate", "client-certificate-data", dir)?;
        inline(u, "client-key", "client-key-data", dir)?;
        if let Some(tf) = u.remove("tokenFile") {
            let path = tf.as_str().unwrap_or_default().to_string();
            let token = std::fs::read_to_string(&path)
                .map_err(|e| format!("reading tokenFile {path}: {e}"))?;
            u.insert("token".into(), token.trim().into());
        }
        if u.contains_key("exec") || u.contains_key("auth-provider") {
            return Err(format!(
                "user {user_name} authenticates with an exec or auth-provider plugin, which will not run \
                 inside the source cluster: use a service-account token or client certificate"
            )
            .into());
        }
    }
    let mut out = Mapping::new();
    out.insert("apiVersion".into(), "v1".into());
    out.insert("kind".into(), "Config".into());
    out.insert("clusters".into(), Value::Sequence(vec![cluster]));
    out.insert("users".into(), Value::Sequence(vec![user]));
    out.insert("contexts".into(), Value::Sequence(vec![ctx.clone()]));
    out.insert("current-context".into(), ctx_name.into());
    Ok(serde_yaml::to_string(&out)?)
}

/// The Secret's data (the minified kubeconfig, the transfer settings, key and namespace)
/// and the settings it parses to.
fn secret_data(
    a: &GenerateArgs,
) -> Result<(
    BTreeMap<String, String>,
    ferry_migration::pair::PairSettings,
)> {
    let kubeconfig = minify(
        &a.kubeconfig,
        a.context.as_deref(),
        a.kubeconfig_dir.as_deref(),
    )?;
    let mut data: BTreeMap<String, String> = a.transfer.clone();
    data.insert("kubeconfig".into(), kubeconfig);
    if let Some(k) = &a.encryption_key {
        data.insert("encryptionKey".into(), k.trim().to_string());
    }
    if let Some(f) = &a.ferry_namespace {
        data.insert("ferryNamespace".into(), f.clone());
    }
    // Check the settings the way the controller will.
    let settings = settings_of(a, &data)?;
    Ok((data, settings))
}

fn settings_of(
    a: &GenerateArgs,
    data: &BTreeMap<String, String>,
) -> Result<ferry_migration::pair::PairSettings> {
    let bytes: BTreeMap<String, Vec<u8>> = data
        .iter()
        .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
        .collect();
    use ferry_migration::trust::{Origin, Policy, Trust};
    // Which folders a folder transfer store may use is the controller's setting
    // (--transfer-folder, and the pair's namespace's part of it for a tenant's pair), unknown
    // here: ferryctl checks everything else, the kubeconfig as for a tenant's pair.
    let folders = a
        .transfer
        .get("root")
        .and_then(|r| std::path::Path::new(r).parent())
        .map(|p| vec![p.to_path_buf()])
        .unwrap_or_default();
    let mut settings = ferry_migration::pair::PairSettings::from_data(
        "the generated Secret",
        &bytes,
        Origin::new(&a.namespace, Trust::Admin),
        &Policy {
            transfer_folders: folders,
        },
    )?;
    settings.trust = Trust::Tenant;
    settings.checked_kubeconfig()?;
    Ok(settings)
}

/// Checks a generated pair the way the migration controller will: the destination API
/// answers with these credentials and has ferry installed, and the transfer store takes a
/// write and a read.
///
/// # Errors
/// What the controller would report, and how to fix it.
pub async fn check(settings: &ferry_migration::pair::PairSettings, namespace: &str) -> Result<()> {
    let dest = settings.destination_client().await?;
    let mut problems = Vec::new();
    if let Err(why) =
        ferry_migration::source::cluster_pair::check_destination(&dest, namespace).await
    {
        problems.push(format!("destination: {why}"));
    }
    if let Err(why) =
        ferry_migration::source::cluster_pair::check_storage(settings, "ferryctl").await
    {
        problems.push(format!("storage: {why}"));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the pair would not be Ready: {} (pass --skip-check to print it anyway)",
            problems.join("; ")
        )
        .into())
    }
}

/// The ClusterPair and its Secret, as YAML, for `a`; its settings are checked as the
/// controller will check them, without reaching anything ([`check`] does that).
///
/// # Errors
/// What is wrong with the kubeconfig or the transfer settings.
pub fn clusterpair(a: &GenerateArgs) -> Result<String> {
    pair_yaml(a, &secret_data(a)?.0)
}

/// The Secret's data for `a`, and its parsed settings.
///
/// # Errors
/// What is wrong with the kubeconfig or the transfer settings.
pub fn pair_settings(a: &GenerateArgs) -> Result<ferry_migration::pair::PairSettings> {
    Ok(secret_data(a)?.1)
}

/// Generates the pair for `a` and applies its Secret and ClusterPair through `source` (the
/// cluster migrations start from), as storkctl's `create clusterpair` does.
///
/// # Errors
/// What is wrong with the settings; API errors applying them.
pub async fn create(source: &kube::Client, a: &GenerateArgs) -> Result<String> {
    let (secret, pair) = pair_objects(a, &secret_data(a)?.0);
    ferry_migration::api::apply(source, &ferry_migration::kinds_used::secret(), &secret).await?;
    ferry_migration::api::apply(source, &ferry_migration::kinds_used::cluster_pair(), &pair)
        .await?;
    Ok(format!("ClusterPair {} created successfully\n", a.name))
}

fn pair_yaml(a: &GenerateArgs, data: &BTreeMap<String, String>) -> Result<String> {
    let (secret, pair) = pair_objects(a, data);
    Ok(format!(
        "{}---\n{}",
        serde_yaml::to_string(&secret)?,
        serde_yaml::to_string(&pair)?
    ))
}

fn pair_objects(
    a: &GenerateArgs,
    data: &BTreeMap<String, String>,
) -> (serde_json::Value, serde_json::Value) {
    let secret_name = format!("{}-pair", a.name);
    let secret = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": secret_name, "namespace": a.namespace},
        "type": "Opaque",
        "stringData": data,
    });
    let pair = serde_json::json!({
        "apiVersion": "ferry.dev/v1alpha1",
        "kind": "ClusterPair",
        "metadata": {"name": a.name, "namespace": a.namespace},
        "spec": {"secretRef": {"name": secret_name}},
    });
    (secret, pair)
}
