//! The scan: a set of log files exposed to DataFusion as two tables.
//!
//! - `log_files`: one row per log (`log_no`, `log_id`), read from the input
//!   list alone (no file is opened).
//! - `log_rows`: every data row of every log, keyed by `log_no`, typed by the
//!   contract's column list whatever each file's own column order; a log that
//!   cannot be read yields one row whose `problem` says why.
//!
//! Both are DataFusion file scans (`DataSourceExec` over [`source::LogSource`])
//! over the same file groups: logs are numbered in the caller's order and split into
//! contiguous, byte-balanced ranges of `log_no`, one per partition. Each
//! partition reads its logs one after another and emits each log's rows in
//! time order, so both tables declare their partitioning (`Range` on
//! `log_no`) and their order (`log_no, ts, line`). The per-log windows,
//! aggregates and the join between the two tables then need no repartition
//! and no sort, and memory is bounded by partitions × the largest log, not by
//! the number of logs. `Range` (not `Hash`) is the honest declaration:
//! DataFusion trusts a declared `Hash` to be its own hash placement.
//!
//! Because the scan is a plain file scan, a distributed engine (Ballista) can
//! slice it by partition and ship each slice to an executor.

pub mod columns;
pub mod log_file;
pub mod source;
pub mod text;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::stats::Precision;
use datafusion::common::{ColumnStatistics, ScalarValue, SplitPoint, Statistics};
use datafusion::datasource::TableType;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::{LexOrdering, Partitioning, PhysicalSortExpr, RangePartitioning};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::projection::{ProjectionExec, ProjectionExpr};
use datafusion::prelude::SessionContext;

use columns::NUMERIC;
pub use log_file::LogLimits;
pub use source::{BundledLog, LogBundle, LogSource, TableKind};

/// A log to analyse: its id (the analysis id), where it is in the store,
/// its size, and the sha256 its bytes must still have (when known).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogInput {
    pub log_id: String,
    pub location: object_store::path::Path,
    pub bytes: u64,
    pub sha256: Option<String>,
}

impl LogInput {
    /// A local file named after its analysis: `<dir>/<id>.csv` has id `<id>`.
    /// The path is made absolute (object store locations are).
    pub fn from_path(path: &std::path::Path) -> std::io::Result<Self> {
        let absolute = crate::volume::absolute(path)?;
        let location = object_store::path::Path::from_absolute_path(&absolute)
            .map_err(std::io::Error::other)?;
        let log_id = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let bytes = std::fs::metadata(&absolute).map_or(0, |m| m.len());
        Ok(Self {
            log_id,
            location,
            bytes,
            sha256: None,
        })
    }
}

/// Files and bytes read so far, shared with whoever shows progress.
#[derive(Debug, Default)]
pub struct ScanProgress {
    files: AtomicU64,
    bytes: AtomicU64,
    total_files: AtomicU64,
    total_bytes: AtomicU64,
}

impl ScanProgress {
    /// What the scan will read in all.
    pub fn set_total(&self, files: u64, bytes: u64) {
        self.total_files.store(files, Ordering::Relaxed);
        self.total_bytes.store(bytes, Ordering::Relaxed);
    }

    /// (files, bytes) the scan will read in all (0 until known).
    pub fn total(&self) -> (u64, u64) {
        (
            self.total_files.load(Ordering::Relaxed),
            self.total_bytes.load(Ordering::Relaxed),
        )
    }

