//! Chunk-store flags shared by the subcommands; each has an environment variable.

use clap::Args;
use ferry_store::{Backend, StoreConfig, StoreOptions};
use std::path::PathBuf;
use std::time::Duration;

/// Where the chunk store lives.
#[derive(Args, Debug, Clone)]
pub struct StoreArgs {
    /// JSON file with the store settings (fields as the flags below, camelCase); flags given
    /// on the command line override it.
    #[arg(long, env = "FERRY_STORE_CONFIG")]
    pub store_config: Option<PathBuf>,
    /// fs, memory, s3, azblob or gcs.
    #[arg(long, env = "FERRY_STORE_BACKEND")]
    pub store_backend: Option<String>,
    /// Folder (fs) or key prefix (object stores).
    #[arg(long, env = "FERRY_STORE_ROOT")]
    pub store_root: Option<String>,
    /// Bucket (S3, GCS) or container (Azure).
    #[arg(long, env = "FERRY_STORE_BUCKET")]
    pub store_bucket: Option<String>,
    /// Service endpoint URL.
    #[arg(long, env = "FERRY_STORE_ENDPOINT")]
    pub store_endpoint: Option<String>,
    /// S3 region.
    #[arg(long, env = "FERRY_STORE_REGION")]
    pub store_region: Option<String>,
    /// S3 access key id.
    #[arg(long, env = "FERRY_STORE_ACCESS_KEY_ID", hide_env_values = true)]
    pub store_access_key_id: Option<String>,
    /// S3 secret access key.
    #[arg(long, env = "FERRY_STORE_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub store_secret_access_key: Option<String>,
    /// Azure account name.
    #[arg(long, env = "FERRY_STORE_ACCOUNT_NAME")]
    pub store_account_name: Option<String>,
    /// Azure account key.
    #[arg(long, env = "FERRY_STORE_ACCOUNT_KEY", hide_env_values = true)]
    pub store_account_key: Option<String>,
    /// Send unsigned requests (public buckets, emulators).
    #[arg(long, env = "FERRY_STORE_ANONYMOUS")]
    pub store_anonymous: bool,
    /// Seconds an unreferenced object is kept before GC may delete it.
    #[arg(long, env = "FERRY_GC_GRACE_SECS", default_value_t = 3600)]
    pub gc_grace_secs: u64,
    /// Memory for cached chunks and tree pages, MiB.
    #[arg(long, env = "FERRY_CACHE_MIB", default_value_t = 64)]
    pub cache_mib: usize,
    /// Capacity reported for object stores (bytes); default: unbounded.
    #[arg(long, env = "FERRY_CAPACITY_BYTES")]
    pub capacity_bytes: Option<u64>,
    /// Group that shares a local-folder store between the node (root) and the controllers
    /// (non-root): the folder is given to it with the set-group-id bit (see
    /// docs/node.md, "A folder store shared by the node and the controllers").
    #[arg(long, env = "FERRY_STORE_GROUP", default_value_t = ferry_node::store_folder::DEFAULT_GROUP)]
    pub store_group: u32,
}

impl StoreArgs {
    /// The store settings: the file, then the flags over it; a local folder by default.
    ///
    /// # Errors
    /// A message naming the bad file or value.
    pub fn config(&self) -> Result<StoreConfig, String> {
        let mut c = match &self.store_config {
            Some(p) => StoreConfig::from_file(p).map_err(|e| e.to_string())?,
            None => StoreConfig::fs("/var/lib/ferry/store"),
        };
        if let Some(b) = &self.store_backend {
            c.backend = b.parse::<Backend>().map_err(|e| e.to_string())?;
            if c.backend != Backend::Fs && self.store_config.is_none() {
                c.root = None;
            }
        }
        let set = |dst: &mut Option<String>, v: &Option<String>| {
            if v.is_some() {
                dst.clone_from(v);
            }
        };
        set(&mut c.root, &self.store_root);
        set(&mut c.bucket, &self.store_bucket);
        set(&mut c.endpoint, &self.store_endpoint);
        set(&mut c.region, &self.store_region);
        set(&mut c.access_key_id, &self.store_access_key_id);
        set(&mut c.secret_access_key, &self.store_secret_access_key);
        set(&mut c.account_name, &self.store_account_name);
        set(&mut c.account_key, &self.store_account_key);
        c.anonymous |= self.store_anonymous;
        c.validate().map_err(|e| e.to_string())?;
        if c.backend == Backend::Fs
            && let Some(root) = &c.root
            && let Err(e) =
                ferry_node::store_folder::prepare(std::path::Path::new(root), self.store_group)
        {
            // Opening the store says what is wrong with the folder, if anything is.
            tracing::warn!(folder = %root, error = %e, "cannot prepare the store folder for sharing");
        }
        Ok(c)
    }

    /// Store tuning from the flags.
    pub fn options(&self) -> StoreOptions {
        StoreOptions {
            gc_grace: Duration::from_secs(self.gc_grace_secs),
            capacity_bytes: self.capacity_bytes,
            cache_bytes: self.cache_mib.max(1) << 20,
            ..Default::default()
        }
    }
}
