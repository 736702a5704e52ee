//! The opendal adapter: every byte the store reads or writes passes through [`Objects`].
//!
//! Two write primitives carry the store's invariants:
//! - [`Objects::put`] makes an object appear whole or not at all. Object stores do that for
//!   every PUT; on a local folder it writes a temporary file and renames it into place.
//! - [`Objects::put_if_absent`] is the compare-and-swap: create-if-absent, so two writers can
//!   never both win. On a folder it is an `O_EXCL` create.

use crate::config::{Backend, StoreConfig};
use crate::error::{Error, Result};
use crate::local;
use futures::{StreamExt, TryStreamExt};
use opendal::layers::{ConcurrentLimitLayer, RetryLayer, TimeoutLayer};
use opendal::{ErrorKind, Operator};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// Metadata of one stored object.
#[derive(Clone, Debug)]
pub struct ObjectMeta {
    /// Path inside the store.
    pub path: String,
    /// Stored size.
    pub size: u64,
    /// Last write time, when the backend reports one.
    pub modified: Option<SystemTime>,
}

/// Requests made through one [`Objects`] (and its clones) so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Requests {
    /// Objects written (whole-object writes, create-if-absent, a folder's journal appends).
    pub writes: u64,
    /// Reads, whole or ranged.
    pub reads: u64,
    /// Metadata look-ups.
    pub stats: u64,
    /// Listings.
    pub lists: u64,
    /// Deletions.
    pub deletes: u64,
}

#[derive(Debug, Default)]
struct Counters {
    writes: AtomicU64,
    reads: AtomicU64,
    stats: AtomicU64,
    lists: AtomicU64,
    deletes: AtomicU64,
}

fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// Access to the store's objects through one opendal `Operator`.
#[derive(Clone, Debug)]
pub struct Objects {
    counters: Arc<Counters>,
    op: Operator,
    /// The same operator without the retry layer, for create-if-absent: a retried
    /// conditional write cannot tell its own earlier attempt from another writer's.
    op_once: Operator,
    backend: Backend,
    fs_root: Option<std::path::PathBuf>,
}

impl Objects {
    /// Builds the operator for `config`, with retries of temporary errors, timeouts and a
    /// bound on concurrent requests.
    ///
    /// # Errors
    /// [`Error::Config`] when the configuration is incomplete or opendal rejects it.
    pub fn open(config: &StoreConfig, concurrency: usize) -> Result<Self> {
        config.validate()?;
        // The HTTP client the object-store services use; installing twice is harmless.
        opendal::install_default();
        let cfg_err = |e: opendal::Error| {
            Error::Config(crate::store_problem(&format!(
                "{:?} store: {e}",
                config.backend
            )))
        };
        let root = config.root.clone().unwrap_or_default();
        let op = match config.backend {
            Backend::Fs => {
                std::fs::create_dir_all(&root)
                    .map_err(|e| Error::Config(format!("creating store folder {root}: {e}")))?;
                Operator::new(opendal::services::Fs::default().root(&root)).map_err(cfg_err)?
            }
            Backend::Memory => {
                Operator::new(opendal::services::Memory::default()).map_err(cfg_err)?
            }
            Backend::S3 => {
                let mut b = opendal::services::S3::default()
                    .bucket(config.bucket.as_deref().unwrap_or_default())
                    .root(&root)
                    .region(config.region.as_deref().unwrap_or("us-east-1"))
                    .disable_config_load()
                    .disable_ec2_metadata();
                if let Some(e) = &config.endpoint {
                    b = b.endpoint(e);
                }
                if let Some(k) = &config.access_key_id {
                    b = b.access_key_id(k);
                }
                if let Some(k) = &config.secret_access_key {
                    b = b.secret_access_key(k);
                }
                if config.anonymous {
                    b = b.skip_signature();
                }
                Operator::new(b).map_err(cfg_err)?
            }
            Backend::Azblob => {
                let mut b = opendal::services::Azblob::default()
                    .container(config.bucket.as_deref().unwrap_or_default())
                    .root(&root)
                    .endpoint(config.endpoint.as_deref().unwrap_or_default());
                if let Some(a) = &config.account_name {
                    b = b.account_name(a);
                }
                if let Some(k) = &config.account_key {
                    b = b.account_key(k);
                }
                Operator::new(b).map_err(cfg_err)?
            }
            Backend::Gcs => {
                let mut b = opendal::services::Gcs::default()
                    .bucket(config.bucket.as_deref().unwrap_or_default())
                    .root(&root)
                    .disable_config_load()
                    .disable_vm_metadata();
                if let Some(e) = &config.endpoint {
                    b = b.endpoint(e);
                }
                if let Some(c) = &config.credential {
                    b = b.credential(c);
                }
                if config.anonymous {
                    b = b.skip_signature();
                }
                Operator::new(b).map_err(cfg_err)?
            }
        };
        let op = op
            .layer(ConcurrentLimitLayer::new(concurrency.max(1) * 4))
            .layer(
                TimeoutLayer::new()
                    .with_timeout(Duration::from_secs(120))
                    .with_io_timeout(Duration::from_secs(30)),
            );
        let op_once = op.clone();
        let op = op.layer(
            RetryLayer::new()
                .with_max_times(4)
                .with_min_delay(Duration::from_millis(50))
                .with_max_delay(Duration::from_secs(2))
                .with_jitter(),
        );
        let fs_root = (config.backend == Backend::Fs).then(|| std::path::PathBuf::from(root));
        Ok(Objects {
            counters: Arc::default(),
            op,
            op_once,
            backend: config.backend,
            fs_root,
        })
    }

