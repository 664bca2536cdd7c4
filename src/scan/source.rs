//! The log reader as a DataFusion file source: how one partition turns its
//! files into batches of `log_files` or `log_rows`.
//!
//! A file is fetched from its object store (at most the byte limit plus one,
//! so an oversized file never fills memory), checked against the sha256 its
//! upload recorded, then parsed. Any failure is the log's own: it becomes the
//! log's problem row, and the plan goes on with the next file.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{
    FileOpenFuture, FileOpener, FileScanConfig, FileSource,
};
use datafusion::datasource::table_schema::TableSchema;
use datafusion::error::{DataFusionError, Result};
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use futures::StreamExt;
use object_store::{GetOptions, GetRange, ObjectStore};
use sha2::{Digest, Sha256};

use super::log_file::{
    CHANGED_SINCE_UPLOAD, LogLimits, NOT_A_FILE, UNREADABLE, problem_row, read_log, too_many_bytes,
};
use super::{ScanProgress, log_files_schema, log_rows_schema};

/// Which of the two tables a scan produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TableKind {
    /// `log_files`: one row per log, from the input list.
    Files,
    /// `log_rows`: the rows of every log.
    Rows,
}

impl TableKind {
    pub fn table_name(self) -> &'static str {
        match self {
            Self::Files => "log_files",
            Self::Rows => "log_rows",
        }
    }

    pub fn schema(self) -> SchemaRef {
        match self {
            Self::Files => log_files_schema(),
            Self::Rows => log_rows_schema(),
        }
    }
}

/// The logs one scanned "file" stands for, in `log_no` order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogBundle {
    pub logs: Vec<BundledLog>,
}

/// One log of a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundledLog {
    pub log_no: i64,
    pub log_id: String,
    pub location: object_store::path::Path,
    pub bytes: u64,
    /// The sha256 recorded at upload; the bytes read must still have it.
    pub sha256: Option<String>,
}

/// The file source of `log_files` and `log_rows`.
#[derive(Clone)]
pub struct LogSource {
    pub(crate) kind: TableKind,
    pub(crate) limits: LogLimits,
    table_schema: TableSchema,
    batch_size: usize,
    metrics: ExecutionPlanMetricsSet,
    progress: Option<Arc<ScanProgress>>,
}

impl fmt::Debug for LogSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogSource")
            .field("kind", &self.kind)
            .field("limits", &self.limits)
            .finish()
    }
}

impl LogSource {
    pub fn new(kind: TableKind, limits: LogLimits, progress: Option<Arc<ScanProgress>>) -> Self {
        Self {
            kind,
            limits,
            table_schema: TableSchema::from(kind.schema()),
            batch_size: 8192,
            metrics: ExecutionPlanMetricsSet::new(),
            progress,
        }
    }
}

impl FileSource for LogSource {
    fn create_file_opener(
        &self,
        store: Arc<dyn ObjectStore>,
        config: &FileScanConfig,
        _partition: usize,
    ) -> Result<Arc<dyn FileOpener>> {
        Ok(Arc::new(LogOpener {
            local: config.object_store_url.as_str() == "file:///",
            store,
            kind: self.kind,
            schema: self.kind.schema(),
            limits: self.limits,
            batch_size: self.batch_size,
            progress: self.progress.clone(),
        }))
    }

    fn table_schema(&self) -> &TableSchema {
        &self.table_schema
    }

    fn with_batch_size(&self, batch_size: usize) -> Arc<dyn FileSource> {
        let mut source = self.clone();
        source.batch_size = batch_size;
        Arc::new(source)
    }

    fn metrics(&self) -> &ExecutionPlanMetricsSet {
        &self.metrics
    }

    fn file_type(&self) -> &str {
        self.kind.table_name()
    }

    /// A log is read whole by one partition: never split into byte ranges.
    fn supports_repartitioning(&self) -> bool {
        false
    }

    /// The scan evaluates no expression of its own.
    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(
            &Arc<dyn datafusion::physical_expr::PhysicalExpr>,
        ) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }
}

/// Opens the files of one partition.
struct LogOpener {
    store: Arc<dyn ObjectStore>,
    /// Local files are read straight from the file system, in the same
    /// blocking task that parses them (no hand-off per file).
    local: bool,
    kind: TableKind,
    schema: SchemaRef,
    limits: LogLimits,
    batch_size: usize,
    progress: Option<Arc<ScanProgress>>,
}

