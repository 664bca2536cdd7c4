//! The scan: a set of log files exposed to DataFusion as two tables.
//!
//! - `log_files`: one row per log (id, path, size, header columns, and the
//!   problem that makes it unreadable, if any). Built from headers only.
//! - `log_rows`: every data row of every readable log, keyed by `log_id`, typed
//!   by the contract's column list whatever each file's own column order.
//!
//! `log_rows` streams: each partition reads its files one after another and
//! emits each file's rows sorted by time, so the plan can declare the order
//! `(log_id, ts, line)` and window functions need no global sort. Memory stays
//! bounded by the largest log, not by the number of logs.

pub mod columns;
pub mod log_file;
pub mod text;

use std::path::PathBuf;
use std::sync::Arc;

use datafusion::arrow::array::{Int64Array, ListBuilder, RecordBatch, StringArray, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::streaming::StreamingTable;
use datafusion::datasource::MemTable;
use datafusion::error::Result;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{SortExpr, col};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::prelude::SessionContext;
use futures::StreamExt;

use columns::NUMERIC;
use log_file::{LogHeader, LogProblem, read_header, read_rows};

/// A log to analyse: its id (the analysis id, the file stem) and its path.
#[derive(Debug, Clone)]
pub struct LogInput {
    pub log_id: String,
    pub path: PathBuf,
}

impl LogInput {
    /// A log named after its file: `<dir>/<id>.csv` has id `<id>`.
    pub fn from_path(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let log_id = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        Self { log_id, path }
    }
}

/// What registering a set of logs found, before any row is read.
#[derive(Debug, Clone, Default)]
pub struct ScanSummary {
    pub logs: usize,
    pub bytes: u64,
    pub unreadable: usize,
}

/// One log after its header was read.
#[derive(Debug, Clone)]
struct LogEntry {
    input: LogInput,
    bytes: u64,
    header: std::result::Result<LogHeader, LogProblem>,
}

/// The `log_rows` schema: key, line, timestamp, then the contract's numerics.
pub fn log_rows_schema() -> SchemaRef {
    let mut fields = vec![
        Field::new("log_id", DataType::Utf8, false),
        Field::new("line", DataType::Int64, false),
        Field::new("ts", DataType::Timestamp(TimeUnit::Nanosecond, None), true),
    ];
    fields.extend(
        NUMERIC
            .iter()
            .map(|name| Field::new(*name, DataType::Float64, true)),
    );
    Arc::new(Schema::new(fields))
}

fn log_files_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("log_id", DataType::Utf8, false),
        Field::new("path", DataType::Utf8, false),
        Field::new("bytes", DataType::Int64, false),
        Field::new(
            "columns",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            false,
        ),
        Field::new("problem", DataType::Utf8, true),
    ]))
}

/// Registers `log_files` and `log_rows` for `logs` on `ctx`.
pub fn register_logs(ctx: &SessionContext, logs: &[LogInput]) -> Result<ScanSummary> {
    let entries: Vec<LogEntry> = logs.iter().map(read_entry).collect();
    let summary = ScanSummary {
        logs: entries.len(),
        bytes: entries.iter().map(|e| e.bytes).sum(),
        unreadable: entries.iter().filter(|e| e.header.is_err()).count(),
    };

    ctx.deregister_table("log_files")?;
    ctx.deregister_table("log_rows")?;
    let files = log_files_batch(&entries)?;
    ctx.register_table(
        "log_files",
        Arc::new(MemTable::try_new(files.schema(), vec![vec![files]])?),
    )?;

    let schema = log_rows_schema();
    let partitions = ctx.copied_config().target_partitions().max(1);
    let batch_size = ctx.copied_config().batch_size();
    let streams: Vec<Arc<dyn PartitionStream>> = balance(entries, partitions)
        .into_iter()
        .map(|files| {
            Arc::new(LogPartition {
                schema: schema.clone(),
                files,
                batch_size,
            }) as Arc<dyn PartitionStream>
        })
        .collect();
    let order = ["log_id", "ts", "line"]
        .into_iter()
        .map(|c| SortExpr::new(col(c), true, false))
        .collect();
    let table = StreamingTable::try_new(schema, streams)?.with_sort_order(order);
    ctx.register_table("log_rows", Arc::new(table))?;
    Ok(summary)
}