    /// Requests made so far by this handle and its clones: what a store costs on a service
    /// that charges per request (tests and benchmarks count them).
    pub fn requests(&self) -> Requests {
        let c = &self.counters;
        Requests {
            writes: c.writes.load(Ordering::Relaxed),
            reads: c.reads.load(Ordering::Relaxed),
            stats: c.stats.load(Ordering::Relaxed),
            lists: c.lists.load(Ordering::Relaxed),
            deletes: c.deletes.load(Ordering::Relaxed),
        }
    }

    /// Counts a write made beside this layer (a local folder's journal append).
    pub(crate) fn count_write(&self) {
        bump(&self.counters.writes, 1);
    }

    /// The backend kind.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The local folder of an `fs` store.
    pub fn fs_root(&self) -> Option<&std::path::Path> {
        self.fs_root.as_deref()
    }

    /// Reads a whole object; `None` when it does not exist.
    ///
    /// # Errors
    /// Backend failures, classified.
    pub async fn get(&self, path: &str) -> Result<Option<Vec<u8>>> {
        bump(&self.counters.reads, 1);
        if let Some(root) = &self.fs_root {
            let file = local::join(root, path);
            return local::blocking(move || local::read(&file)).await;
        }
        match self.op.read(path).await {
            Ok(buf) => Ok(Some(buf.to_vec())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::backend("read", path, e)),
        }
    }

