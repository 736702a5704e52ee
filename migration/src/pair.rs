//! A ClusterPair's Secret: the destination's kubeconfig and the transfer store settings.
//!
//! Keys: `kubeconfig` (required), `context`, `ferryNamespace` (where ferry runs on the
//! destination, default `ferry-system`), `encryptionKey`, and the transfer store's settings
//! as a StorageClass would give them (`backend`, `bucket`, `root`, `endpoint`, `region`,
//! `accessKeyId`, `secretAccessKey`, `accountName`, `accountKey`, `credential`,
//! `anonymous`).

use crate::Ctx;
use crate::crd::ClusterPair;
use crate::error::{Error, Result};
use crate::trust::{Origin, Policy, Trust, check_kubeconfig};
use ferry_store::StoreConfig;
use ferry_transfer::{Key, TransferStore};
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use std::collections::BTreeMap;

/// Secret keys that are not transfer store settings.
const OWN_KEYS: [&str; 4] = ["kubeconfig", "context", "ferryNamespace", "encryptionKey"];
/// Default namespace of ferry on a destination.
pub const DEFAULT_FERRY_NAMESPACE: &str = "ferry-system";

/// A transfer store's settings as Secret keys, parsed, and its raw key.
pub type TransferSettings = (BTreeMap<String, String>, StoreConfig, Option<Vec<u8>>);

/// Transfer store settings and key from a Secret's data (the keys other than the pair's own),
/// checked against `policy` for an object of `origin` (the one that names the Secret: a
/// ClusterPair on the source, the object holding an import on the destination), so a
/// tenant's folder store lies in its namespace's part of an allowed folder on both sides.
///
/// # Errors
/// [`Error::Invalid`] naming the wrong or refused key.
pub fn transfer_from_data(
    what: &str,
    data: &BTreeMap<String, Vec<u8>>,
    policy: &Policy,
    origin: Origin<'_>,
) -> Result<TransferSettings> {
    let mut params = BTreeMap::new();
    for (k, v) in data {
        if !OWN_KEYS.contains(&k.as_str()) {
            let v = String::from_utf8(v.clone())
                .map_err(|_| Error::Invalid(format!("{what}: key {k} is not UTF-8 text")))?;
            params.insert(k.clone(), v.trim_end_matches('\n').to_string());
        }
    }
    let config = StoreConfig::from_params(&params)
        .map_err(|e| Error::Invalid(format!("{what}: transfer store: {e}")))?;
    config
        .validate()
        .map_err(|e| Error::Invalid(format!("{what}: transfer store: {e}")))?;
    if config.backend == ferry_store::Backend::Memory {
        return Err(Error::Invalid(format!(
            "{what}: the memory backend cannot be shared by two clusters; use s3, azblob, \
             gcs or a shared folder"
        )));
    }
    policy.check_transfer(&format!("{what}: transfer store"), &config, origin)?;
    let key = data.get("encryptionKey").cloned().filter(|k| !k.is_empty());
    if let Some(k) = &key {
        Key::parse(k).map_err(|e| Error::Invalid(format!("{what}: encryptionKey: {e}")))?;
    }
    Ok((params, config, key))
}

/// Opens the transfer store `config` describes, with `key`.
///
/// # Errors
/// Backend and key errors; a bucket or container that does not exist as `bucket X does not
/// exist on <endpoint>: create it or fix bucket`.
pub async fn open_transfer(config: &StoreConfig, key: Option<Key>) -> Result<TransferStore> {
    TransferStore::open(config, key)
        .await
        .map_err(|e| bucket_named(config, e.into()))
}

/// `e`, or when it says the bucket is missing, that said with the bucket and where.
fn bucket_named(config: &StoreConfig, e: Error) -> Error {
    if !e.is_missing_bucket() {
        return e;
    }
    let bucket = config.bucket.as_deref().unwrap_or_default();
    let on = config
        .endpoint
        .clone()
        .unwrap_or_else(|| format!("the {:?} service's default endpoint", config.backend));
    Error::Invalid(format!(
        "bucket {bucket} does not exist on {on}: create it or fix bucket"
    ))
}

