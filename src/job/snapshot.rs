//! Parquet snapshots: every analysis and every average as of one run, for
//! analysts, and the job's memory of its own results (a later run reuses
//! them instead of opening the logs again).
//!
//! Layout: `<warehouse>/snapshots/<id>/<table>/part-NN.parquet` for the four
//! tables of [`Table`], `manifest.json`, and `<warehouse>/snapshots/latest`
//! naming the newest published snapshot.
//!
//! Guarantees:
//! - Tables are split into [`BUCKETS`] files by user (a stable hash of the
//!   user id). A run rewrites only the buckets of users whose results
//!   changed; the other files are hard links to the parent snapshot's, so
//!   unchanged data is neither rewritten nor copied, and every snapshot is
//!   complete on its own: deleting one never breaks another.
//! - A snapshot appears whole or not at all: it is staged under a hidden
//!   name, every table is closed, the staged folder is checked, renamed into
//!   place, and only then is `latest` replaced (itself via a rename). A
//!   crash at any point leaves the previous snapshot as latest.
//! - An experiment (`run --dry-run`) is published under its id but never
//!   becomes `latest`, and is never a parent.

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError};

use datafusion::arrow::array::{
    Array, AsArray, BooleanArray, RecordBatch, StringArray, UInt32Array,
};
use datafusion::arrow::compute::{filter_record_batch, take_record_batch};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::properties::{EnabledStatistics, WriterProperties};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::volume::{sync_dir, write_synced};

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parquet: {0}")]
    Parquet(#[from] datafusion::parquet::errors::ParquetError),
    #[error("arrow: {0}")]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
    #[error("no snapshot {0}")]
    Missing(String),
    #[error("column {0} is missing or not text: the SQL models must give it as a string")]
    Column(String),
    #[error("snapshot {id} is incomplete: {why}; it was not published")]
    Incomplete { id: String, why: String },
}

pub type Result<T, E = SnapshotError> = std::result::Result<T, E>;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// How many files each table is split into, by user.
pub const BUCKETS: usize = 32;

/// The bucket of a user: stable across runs and machines.
pub fn bucket(user_id: &str) -> usize {
    let digest = Sha256::digest(user_id.as_bytes());
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) as usize % BUCKETS
}

/// The tables of a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// One row per analysed log.
    Analysis,
    /// Per log and speed band.
    FuelBySpeedBand,
    /// One row per user and period.
    Average,
    /// Per user, period and speed band.
    AverageFuelBySpeedBand,
}

impl Table {
    pub const ALL: [Table; 4] = [
        Table::Analysis,
        Table::FuelBySpeedBand,
        Table::Average,
        Table::AverageFuelBySpeedBand,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Table::Analysis => "analysis",
            Table::FuelBySpeedBand => "fuel_by_speed_band",
            Table::Average => "average",
            Table::AverageFuelBySpeedBand => "average_fuel_by_speed_band",
        }
    }
}

/// The snapshots folder of a warehouse.
pub fn root(warehouse: &Path) -> PathBuf {
    warehouse.join("snapshots")
}

/// A new, sortable snapshot id: UTC time to the millisecond (runs of one
/// second stay ordered) plus a random suffix.
pub fn new_id() -> String {
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..6];
    format!(
        "{}-{suffix}",
        chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ")
    )
}

/// The file of `bucket` of `table` in the snapshot folder `dir`.
pub fn file_in(dir: &Path, table: Table, bucket: usize) -> PathBuf {
    dir.join(table.name()).join(file_name(bucket))
}

fn file_name(bucket: usize) -> String {
    format!("part-{bucket:02}.parquet")
}

/// The published snapshot a run builds on.
#[derive(Debug, Clone)]
pub struct Parent {
    pub id: String,
    pub dir: PathBuf,
    pub manifest: Value,
}

impl Parent {
    /// The latest published snapshot, if any.
    pub fn latest(warehouse: &Path) -> Result<Option<Self>> {
        let Some(id) = latest(warehouse) else {
            return Ok(None);
        };
        let dir = resolve(warehouse, Some(&id))?;
        let manifest = read_manifest(&dir)?;
        Ok(Some(Self { id, dir, manifest }))
    }

    /// The algorithm version its results were computed with.
    pub fn algorithm_version(&self) -> &str {
        self.manifest["algorithm_version"]
            .as_str()
            .unwrap_or_default()
    }

