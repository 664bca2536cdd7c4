//! The log volume: where each upload is stored as `<analysis-id>.csv`.
//!
//! A local folder (also a shared filesystem mounted on every machine), or an
//! object store URL through the `object_store` crate: `file:///abs/path`,
//! `s3://bucket/prefix` (credentials and region from the usual `AWS_*`
//! environment variables), `memory://` (in-process, for tests). The engine
//! reads logs through the same store, so executors of a cluster reach them
//! the same way.
//!
//! Guarantees: only regular files count as logs (no FIFO, device or symlink
//! to one); a log is written whole or not at all.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::execution::object_store::ObjectStoreUrl;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

/// Object store puts in flight at once; local writes too, as file syncs
/// that overlap wait on the disk together (measured: a third faster than
/// one at a time).
pub const PUT_CONCURRENCY: usize = 8;

/// Errors reaching the volume.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("volume {volume}: {message}")]
    Invalid { volume: String, message: String },
    #[error("volume {volume}: {source}")]
    Store {
        volume: String,
        source: object_store::Error,
    },
    #[error("volume {volume}: {source}")]
    Io {
        volume: String,
        source: std::io::Error,
    },
}

/// A log file on the volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeFile {
    /// The file name without `.csv`: the analysis id.
    pub id: String,
    pub bytes: u64,
}

/// Where the logs are.
#[derive(Debug, Clone)]
pub struct Volume {
    /// As the user gave it, for messages.
    spec: String,
    url: ObjectStoreUrl,
    store: Arc<dyn ObjectStore>,
    prefix: StorePath,
    /// The folder, when the volume is local.
    local: Option<PathBuf>,
}

impl Volume {
    /// A local folder (made absolute).
    pub fn local(dir: &Path) -> Result<Self, VolumeError> {
        let spec = dir.display().to_string();
        let absolute = absolute(dir).map_err(|source| VolumeError::Io {
            volume: spec.clone(),
            source,
        })?;
        let prefix =
            StorePath::from_absolute_path(&absolute).map_err(|e| VolumeError::Invalid {
                volume: spec.clone(),
                message: e.to_string(),
            })?;
        Ok(Self {
            spec,
            url: ObjectStoreUrl::local_filesystem(),
            store: Arc::new(object_store::local::LocalFileSystem::new()),
            prefix,
            local: Some(absolute),
        })
    }

    /// A folder path or an object store URL.
    pub fn parse(spec: &str) -> Result<Self, VolumeError> {
        let invalid = |message: String| VolumeError::Invalid {
            volume: spec.to_string(),
            message,
        };
        let Some((scheme, rest)) = spec.split_once("://") else {
            return Self::local(Path::new(spec));
        };
        match scheme {
            "file" => {
                if !rest.starts_with('/') {
                    return Err(invalid(
                        "a file:// URL needs an absolute path (file:///data/logs)".into(),
                    ));
                }
                let mut volume = Self::local(Path::new(rest))?;
                volume.spec = spec.to_string();
                Ok(volume)
            }
            "s3" => {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.is_empty() {
                    return Err(invalid(
                        "an s3:// URL needs a bucket (s3://bucket/prefix)".into(),
                    ));
                }
                let store = object_store::aws::AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .build()
                    .map_err(|e| invalid(e.to_string()))?;
                Ok(Self {
                    spec: spec.to_string(),
                    url: ObjectStoreUrl::parse(format!("s3://{bucket}"))
                        .map_err(|e| invalid(e.to_string()))?,
                    store: Arc::new(store),
                    prefix: StorePath::from(prefix),
                    local: None,
                })
            }
            "memory" => Ok(Self::in_memory(Arc::new(
                object_store::memory::InMemory::new(),
            ))),
            other => Err(invalid(format!(
                "unknown scheme {other}:// (use a folder, file://, s3:// or memory://)"
            ))),
        }
    }

    /// A volume in an in-memory store (tests; one process only).
    pub fn in_memory(store: Arc<dyn ObjectStore>) -> Self {
        Self {
            spec: "memory://".into(),
            url: ObjectStoreUrl::parse("memory://").expect("a valid URL"), // ok: a constant
            store,
            prefix: StorePath::default(),
            local: None,
        }
    }

