//! Parquet snapshots of a run: what every log and every group looked like.
//!
//! Layout: `<warehouse>/snapshots/<id>/{analysis,average}/part-0.parquet` and
//! `manifest.json`; `<warehouse>/snapshots/latest` holds the newest id.
//! Guarantee: a snapshot appears whole or not at all. It is written under a
//! hidden staging name, renamed into place, and only then is `latest`
//! replaced (itself via a temporary file and a rename). A crash at any point
//! leaves the previous snapshot as latest.

use std::path::{Path, PathBuf};

use datafusion::arrow::array::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parquet: {0}")]
    Parquet(#[from] datafusion::parquet::errors::ParquetError),
    #[error("no snapshot {0}")]
    Missing(String),
}

pub type Result<T, E = SnapshotError> = std::result::Result<T, E>;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The snapshots folder of a warehouse.
pub fn root(warehouse: &Path) -> PathBuf {
    warehouse.join("snapshots")
}

/// A new, sortable snapshot id: UTC time plus a random suffix.
pub fn new_id() -> String {
    let (date, time) = utc_now_parts();
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..6];
    format!(
        "{}T{}Z-{suffix}",
        date.replace('-', ""),
        time.replace(':', "")
    )
}

/// Writes a complete snapshot and makes it the latest. `fail_before_rename`
/// exists for the crash test: it stops after staging, like a killed process.
pub fn write(
    warehouse: &Path,
    id: &str,
    analysis: &RecordBatch,
    average: &RecordBatch,
    manifest: &Value,
    fail_before_rename: bool,
) -> Result<PathBuf> {
    let root = root(warehouse);
    let staged = root.join(format!(".staging-{id}"));
    let target = root.join(id);
    for (name, batch) in [("analysis", analysis), ("average", average)] {
        let dir = staged.join(name);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        write_parquet(&dir.join("part-0.parquet"), batch)?;
    }
    let manifest_path = staged.join("manifest.json");
    let text = serde_json::to_string_pretty(manifest).unwrap_or_default();
    std::fs::write(&manifest_path, text).map_err(io(&manifest_path))?;
    sync_dir(&staged);
    if fail_before_rename {
        return Err(SnapshotError::Io {
            path: staged,
            source: std::io::Error::other("stopped before the rename (crash simulation)"),
        });
    }
    std::fs::rename(&staged, &target).map_err(io(&target))?;
    sync_dir(&root);
    set_latest(warehouse, id)?;
    Ok(target)
}

fn write_parquet(path: &Path, batch: &RecordBatch) -> Result<()> {
    let file = std::fs::File::create(path).map_err(io(path))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let mut writer = ArrowWriter::try_new(file, batch.schema(), Some(props))?;
    writer.write(batch)?;
    let file = writer.into_inner()?;
    file.sync_all().map_err(io(path))?;
    Ok(())
}

fn set_latest(warehouse: &Path, id: &str) -> Result<()> {
    let root = root(warehouse);
    let tmp = root.join(".latest.tmp");
    std::fs::write(&tmp, format!("{id}\n")).map_err(io(&tmp))?;
    let latest = root.join("latest");
    std::fs::rename(&tmp, &latest).map_err(io(&latest))?;
    sync_dir(&root);
    Ok(())
}

fn sync_dir(dir: &Path) {
    // Best effort: makes renames durable where the platform supports it.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// The id in `latest`, if any.
pub fn latest(warehouse: &Path) -> Option<String> {
    let text = std::fs::read_to_string(root(warehouse).join("latest")).ok()?;
    let id = text.trim().to_string();
    (!id.is_empty()).then_some(id)
}

/// Complete snapshots, oldest first (staging leftovers are not snapshots).
pub fn list(warehouse: &Path) -> Result<Vec<String>> {
    let root = root(warehouse);
    let Ok(entries) = std::fs::read_dir(&root) else {
        return Ok(Vec::new());
    };
    let mut ids: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("manifest.json").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| !name.starts_with('.'))
        .collect();
    ids.sort();
    Ok(ids)
}

/// The folder of snapshot `id`, or of the latest one.
pub fn resolve(warehouse: &Path, id: Option<&str>) -> Result<PathBuf> {
    let id = match id {
        Some(id) => id.to_string(),
        None => latest(warehouse)
            .ok_or_else(|| SnapshotError::Missing("(no latest yet: run the job first)".into()))?,
    };
    let dir = root(warehouse).join(&id);
    if dir.join("manifest.json").is_file() && !id.contains('/') && !id.starts_with('.') {
        Ok(dir)
    } else {
        Err(SnapshotError::Missing(id))
    }
}

/// Deletes all but the newest `keep` snapshots (never the latest) and any
/// staging leftovers; returns the ids removed.
pub fn prune(warehouse: &Path, keep: usize) -> Result<Vec<String>> {
    let root = root(warehouse);
    let latest = latest(warehouse);
    let ids = list(warehouse)?;
    let cut = ids.len().saturating_sub(keep.max(1));
    let mut removed = Vec::new();
    for id in ids.into_iter().take(cut) {
        if Some(&id) == latest.as_ref() {
            continue;
        }
        let dir = root.join(&id);
        std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
        removed.push(id);
    }
    if let Ok(entries) = std::fs::read_dir(&root) {
        for e in entries.filter_map(|e| e.ok()) {
            if e.file_name().to_string_lossy().starts_with(".staging-") {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    Ok(removed)
}

/// Today's UTC date and time as (`YYYY-MM-DD`, `HH:MM:SS`).
pub fn utc_now_parts() -> (String, String) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = crate::civil::civil_from_days(days);
    (
        format!("{y:04}-{m:02}-{d:02}"),
        format!("{:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60),
    )
}

/// UTC now as RFC 3339, for manifests and outboxes.
pub fn utc_now() -> String {
    let (date, time) = utc_now_parts();
    format!("{date}T{time}Z")
}