    /// The parent's file for `table` and `bucket`, if it has rows there.
    pub fn file(&self, table: Table, bucket: usize) -> Option<PathBuf> {
        let path = self.dir.join(table.name()).join(file_name(bucket));
        path.is_file().then_some(path)
    }

    /// The schema `table` was written with (from its first file).
    pub fn schema(&self, table: Table) -> Option<SchemaRef> {
        let path = (0..BUCKETS).find_map(|b| self.file(table, b))?;
        parquet_schema(&path).ok()
    }

    /// Reads every row of `table` (only `columns`), bucket by bucket.
    pub fn read(&self, table: Table, columns: &[&str]) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::new();
        for bucket in 0..BUCKETS {
            if let Some(path) = self.file(table, bucket) {
                out.extend(read_parquet(&path, Some(columns))?);
            }
        }
        Ok(out)
    }
}

/// Reads a Parquet file, optionally only some columns (by name).
pub fn read_parquet(path: &Path, columns: Option<&[&str]>) -> Result<Vec<RecordBatch>> {
    // One read of the (bucket-sized) file: a `File` reader reopens and
    // seeks it for every column chunk.
    let bytes = bytes::Bytes::from(std::fs::read(path).map_err(io(path))?);
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(damaged(path))?;
    let builder = match columns {
        Some(columns) => {
            let schema = builder.schema().clone();
            let indices: Vec<usize> = columns
                .iter()
                .filter_map(|c| schema.index_of(c).ok())
                .collect();
            let mask = datafusion::parquet::arrow::ProjectionMask::roots(
                builder.parquet_schema(),
                indices,
            );
            builder.with_projection(mask)
        }
        None => builder,
    };
    builder
        .with_batch_size(8192)
        .build()
        .map_err(damaged(path))?
        .map(|b| b.map_err(damaged(path)))
        .collect()
}

/// A file whose contents cannot be decoded, named (a bare decoding error
/// does not say which of a snapshot's files is damaged).
fn damaged<E>(path: &Path) -> impl Fn(E) -> SnapshotError + '_
where
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    move |e| SnapshotError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    }
}

/// The text column `name` of `batch`. Snapshot rows are read by name: a
/// `--sql-dir` model may order its columns otherwise, and one that drops or
/// retypes a column the job needs is an error, not a panic.
pub fn text_column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a StringArray> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_string_opt::<i32>())
        .ok_or_else(|| SnapshotError::Column(name.into()))
}

/// The Arrow schema a Parquet file was written with (its footer only).
pub fn parquet_schema(path: &Path) -> Result<SchemaRef> {
    let file = File::open(path).map_err(io(path))?;
    Ok(ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(damaged(path))?
        .schema()
        .clone())
}

fn read_manifest(dir: &Path) -> Result<Value> {
    let path = dir.join("manifest.json");
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    serde_json::from_str(&text).map_err(damaged(&path))
}

