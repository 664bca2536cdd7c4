//! The upload path of the embedded default: logs (or zips of logs) into the
//! volume and the catalog, as the backend does for real uploads.
//!
//! Guarantees:
//! - the same bytes for the same user are the same analysis, also when two
//!   ingests of them run at once (no duplicate, no orphan file);
//! - only regular files are read (no FIFO, device, or symlink to one), and
//!   never more than the size limit plus one byte;
//! - a zip holding anything but `.csv` files (folders and the files a
//!   system adds, like `__MACOSX/` or `Thumbs.db`, are skipped), two entries
//!   of one name, entries that overlap (a zip
//!   bomb's trick), or more bytes than allowed once unpacked is refused
//!   whole, before anything is written; sizes are counted on the bytes
//!   actually unpacked, never taken from the zip's headers, and one entry
//!   at a time is in memory;
//! - zip entry names never become paths: they are labels, cleaned of control
//!   characters and cut to the 255 characters the backend stores;
//! - a log is stored on the volume before its catalog row exists, so a
//!   catalog row never points at a missing file;
//! - logs are stored in batches of bounded count and bytes (one catalog
//!   transaction and one folder sync each), so memory stays bounded however
//!   many or large the files; a crash mid-batch may leave up to one batch of
//!   files on the volume that no catalog row names.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::catalog::{Catalog, CatalogError, NewAnalysis};
use crate::scan::LogLimits;
use crate::volume::{Volume, VolumeError};

/// The largest log accepted, packed or not.
pub const MAX_LOG_BYTES: u64 = 256 * 1024 * 1024;
/// The most a zip may unpack to in total, and the most entries it may hold.
pub const MAX_ZIP_TOTAL: u64 = 2 * 1024 * 1024 * 1024;
pub const MAX_ZIP_ENTRIES: usize = 10_000;
/// The longest file name the backend stores.
pub const MAX_NAME: usize = 255;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: refused: {reason}")]
    Refused { path: PathBuf, reason: String },
    #[error("{0:?} is not an email address")]
    Email(String),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Volume(#[from] VolumeError),
}

/// One log that went in: its analysis id, the name the user gave it, and
/// whether it was new.
#[derive(Debug, Clone)]
pub struct Ingested {
    pub analysis_id: String,
    pub file_name: String,
    pub created: bool,
    /// Why the log will fail its analysis, when it is over the limits.
    pub warning: Option<String>,
}

/// What an ingest did.
#[derive(Debug, Clone)]
pub struct IngestSummary {
    pub logs: Vec<Ingested>,
    pub user_created: bool,
}

/// Checks an email address the way a sign-up form would.
pub fn validate_email(email: &str) -> Result<(), IngestError> {
    let bad = || IngestError::Email(email.to_string());
    if email.len() > MAX_NAME || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad());
    }
    let (local, domain) = email.split_once('@').ok_or_else(bad)?;
    let labels: Vec<&str> = domain.split('.').collect();
    if local.is_empty()
        || domain.contains('@')
        || labels.len() < 2
        || labels
            .iter()
            .any(|l| l.is_empty() || l.starts_with('-') || l.ends_with('-'))
    {
        return Err(bad());
    }
    Ok(())
}

/// A name for display and storage: control characters replaced, at most
/// 255 characters (a long name keeps its extension).
pub fn clean_name(name: &str) -> String {
    let clean: Vec<char> = name
        .chars()
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .collect();
    if clean.len() <= MAX_NAME {
        return clean.into_iter().collect();
    }
    let ext = clean
        .iter()
        .rposition(|&c| c == '.')
        .filter(|&dot| clean.len() - dot <= 16)
        .map_or(0, |dot| clean.len() - dot);
    clean[..MAX_NAME - ext]
        .iter()
        .chain(&clean[clean.len() - ext..])
        .collect()
}

