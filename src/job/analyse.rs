//! Stage 2: analyse the logs that need it, in one engine plan, and stream
//! the results into the staged snapshot.
//!
//! Each batch of `log_analysis` rows gets the object as sent
//! (`analysis_json`), as the backend prints it back (`analysis_jsonb`, the
//! bytes a group's `analysisSha` hashes) and the hash change detection
//! compares (`result_sha256`), written straight from the columns; then the
//! snapshot models (`snapshot_analysis.sql`, `fuel_by_speed_band.sql`)
//! shape the analyst's tables, planned once and run on each chunk of a few
//! hundred logs. A task gathers the engine's results up to four chunks
//! ahead; two chunks are shaped at once on tasks of their own, and the
//! job's task writes them in order. Nothing more is held.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, RecordBatch, StringBuilder,
};
use datafusion::arrow::compute::{concat_batches, nullif};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::runtime::SpawnedTask;
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::SendableRecordBatchStream;
use futures::TryStreamExt;
use tokio::sync::{mpsc, oneshot};

use super::dictionary;
use super::group::Membership;
use super::plan::RunPlan;
use super::snapshot::{Staging, Table, keep_unless};
use super::timing::Timings;
use super::{JobError, joined};
use crate::analysis::engine::Engine;
use crate::analysis::engine::Target;
use crate::analysis::jsonb::result_hash;
use crate::analysis::message::AnalysisWriter;
use crate::analysis::prepared::{Input, Prepared, register_input};
use crate::catalog::CatalogIndex;
use crate::scan::ScanProgress;
use crate::volume::Volume;

/// What the analysis stage did.
#[derive(Debug, Default)]
pub struct Analysed {
    pub logs: usize,
    pub bytes: u64,
    pub failed: usize,
    /// How many logs failed, by message.
    pub failures: BTreeMap<String, usize>,
    pub timings: Timings,
    /// The group stage's membership models, when they were planned ahead.
    pub membership: Option<Membership>,
}

/// Results gathered per run of the snapshot models: small enough that
/// shaping and writing them overlaps the engine, large enough to amortize
/// each run of the models.
const SNAPSHOT_ROWS: usize = 512;

/// The smallest chunk before the last: near the end, chunks shrink to a
/// quarter of the logs still to come, so the chunk left to shape once the
/// engine has ended is small.
const LAST_ROWS: usize = 64;

/// Chunks the engine may run ahead of the snapshot writer (bounds memory).
const CHUNKS_AHEAD: usize = 4;

/// Chunks shaped at once, each on a task of its own: chunks still queued
/// when the engine ends are shaped on every core, not on the job's alone.
const SHAPING: usize = 2;

/// The engine's results in chunks of about [`SNAPSHOT_ROWS`] rows (fewer
/// near the end of `expected` rows, down to [`LAST_ROWS`]), gathered by a
/// task of its own: the engine emits each log as it ends and keeps going
/// while the job shapes and writes earlier chunks (up to [`CHUNKS_AHEAD`]
/// of them). Dropped, it stops the task and the engine.
struct Chunks {
    receiver: mpsc::Receiver<DFResult<RecordBatch>>,
    task: Option<SpawnedTask<()>>,
}

impl Chunks {
    fn gather(mut stream: SendableRecordBatchStream, expected: usize) -> Self {
        let (chunks, receiver) = mpsc::channel(CHUNKS_AHEAD);
        let task = SpawnedTask::spawn(async move {
            let schema = stream.schema();
            let mut pending: Vec<RecordBatch> = Vec::new();
            let mut rows = 0;
            let mut remaining = expected;
            loop {
                let next = match stream.try_next().await {
                    Ok(next) => next,
                    Err(err) => {
                        let _ = chunks.send(Err(err)).await;
                        return;
                    }
                };
                let end = next.is_none();
                if let Some(batch) = next {
                    rows += batch.num_rows();
                    pending.push(batch);
                }
                let wanted = (remaining / 4).clamp(LAST_ROWS, SNAPSHOT_ROWS);
                if rows > 0 && (rows >= wanted || end) {
                    let chunk = concat_batches(&schema, &pending).map_err(Into::into);
                    pending.clear();
                    remaining = remaining.saturating_sub(rows);
                    rows = 0;
                    if chunks.send(chunk).await.is_err() {
                        return;
                    }
                }
                if end {
                    return;
                }
            }
        });
        Self {
            receiver,
            task: Some(task),
        }
    }