/// Removes the staging folders of runs that died, and what a prune that
/// died left. Only a holder of the run lock calls this: no other run or
/// prune is writing one.
pub fn remove_abandoned_staging(warehouse: &Path) {
    let Ok(entries) = std::fs::read_dir(root(warehouse)) else {
        return;
    };
    for entry in entries.filter_map(|e| e.ok()) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(".staging-") || name.starts_with(PRUNED) {
            tracing::info!(folder = %entry.path().display(), "removing the folder of a run or prune that died");
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A snapshot being written.
pub struct Staging {
    pub id: String,
    root: PathBuf,
    dir: PathBuf,
    parent: Option<Parent>,
    /// The buckets this run rewrites (the buckets of users whose results
    /// changed); the others are linked from the parent.
    touched: BTreeSet<usize>,
    writers: HashMap<(Table, usize), ArrowWriter<File>>,
    schemas: HashMap<Table, SchemaRef>,
    /// Closed tables' files being synced, awaited before publishing.
    syncs: Vec<std::thread::JoinHandle<Result<()>>>,
    /// Synced and given its manifest: ready to be renamed into place.
    sealed: bool,
    /// Rows and bytes per table; files linked.
    pub stats: HashMap<Table, TableStats>,
}

/// What a table of a snapshot holds.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct TableStats {
    pub rows: usize,
    pub files_written: usize,
    pub files_linked: usize,
    pub bytes_written: u64,
    pub bytes_linked: u64,
}

/// Bytes of a JSON column's data page: a few chunks' rows of one bucket.
const JSON_PAGE_BYTES: usize = 64 * 1024;

/// Threads syncing a closed table's files.
const SYNC_THREADS: usize = 8;

/// Memory held by open writers (pages and encoders) above which their row
/// groups are ended.
const MAX_BUFFERED: usize = 64 * 1024 * 1024;

impl Staging {
    /// Starts snapshot `id` in `warehouse`.
    pub fn create(
        warehouse: &Path,
        id: &str,
        parent: Option<Parent>,
        touched: BTreeSet<usize>,
    ) -> Result<Self> {
        let root = root(warehouse);
        let dir = root.join(format!(".staging-{id}"));
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        Ok(Self {
            id: id.to_string(),
            root,
            dir,
            parent,
            touched,
            writers: HashMap::new(),
            schemas: HashMap::new(),
            syncs: Vec::new(),
            sealed: false,
            stats: HashMap::new(),
        })
    }

    pub fn parent(&self) -> Option<&Parent> {
        self.parent.as_ref()
    }

    pub fn touched(&self) -> &BTreeSet<usize> {
        &self.touched
    }

    /// The staged file of `table` and `bucket`, once the table is closed.
    pub fn file(&self, table: Table, bucket: usize) -> Option<PathBuf> {
        let path = self.dir.join(table.name()).join(file_name(bucket));
        path.is_file().then_some(path)
    }

    /// Appends rows to `table`, each into the bucket of its `user_id`. The
    /// table's schema (with its data dictionary as field metadata) is set by
    /// its first batch.
    pub fn write(&mut self, table: Table, batch: &RecordBatch) -> Result<()> {
        let schema = self
            .schemas
            .entry(table)
            .or_insert_with(|| super::dictionary::annotate(table, &batch.schema()))
            .clone();
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let batch = &batch.clone().with_schema(schema)?;
        let users = batch
            .column_by_name("user_id")
            .and_then(|c| c.as_string_opt::<i32>())
            .ok_or_else(|| SnapshotError::Incomplete {
                id: self.id.clone(),
                why: format!("{} rows without user_id", table.name()),
            })?;
        // A batch holds few users and many rows (21 bands per log): hash
        // each user once.
        let mut bucket_of: HashMap<&str, usize> = HashMap::new();
        let mut by_bucket: HashMap<usize, Vec<u32>> = HashMap::new();
        for row in 0..batch.num_rows() {
            let user = users.value(row);
            let b = *bucket_of.entry(user).or_insert_with(|| bucket(user));
            by_bucket.entry(b).or_default().push(row as u32);
        }
        for (b, rows) in by_bucket {
            let part = if rows.len() == batch.num_rows() {
                batch.clone()
            } else {
                take_record_batch(batch, &UInt32Array::from(rows))?
            };
            self.writer(table, b, &part.schema())?.write(&part)?;
            self.stats.entry(table).or_default().rows += part.num_rows();
        }
        // Bound memory: end the row groups of every writer when too much is buffered.
        let buffered: usize = self.writers.values().map(|w| w.memory_size()).sum();
        if buffered > MAX_BUFFERED {
            for writer in self.writers.values_mut() {
                writer.flush()?;
            }
        }
        Ok(())
    }

    fn writer(
        &mut self,
        table: Table,
        bucket: usize,
        schema: &SchemaRef,
    ) -> Result<&mut ArrowWriter<File>> {
        let entry = match self.writers.entry((table, bucket)) {
            Entry::Occupied(open) => return Ok(open.into_mut()),
            Entry::Vacant(entry) => entry,
        };
        let dir = self.dir.join(table.name());
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let path = dir.join(file_name(bucket));
        let file = File::create(&path).map_err(io(&path))?;
        // Dictionaries only for text (ids, statuses, messages repeat);
        // metrics are mostly distinct numbers, where a dictionary costs time
        // and saves nothing. JSON objects are unique, and their min/max
        // statistics serve no query; they are most of the bytes, and LZ4
        // packs them as small as Snappy for less CPU each way. Their pages
        // are kept small so each is compressed as rows arrive, while the
        // engine runs, not all at once when the file closes after it.
        let mut props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(65_536))
            // A bucket's column is a page or a few: a page index would
            // prune nothing its chunk statistics do not.
            .set_statistics_enabled(EnabledStatistics::Chunk)
            .set_dictionary_enabled(false);
        for field in schema.fields() {
            let name = field.name().as_str();
            if matches!(name, "analysis_json" | "analysis_jsonb" | "average_json") {
                props = props
                    .set_column_statistics_enabled(name.into(), EnabledStatistics::None)
                    .set_column_compression(name.into(), Compression::LZ4_RAW)
                    .set_column_data_page_size_limit(name.into(), JSON_PAGE_BYTES);
            } else if field.data_type() == &DataType::Utf8 {
                props = props.set_column_dictionary_enabled(name.into(), true);
            }
        }
        let props = props.build();
        Ok(entry.insert(ArrowWriter::try_new(file, schema.clone(), Some(props))?))
    }

    /// Closes `table`: each rewritten bucket also gets the parent's rows
    /// that `keep` keeps; each other bucket of the parent is linked; a table
    /// with no rows at all gets one empty file, so readers still find its
    /// schema (`schema` is used when no row was written this run).
    pub fn close_table(
        &mut self,
        table: Table,
        schema: &SchemaRef,
        keep: &dyn Fn(&RecordBatch) -> Result<BooleanArray>,
    ) -> Result<()> {
        // With no row written this run (say, one new log of an idle drive:
        // no speed band), the table still takes its data dictionary.
        let schema = self
            .schemas
            .get(&table)
            .cloned()
            .unwrap_or_else(|| super::dictionary::annotate(table, schema));
        let dir = self.dir.join(table.name());
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        if let Some(parent) = self.parent.clone() {
            for b in 0..BUCKETS {
                let Some(source) = parent.file(table, b) else {
                    continue;
                };
                if self.touched.contains(&b) {
                    for batch in read_parquet(&source, None)? {
                        let kept = filter_record_batch(&batch, &keep(&batch)?)?;
                        if kept.num_rows() > 0 {
                            // Same columns; only field metadata may differ.
                            let kept =
                                RecordBatch::try_new(schema.clone(), kept.columns().to_vec())?;
                            self.writer(table, b, &schema)?.write(&kept)?;
                            self.stats.entry(table).or_default().rows += kept.num_rows();
                        }
                    }
                } else {
                    let target = dir.join(file_name(b));
                    std::fs::hard_link(&source, &target).map_err(io(&target))?;
                    let bytes = std::fs::metadata(&target).map_or(0, |m| m.len());
                    let rows = parquet_rows(&target)?;
                    let stats = self.stats.entry(table).or_default();
                    stats.files_linked += 1;
                    stats.bytes_linked += bytes;
                    stats.rows += rows;
                }
            }
        }
        let keys: Vec<(Table, usize)> = self
            .writers
            .keys()
            .filter(|k| k.0 == table)
            .copied()
            .collect();
        let writers: Vec<ArrowWriter<File>> = keys
            .iter()
            .filter_map(|key| self.writers.remove(key))
            .collect();
        let written = close_all(&self.id, writers)?;
        for file in &written {
            let bytes = file.metadata().map_or(0, |m| m.len());
            let stats = self.stats.entry(table).or_default();
            stats.files_written += 1;
            stats.bytes_written += bytes;
        }
        // A sync is waiting on the disk, not work: it overlaps the next
        // stages, and `publish` awaits it (synced here if no thread starts).
        // The files are synced side by side: one after another, each waits
        // for a journal commit of its own (0.3-1 ms here); together they
        // share commits.
        let written = Arc::new(written);
        for first in 0..SYNC_THREADS.min(written.len()) {
            let (files, synced) = (written.clone(), dir.clone());
            let sync = move || sync_share(&files, first).map_err(io(&synced));
            match std::thread::Builder::new().spawn(sync) {
                Ok(thread) => self.syncs.push(thread),
                Err(_) => sync_share(&written, first).map_err(io(&dir))?,
            }
        }
        let has_files = std::fs::read_dir(&dir).map_err(io(&dir))?.next().is_some();
        if !has_files {
            let path = dir.join(file_name(0));
            let file = File::create(&path).map_err(io(&path))?;
            let file = ArrowWriter::try_new(file, schema.clone(), None)?.into_inner()?;
            file.sync_all().map_err(io(&path))?;
            self.stats.entry(table).or_default().files_written += 1;
        }
        self.stats.entry(table).or_default();
        Ok(())
    }

    /// Waits for the staged files' syncs, checks that every table has its
    /// files, and writes the manifest: what is left to publish is a rename.
    pub fn seal(&mut self, manifest: &Value) -> Result<()> {
        for sync in std::mem::take(&mut self.syncs) {
            sync.join()
                .map_err(|_| self.incomplete("a file sync panicked".into()))??;
        }
        for table in Table::ALL {
            if self.writers.keys().any(|k| k.0 == table) {
                return Err(self.incomplete(format!("table {} was not closed", table.name())));
            }
            let dir = self.dir.join(table.name());
            let files = std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
            if files == 0 {
                return Err(self.incomplete(format!("table {} has no file", table.name())));
            }
        }
        let path = self.dir.join("manifest.json");
        let text = serde_json::to_string_pretty(manifest).unwrap_or_default();
        // Synced before the rename: a published snapshot with an empty
        // manifest would stop every later run (it is their parent).
        write_synced(&path, text.as_bytes()).map_err(io(&path))?;
        sync_dir(&self.dir);
        self.sealed = true;
        Ok(())
    }

    /// Renames the sealed snapshot into place and, unless it is an
    /// experiment, makes it the latest. `still_ours` is the run's check of
    /// its lock, made after [`Staging::seal`]: a run that lost its lock
    /// while its files synced publishes nothing.
    pub fn publish(
        mut self,
        make_latest: bool,
        still_ours: std::result::Result<(), String>,
    ) -> Result<PathBuf> {
        if !self.sealed {
            return Err(self.incomplete("it was not sealed".into()));
        }
        still_ours.map_err(|why| self.incomplete(why))?;
        let target = self.root.join(&self.id);
        std::fs::rename(&self.dir, &target).map_err(|e| {
            if !self.dir.exists() {
                SnapshotError::Incomplete {
                    id: self.id.clone(),
                    why: "its staging folder disappeared before it was published".into(),
                }
            } else {
                SnapshotError::Io {
                    path: target.clone(),
                    source: e,
                }
            }
        })?;
        sync_dir(&self.root);
        self.dir = target.clone();
        if make_latest {
            set_latest(&self.root, &self.id)?;
        }
        Ok(target)
    }

    fn incomplete(&self, why: String) -> SnapshotError {
        SnapshotError::Incomplete {
            id: self.id.clone(),
            why,
        }
    }
}