/// Ingests `files` for the user `email` into `volume` and `catalog`, in
/// batches (see [`BATCH_LOGS`]).
pub async fn ingest(
    catalog: &Catalog,
    volume: &Volume,
    email: &str,
    files: &[PathBuf],
    limits: LogLimits,
) -> Result<IngestSummary, IngestError> {
    validate_email(email)?;
    // Check everything first: a refused file writes nothing.
    let mut uploads = Vec::new();
    for path in files {
        uploads.push(check_upload(path)?);
    }
    let (user_id, user_created) = catalog.user_for_email(email).await?;
    let mut logs = Vec::new();
    let mut batch = Batch::default();
    for upload in &uploads {
        let mut reader = upload.reader()?;
        while let Some((file_name, bytes)) = reader.next_log()? {
            if batch.full_before(bytes.len()) {
                let full = std::mem::take(&mut batch);
                logs.extend(store(catalog, volume, &user_id, full).await?);
            }
            batch.push(file_name, bytes, limits);
        }
    }
    logs.extend(store(catalog, volume, &user_id, batch).await?);
    Ok(IngestSummary { logs, user_created })
}

/// The most logs stored together: one catalog transaction and one folder
/// sync cover them all, where one each per log cost ~18 ms a log.
pub const BATCH_LOGS: usize = 500;
/// The most bytes of logs a batch holds (a log larger than this is a batch
/// of its own), so memory stays bounded whatever the number or size of the
/// files.
pub const BATCH_BYTES: usize = 64 * 1024 * 1024;

/// Logs read and hashed, waiting to be stored together.
#[derive(Default)]
struct Batch {
    logs: Vec<Log>,
    bytes: usize,
}

/// A log read from an upload.
struct Log {
    file_name: String,
    bytes: Vec<u8>,
    sha256: String,
    warning: Option<String>,
}

impl Batch {
    /// Whether the batch must be stored before a log of `bytes` joins it.
    fn full_before(&self, bytes: usize) -> bool {
        self.logs.len() >= BATCH_LOGS
            || (!self.logs.is_empty() && self.bytes.saturating_add(bytes) > BATCH_BYTES)
    }

    fn push(&mut self, file_name: String, bytes: Vec<u8>, limits: LogLimits) {
        self.bytes += bytes.len();
        self.logs.push(Log {
            file_name,
            sha256: format!("{:x}", Sha256::digest(&bytes)),
            warning: over_limits(&bytes, limits),
            bytes,
        });
    }
}

/// Stores one batch: the logs whose bytes the user has not uploaded yet go
/// to the volume (durable first), then into the catalog in one transaction;
/// the same bytes twice in a batch are one upload. A crash between the two
/// leaves the batch's files on the volume with no catalog row (orphans, as
/// a crash between a file and its row did when each log was stored alone);
/// an error deletes them.
async fn store(
    catalog: &Catalog,
    volume: &Volume,
    user_id: &str,
    batch: Batch,
) -> Result<Vec<Ingested>, IngestError> {
    if batch.logs.is_empty() {
        return Ok(Vec::new());
    }
    let sha256s: Vec<&str> = batch.logs.iter().map(|l| l.sha256.as_str()).collect();
    let mut holders = catalog.analyses_by_sha(user_id, &sha256s).await?;
    // sha256 -> the id of this batch's upload of these bytes
    let mut own: HashMap<String, String> = HashMap::new();
    let mut uploads = Vec::new();
    let mut files = Vec::new();
    let mut pending = Vec::with_capacity(batch.logs.len());
    let mut restored = HashSet::new();
    for log in batch.logs {
        if let Some(id) = holders.get(&log.sha256) {
            // Bytes uploaded before whose file is gone from the volume:
            // this upload puts them back (the catalog has their sha256).
            if !restored.contains(id) && !volume.has(id).await? {
                tracing::info!(analysis = %id, file = %log.file_name, "the log's file was missing from the volume: restored");
                restored.insert(id.clone());
                files.push((id.clone(), bytes::Bytes::from(log.bytes)));
            }
        } else if !own.contains_key(&log.sha256) {
            let id = uuid::Uuid::new_v4().to_string();
            own.insert(log.sha256.clone(), id.clone());
            uploads.push(NewAnalysis {
                id: id.clone(),
                file_name: log.file_name.clone(),
                sha256: log.sha256.clone(),
            });
            files.push((id, bytes::Bytes::from(log.bytes)));
        }
        pending.push((log.file_name, log.sha256, log.warning));
    }
    let stored = async {
        volume.put_all(files).await?;
        Ok::<_, IngestError>(catalog.insert_analyses(user_id, &uploads).await?)
    };
    let recorded = match stored.await {
        Ok(recorded) => recorded,
        Err(e) => {
            // No catalog row names these files: leave no orphans if we can.
            for upload in &uploads {
                let _ = volume.delete(&upload.id).await;
            }
            return Err(e);
        }
    };
    for upload in &uploads {
        if recorded.get(&upload.sha256) != Some(&upload.id) {
            // A concurrent ingest of the same bytes won: ours is no upload.
            volume.delete(&upload.id).await?;
        }
    }
    holders.extend(recorded);
    let mut logs = Vec::with_capacity(pending.len());
    for (file_name, sha256, warning) in pending {
        let analysis_id = holders
            .get(&sha256)
            .cloned()
            .ok_or_else(|| CatalogError::Invalid(format!("{file_name} was not recorded")))?;
        // Only the first log of new bytes took its id: it is the upload.
        let created = own.remove(&sha256).is_some_and(|id| id == analysis_id);
        logs.push(Ingested {
            analysis_id,
            file_name,
            created,
            warning,
        });
    }
    Ok(logs)
}