    pub(crate) fn file_done(&self, bytes: u64) {
        self.files.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// (files, bytes) read so far.
    pub fn get(&self) -> (u64, u64) {
        (
            self.files.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }
}

/// The logs of one plan, numbered and split into partitions.
#[derive(Debug, Clone)]
pub struct LogSet {
    /// The object store the locations are in (`file://` for local paths).
    pub store: ObjectStoreUrl,
    /// Per partition, its logs as `(log_no, input)`, ascending `log_no`.
    pub partitions: Vec<Vec<(i64, LogInput)>>,
    pub limits: LogLimits,
    pub progress: Option<Arc<ScanProgress>>,
}

impl LogSet {
    /// Numbers `logs` in the order given (the order results come out in)
    /// and splits them into `partitions` contiguous ranges of about the same
    /// number of bytes.
    pub fn new(store: ObjectStoreUrl, logs: Vec<LogInput>, partitions: usize) -> Self {
        let partitions = partitions.max(1);
        let total: u64 = logs.iter().map(|l| l.bytes.max(1)).sum();
        let mut groups: Vec<Vec<(i64, LogInput)>> = vec![Vec::new(); partitions];
        let mut done = 0u64;
        for (no, log) in logs.into_iter().enumerate() {
            // The partition whose share of the bytes this log starts in.
            let share = (done as u128 * partitions as u128 / total.max(1) as u128) as usize;
            done += log.bytes.max(1);
            groups[share.min(partitions - 1)].push((no as i64, log));
        }
        Self::from_partitions(store, groups)
    }

    /// Logs already numbered and split (ascending `log_no` within and
    /// across partitions), as a serialized plan carries them.
    pub fn from_partitions(store: ObjectStoreUrl, partitions: Vec<Vec<(i64, LogInput)>>) -> Self {
        Self {
            store,
            partitions,
            limits: LogLimits::default(),
            progress: None,
        }
    }

    pub fn with_limits(mut self, limits: LogLimits) -> Self {
        self.limits = limits;
        self
    }

    pub fn with_progress(mut self, progress: Arc<ScanProgress>) -> Self {
        progress.set_total(self.logs() as u64, self.bytes());
        self.progress = Some(progress);
        self
    }

    pub fn logs(&self) -> usize {
        self.partitions.iter().map(Vec::len).sum()
    }

    pub fn bytes(&self) -> u64 {
        self.partitions.iter().flatten().map(|(_, l)| l.bytes).sum()
    }

    /// Per partition, its logs in bundles. Consecutive small logs of a
    /// partition are bundled into one scanned "file" ([`LogBundle`]), so
    /// that rows flow in batches of thousands, not of one short drive each:
    /// per-batch costs dominate otherwise.
    pub fn bundles(&self) -> Vec<Vec<Vec<BundledLog>>> {
        self.partitions
            .iter()
            .map(|logs| {
                let mut bundles = Vec::new();
                let mut bundle: Vec<BundledLog> = Vec::new();
                let mut bytes = 0u64;
                for (no, log) in logs {
                    if !bundle.is_empty()
                        && (bytes + log.bytes > BUNDLE_BYTES || bundle.len() >= BUNDLE_LOGS)
                    {
                        bundles.push(std::mem::take(&mut bundle));
                        bytes = 0;
                    }
                    bytes += log.bytes;
                    bundle.push(BundledLog {
                        log_no: *no,
                        log_id: log.log_id.clone(),
                        location: log.location.clone(),
                        bytes: log.bytes,
                        sha256: log.sha256.clone(),
                    });
                }
                if !bundle.is_empty() {
                    bundles.push(bundle);
                }
                bundles
            })
            .collect()
    }
}

/// One scanned "file": a bundle of logs, with the statistics that let
/// DataFusion keep the declared order across a group's bundles (its range of
/// `log_no`).
fn bundle_file(schema: &SchemaRef, logs: Vec<BundledLog>) -> PartitionedFile {
    let (first, last) = (logs[0].log_no, logs[logs.len() - 1].log_no);
    let bytes = logs.iter().map(|l| l.bytes).sum();
    let mut file = PartitionedFile::new(logs[0].location.to_string(), bytes);
    file.statistics = Some(Arc::new(bundle_statistics(schema, first, last)));
    file.extensions.insert(LogBundle { logs });
    file
}

/// `Range` on `log_no`, bounded by the first log of each partition after
/// the first (an empty partition still gets a bound above the previous one).
fn partitioning(schema: &SchemaRef, bundles: &[Vec<Vec<BundledLog>>]) -> Result<Partitioning> {
    let ordering = LexOrdering::new(vec![sort_key(schema, "log_no")?])
        .ok_or_else(|| DataFusionError::Internal("no sort key for log_no".into()))?;
    let mut split_points = Vec::with_capacity(bundles.len().saturating_sub(1));
    let mut last = bundles
        .first()
        .and_then(|p| p.last())
        .and_then(|b| b.last())
        .map_or(-1, |l| l.log_no);
    for partition in bundles.iter().skip(1) {
        let first = partition.first().and_then(|b| b.first()).map(|l| l.log_no);
        let bound = first.unwrap_or(last + 1).max(last + 1);
        split_points.push(SplitPoint::new(vec![ScalarValue::Int64(Some(bound))]));
        last = partition
            .last()
            .and_then(|b| b.last())
            .map_or(bound, |l| l.log_no);
    }
    Ok(Partitioning::Range(RangePartitioning::try_new(
        ordering,
        split_points,
    )?))
}

/// Logs are bundled up to this many bytes, or this many logs.
const BUNDLE_BYTES: u64 = 2 * 1024 * 1024;
const BUNDLE_LOGS: usize = 256;

/// Statistics of a bundle holding the rows of logs `first..=last`. The
/// min/max of `log_no` is what proves the order across a group's bundles;
/// other columns say nothing (a typed null, or the type's default where
/// nulls are not allowed), which DataFusion's order check accepts as the
/// first key decides.
fn bundle_statistics(schema: &SchemaRef, first: i64, last: i64) -> Statistics {
    let columns = schema
        .fields()
        .iter()
        .map(|field| {
            let (min, max) = if field.name() == "log_no" {
                (
                    ScalarValue::Int64(Some(first)),
                    ScalarValue::Int64(Some(last)),
                )
            } else if field.is_nullable() {
                let null = ScalarValue::try_from(field.data_type()).unwrap_or(ScalarValue::Null);
                (null.clone(), null)
            } else {
                let zero = ScalarValue::new_default(field.data_type()).unwrap_or(ScalarValue::Null);
                (zero.clone(), zero)
            };
            ColumnStatistics {
                min_value: Precision::Inexact(min),
                max_value: Precision::Inexact(max),
                ..ColumnStatistics::new_unknown()
            }
        })
        .collect();
    Statistics {
        num_rows: Precision::Absent,
        total_byte_size: Precision::Absent,
        column_statistics: columns,
    }
}

fn sort_key(schema: &SchemaRef, name: &str) -> Result<PhysicalSortExpr> {
    let index = schema.index_of(name)?;
    Ok(
        PhysicalSortExpr::new_default(Arc::new(Column::new(name, index)))
            .asc()
            .nulls_last(),
    )
}

/// The `log_rows` schema: key, line, timestamp, which optional columns the
/// log has, the contract's numerics, and the problem of an unreadable log.
pub fn log_rows_schema() -> SchemaRef {
    let mut fields = vec![
        Field::new("log_no", DataType::Int64, false),
        Field::new("line", DataType::Int64, false),
        Field::new("ts", DataType::Timestamp(TimeUnit::Nanosecond, None), true),
        Field::new("has_speed_column", DataType::Boolean, false),
        Field::new("has_oil_temp_column", DataType::Boolean, false),
    ];
    fields.extend(
        NUMERIC
            .iter()
            .map(|name| Field::new(*name, DataType::Float64, true)),
    );
    fields.push(Field::new("problem", DataType::Utf8, true));
    Arc::new(Schema::new(fields))
}

/// The `log_files` schema.
pub fn log_files_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("log_no", DataType::Int64, false),
        Field::new("log_id", DataType::Utf8, false),
    ]))
}