/// Syncs every [`SYNC_THREADS`]th file of `files`, from the `first`.
fn sync_share(files: &[File], first: usize) -> std::io::Result<()> {
    files
        .iter()
        .skip(first)
        .step_by(SYNC_THREADS)
        .try_for_each(File::sync_all)
}

/// Closes `writers`, spread over the cores: closing encodes and compresses
/// each file's buffered rows, the bulk of writing it. Threads take writers
/// from one queue until it is empty, so one that cannot start leaves its
/// share to the others.
fn close_all(id: &str, writers: Vec<ArrowWriter<File>>) -> Result<Vec<File>> {
    let incomplete = |why: String| SnapshotError::Incomplete {
        id: id.to_string(),
        why,
    };
    let queue = std::sync::Mutex::new(writers);
    let drain = || -> Result<Vec<File>> {
        let mut files = Vec::new();
        let next = || queue.lock().unwrap_or_else(PoisonError::into_inner).pop();
        while let Some(writer) = next() {
            files.push(writer.into_inner()?);
        }
        Ok(files)
    };
    let helpers = std::thread::available_parallelism().map_or(0, |n| n.get() - 1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..helpers)
            .filter_map(|_| std::thread::Builder::new().spawn_scoped(scope, drain).ok())
            .collect();
        let mut files = drain();
        for handle in handles {
            let more = handle
                .join()
                .unwrap_or_else(|_| Err(incomplete("a thread closing its files panicked".into())));
            files = files.and_then(|mut files| {
                files.extend(more?);
                Ok(files)
            });
        }
        files
    })
}