/// Why a log will fail for its size, if it will.
fn over_limits(bytes: &[u8], limits: LogLimits) -> Option<String> {
    if bytes.len() as u64 > limits.max_bytes {
        return Some(crate::scan::log_file::too_many_bytes(
            bytes.len() as u64,
            limits,
        ));
    }
    let rows = memchr::memchr_iter(b'\n', bytes).count() as u64;
    (rows > limits.max_rows + 1).then(|| {
        format!(
            "Log too large: about {rows} rows, limit {}.",
            limits.max_rows
        )
    })
}

/// An upload that passed its checks.
enum Upload {
    Csv {
        path: PathBuf,
        name: String,
    },
    Zip {
        path: PathBuf,
        entries: Vec<(usize, String)>,
    },
}

impl Upload {
    /// Reads the upload's logs one at a time. A zip is opened once for all
    /// its entries: each opening reads its whole directory, and once per
    /// entry made a zip of 10,000 logs take minutes.
    fn reader(&self) -> Result<UploadReader<'_>, IngestError> {
        let archive = match self {
            Upload::Csv { .. } => None,
            Upload::Zip { path, .. } => Some(open_zip(path)?),
        };
        Ok(UploadReader {
            upload: self,
            archive,
            next: 0,
        })
    }
}

/// The logs of one upload, in order.
struct UploadReader<'a> {
    upload: &'a Upload,
    archive: Option<zip::ZipArchive<std::fs::File>>,
    next: usize,
}

impl UploadReader<'_> {
    /// The name and bytes of the next log, or `None` after the last.
    fn next_log(&mut self) -> Result<Option<(String, Vec<u8>)>, IngestError> {
        let n = self.next;
        self.next += 1;
        match (self.upload, self.archive.as_mut()) {
            (Upload::Csv { path, name }, _) if n == 0 => {
                Ok(Some((name.clone(), read_regular(path, MAX_LOG_BYTES)?)))
            }
            (Upload::Zip { path, entries }, Some(archive)) if n < entries.len() => {
                let (index, name) = &entries[n];
                let unreadable = |e: &dyn std::fmt::Display| {
                    refused(path, format!("entry {name:?} unreadable: {e}"))
                };
                let file = archive.by_index(*index).map_err(|e| unreadable(&e))?;
                let bytes = read_limited(file, MAX_LOG_BYTES).map_err(|e| unreadable(&e))?;
                Ok(Some((name.clone(), bytes)))
            }
            _ => Ok(None),
        }
    }
}

fn refused(path: &Path, reason: String) -> IngestError {
    IngestError::Refused {
        path: path.to_path_buf(),
        reason,
    }
}