impl FileOpener for LogOpener {
    fn open(&self, file: PartitionedFile) -> Result<FileOpenFuture> {
        let Some(bundle) = file.extensions.get::<LogBundle>().cloned() else {
            return Err(DataFusionError::Internal(format!(
                "log scan: {} has no log metadata",
                file.object_meta.location
            )));
        };
        let schema = self.schema.clone();
        if self.kind == TableKind::Files {
            let batch = RecordBatch::try_new(
                schema,
                vec![
                    Arc::new(Int64Array::from_iter_values(
                        bundle.logs.iter().map(|l| l.log_no),
                    )),
                    Arc::new(StringArray::from_iter_values(
                        bundle.logs.iter().map(|l| l.log_id.as_str()),
                    )),
                ],
            )?;
            return Ok(Box::pin(async move {
                Ok(futures::stream::iter([Ok(batch)]).boxed())
            }));
        }
        let (store, limits, batch_size) = (self.store.clone(), self.limits, self.batch_size);
        let (progress, local) = (self.progress.clone(), self.local);
        Ok(Box::pin(async move {
            let mut fetched = Vec::with_capacity(bundle.logs.len());
            for log in bundle.logs {
                let bytes = if local {
                    None
                } else {
                    Some(fetch(&store, &log, limits).await)
                };
                fetched.push((log, bytes));
            }
            // Reading local files, hashing and parsing are blocking CPU and
            // I/O work: off the async threads, one hand-off per bundle.
            let batches = tokio::task::spawn_blocking(move || -> Result<Vec<RecordBatch>> {
                let mut batches = Vec::new();
                for (log, bytes) in fetched {
                    let bytes = bytes.unwrap_or_else(|| read_local(&log, limits));
                    if let Err(problem) = &bytes {
                        tracing::warn!(log_id = %log.log_id, location = %log.location, %problem, "log unreadable");
                    }
                    let read = match bytes {
                        Ok(bytes) => match changed_since_upload(&bytes, log.sha256.as_deref()) {
                            Some(problem) => vec![problem_row(&schema, log.log_no, problem)?],
                            None => read_log(&schema, log.log_no, &bytes, limits, batch_size)?,
                        },
                        Err(problem) => vec![problem_row(&schema, log.log_no, &problem)?],
                    };
                    if let Some(p) = &progress {
                        p.file_done(log.bytes);
                    }
                    batches.extend(read);
                }
                // The bundle's rows as few batches as the batch size allows.
                coalesce(&schema, batches, batch_size)
            })
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))??;
            Ok(futures::stream::iter(batches.into_iter().map(Ok)).boxed())
        }))
    }
}

/// Concatenates consecutive batches up to `batch_size` rows each.
fn coalesce(
    schema: &SchemaRef,
    batches: Vec<RecordBatch>,
    batch_size: usize,
) -> Result<Vec<RecordBatch>> {
    let mut out = Vec::new();
    let mut pending: Vec<RecordBatch> = Vec::new();
    let mut rows = 0;
    for batch in batches {
        if rows + batch.num_rows() > batch_size && !pending.is_empty() {
            out.push(datafusion::arrow::compute::concat_batches(
                schema, &pending,
            )?);
            pending.clear();
            rows = 0;
        }
        rows += batch.num_rows();
        pending.push(batch);
    }
    if !pending.is_empty() {
        out.push(datafusion::arrow::compute::concat_batches(
            schema, &pending,
        )?);
    }
    Ok(out)
}

/// The file's bytes, at most the byte limit plus one; its problem otherwise.
async fn fetch(
    store: &Arc<dyn ObjectStore>,
    log: &BundledLog,
    limits: LogLimits,
) -> std::result::Result<bytes::Bytes, String> {
    let listed = log.bytes;
    if listed > limits.max_bytes {
        return Err(too_many_bytes(listed, limits));
    }
    if listed == 0 {
        return Ok(bytes::Bytes::new());
    }
    let options = GetOptions {
        range: Some(GetRange::Bounded(0..limits.max_bytes + 1)),
        ..GetOptions::default()
    };
    let unreadable = |e: &dyn fmt::Display| format!("{UNREADABLE}: {e}.");
    let got = store
        .get_opts(&log.location, options)
        .await
        .map_err(|e| unreadable(&e))?;
    let bytes = got.bytes().await.map_err(|e| unreadable(&e))?;
    if bytes.len() as u64 > limits.max_bytes {
        return Err(too_many_bytes(bytes.len() as u64, limits));
    }
    Ok(bytes)
}

/// A local log's bytes (at most the byte limit plus one); only a regular
/// file is read.
fn read_local(log: &BundledLog, limits: LogLimits) -> std::result::Result<bytes::Bytes, String> {
    use std::io::Read;
    let unreadable = |e: &dyn fmt::Display| format!("{UNREADABLE}: {e}.");
    let path = std::path::Path::new("/").join(log.location.as_ref());
    let file = crate::volume::open_nonblocking(&path).map_err(|e| unreadable(&e))?;
    let meta = file.metadata().map_err(|e| unreadable(&e))?;
    if !meta.is_file() {
        return Err(NOT_A_FILE.into());
    }
    if meta.len() > limits.max_bytes {
        return Err(too_many_bytes(meta.len(), limits));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(limits.max_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| unreadable(&e))?;
    if bytes.len() as u64 > limits.max_bytes {
        return Err(too_many_bytes(bytes.len() as u64, limits));
    }
    Ok(bytes::Bytes::from(bytes))
}

/// The problem of a log whose bytes no longer have their upload's sha256.
fn changed_since_upload(bytes: &[u8], expected: Option<&str>) -> Option<&'static str> {
    let expected = expected?;
    let actual = format!("{:x}", Sha256::digest(bytes));
    (!actual.eq_ignore_ascii_case(expected.trim())).then_some(CHANGED_SINCE_UPLOAD)
}