    /// The next chunk; `None` once the engine has ended. A task that ended
    /// any other way (a panic in the engine) is an error, never an early end
    /// that would publish a snapshot without the rest of the logs.
    async fn next(&mut self) -> DFResult<Option<RecordBatch>> {
        if let Some(chunk) = self.receiver.recv().await {
            return chunk.map(Some);
        }
        if let Some(task) = self.task.take() {
            task.join()
                .await
                .map_err(|e| DataFusionError::ExecutionJoin(Box::new(e)))?;
        }
        Ok(None)
    }
}

/// The columns the job adds to `log_analysis` rows.
fn results_schema(analysis: &SchemaRef) -> SchemaRef {
    let mut fields: Vec<Field> = analysis
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new("analysis_json", DataType::Utf8, false));
    fields.push(Field::new("analysis_jsonb", DataType::Utf8, false));
    fields.push(Field::new("result_sha256", DataType::Utf8, false));
    Arc::new(Schema::new(fields))
}

/// The snapshot models, planned once for the whole run.
pub struct SnapshotModels {
    /// The `log_analysis` schema they were planned for.
    input: SchemaRef,
    results: SchemaRef,
    analysis: Prepared,
    bands: Prepared,
}

/// One chunk's snapshot rows, and what shaping them found and cost.
struct Shaped {
    analysis: Vec<RecordBatch>,
    bands: Vec<RecordBatch>,
    /// How many of its logs failed, by message.
    failures: BTreeMap<String, usize>,
    timings: Timings,
}

impl SnapshotModels {
    /// Plans `snapshot_analysis` and `fuel_by_speed_band` over `results`
    /// rows of `log_analysis` schema `analysis` and the catalog. A run
    /// handles a few hundred rows: one partition, no exchange between them.
    pub async fn prepare(engine: &Engine, analysis: &SchemaRef) -> Result<Self, JobError> {
        let results = results_schema(analysis);
        let ctx = engine.serial_context();
        register_input(&ctx, "results", &results, vec![])?;
        register_input(&ctx, "catalog", &CatalogIndex::schema(), vec![])?;
        engine.register_model(&ctx, "snapshot_analysis").await?;
        engine.register_model(&ctx, "fuel_by_speed_band").await?;
        Ok(Self {
            analysis: Prepared::new(&ctx, "snapshot_analysis").await?,
            bands: Prepared::new(&ctx, "fuel_by_speed_band").await?,
            input: analysis.clone(),
            results,
        })
    }

    /// Whether they were planned for `log_analysis` rows of this schema.
    fn fits(&self, analysis: &SchemaRef) -> bool {
        self.input.fields() == analysis.fields()
    }

    pub fn analysis_schema(&self) -> SchemaRef {
        self.analysis.plan().schema()
    }

    pub fn bands_schema(&self) -> SchemaRef {
        self.bands.plan().schema()
    }

    /// The snapshot rows of one chunk of the engine's results: their JSON
    /// columns, then both models.
    async fn shape(
        &self,
        writer: &AnalysisWriter,
        catalog: &CatalogIndex,
        batch: &RecordBatch,
    ) -> Result<Shaped, JobError> {
        let mut timings = Timings::default();
        let t = Instant::now();
        let (results, failures) = with_json(writer, batch)?;
        timings.add("json", t);
        let t = Instant::now();
        let (analysis, bands) = self.run(&results, catalog).await?;
        timings.add("models", t);
        Ok(Shaped {
            analysis,
            bands,
            failures,
            timings,
        })
    }

    /// Runs both models on `results`, joined with the catalog rows of
    /// their logs only (a join with the whole catalog per chunk would cost
    /// chunks × catalog).
    async fn run(
        &self,
        results: &RecordBatch,
        catalog: &CatalogIndex,
    ) -> Result<(Vec<RecordBatch>, Vec<RecordBatch>), JobError> {
        let ids = results
            .column_by_name("log_id")
            .and_then(|c| c.as_string_opt::<i32>())
            .ok_or_else(|| DataFusionError::Internal("results without log_id".into()))?;
        let catalog = catalog.rows_of(ids.iter().flatten())?;
        let inputs = [
            Input::Table(self.results.clone(), vec![results.clone()]),
            Input::Table(CatalogIndex::schema(), vec![catalog]),
        ];
        let analysis = self.analysis.execute(&inputs)?.try_collect().await?;
        let bands = self.bands.execute(&inputs)?.try_collect().await?;
        Ok((analysis, bands))
    }
}