fn read_entry(input: &LogInput) -> LogEntry {
    use std::io::Read;
    let opened = std::fs::File::open(&input.path).and_then(|file| {
        let bytes = file.metadata()?.len();
        let mut head = Vec::with_capacity(8192);
        file.take(64 * 1024).read_to_end(&mut head)?;
        Ok((bytes, head))
    });
    match opened {
        Ok((bytes, head)) => LogEntry {
            input: input.clone(),
            bytes,
            header: read_header(&head),
        },
        Err(err) => LogEntry {
            input: input.clone(),
            bytes: 0,
            header: Err(format!("The log file could not be read: {err}.")),
        },
    }
}

fn log_files_batch(entries: &[LogEntry]) -> Result<RecordBatch> {
    let mut columns = ListBuilder::new(StringBuilder::new());
    for entry in entries {
        match &entry.header {
            Ok(h) => columns.append_value(h.names.iter().map(Some)),
            Err(_) => columns.append_value(std::iter::empty::<Option<&str>>()),
        }
    }
    Ok(RecordBatch::try_new(
        log_files_schema(),
        vec![
            Arc::new(StringArray::from_iter_values(
                entries.iter().map(|e| e.input.log_id.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                entries.iter().map(|e| e.input.path.to_string_lossy()),
            )),
            Arc::new(Int64Array::from_iter_values(
                entries.iter().map(|e| e.bytes as i64),
            )),
            Arc::new(columns.finish()),
            Arc::new(StringArray::from_iter(
                entries.iter().map(|e| e.header.as_ref().err()),
            )),
        ],
    )?)
}

/// Spreads readable logs over partitions, largest first onto the lightest
/// partition, then orders each partition by id (the declared sort order).
fn balance(entries: Vec<LogEntry>, partitions: usize) -> Vec<Vec<LogEntry>> {
    let mut readable: Vec<LogEntry> = entries.into_iter().filter(|e| e.header.is_ok()).collect();
    readable.sort_by_key(|e| std::cmp::Reverse(e.bytes));
    let mut parts: Vec<(u64, Vec<LogEntry>)> = (0..partitions).map(|_| (0, Vec::new())).collect();
    for entry in readable {
        if let Some(lightest) = parts.iter_mut().min_by_key(|(load, _)| *load) {
            lightest.0 += entry.bytes;
            lightest.1.push(entry);
        }
    }
    parts
        .into_iter()
        .map(|(_, mut files)| {
            files.sort_by(|a, b| a.input.log_id.cmp(&b.input.log_id));
            files
        })
        .collect()
}

/// The files of one partition, read one after another.
#[derive(Debug)]
struct LogPartition {
    schema: SchemaRef,
    files: Vec<LogEntry>,
    batch_size: usize,
}

impl PartitionStream for LogPartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let schema = self.schema.clone();
        let batch_size = self.batch_size;
        let files = self.files.clone();
        let batches = futures::stream::iter(files).flat_map(move |entry| {
            let batches = match (&entry.header, std::fs::read(&entry.input.path)) {
                (Ok(header), Ok(bytes)) => {
                    read_rows(&schema, &entry.input.log_id, &bytes, header, batch_size)
                }
                (_, Err(err)) => {
                    // Vanished between listing and reading: the log gets no rows
                    // and fails alone; the plan goes on.
                    tracing::warn!(log_id = %entry.input.log_id, %err, "log unreadable during scan");
                    Ok(Vec::new())
                }
                (Err(_), _) => Ok(Vec::new()),
            };
            let items: Vec<Result<RecordBatch>> = match batches {
                Ok(b) => b.into_iter().map(Ok).collect(),
                Err(e) => vec![Err(e)],
            };
            futures::stream::iter(items)
        });
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), batches))
    }
}