    /// The store's URL, under which the engine finds it.
    pub fn url(&self) -> &ObjectStoreUrl {
        &self.url
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The local folder, if the volume is one.
    pub fn local_dir(&self) -> Option<&Path> {
        self.local.as_deref()
    }

    /// Whether the engine needs this store registered (not the local file system).
    pub fn is_remote(&self) -> bool {
        self.local.is_none()
    }

    /// Where the log of analysis `id` is.
    pub fn location(&self, id: &str) -> StorePath {
        self.prefix.clone().join(format!("{id}.csv"))
    }

    /// The local path of the log of analysis `id`, for a local volume.
    pub fn local_path(&self, id: &str) -> Option<PathBuf> {
        self.local.as_ref().map(|dir| dir.join(format!("{id}.csv")))
    }

    /// Every `<id>.csv` log of the volume (hidden names and special files
    /// excluded), sorted by id.
    pub async fn list(&self) -> Result<Vec<VolumeFile>, VolumeError> {
        let mut files = match &self.local {
            Some(dir) => {
                let dir = dir.clone();
                let volume = self.spec.clone();
                tokio::task::spawn_blocking(move || list_local(&dir))
                    .await
                    .map_err(|e| VolumeError::Io {
                        volume: volume.clone(),
                        source: std::io::Error::other(e),
                    })?
                    .map_err(|source| VolumeError::Io { volume, source })?
            }
            None => {
                let listed: Vec<object_store::ObjectMeta> = self
                    .store
                    .list(Some(&self.prefix))
                    .try_collect()
                    .await
                    .map_err(|source| VolumeError::Store {
                        volume: self.spec.clone(),
                        source,
                    })?;
                listed
                    .into_iter()
                    .filter_map(|meta| {
                        let name = meta.location.filename()?;
                        let id = log_id(name)?;
                        // A store lists every level below the prefix: a
                        // copy in a subfolder is not the log.
                        (meta.location == self.location(id)).then(|| VolumeFile {
                            id: id.to_string(),
                            bytes: meta.size,
                        })
                    })
                    .collect()
            }
        };
        files.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(files)
    }

    /// Whether the log of analysis `id` is on the volume.
    pub async fn has(&self, id: &str) -> Result<bool, VolumeError> {
        match self.store.head(&self.location(id)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(source) => Err(VolumeError::Store {
                volume: self.spec.clone(),
                source,
            }),
        }
    }

    /// Stores the log of analysis `id`, whole or not at all.
    pub async fn put(&self, id: &str, bytes: bytes::Bytes) -> Result<(), VolumeError> {
        self.put_all(vec![(id.to_string(), bytes)]).await
    }

    /// Stores the logs of these analyses, each whole or not at all, at most
    /// [`PUT_CONCURRENCY`] at a time. On a local volume each file is synced
    /// and renamed into place, then the folder is synced once for them all:
    /// when this returns, every one of them is durable.
    pub async fn put_all(&self, logs: Vec<(String, bytes::Bytes)>) -> Result<(), VolumeError> {
        if logs.is_empty() {
            return Ok(());
        }
        futures::stream::iter(logs)
            .map(|(id, bytes)| self.put_one(id, bytes))
            .buffer_unordered(PUT_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        if let Some(dir) = &self.local {
            let dir = dir.clone();
            self.blocking(move || {
                sync_dir(&dir);
                Ok(())
            })
            .await?;
        }
        Ok(())
    }

    /// Stores one log; on a local volume its folder is not synced.
    async fn put_one(&self, id: String, bytes: bytes::Bytes) -> Result<(), VolumeError> {
        match &self.local {
            Some(dir) => {
                let dir = dir.clone();
                self.blocking(move || put_local(&dir, &id, &bytes)).await
            }
            None => self
                .store
                .put(&self.location(&id), PutPayload::from(bytes))
                .await
                .map(|_| ())
                .map_err(|source| VolumeError::Store {
                    volume: self.spec.clone(),
                    source,
                }),
        }
    }

    /// Runs file system work off the async threads.
    async fn blocking(
        &self,
        work: impl FnOnce() -> std::io::Result<()> + Send + 'static,
    ) -> Result<(), VolumeError> {
        let io = |source| VolumeError::Io {
            volume: self.spec.clone(),
            source,
        };
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| io(std::io::Error::other(e)))?
            .map_err(io)
    }

    /// Removes the log of analysis `id` (an ingest that lost a race).
    pub async fn delete(&self, id: &str) -> Result<(), VolumeError> {
        self.store
            .delete(&self.location(id))
            .await
            .map_err(|source| VolumeError::Store {
                volume: self.spec.clone(),
                source,
            })
    }
}

impl std::fmt::Display for Volume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.spec)
    }
}