    /// Reads `len` bytes at `offset` of an object; `None` when it does not exist.
    ///
    /// # Errors
    /// Backend failures, classified; a range past the end is [`Error::Corrupt`].
    pub async fn get_range(&self, path: &str, offset: u64, len: u64) -> Result<Option<Vec<u8>>> {
        bump(&self.counters.reads, 1);
        if let Some(root) = &self.fs_root {
            let file = local::join(root, path);
            return local::blocking(move || local::read_range(&file, offset, len)).await;
        }
        match self.op.read_with(path).range(offset..offset + len).await {
            Ok(buf) if buf.len() as u64 == len => Ok(Some(buf.to_vec())),
            Ok(buf) => Err(Error::Corrupt {
                path: path.to_string(),
                reason: format!("{} bytes at {offset} asked, {} there", len, buf.len()),
            }),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::backend("read", path, e)),
        }
    }

    /// Writes a whole object so that readers see all of it or none of it.
    ///
    /// # Errors
    /// Backend failures, classified ([`Error::StoreFull`] when out of space).
    pub async fn put(&self, path: &str, data: Vec<u8>) -> Result<()> {
        bump(&self.counters.writes, 1);
        if let Some(root) = &self.fs_root {
            let file = local::join(root, path);
            let tmp = local::join(root, &format!("tmp/{}", uuid::Uuid::new_v4().simple()));
            return local::blocking(move || local::put(&file, &tmp, &data)).await;
        }
        self.write_once(path, data, false).await.map(|_| ())
    }

    /// Writes several whole objects, each seen whole or not at all, all durable on return.
    /// A local folder syncs its filesystem twice for the lot instead of once per object;
    /// other services upload them side by side.
    ///
    /// # Errors
    /// The first backend failure, classified; objects written before it stay.
    pub async fn put_many(&self, items: Vec<(String, Vec<u8>)>) -> Result<()> {
        if let Some(root) = &self.fs_root {
            bump(&self.counters.writes, items.len() as u64);
            let root = root.clone();
            let files = items
                .into_iter()
                .map(|(p, d)| (local::join(&root, &p), d))
                .collect();
            return local::blocking(move || local::put_batch(&root, files)).await;
        }
        futures::stream::iter(items)
            .map(|(p, d)| async move { self.put(&p, d).await })
            .buffer_unordered(16)
            .try_collect::<()>()
            .await
    }

    /// Creates an object only if none exists at `path`. Returns `true` when this call created
    /// it and `false` when something was already there.
    ///
    /// # Errors
    /// Backend failures, classified.
    pub async fn put_if_absent(&self, path: &str, data: Vec<u8>) -> Result<bool> {
        bump(&self.counters.writes, 1);
        if let Some(root) = &self.fs_root {
            let file = local::join(root, path);
            return local::blocking(move || local::create_new(&file, &data)).await;
        }
        match self.write_once(path, data, true).await {
            Ok(created) => Ok(created),
            // Services answer a lost race in different words (412, 409, EEXIST). A refusal
            // that is not temporary, with the object now present, is a lost race.
            Err(Error::Internal(_) | Error::Config(_)) if self.exists(path).await? => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Writes `data`; returns `false` when `if_not_exists` was asked and the object existed.
    async fn write_once(&self, path: &str, data: Vec<u8>, if_not_exists: bool) -> Result<bool> {
        let len = data.len();
        let op = if if_not_exists {
            &self.op_once
        } else {
            &self.op
        };
        let mut w = op.write_with(path, data).if_not_exists(if_not_exists);
        if self.backend == Backend::Gcs && !if_not_exists {
            // One request per object: the GCS emulator rejects multi-part uploads. (A
            // conditional write goes as a resumable upload, where the condition holds.)
            w = w.chunk(len.max(1));
        }
        match w.await {
            Ok(_) => Ok(true),
            Err(e)
                if if_not_exists
                    && matches!(
                        e.kind(),
                        ErrorKind::ConditionNotMatch | ErrorKind::AlreadyExists
                    ) =>
            {
                Ok(false)
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                let mut text = crate::store_problem(&format!("write {path}: {e}"));
                if !text.contains(crate::problem::MISSING_BUCKET) {
                    text.push_str(crate::problem::BUCKET_QUESTION);
                }
                Err(Error::Unavailable(text))
            }
            Err(e) => Err(Error::backend("write", path, e)),
        }
    }

    /// Metadata of an object; `None` when it does not exist.
    ///
    /// # Errors
    /// Backend failures, classified.
    pub async fn stat(&self, path: &str) -> Result<Option<ObjectMeta>> {
        bump(&self.counters.stats, 1);
        if let Some(root) = &self.fs_root {
            let file = local::join(root, path);
            let path = path.to_string();
            return local::blocking(move || local::stat(&file, &path)).await;
        }
        match self.op.stat(path).await {
            Ok(m) => Ok(Some(ObjectMeta {
                path: path.to_string(),
                size: m.content_length(),
                modified: m.last_modified().map(SystemTime::from),
            })),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::backend("stat", path, e)),
        }
    }

    /// True when the object at `path` was last written more than `age` ago (or does not
    /// exist). A create-if-absent object that does not parse is torn only when it is old:
    /// a young one may still be being written by a concurrent writer.
    ///
    /// # Errors
    /// Backend failures, classified.
    pub async fn older_than(&self, path: &str, age: Duration) -> Result<bool> {
        Ok(match self.stat(path).await? {
            None => true,
            Some(m) => m
                .modified
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .is_some_and(|a| a > age),
        })
    }

    /// True when an object exists at `path`.
    ///
    /// # Errors
    /// Backend failures, classified.
    pub async fn exists(&self, path: &str) -> Result<bool> {
        Ok(self.stat(path).await?.is_some())
    }

    /// Deletes an object; deleting what is not there succeeds.
    ///
    /// # Errors
    /// Backend failures, classified.
    pub async fn delete(&self, path: &str) -> Result<()> {
        bump(&self.counters.deletes, 1);
        if let Some(root) = &self.fs_root {
            let file = local::join(root, path);
            return local::blocking(move || local::delete(&file)).await;
        }
        match self.op.delete(path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::backend("delete", path, e)),
        }
    }

    /// Lists the objects below `dir` (which ends with `/`), recursively, files only.
    ///
    /// # Errors
    /// Backend failures, classified.
    pub async fn list(&self, dir: &str) -> Result<Vec<ObjectMeta>> {
        bump(&self.counters.lists, 1);
        let entries = match self.op.list_with(dir).recursive(true).await {
            Ok(v) => v,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::backend("list", dir, e)),
        };
        Ok(entries
            .into_iter()
            .filter(|e| e.metadata().is_file())
            .map(|e| {
                let m = e.metadata();
                ObjectMeta {
                    path: e.path().to_string(),
                    size: m.content_length(),
                    modified: m.last_modified().map(SystemTime::from),
                }
            })
            .collect())
    }

    /// Lists the names directly below `dir` (which ends with `/`): files and sub-folders,
    /// each without the `dir` prefix and without a trailing `/`, sorted.
    ///
    /// # Errors
    /// Backend failures, classified.
    pub async fn list_names(&self, dir: &str) -> Result<Vec<String>> {
        bump(&self.counters.lists, 1);
        if let Some(root) = &self.fs_root {
            let folder = local::join(root, dir);
            return local::blocking(move || local::names(&folder)).await;
        }
        let entries = match self.op.list(dir).await {
            Ok(v) => v,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::backend("list", dir, e)),
        };
        let mut names: Vec<String> = entries
            .iter()
            .filter_map(|e| {
                let p = e.path().strip_prefix(dir)?.trim_end_matches('/');
                (!p.is_empty()).then(|| p.to_string())
            })
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// Bytes free for the store: the folder's filesystem for `fs`, `None` otherwise.
    pub fn fs_available_bytes(&self) -> Option<u64> {
        let st = rustix::fs::statvfs(self.fs_root.as_ref()?).ok()?;
        Some(st.f_bavail.saturating_mul(st.f_frsize))
    }
}