/// The plans of a run, made before it knows which logs it analyses (none
/// depends on them): the engine's on a task of its own, and the models
/// downstream of it on another, from the engine's output schema, while the
/// engine's plan is optimized.
pub struct EnginePlan {
    engine: SpawnedTask<Result<Prepared, JobError>>,
    downstream: SpawnedTask<Result<Option<Downstream>, JobError>>,
}

/// The models that take the engine's rows: the snapshot's, and the group
/// stage's membership.
struct Downstream {
    snapshot: SnapshotModels,
    membership: Membership,
}

impl EnginePlan {
    /// Plans `log_analysis` over the logs of `volume`; local engines only (a
    /// distributed plan is made in its scheduler's session).
    pub fn spawn(engine: &Engine, volume: &Volume) -> Option<Self> {
        if engine.target() != &Target::Local {
            return None;
        }
        let (schema_known, schema) = oneshot::channel();
        let store = volume.url().clone();
        let planner = engine.clone();
        let engine_task = SpawnedTask::spawn(async move {
            let send = |schema| {
                let _ = schema_known.send(schema);
            };
            Ok(planner.prepare_analysis_then(store, send).await?)
        });
        let engine = engine.clone();
        let downstream = SpawnedTask::spawn(async move {
            // No schema: the engine's planning failed, and its task says why.
            let Ok(schema) = schema.await else {
                return Ok(None);
            };
            let snapshot = SnapshotModels::prepare(&engine, &schema).await?;
            let membership = Membership::prepare(
                &engine,
                &dictionary::annotate(Table::Analysis, &snapshot.analysis_schema()),
                &dictionary::annotate(Table::FuelBySpeedBand, &snapshot.bands_schema()),
            )
            .await?;
            Ok(Some(Downstream {
                snapshot,
                membership,
            }))
        });
        Some(Self {
            engine: engine_task,
            downstream,
        })
    }
}

/// Analyses `plan.to_analyse` into `staging` (tables `analysis` and
/// `fuel_by_speed_band`, closed on return), with the engine's plan
/// `planned` when it was made ahead, else planned here.
pub async fn analyse(
    engine: &Engine,
    plan: &RunPlan,
    volume: &Volume,
    staging: &mut Staging,
    progress: Arc<ScanProgress>,
    planned: Option<EnginePlan>,
) -> Result<Analysed, JobError> {
    let logs = engine
        .log_set(volume.url().clone(), plan.to_analyse.clone())
        .with_progress(progress.clone());
    // A distributed scan reads on the executors: count progress here, as
    // results arrive.
    let remote_sizes: Option<HashMap<&str, u64>> = (engine.target() != &Target::Local).then(|| {
        plan.to_analyse
            .iter()
            .map(|l| (l.log_id.as_str(), l.bytes))
            .collect()
    });
    let mut analysed = Analysed {
        logs: logs.logs(),
        bytes: logs.bytes(),
        ..Analysed::default()
    };
    let (analysis_schema, bands_schema) = match parent_schemas(staging) {
        // Nothing to analyse: no plan to make, the parent has the schemas.
        Some(schemas) if logs.logs() == 0 => schemas,
        _ => {
            let t = Instant::now();
            let (stream, downstream) = match planned {
                Some(planned) => (
                    joined(planned.engine)
                        .await?
                        .execute(&[Input::Logs(&logs)])?,
                    Some(planned.downstream),
                ),
                None => (engine.analyse_stream(logs).await?, None),
            };
            let schema = stream.schema();
            let mut chunks = Chunks::gather(stream, analysed.logs);
            analysed.timings.add("engine_plan", t);
            let t = Instant::now();
            let downstream = match downstream {
                Some(task) => joined(task).await?,
                None => None,
            };
            let models = match downstream {
                Some(ahead) if ahead.snapshot.fits(&schema) => {
                    analysed.membership = Some(ahead.membership);
                    ahead.snapshot
                }
                ahead => {
                    if ahead.is_some() {
                        tracing::debug!(
                            "the engine's rows differ from its SQL's schema; replanned"
                        );
                    }
                    SnapshotModels::prepare(engine, &schema).await?
                }
            };
            let models = Arc::new(models);
            let writer = Arc::new(AnalysisWriter::new(&schema)?);
            analysed.timings.add("prepare", t);
            let mut shaping: VecDeque<SpawnedTask<Result<Shaped, JobError>>> = VecDeque::new();
            let mut ended = false;
            loop {
                while !ended && shaping.len() < SHAPING {
                    let t = Instant::now();
                    let next = chunks.next().await?;
                    analysed.timings.add("engine", t);
                    let Some(batch) = next else {
                        ended = true;
                        break;
                    };
                    if let Some(sizes) = &remote_sizes {
                        for row in 0..batch.num_rows() {
                            let id = writer.log_id(&batch, row);
                            progress.file_done(sizes.get(id).copied().unwrap_or(0));
                        }
                    }
                    let (models, writer) = (models.clone(), writer.clone());
                    let catalog = plan.catalog.clone();
                    shaping.push_back(SpawnedTask::spawn(async move {
                        models.shape(&writer, &catalog, &batch).await
                    }));
                }
                let Some(task) = shaping.pop_front() else {
                    break;
                };
                let t = Instant::now();
                let shaped = joined(task).await?;
                analysed.timings.add("shaping", t);
                analysed.timings.merge(&shaped.timings);
                for (message, count) in shaped.failures {
                    analysed.failed += count;
                    *analysed.failures.entry(message).or_default() += count;
                }
                let t = Instant::now();
                for rows in &shaped.analysis {
                    staging.write(Table::Analysis, rows)?;
                }
                for rows in &shaped.bands {
                    staging.write(Table::FuelBySpeedBand, rows)?;
                }
                analysed.timings.add("write", t);
            }
            (models.analysis_schema(), models.bands_schema())
        }
    };
    let t = Instant::now();
    let superseded = Arc::new(plan.superseded.clone());
    staging.close_table(
        Table::Analysis,
        &analysis_schema,
        &keep_unless("analysis_id", superseded.clone()),
    )?;
    staging.close_table(
        Table::FuelBySpeedBand,
        &bands_schema,
        &keep_unless("analysis_id", superseded),
    )?;
    analysed.timings.add("close", t);
    Ok(analysed)
}

