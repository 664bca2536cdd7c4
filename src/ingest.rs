//! The upload path of the embedded default: logs (or zips of logs) into the
//! volume and the catalog, as the backend does for real uploads.
//!
//! Guarantees: the same bytes for the same user are the same analysis (no
//! duplicate); a zip holding anything but `.csv` files is refused whole,
//! before anything is written; zip entry names never become paths; size
//! limits stop zip bombs. A log is copied to the volume before its catalog
//! row exists, so a catalog row never points at a missing file.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::catalog::{Catalog, CatalogError};

/// The largest log accepted, packed or not.
pub const MAX_LOG_BYTES: u64 = 256 * 1024 * 1024;
/// The most a zip may unpack to in total, and the most entries it may hold.
pub const MAX_ZIP_TOTAL: u64 = 2 * 1024 * 1024 * 1024;
pub const MAX_ZIP_ENTRIES: usize = 10_000;
/// The largest unpacked/packed ratio believed for one entry.
pub const MAX_ZIP_RATIO: u64 = 200;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: refused: {reason}")]
    Refused { path: PathBuf, reason: String },
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

/// One log that went in: its analysis id, the name the user gave it, and
/// whether it was new.
#[derive(Debug, Clone)]
pub struct Ingested {
    pub analysis_id: String,
    pub file_name: String,
    pub created: bool,
}

/// Ingests `files` for the user `email` into `volume` and `catalog`.
pub async fn ingest(
    catalog: &Catalog,
    volume: &Path,
    email: &str,
    files: &[PathBuf],
) -> Result<Vec<Ingested>, IngestError> {
    // Read and check everything first: a refused file writes nothing.
    let mut logs: Vec<(String, Vec<u8>)> = Vec::new();
    for path in files {
        logs.extend(read_upload(path)?);
    }
    std::fs::create_dir_all(volume).map_err(|source| IngestError::Io {
        path: volume.to_path_buf(),
        source,
    })?;
    let user_id = catalog.user_for_email(email).await?;
    let mut out = Vec::new();
    for (file_name, bytes) in logs {
        let sha = crate::sql::hex(&Sha256::digest(&bytes));
        if let Some(id) = catalog.analysis_by_sha(&user_id, &sha).await? {
            out.push(Ingested {
                analysis_id: id,
                file_name,
                created: false,
            });
            continue;
        }
        let id = uuid::Uuid::new_v4().to_string();
        let target = volume.join(format!("{id}.csv"));
        let staged = volume.join(format!(".{id}.csv.part"));
        let written = std::fs::File::create(&staged).and_then(|mut f| {
            use std::io::Write;
            f.write_all(&bytes)?;
            f.sync_all()
        });
        written
            .and_then(|()| std::fs::rename(&staged, &target))
            .map_err(|source| IngestError::Io {
                path: target.clone(),
                source,
            })?;
        crate::deliver::sync_dir(volume);
        catalog
            .insert_analysis(&id, &user_id, &file_name, &sha)
            .await?;
        out.push(Ingested {
            analysis_id: id,
            file_name,
            created: true,
        });
    }
    Ok(out)
}

/// The logs in one uploaded file: itself (`.csv`) or the `.csv` entries of a zip.
fn read_upload(path: &Path) -> Result<Vec<(String, Vec<u8>)>, IngestError> {
    let refused = |reason: String| IngestError::Refused {
        path: path.to_path_buf(),
        reason,
    };
    let io = |source| IngestError::Io {
        path: path.to_path_buf(),
        source,
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let lower = name.to_lowercase();
    let size = std::fs::metadata(path).map_err(io)?.len();
    if size > MAX_LOG_BYTES {
        return Err(refused(format!("larger than {MAX_LOG_BYTES} bytes")));
    }
    if lower.ends_with(".csv") {
        return Ok(vec![(name, std::fs::read(path).map_err(io)?)]);
    }
    if !lower.ends_with(".zip") {
        return Err(refused(
            "only .csv logs or .zip files of .csv logs are accepted".into(),
        ));
    }
    let file = std::fs::File::open(path).map_err(io)?;
    let mut archive =
        zip::ZipArchive::new(file).map_err(|e| refused(format!("not a readable zip: {e}")))?;
    if archive.len() > MAX_ZIP_ENTRIES {
        return Err(refused(format!("more than {MAX_ZIP_ENTRIES} entries")));
    }
    let mut logs = Vec::new();
    let mut total = 0u64;
    for index in 0..archive.len() {
        let entry = archive
            .by_index(index)
            .map_err(|e| refused(format!("entry {index} unreadable: {e}")))?;
        if entry.is_dir() {
            continue;
        }
        // Only the entry's base name is kept, and only as a label.
        let entry_name = entry
            .name()
            .rsplit(['/', '\\'])
            .next()
            .unwrap_or_default()
            .to_string();
        if !entry_name.to_lowercase().ends_with(".csv") {
            return Err(refused(format!(
                "it holds {:?}, which is not a .csv log",
                entry.name()
            )));
        }
        let declared = entry.size();
        let packed = entry.compressed_size().max(1);
        if declared > MAX_LOG_BYTES || declared / packed > MAX_ZIP_RATIO {
            return Err(refused(format!(
                "entry {:?} unpacks suspiciously large",
                entry.name()
            )));
        }
        let mut bytes = Vec::new();
        // Never trust the declared size: read at most one byte past the limit.
        entry
            .take(MAX_LOG_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| refused(format!("entry {index} unreadable: {e}")))?;
        total += bytes.len() as u64;
        if bytes.len() as u64 > MAX_LOG_BYTES || total > MAX_ZIP_TOTAL {
            return Err(refused("it unpacks to more than the allowed size".into()));
        }
        logs.push((entry_name, bytes));
    }
    if logs.is_empty() {
        return Err(refused("the zip holds no .csv log".into()));
    }
    Ok(logs)
}