/// `path` made absolute, with `.` and `..` resolved by name (object store
/// locations refuse them; the path need not exist).
pub fn absolute(path: &Path) -> std::io::Result<PathBuf> {
    use std::path::Component;
    let mut out = PathBuf::new();
    for part in std::path::absolute(path)?.components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    Ok(out)
}

/// The analysis id of a log file name: `<id>.csv`, not hidden.
fn log_id(name: &str) -> Option<&str> {
    let id = name.strip_suffix(".csv")?;
    (!id.is_empty() && !id.starts_with('.')).then_some(id)
}

fn list_local(dir: &Path) -> std::io::Result<Vec<VolumeFile>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(id) = name.to_str().and_then(log_id) else {
            continue;
        };
        // `metadata` follows symlinks: a link to a device or FIFO is no log.
        match std::fs::metadata(entry.path()) {
            Ok(meta) if meta.is_file() => files.push(VolumeFile {
                id: id.to_string(),
                bytes: meta.len(),
            }),
            _ => continue,
        }
    }
    Ok(files)
}

fn put_local(dir: &Path, id: &str, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let target = dir.join(format!("{id}.csv"));
    let staged = dir.join(format!(".{id}.csv.part"));
    let written = write_synced(&staged, bytes).and_then(|()| std::fs::rename(&staged, &target));
    if written.is_err() {
        // A disk that filled up mid-write keeps no half log behind.
        let _ = std::fs::remove_file(&staged);
    }
    written
}

/// Opens a file for reading without ever blocking on a FIFO (a path may be
/// swapped for one after it was listed); the caller checks what it opened.
pub fn open_nonblocking(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
}

/// Writes `bytes` to a new file at `path` and syncs it. A rename publishes
/// a file: without the sync, the rename can reach the disk before the
/// contents do, and a crash leaves an empty file under the final name.
pub fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = std::fs::File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Makes the renames in `dir` durable (the volume's logs, the snapshots,
/// the outbox). Best effort, as some file systems refuse to sync a folder.
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_csv_logs_with_an_id_count() {
        assert_eq!(log_id("abc.csv"), Some("abc"));
        assert_eq!(log_id(".abc.csv.part"), None);
        assert_eq!(log_id(".hidden.csv"), None);
        assert_eq!(log_id("abc.CSV"), None);
        assert_eq!(log_id(".csv"), None);
    }

    #[test]
    fn urls_and_paths_parse() {
        let local = Volume::parse("/data/logs").expect("path");
        assert_eq!(local.location("x").as_ref(), "data/logs/x.csv");
        let file = Volume::parse("file:///data/logs").expect("file url");
        assert_eq!(file.local_dir(), Some(Path::new("/data/logs")));
        assert!(Volume::parse("file://relative").is_err());
        assert!(Volume::parse("ftp://x").is_err());
        assert!(Volume::parse("memory://").expect("memory").is_remote());
    }

    #[tokio::test]
    async fn a_store_lists_only_the_logs_at_its_top_level() {
        let volume = Volume::parse("memory://").expect("memory");
        volume
            .put("top", bytes::Bytes::from_static(b"a"))
            .await
            .unwrap();
        let archived = StorePath::from("archive/old.csv");
        volume
            .store()
            .put(&archived, bytes::Bytes::from_static(b"b").into())
            .await
            .unwrap();
        let ids: Vec<String> = volume
            .list()
            .await
            .unwrap()
            .into_iter()
            .map(|f| f.id)
            .collect();
        assert_eq!(ids, ["top"]);
    }
}
