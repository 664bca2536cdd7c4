//! The analysis engine: DataFusion plans over whole sets of logs.
//!
//! A run registers the logs (see [`crate::scan`]), stacks the SQL models as
//! views and collects `log_analysis`: one row per log, whatever happened to
//! the others. Averages run the `group_average` model over `group_members`.
//! Each call gets a fresh `SessionContext`, so concurrent calls never share
//! tables.
//!
//! Memory: DataFusion 55 runs whole-log windows (the median step of the gap
//! rule, per-log counts) in `WindowAggExec`, which buffers its entire input.
//! So that memory does not grow with the volume, a large volume is analysed
//! as a few plans of at most `chunk_bytes` of logs each (hundreds of logs per
//! plan, never one plan per log); results are identical, as every metric is
//! per log.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::concat_batches;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::error::{EngineError, Result};
use crate::scan::{self, LogInput, ScanSummary};
use crate::sql::Models;
use crate::udf;

/// The engine: which SQL models to run, on how many partitions.
#[derive(Debug, Clone)]
pub struct Engine {
    models: Arc<Models>,
    partitions: usize,
    /// Input bytes analysed by one plan at most (see the module docs).
    chunk_bytes: u64,
}

/// Default input per plan: peak memory stays near 5× this (≈ 600 MiB).
pub const DEFAULT_CHUNK_BYTES: u64 = 128 * 1024 * 1024;

/// What one analysis run produced.
#[derive(Debug, Clone)]
pub struct LogAnalyses {
    /// One row per input log, ordered by `log_id` (log_analysis.sql columns).
    pub batch: RecordBatch,
    pub summary: ScanSummary,
}

impl Engine {
    pub fn new(models: Models) -> Self {
        let partitions = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            models: Arc::new(models),
            partitions,
            chunk_bytes: DEFAULT_CHUNK_BYTES,
        }
    }

    /// Overrides the input bytes per plan (0: the whole set in one plan).
    pub fn with_chunk_bytes(mut self, chunk_bytes: u64) -> Self {
        self.chunk_bytes = chunk_bytes;
        self
    }

    /// Overrides the number of partitions (default: the core count).
    pub fn with_partitions(mut self, partitions: usize) -> Self {
        self.partitions = partitions.max(1);
        self
    }

    pub fn models(&self) -> &Models {
        &self.models
    }

    /// A context with the project's functions registered.
    pub fn context(&self) -> SessionContext {
        let config = SessionConfig::new().with_target_partitions(self.partitions);
        let ctx = SessionContext::new_with_config(config);
        udf::register(&ctx);
        ctx
    }

    /// Registers the model `name` as a view on `ctx`.
    pub async fn register_model(&self, ctx: &SessionContext, name: &str) -> Result<()> {
        let model = self
            .models
            .get(name)
            .ok_or_else(|| EngineError::Request(format!("no SQL model named {name}")))?;
        let frame = ctx
            .sql(&model.query)
            .await
            .map_err(|source| EngineError::Model {
                name: name.to_string(),
                source,
            })?;
        ctx.register_table(name, frame.into_view())?;
        Ok(())
    }

    /// Registers the logs and the per-log models on a new context, ready for
    /// `SELECT … FROM log_analysis` (or any other query an analyst writes).
    pub async fn log_context(&self, logs: &[LogInput]) -> Result<(SessionContext, ScanSummary)> {
        let ctx = self.context();
        let summary = scan::register_logs(&ctx, logs)?;
        self.register_model(&ctx, "stg_clean_rows").await?;
        self.register_model(&ctx, "log_analysis").await?;
        Ok((ctx, summary))
    }

    /// Analyses every log: one plan per chunk of `chunk_bytes` of input,
    /// results in `log_id` order.
    pub async fn analyse(&self, logs: &[LogInput]) -> Result<LogAnalyses> {
        let mut sorted: Vec<(&LogInput, u64)> = logs
            .iter()
            .map(|log| (log, std::fs::metadata(&log.path).map_or(0, |m| m.len())))
            .collect();
        sorted.sort_by(|a, b| a.0.log_id.cmp(&b.0.log_id));
        // Even chunks: as many plans as the budget needs, each as full as the others.
        let total: u64 = sorted.iter().map(|(_, size)| size).sum();
        let target = match self.chunk_bytes {
            0 => u64::MAX,
            budget => total.div_ceil(total.div_ceil(budget).max(1)),
        };
        let mut chunks: Vec<Vec<LogInput>> = vec![Vec::new()];
        let mut bytes = 0u64;
        for (log, size) in sorted {
            let started = chunks.last().is_some_and(|c| !c.is_empty());
            if started && bytes + size > target {
                chunks.push(Vec::new());
                bytes = 0;
            }
            bytes += size;
            if let Some(chunk) = chunks.last_mut() {
                chunk.push(log.clone());
            }
        }
        let mut batches = Vec::with_capacity(chunks.len());
        let mut summary = ScanSummary::default();
        for chunk in &chunks {
            let (ctx, part) = self.log_context(chunk).await?;
            batches.push(collect(&ctx, "log_analysis").await?);
            summary.logs += part.logs;
            summary.bytes += part.bytes;
            summary.unreadable += part.unreadable;
        }
        let schema = batches[0].schema();
        let batch = concat_batches(&schema, &batches)?;
        Ok(LogAnalyses { batch, summary })
    }

    /// Averages groups of analyses: `members` has the group key and the analysis
    /// metric columns (see [`crate::average::members_schema`]).
    pub async fn average(&self, members: RecordBatch) -> Result<RecordBatch> {
        let ctx = self.context();
        ctx.register_batch("group_members", members)?;
        self.register_model(&ctx, "group_average").await?;
        collect(&ctx, "group_average").await
    }
}

async fn collect(ctx: &SessionContext, table: &str) -> Result<RecordBatch> {
    let frame = ctx.table(table).await?;
    let schema = Arc::new(frame.schema().as_arrow().clone());
    let batches = frame.collect().await?;
    Ok(concat_batches(&schema, &batches)?)
}
