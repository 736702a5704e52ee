//! Typed configuration of the chunk store's backend and of per-volume options.
//!
//! The same [`StoreConfig`] is filled from a JSON file, from command-line flags and environment
//! variables (by the binaries), or from a flat string map such as a StorageClass's
//! `parameters` or a Secret's data ([`StoreConfig::from_params`]).

use crate::codec::Codec;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// Which opendal service holds the store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// A local folder (the default).
    #[default]
    Fs,
    /// Process memory; for tests and demos.
    Memory,
    /// Amazon S3 or an S3-compatible server.
    S3,
    /// Azure Blob Storage.
    Azblob,
    /// Google Cloud Storage.
    Gcs,
}

impl std::str::FromStr for Backend {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "fs" | "folder" | "local" => Ok(Backend::Fs),
            "memory" => Ok(Backend::Memory),
            "s3" => Ok(Backend::S3),
            "azblob" | "azure" => Ok(Backend::Azblob),
            "gcs" => Ok(Backend::Gcs),
            other => Err(Error::InvalidArgument(format!(
                "unknown store backend {other:?}: use fs, memory, s3, azblob or gcs"
            ))),
        }
    }
}

/// Where the chunk store lives and how to reach it.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StoreConfig {
    /// The service.
    #[serde(default)]
    pub backend: Backend,
    /// For `fs` the folder; for object stores a key prefix inside the bucket.
    #[serde(default)]
    pub root: Option<String>,
    /// S3 or GCS bucket, Azure container.
    #[serde(default)]
    pub bucket: Option<String>,
    /// Service endpoint, for example `http://127.0.0.1:9000`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// S3 region.
    #[serde(default)]
    pub region: Option<String>,
    /// S3 access key id.
    #[serde(default)]
    pub access_key_id: Option<String>,
    /// S3 secret access key.
    #[serde(default)]
    pub secret_access_key: Option<String>,
    /// Azure storage account name.
    #[serde(default)]
    pub account_name: Option<String>,
    /// Azure storage account key.
    #[serde(default)]
    pub account_key: Option<String>,
    /// GCS service-account JSON, base64 encoded.
    #[serde(default)]
    pub credential: Option<String>,
    /// Send unsigned requests (public buckets, emulators).
    #[serde(default)]
    pub anonymous: bool,
}

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Credentials never reach logs.
        f.debug_struct("StoreConfig")
            .field("backend", &self.backend)
            .field("root", &self.root)
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("anonymous", &self.anonymous)
            .finish_non_exhaustive()
    }
}

impl StoreConfig {
    /// A local-folder store at `root`.
    pub fn fs(root: impl Into<String>) -> Self {
        StoreConfig {
            backend: Backend::Fs,
            root: Some(root.into()),
            ..Default::default()
        }
    }

    /// An in-memory store.
    pub fn memory() -> Self {
        StoreConfig {
            backend: Backend::Memory,
            ..Default::default()
        }
    }

    /// Reads the configuration from a flat map of strings (StorageClass parameters, Secret
    /// data). Keys are the camelCase field names; `anonymous` takes `true` or `false`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming an unknown key or a bad value.
    pub fn from_params(params: &BTreeMap<String, String>) -> Result<Self> {
        let mut map = serde_json::Map::new();
        for (k, v) in params {
            let value = if k == "anonymous" {
                match v.as_str() {
                    "true" => serde_json::Value::Bool(true),
                    "false" => serde_json::Value::Bool(false),
                    _ => {
                        return Err(Error::InvalidArgument(format!(
                            "store setting anonymous must be true or false, not {v:?}"
                        )));
                    }
                }
            } else {
                serde_json::Value::String(v.clone())
            };
            map.insert(k.clone(), value);
        }
        serde_json::from_value(serde_json::Value::Object(map))
            .map_err(|e| Error::InvalidArgument(format!("store settings: {e}")))
    }

    /// Reads a JSON file holding a [`StoreConfig`].
    ///
    /// # Errors
    /// [`Error::Config`] when the file cannot be read or parsed.
    pub fn from_file(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("reading {}: {e}", path.display())))?;
        serde_json::from_str(&text)
            .map_err(|e| Error::Config(format!("parsing {}: {e}", path.display())))
    }

    /// Checks that the fields the backend needs are present.
    ///
    /// # Errors
    /// [`Error::Config`] naming the missing field.
    pub fn validate(&self) -> Result<()> {
        let need = |v: &Option<String>, what: &str| match v {
            Some(s) if !s.is_empty() => Ok(()),
            _ => Err(Error::Config(format!(
                "the {:?} store needs {what}",
                self.backend
            ))),
        };
        match self.backend {
            Backend::Fs => need(&self.root, "root (a folder)"),
            Backend::Memory => Ok(()),
            Backend::S3 => need(&self.bucket, "bucket"),
            Backend::Azblob => {
                need(&self.bucket, "bucket (the container)")?;
                need(&self.endpoint, "endpoint")
            }
            Backend::Gcs => need(&self.bucket, "bucket"),
        }
    }
}