/// Registers `log_files` and `log_rows` for `logs` on `ctx` (replacing any).
pub fn register(ctx: &SessionContext, logs: Arc<LogSet>) -> Result<()> {
    for kind in [TableKind::Files, TableKind::Rows] {
        ctx.deregister_table(kind.table_name())?;
        ctx.register_table(
            kind.table_name(),
            Arc::new(LogTable::new(logs.clone(), kind)),
        )?;
    }
    Ok(())
}

/// `log_files` or `log_rows` over a [`LogSet`].
#[derive(Debug)]
pub struct LogTable {
    logs: Arc<LogSet>,
    kind: TableKind,
}

impl LogTable {
    pub fn new(logs: Arc<LogSet>, kind: TableKind) -> Self {
        Self { logs, kind }
    }

    pub fn logs(&self) -> &LogSet {
        &self.logs
    }

    pub fn kind(&self) -> TableKind {
        self.kind
    }

    /// The physical scan of this table: a `DataSourceExec` over the set's
    /// file groups, declaring its partitioning and order.
    pub fn scan_plan(&self) -> Result<Arc<dyn ExecutionPlan>> {
        scan_exec(&self.logs, self.kind)
    }
}

/// The scan of one table of `logs`.
pub fn scan_exec(logs: &LogSet, kind: TableKind) -> Result<Arc<dyn ExecutionPlan>> {
    let source = LogSource::new(kind, logs.limits, logs.progress.clone());
    scan_from_bundles(logs.store.clone(), source, logs.bundles())
}