/// The schemas of the parent's `analysis` and `fuel_by_speed_band` tables.
fn parent_schemas(staging: &Staging) -> Option<(SchemaRef, SchemaRef)> {
    let parent = staging.parent()?;
    Some((
        parent.schema(Table::Analysis)?,
        parent.schema(Table::FuelBySpeedBand)?,
    ))
}

/// `log_analysis` rows plus `analysis_json` and `result_sha256` (the metrics
/// of a failed log are null, its object is `{}`), and how many failed, by
/// message.
fn with_json(
    writer: &AnalysisWriter,
    batch: &RecordBatch,
) -> Result<(RecordBatch, BTreeMap<String, usize>), JobError> {
    let rows = batch.num_rows();
    let mut json = StringBuilder::with_capacity(rows, rows * 2048);
    let mut jsonbs = StringBuilder::with_capacity(rows, rows * 2048);
    let mut hashes = StringBuilder::with_capacity(rows, rows * 64);
    let mut failed = Vec::with_capacity(rows);
    let mut failures = BTreeMap::new();
    let mut text = String::with_capacity(4096);
    let mut jsonb = String::with_capacity(4096);
    for row in 0..rows {
        let success = writer.is_success(batch, row);
        failed.push(!success);
        if !success {
            *failures
                .entry(writer.message(batch, row).to_string())
                .or_default() += 1;
        }
        text.clear();
        jsonb.clear();
        writer.write_analysis(batch, row, &mut text);
        writer.write_analysis_jsonb(batch, row, &mut jsonb);
        json.append_value(&text);
        jsonbs.append_value(&jsonb);
        hashes.append_value(result_hash(
            if success { "Success" } else { "Failed" },
            &jsonb,
        ));
    }
    let failed = BooleanArray::from(failed);
    let keep = ["log_id", "status", "message"];
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns() + 2);
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        if keep.contains(&field.name().as_str()) || column.null_count() == column.len() {
            columns.push(column.clone());
        } else {
            columns.push(nullif(column.as_ref(), &failed)?);
        }
    }
    columns.push(Arc::new(json.finish()));
    columns.push(Arc::new(jsonbs.finish()));
    columns.push(Arc::new(hashes.finish()));
    let results = RecordBatch::try_new(results_schema(&batch.schema()), columns)?;
    Ok((results, failures))
}