/// Reads a Secret's data, base64-decoded; `None` when it does not exist.
///
/// # Errors
/// API errors.
pub async fn secret_data(
    client: &kube::Client,
    ns: &str,
    name: &str,
) -> Result<Option<BTreeMap<String, Vec<u8>>>> {
    let api: kube::Api<Secret> = kube::Api::namespaced(client.clone(), ns);
    Ok(api.get_opt(name).await?.map(|s| {
        s.data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect()
    }))
}

/// What a ClusterPair's Secret holds, parsed.
#[derive(Clone)]
pub struct PairSettings {
    /// The destination kubeconfig, YAML.
    pub kubeconfig: String,
    /// Context to use; the kubeconfig's current one when `None`.
    pub context: Option<String>,
    /// Where ferry runs on the destination.
    pub ferry_namespace: String,
    /// Transfer store settings, as Secret keys (copied to the destination for its imports).
    pub transfer_params: BTreeMap<String, String>,
    /// Transfer store settings, parsed.
    pub transfer: StoreConfig,
    /// The raw encryption key, when the transfer store is encrypted.
    pub encryption_key: Option<Vec<u8>>,
    /// Who wrote the pair: a tenant's kubeconfig may carry inline credentials only.
    pub trust: Trust,
}

impl PairSettings {
    /// Parses a Secret's data (already base64-decoded) of a pair in `origin`'s namespace,
    /// written with its trust.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the missing, wrong or refused key or field.
    pub fn from_data(
        what: &str,
        data: &BTreeMap<String, Vec<u8>>,
        origin: Origin<'_>,
        policy: &Policy,
    ) -> Result<PairSettings> {
        let text = |k: &str| -> Result<Option<String>> {
            data.get(k)
                .map(|v| {
                    String::from_utf8(v.clone())
                        .map_err(|_| Error::Invalid(format!("{what}: key {k} is not UTF-8 text")))
                })
                .transpose()
        };
        let kubeconfig = text("kubeconfig")?
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "{what} has no kubeconfig key: put the destination's kubeconfig there \
                 (ferryctl generate clusterpair writes it)"
                ))
            })?;
        let (transfer_params, transfer, encryption_key) =
            transfer_from_data(what, data, policy, origin)?;
        Ok(PairSettings {
            trust: origin.trust,
            kubeconfig,
            context: text("context")?.filter(|s| !s.is_empty()),
            ferry_namespace: text("ferryNamespace")?
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| DEFAULT_FERRY_NAMESPACE.to_string()),
            transfer_params,
            transfer,
            encryption_key,
        })
    }

    /// Reads and parses the Secret a ClusterPair names. A pair outside the controller's
    /// namespace may name a Secret in its own namespace only, and its kubeconfig may carry
    /// inline credentials only (see [`crate::trust`]).
    ///
    /// # Errors
    /// [`Error::Invalid`] when the Secret is missing, malformed, in another namespace, or
    /// asks for something refused; API errors.
    pub async fn load(ctx: &Ctx, pair: &ClusterPair) -> Result<PairSettings> {
        let own = pair.namespace().unwrap_or_default();
        let trust = ctx.trust(&own);
        let ns = match pair.spec.secret_ref.namespace.as_deref() {
            None | Some("") => own.clone(),
            Some(other) if other == own || trust == Trust::Admin => other.to_string(),
            Some(other) => {
                return Err(Error::Invalid(format!(
                    "ClusterPair {own}/{} names Secret {other}/{}: a pair may name only a \
                     Secret in its own namespace ({own}); copy the Secret there and remove \
                     spec.secretRef.namespace",
                    pair.name_any(),
                    pair.spec.secret_ref.name
                )));
            }
        };
        let name = &pair.spec.secret_ref.name;
        let data = secret_data(&ctx.client, &ns, name).await?.ok_or_else(|| {
            Error::Invalid(format!(
                "Secret {ns}/{name} named by ClusterPair {} not found: create it \
                 (ferryctl generate clusterpair prints one)",
                pair.name_any()
            ))
        })?;
        // The pair's own namespace decides its part of a transfer folder, wherever its
        // Secret is.
        PairSettings::from_data(
            &format!("Secret {ns}/{name}"),
            &data,
            Origin::new(&own, trust),
            &ctx.policy,
        )
    }

    /// The encryption key, parsed.
    ///
    /// # Errors
    /// A malformed key (checked at load, so not expected).
    pub fn key(&self) -> Result<Option<Key>> {
        self.encryption_key
            .as_deref()
            .map(Key::parse)
            .transpose()
            .map_err(Error::from)
    }

    /// Opens the transfer store.
    ///
    /// # Errors
    /// Backend and key errors; a missing bucket named ([`open_transfer`]).
    pub async fn open_transfer(&self) -> Result<TransferStore> {
        open_transfer(&self.transfer, self.key()?).await
    }

    /// The transfer store, opened without writing: `None` when nothing was exported to it
    /// yet (no marker).
    ///
    /// # Errors
    /// A wrong or missing key, backend errors; a missing bucket named.
    pub async fn open_transfer_read_only(&self) -> Result<Option<TransferStore>> {
        TransferStore::open_existing(&self.transfer, self.key()?)
            .await
            .map_err(|e| bucket_named(&self.transfer, e.into()))
    }

    /// The kubeconfig, parsed and checked against what a pair of this trust may use.
    ///
    /// # Errors
    /// [`Error::Invalid`] when it does not parse or sets a refused field (named).
    pub fn checked_kubeconfig(&self) -> Result<kube::config::Kubeconfig> {
        let kc = kube::config::Kubeconfig::from_yaml(&self.kubeconfig)
            .map_err(|e| Error::Invalid(format!("destination kubeconfig: {e}")))?;
        check_kubeconfig("destination", &kc, self.trust)?;
        Ok(kc)
    }

    /// A client for the destination through `ctx`'s connector, once the kubeconfig passed
    /// [`PairSettings::checked_kubeconfig`]: nothing reaches a destination from a kubeconfig
    /// that asks for more than its pair may.
    ///
    /// # Errors
    /// The refusal; the connector's errors.
    pub async fn connect(&self, ctx: &Ctx) -> Result<kube::Client> {
        self.checked_kubeconfig()?;
        (ctx.connect)(self.clone()).await
    }

    /// A client for the destination cluster.
    ///
    /// # Errors
    /// [`Error::Invalid`] when the kubeconfig does not parse, asks for a refused field, or
    /// names no usable context.
    pub async fn destination_client(&self) -> Result<kube::Client> {
        let kc = self.checked_kubeconfig()?;
        let opts = kube::config::KubeConfigOptions {
            context: self.context.clone(),
            ..Default::default()
        };
        let config = kube::Config::from_custom_kubeconfig(kc, &opts)
            .await
            .map_err(|e| Error::Invalid(format!("destination kubeconfig: {e}")))?;
        kube::Client::try_from(config)
            .map_err(|e| Error::Invalid(format!("destination kubeconfig: {e}")))
    }

    /// The Secret data a destination needs for its imports: the transfer settings and key,
    /// never the kubeconfig.
    pub fn destination_secret_data(&self) -> BTreeMap<String, String> {
        let mut d = self.transfer_params.clone();
        if let Some(k) = &self.encryption_key {
            // Raw binary keys travel as hex, which Key::parse reads back to the same bytes.
            let text = match std::str::from_utf8(k) {
                Ok(t) => t.to_string(),
                Err(_) => hex::encode(k),
            };
            d.insert("encryptionKey".into(), text);
        }
        d
    }
}