/// The scan of `source`'s table over `bundles` (per partition, its bundles
/// of logs in ascending `log_no`): a `DataSourceExec` declaring its
/// partitioning and order. Also how a serialized scan is rebuilt.
pub fn scan_from_bundles(
    store: ObjectStoreUrl,
    source: LogSource,
    bundles: Vec<Vec<Vec<BundledLog>>>,
) -> Result<Arc<dyn ExecutionPlan>> {
    let kind = source.kind;
    let schema = kind.schema();
    let ordering = match kind {
        TableKind::Files => vec![sort_key(&schema, "log_no")?],
        TableKind::Rows => vec![
            sort_key(&schema, "log_no")?,
            sort_key(&schema, "ts")?,
            sort_key(&schema, "line")?,
        ],
    };
    let ordering = LexOrdering::new(ordering)
        .ok_or_else(|| DataFusionError::Internal("empty scan ordering".into()))?;
    let mut statistics = Statistics::new_unknown(&schema);
    if kind == TableKind::Files {
        let logs = bundles.iter().flatten().map(Vec::len).sum();
        statistics.num_rows = Precision::Inexact(logs);
    }
    let partitioning = partitioning(&schema, &bundles)?;
    let groups = bundles
        .into_iter()
        .map(|partition| {
            FileGroup::new(
                partition
                    .into_iter()
                    .map(|logs| bundle_file(&schema, logs))
                    .collect(),
            )
        })
        .collect();
    let config = FileScanConfigBuilder::new(store, Arc::new(source))
        .with_file_groups(groups)
        .with_output_ordering(vec![ordering])
        .with_output_partitioning(Some(partitioning))
        .with_statistics(statistics)
        .build();
    Ok(DataSourceExec::from_data_source(config))
}

#[async_trait]
impl TableProvider for LogTable {
    fn schema(&self) -> SchemaRef {
        self.kind.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let scan = self.scan_plan()?;
        let Some(projection) = projection else {
            return Ok(scan);
        };
        let schema = scan.schema();
        let exprs = projection.iter().map(|&i| {
            let name = schema.field(i).name().clone();
            ProjectionExpr::new(Arc::new(Column::new(&name, i)), name)
        });
        Ok(Arc::new(ProjectionExec::try_new(exprs, scan)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scan_declares_its_order_and_partitioning() {
        let inputs: Vec<LogInput> = (0..6)
            .map(|i| LogInput {
                log_id: format!("log{i}"),
                location: object_store::path::Path::from(format!("v/log{i}.csv")),
                bytes: 100,
                sha256: None,
            })
            .collect();
        let logs = LogSet::new(ObjectStoreUrl::local_filesystem(), inputs, 2);
        let scan = scan_exec(&logs, TableKind::Rows).expect("scan");
        let props = scan.properties();
        assert!(props.output_ordering().is_some(), "ordering lost");
        assert!(matches!(
            props.output_partitioning(),
            Partitioning::Range(_)
        ));
    }
}