/// Checks one uploaded file: a `.csv` log, or a `.zip` of them.
fn check_upload(path: &Path) -> Result<Upload, IngestError> {
    let name = clean_name(
        &path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    );
    let lower = name.to_lowercase();
    let meta = std::fs::metadata(path).map_err(|source| IngestError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if !meta.is_file() {
        return Err(refused(path, "not a regular file".into()));
    }
    if meta.len() > MAX_LOG_BYTES {
        return Err(refused(path, format!("larger than {MAX_LOG_BYTES} bytes")));
    }
    if lower.ends_with(".csv") {
        return Ok(Upload::Csv {
            path: path.to_path_buf(),
            name,
        });
    }
    if !lower.ends_with(".zip") {
        return Err(refused(
            path,
            "only .csv logs or .zip files of .csv logs are accepted".into(),
        ));
    }
    let mut archive = open_zip(path)?;
    if archive.len() > MAX_ZIP_ENTRIES {
        return Err(refused(
            path,
            format!("more than {MAX_ZIP_ENTRIES} entries"),
        ));
    }
    if let Some(duplicate) = duplicate_entry(path, &archive)? {
        return Err(refused(
            path,
            format!("it holds more than one entry named {duplicate:?}"),
        ));
    }
    // Entries whose data overlap reuse the same compressed bytes many times.
    let mut spans = Vec::new();
    let mut entries = Vec::new();
    for index in 0..archive.len() {
        let entry = archive
            .by_index_raw(index)
            .map_err(|e| refused(path, format!("entry {index} unreadable: {e}")))?;
        if entry.is_dir() || is_system_file(entry.name()) {
            continue;
        }
        let shown = clean_name(entry.name());
        // Only the entry's base name is kept, and only as a label.
        let label = clean_name(entry.name().rsplit(['/', '\\']).next().unwrap_or_default());
        if !label.to_lowercase().ends_with(".csv") {
            return Err(refused(
                path,
                format!("it holds {shown:?}, which is not a .csv log"),
            ));
        }
        spans.push((
            entry.header_start(),
            entry.data_start() + entry.compressed_size(),
            shown,
        ));
        entries.push((index, label));
    }
    spans.sort();
    for pair in spans.windows(2) {
        if pair[1].0 < pair[0].1 {
            return Err(refused(
                path,
                format!("entries {:?} and {:?} overlap", pair[0].2, pair[1].2),
            ));
        }
    }
    if entries.is_empty() {
        return Err(refused(path, "the zip holds no .csv log".into()));
    }
    // Unpack once, counting real bytes, keeping nothing.
    let mut total = 0u64;
    for (index, label) in &entries {
        let file = archive
            .by_index(*index)
            .map_err(|e| refused(path, format!("entry {label:?} unreadable: {e}")))?;
        let mut counter = std::io::sink();
        let copied = std::io::copy(&mut file.take(MAX_LOG_BYTES + 1), &mut counter)
            .map_err(|e| refused(path, format!("entry {label:?} unreadable: {e}")))?;
        if copied > MAX_LOG_BYTES {
            return Err(refused(
                path,
                format!("entry {label:?} unpacks to more than {MAX_LOG_BYTES} bytes"),
            ));
        }
        total += copied;
        if total > MAX_ZIP_TOTAL {
            return Err(refused(
                path,
                format!("it unpacks to more than {MAX_ZIP_TOTAL} bytes"),
            ));
        }
    }
    Ok(Upload::Zip {
        path: path.to_path_buf(),
        entries,
    })
}

/// Whether a zip entry is a file the system added, not a log: macOS's
/// `__MACOSX/` and `._` copies, `.DS_Store`, Windows' `Thumbs.db` and
/// `desktop.ini`. Zipping a folder in the Finder or Explorer adds them.
fn is_system_file(entry_name: &str) -> bool {
    let mut parts = entry_name.split(['/', '\\']);
    let base = entry_name.rsplit(['/', '\\']).next().unwrap_or_default();
    parts.any(|part| part == "__MACOSX")
        || base.starts_with("._")
        || [".DS_Store", "Thumbs.db", "desktop.ini"]
            .iter()
            .any(|name| base.eq_ignore_ascii_case(name))
}

/// The name of an entry the zip holds twice, if any. The zip reader keeps
/// one entry per name, so the other would vanish without a word: the
/// central directory is walked here to count them all.
fn duplicate_entry(
    path: &Path,
    archive: &zip::ZipArchive<std::fs::File>,
) -> Result<Option<String>, IngestError> {
    use std::io::{Seek, SeekFrom};
    let unreadable = |e: std::io::Error| refused(path, format!("its directory is unreadable: {e}"));
    let mut file = open_regular(path)?;
    file.seek(SeekFrom::Start(archive.central_directory_start()))
        .map_err(unreadable)?;
    let mut reader = std::io::BufReader::new(file);
    let mut names = HashSet::new();
    let mut listed = 0;
    // A central directory header: 46 fixed bytes (the name's length at 28,
    // the extra field's at 30, the comment's at 32), then the three.
    let mut fixed = [0u8; 46];
    while listed <= MAX_ZIP_ENTRIES
        && reader.read_exact(&mut fixed).is_ok()
        && fixed[..4] == [0x50, 0x4b, 0x01, 0x02]
    {
        listed += 1;
        let length = |at: usize| usize::from(u16::from_le_bytes([fixed[at], fixed[at + 1]]));
        let mut name = vec![0u8; length(28)];
        reader.read_exact(&mut name).map_err(unreadable)?;
        let mut rest = vec![0u8; length(30) + length(32)];
        reader.read_exact(&mut rest).map_err(unreadable)?;
        if !names.insert(name.clone()) {
            let name = String::from_utf8_lossy(&name);
            if !is_system_file(&name) {
                return Ok(Some(clean_name(&name)));
            }
        }
    }
    // Names that differ as bytes but not once decoded vanish too.
    Ok((names.len() != archive.len()).then(|| "(a name written two ways)".to_string()))
}

fn open_zip(path: &Path) -> Result<zip::ZipArchive<std::fs::File>, IngestError> {
    let file = open_regular(path)?;
    zip::ZipArchive::new(file).map_err(|e| refused(path, format!("not a readable zip: {e}")))
}

/// Opens a regular file without ever blocking on a FIFO, and checks what
/// was opened (the path may have been swapped since it was checked).
fn open_regular(path: &Path) -> Result<std::fs::File, IngestError> {
    let io = |source| IngestError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = crate::volume::open_nonblocking(path).map_err(io)?;
    if !file.metadata().map_err(io)?.is_file() {
        return Err(refused(path, "not a regular file".into()));
    }
    Ok(file)
}

fn read_regular(path: &Path, limit: u64) -> Result<Vec<u8>, IngestError> {
    let file = open_regular(path)?;
    let bytes = read_limited(file, limit).map_err(|source| IngestError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if bytes.len() as u64 > limit {
        return Err(refused(path, format!("larger than {limit} bytes")));
    }
    Ok(bytes)
}

/// Reads at most `limit + 1` bytes: one more than allowed tells "too large".
fn read_limited(reader: impl Read, limit: u64) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    reader.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(std::io::Error::other(format!("more than {limit} bytes")));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_a_system_adds_are_told_from_logs() {
        for added in [
            "__MACOSX/trip/._drive.csv",
            "trip/._drive.csv",
            ".DS_Store",
            "trip\\Thumbs.db",
            "trip/DESKTOP.INI",
        ] {
            assert!(is_system_file(added), "{added}");
        }
        for log in ["drive.csv", "trip/drive.csv", "MACOSX.csv", "_drive.csv"] {
            assert!(!is_system_file(log), "{log}");
        }
    }

    #[test]
    fn emails_are_checked() {
        for ok in ["a@example.com", "first.last+tag@sub.example.org"] {
            assert!(validate_email(ok).is_ok(), "{ok}");
        }
        for bad in [
            "not-an-email",
            "@example.com",
            "a@",
            "a@b",
            "a b@example.com",
            "a@@x.com",
            "a@.com",
            "a@x..com",
        ] {
            assert!(validate_email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn batches_close_at_their_count_or_their_bytes() {
        let mut batch = Batch::default();
        assert!(!batch.full_before(4 * BATCH_BYTES), "a large log alone");
        for i in 0..BATCH_LOGS {
            assert!(!batch.full_before(10), "{i}");
            batch.push(format!("{i}.csv"), vec![b'x'; 10], LogLimits::default());
        }
        assert!(batch.full_before(0), "full by count");
        let mut batch = Batch::default();
        batch.push("a.csv".into(), vec![b'x'; 10], LogLimits::default());
        assert!(!batch.full_before(BATCH_BYTES - 10));
        assert!(batch.full_before(BATCH_BYTES - 9), "full by bytes");
        assert_eq!(batch.logs[0].sha256.len(), 64);
    }

    #[test]
    fn regression_entry_names_are_cleaned_and_cut() {
        let name = clean_name("evil\u{1b}[31m\nname.csv");
        assert!(!name.chars().any(char::is_control), "{name:?}");
        assert_eq!(clean_name(&"x".repeat(5000)).chars().count(), MAX_NAME);
        let long = clean_name(&format!("{}.csv", "y".repeat(5000)));
        assert_eq!(long.chars().count(), MAX_NAME);
        assert!(long.ends_with(".csv"));
    }
}