fn parquet_rows(path: &Path) -> Result<usize> {
    let file = File::open(path).map_err(io(path))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)?;
    Ok(builder.metadata().file_metadata().num_rows().max(0) as usize)
}

fn set_latest(root: &Path, id: &str) -> Result<()> {
    let tmp = root.join(".latest.tmp");
    write_synced(&tmp, format!("{id}\n").as_bytes()).map_err(io(&tmp))?;
    let latest = root.join("latest");
    std::fs::rename(&tmp, &latest).map_err(io(&latest))?;
    sync_dir(root);
    Ok(())
}

/// The id in `latest`, if any.
pub fn latest(warehouse: &Path) -> Option<String> {
    let text = std::fs::read_to_string(root(warehouse).join("latest")).ok()?;
    let id = text.trim().to_string();
    (!id.is_empty()).then_some(id)
}

/// Published snapshots and experiments, oldest first (staging folders are
/// not snapshots).
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
    if !id.contains('/') && !id.starts_with('.') && dir.join("manifest.json").is_file() {
        Ok(dir)
    } else {
        Err(SnapshotError::Missing(id))
    }
}

/// A published snapshot, as `snapshots list` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Listed {
    pub id: String,
    pub latest: bool,
    pub experiment: bool,
    pub finished_at: String,
    pub logs: u64,
    pub failed: u64,
    /// Bytes of its files (linked ones included) and bytes it added.
    pub bytes: u64,
    pub bytes_new: u64,
    pub algorithm_version: String,
}