/// Tuning of a store handle: caches, write-back and concurrency.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Bytes of decoded chunks kept in the read cache.
    pub cache_bytes: usize,
    /// Dirty bytes a volume writer holds before it uploads chunks (without committing).
    pub max_dirty_bytes: usize,
    /// Object-store requests in flight per operation.
    pub concurrency: usize,
    /// GC grace period recorded in a store that has none yet (see [`crate::GcPolicy`]).
    pub gc_grace: Duration,
    /// Hold and sweep record lifetime recorded in a store that has none yet.
    pub hold_ttl: Duration,
    /// Capacity reported by GetCapacity for object stores (they have no fixed size).
    pub capacity_bytes: Option<u64>,
    /// Largest volume the store accepts.
    pub max_volume_bytes: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            cache_bytes: 64 << 20,
            max_dirty_bytes: 64 << 20,
            concurrency: 16,
            gc_grace: Duration::from_secs(3600),
            hold_ttl: crate::store::DEFAULT_HOLD_TTL,
            capacity_bytes: None,
            max_volume_bytes: 1 << 50,
        }
    }
}

/// Smallest and largest chunk sizes accepted.
pub const MIN_CHUNK: u32 = 4 << 10;
/// Largest chunk size accepted.
pub const MAX_CHUNK: u32 = 16 << 20;
/// Chunk size used when a StorageClass does not choose one (see docs/benchmarks.md).
pub const DEFAULT_CHUNK: u32 = 64 << 10;

/// Per-volume options a StorageClass can set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeOptions {
    /// Chunk size in bytes: a power of two between 4 KiB and 16 MiB.
    pub chunk_size: u32,
    /// Codec tried on each chunk.
    pub compression: Codec,
}

impl Default for VolumeOptions {
    fn default() -> Self {
        VolumeOptions {
            chunk_size: DEFAULT_CHUNK,
            // By measurement on a database-like image (docs/benchmarks.md): 16 % fewer
            // bytes stored than deflate-1 and a faster export, for the same import.
            compression: Codec::Zstd,
        }
    }
}

/// Prefix of keys the Kubernetes external-provisioner adds to parameters.
const KUBE_PREFIX: &str = "csi.storage.k8s.io/";

impl VolumeOptions {
    /// Parses StorageClass parameters: `chunkSize` (bytes, or with a `Ki`/`Mi` suffix) and
    /// `compression` (`zstd`, the default, `deflate` or `none`). Keys under `csi.storage.k8s.io/` are ignored.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming an unknown key or a bad value.
    pub fn from_params(params: &BTreeMap<String, String>) -> Result<Self> {
        let mut opts = VolumeOptions::default();
        for (k, v) in params {
            match k.as_str() {
                "chunkSize" => opts.chunk_size = parse_chunk_size(v)?,
                "compression" => {
                    opts.compression = match v.as_str() {
                        "deflate" => Codec::Deflate,
                        "zstd" => Codec::Zstd,
                        "none" => Codec::None,
                        _ => {
                            return Err(Error::InvalidArgument(format!(
                                "parameter compression must be deflate, zstd or none, not {v:?}"
                            )));
                        }
                    }
                }
                _ if k.starts_with(KUBE_PREFIX) => {}
                _ => {
                    return Err(Error::InvalidArgument(format!(
                        "unknown parameter {k:?}: ferry takes chunkSize and compression"
                    )));
                }
            }
        }
        Ok(opts)
    }
}

fn parse_chunk_size(v: &str) -> Result<u32> {
    let (num, mult) = if let Some(n) = v.strip_suffix("Ki") {
        (n, 1u64 << 10)
    } else if let Some(n) = v.strip_suffix("Mi") {
        (n, 1u64 << 20)
    } else {
        (v, 1)
    };
    let bad = || {
        Error::InvalidArgument(format!(
            "parameter chunkSize {v:?} must be a power of two from 4Ki to 16Mi"
        ))
    };
    let n: u64 = num.trim().parse().map_err(|_| bad())?;
    let size = n.checked_mul(mult).ok_or_else(bad)?;
    if !size.is_power_of_two() || size < MIN_CHUNK as u64 || size > MAX_CHUNK as u64 {
        return Err(bad());
    }
    Ok(size as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn store_config_from_params() {
        let c = StoreConfig::from_params(&map(&[
            ("backend", "s3"),
            ("bucket", "b"),
            ("endpoint", "http://127.0.0.1:1"),
            ("anonymous", "true"),
        ]))
        .unwrap();
        assert_eq!(c.backend, Backend::S3);
        assert_eq!(c.bucket.as_deref(), Some("b"));
        assert!(c.anonymous);
        let err = StoreConfig::from_params(&map(&[("buckit", "b")])).unwrap_err();
        assert!(err.to_string().contains("buckit"), "{err}");
        assert!(StoreConfig::from_params(&map(&[("backend", "tape")])).is_err());
    }

    #[test]
    fn validate_names_missing_field() {
        let c = StoreConfig {
            backend: Backend::S3,
            ..Default::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("bucket"));
        assert!(StoreConfig::memory().validate().is_ok());
    }

    #[test]
    fn volume_options() {
        let o = VolumeOptions::from_params(&map(&[("chunkSize", "256Ki")])).unwrap();
        assert_eq!(o.chunk_size, 256 << 10);
        let o = VolumeOptions::from_params(&map(&[
            ("chunkSize", "4096"),
            ("compression", "none"),
            ("csi.storage.k8s.io/pvc/name", "x"),
        ]))
        .unwrap();
        assert_eq!(o.chunk_size, 4096);
        assert_eq!(o.compression, Codec::None);
        for bad in ["3000", "1Ki", "32Mi", "abc"] {
            assert!(
                VolumeOptions::from_params(&map(&[("chunkSize", bad)])).is_err(),
                "{bad}"
            );
        }
        let err = VolumeOptions::from_params(&map(&[("chunksize", "4Ki")])).unwrap_err();
        assert!(err.to_string().contains("chunksize"));
    }
}