/// Every snapshot with its manifest's facts, oldest first.
pub fn describe_all(warehouse: &Path) -> Result<Vec<Listed>> {
    let latest = latest(warehouse);
    let mut out = Vec::new();
    for id in list(warehouse)? {
        let dir = root(warehouse).join(&id);
        let manifest = read_manifest(&dir).unwrap_or(Value::Null);
        let tables = &manifest["tables"];
        let sum = |key: &str| -> u64 {
            Table::ALL
                .iter()
                .map(|t| tables[t.name()][key].as_u64().unwrap_or(0))
                .sum()
        };
        out.push(Listed {
            latest: latest.as_deref() == Some(id.as_str()),
            experiment: manifest["experiment"].as_bool().unwrap_or(false),
            finished_at: manifest["finished_at"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            logs: manifest["counts"]["logs"].as_u64().unwrap_or(0),
            failed: manifest["counts"]["failed"].as_u64().unwrap_or(0),
            bytes: sum("bytes_written") + sum("bytes_linked"),
            bytes_new: sum("bytes_written"),
            algorithm_version: manifest["algorithm_version"]
                .as_str()
                .unwrap_or_default()
                .chars()
                .take(12)
                .collect(),
            id,
        });
    }
    Ok(out)
}

/// Snapshots `prune` would remove: all but the newest `keep` (never the
/// latest), oldest first.
pub fn prunable(warehouse: &Path, keep: usize) -> Result<Vec<String>> {
    let latest = latest(warehouse);
    let ids = list(warehouse)?;
    let cut = ids.len().saturating_sub(keep.max(1));
    Ok(ids
        .into_iter()
        .take(cut)
        .filter(|id| Some(id) != latest.as_ref())
        .collect())
}

/// Removes a snapshot (and its outbox). It is first renamed out of the
/// listing, so a prune that dies half-way leaves no listed snapshot with
/// files missing; what is left is removed by the next prune or run.
/// Staging folders are never touched: a run in progress owns its own.
/// Each snapshot's files are its own links, so the others stay complete.
pub fn remove(warehouse: &Path, id: &str) -> Result<()> {
    let dir = resolve(warehouse, Some(id))?;
    let doomed = root(warehouse).join(format!("{PRUNED}{id}"));
    std::fs::rename(&dir, &doomed).map_err(io(&dir))?;
    sync_dir(&root(warehouse));
    std::fs::remove_dir_all(&doomed).map_err(io(&doomed))?;
    let outbox = warehouse.join("outbox").join(format!("{id}.jsonl"));
    if outbox.exists() {
        std::fs::remove_file(&outbox).map_err(io(&outbox))?;
    }
    Ok(())
}

/// The name prefix of a snapshot being removed.
const PRUNED: &str = ".pruned-";

/// A keep-predicate: rows whose string column `column` is not in `drop`.
pub fn keep_unless(
    column: &'static str,
    drop: Arc<std::collections::HashSet<String>>,
) -> impl Fn(&RecordBatch) -> Result<BooleanArray> {
    move |batch: &RecordBatch| {
        let values = batch
            .column_by_name(column)
            .and_then(|c| c.as_string_opt::<i32>())
            .ok_or_else(|| SnapshotError::Missing(format!("column {column}")))?;
        Ok((0..batch.num_rows())
            .map(|i| Some(values.is_null(i) || !drop.contains(values.value(i))))
            .collect())
    }
}
