//! Stage 3: the averages of the users whose analyses changed, bucket by
//! bucket; every other user's averages are carried over from the parent.
//!
//! Membership is SQL (`group_keys.sql`, `group_members.sql`,
//! `group_member_bands.sql`) over the staged `analysis` and
//! `fuel_by_speed_band` tables joined with the catalog; the averages are
//! `group_average.sql` and `group_average_bands.sql`; the `average` table is
//! `snapshot_average.sql`. Each is planned once and run per chunk of
//! buckets, one chunk per partition side by side, so memory holds a few
//! buckets of users at a time. Rust adds what the backend checks: each
//! group's `analysisSha`, and the object as sent.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::{BooleanArray, RecordBatch, StringArray};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::runtime::SpawnedTask;
use datafusion::error::Result as DFResult;
use futures::TryStreamExt;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::plan::RunPlan;
use super::snapshot::{self, Staging, Table, keep_unless, read_parquet, text_column};
use super::timing::Timings;
use super::{JobError, joined};
use crate::analysis::average::{Averager, GroupKey, average_objects, members_from_json};
use crate::analysis::engine::Engine;
use crate::analysis::jsonb;
use crate::analysis::prepared::{Input, Prepared, register_input};
use crate::catalog::{Catalog, CatalogIndex, col};

/// What the group stage did.
#[derive(Debug, Default)]
pub struct Grouped {
    /// Groups whose average this run computed.
    pub recomputed: usize,
    pub timings: Timings,
}

/// The membership models, planned once (ahead of the run's logs when it
/// analyses them all: [`super::analyse::EnginePlan`]).
#[derive(Debug)]
pub struct Membership {
    analysis: SchemaRef,
    bands: SchemaRef,
    keys: Prepared,
    members: Prepared,
    member_bands: Prepared,
}

impl Membership {
    /// Plans them over the staged tables `analysis` and `fuel_by_speed_band`
    /// of these schemas (the objects' texts left out) and the catalog.
    pub async fn prepare(
        engine: &Engine,
        analysis: &SchemaRef,
        bands: &SchemaRef,
    ) -> Result<Self, JobError> {
        let analysis = membership_input(analysis);
        let ctx = engine.context();
        register_input(&ctx, "analysis", &analysis, vec![])?;
        register_input(&ctx, "fuel_by_speed_band", bands, vec![])?;
        register_input(&ctx, "catalog", &CatalogIndex::schema(), vec![])?;
        for model in ["group_keys", "group_members", "group_member_bands"] {
            engine.register_model(&ctx, model).await?;
        }
        Ok(Self {
            keys: Prepared::new(&ctx, "group_keys").await?,
            members: Prepared::new(&ctx, "group_members").await?,
            member_bands: Prepared::new(&ctx, "group_member_bands").await?,
            analysis,
            bands: bands.clone(),
        })
    }

    /// Whether they were planned for staged tables of these schemas.
    fn fits(&self, analysis: &SchemaRef, bands: &SchemaRef) -> bool {
        self.analysis.fields() == membership_input(analysis).fields()
            && self.bands.fields() == bands.fields()
    }

    /// Runs `prepared` on a task of its own: the three membership models
    /// of a chunk run side by side (`catalog`: the rows of its analyses).
    fn spawn(
        &self,
        prepared: &Prepared,
        analysis: &[RecordBatch],
        bands: &[RecordBatch],
        catalog: &RecordBatch,
    ) -> SpawnedTask<DFResult<Vec<RecordBatch>>> {
        let inputs = [
            Input::Table(self.analysis.clone(), analysis.to_vec()),
            Input::Table(self.bands.clone(), bands.to_vec()),
            Input::Table(CatalogIndex::schema(), vec![catalog.clone()]),
        ];
        let prepared = prepared.clone();
        SpawnedTask::spawn(async move { prepared.execute(&inputs)?.try_collect().await })
    }
}

/// The models that average groups and shape the `average` table: they
/// depend on nothing a run computes, so a run plans them while it plans
/// the rest ([`Averaging::spawn`]).
pub struct Averaging {
    averager: Averager,
    snapshot_average: SnapshotAverage,
}

impl Averaging {
    pub async fn prepare(engine: &Engine) -> Result<Self, JobError> {
        // Members have one schema whatever their source (snapshot rows here,
        // JSON objects in a live request): metrics as DOUBLE, as JSON numbers
        // are, so both paths average the same values the same way.
        let averager = Averager::for_requests(engine).await?;
        let snapshot_average = SnapshotAverage::prepare(engine, &averager).await?;
        Ok(Self {
            averager,
            snapshot_average,
        })
    }

    /// Plans them on a task of its own (a core is idle while the job plans
    /// the engine).
    pub fn spawn(engine: &Engine) -> SpawnedTask<Result<Self, JobError>> {
        let engine = engine.clone();
        SpawnedTask::spawn(async move { Self::prepare(&engine).await })
    }
}

/// An object consumers hold of `plan.held_only`: a success whose log is
/// gone and that no snapshot has; it counts in its user's averages. Shared
/// by the user's groups (OVERALL, YEARLY, MONTHLY), printed as jsonb once.
#[derive(Debug)]
pub struct HeldObject {
    value: Value,
    jsonb: String,
}

/// The objects consumers hold of `plan.held_only`, by analysis id.
pub async fn held_objects(
    catalog: &Catalog,
    plan: &RunPlan,
) -> Result<HashMap<String, Arc<HeldObject>>, JobError> {
    Ok(catalog
        .held_analyses(&plan.held_only)
        .await?
        .into_iter()
        .map(|(id, value)| {
            let jsonb = jsonb::to_string(&value);
            (id, Arc::new(HeldObject { value, jsonb }))
        })
        .collect())
}

/// Computes the averages of `plan.changed_users` into `staging` (tables
/// `average` and `average_fuel_by_speed_band`, closed on return), with the
/// models `averaging` and `membership` plan (planned here if `None`) and
/// the objects consumers hold of `plan.held_only` (see [`held_objects`]).
pub async fn group(
    engine: &Engine,
    held: &HashMap<String, Arc<HeldObject>>,
    plan: &RunPlan,
    staging: &mut Staging,
    averaging: Option<SpawnedTask<Result<Averaging, JobError>>>,
    membership: Option<Membership>,
) -> Result<Grouped, JobError> {
    let mut grouped = Grouped::default();
    let t = Instant::now();
    // Nobody's analyses changed: the parent's averages stand, no plan to make.
    if plan.changed_users.is_empty()
        && let Some(parent) = staging.parent()
        && let (Some(average), Some(bands)) = (
            parent.schema(Table::Average),
            parent.schema(Table::AverageFuelBySpeedBand),
        )
    {
        close_averages(staging, &average, &bands, Arc::default())?;
        grouped.timings.add("close", t);
        return Ok(grouped);
    }
    let analysis_schema = table_schema(staging, Table::Analysis)?;
    let bands_schema = table_schema(staging, Table::FuelBySpeedBand)?;
    let membership = match membership {
        Some(planned) if planned.fits(&analysis_schema, &bands_schema) => planned,
        planned => {
            if planned.is_some() {
                tracing::debug!("the staged tables differ from the models' schemas; replanned");
            }
            Membership::prepare(engine, &analysis_schema, &bands_schema).await?
        }
    };
    let Averaging {
        averager,
        snapshot_average,
    } = match averaging {
        Some(task) => joined(task).await?,
        None => Averaging::prepare(engine).await?,
    };
    // Membership's columns, and the objects as the backend prints them (each
    // group's hash).
    let analysis_columns: Vec<String> = membership
        .analysis
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .chain(["analysis_jsonb".to_string()])
        .collect();
    let (average_schema, average_bands_schema) =
        (snapshot_average.schema(), averager.bands_schema());
    let models = Arc::new(GroupModels {
        analysis_columns,
        membership,
        averager,
        snapshot_average,
        catalog: plan.catalog.clone(),
        changed: Arc::new(plan.changed_users.clone()),
    });
    grouped.timings.add("prepare", t);

    // Chunks are averaged side by side, one per partition, and written in
    // bucket order as they end: the engine is done, every core is free.
    let partitions = engine.partitions().max(1);
    let mut chunks = chunks(plan, staging, partitions).into_iter();
    let mut running: VecDeque<SpawnedTask<Result<ChunkAverages, JobError>>> = VecDeque::new();
    loop {
        while running.len() < partitions
            && let Some(chunk) = chunks.next()
        {
            let held = held_keys(held, plan, &chunk.buckets);
            let models = models.clone();
            running.push_back(SpawnedTask::spawn(async move {
                models.average(chunk, held).await
            }));
        }
        let Some(task) = running.pop_front() else {
            break;
        };
        let averaged = joined(task).await?;
        grouped.recomputed += averaged.recomputed;
        grouped.timings.merge(&averaged.timings);
        let t = Instant::now();
        for batch in &averaged.averages {
            staging.write(Table::Average, batch)?;
        }
        for batch in &averaged.bands {
            staging.write(Table::AverageFuelBySpeedBand, batch)?;
        }
        grouped.timings.add("write", t);
    }
    let t = Instant::now();
    close_averages(
        staging,
        &average_schema,
        &average_bands_schema,
        models.changed.clone(),
    )?;
    grouped.timings.add("close", t);
    Ok(grouped)
}

/// The models and inputs every chunk of the group stage shares.
struct GroupModels {
    analysis_columns: Vec<String>,
    membership: Membership,
    averager: Averager,
    snapshot_average: SnapshotAverage,
    catalog: Arc<CatalogIndex>,
    changed: Arc<HashSet<String>>,
}

/// Consecutive buckets averaged together, and their staged files.
struct Chunk {
    buckets: Vec<usize>,
    /// `analysis` and `fuel_by_speed_band` of each bucket.
    files: Vec<(Option<PathBuf>, Option<PathBuf>)>,
}

/// A chunk's rows of the `average` and `average_fuel_by_speed_band` tables.
struct ChunkAverages {
    averages: Vec<RecordBatch>,
    bands: Vec<RecordBatch>,
    recomputed: usize,
    timings: Timings,
}

/// The buckets of changed users as chunks (see [`split_buckets`]), with
/// their staged files.
fn chunks(plan: &RunPlan, staging: &Staging, partitions: usize) -> Vec<Chunk> {
    let bucket_of: HashMap<&str, usize> = plan
        .changed_users
        .iter()
        .map(|u| (u.as_str(), snapshot::bucket(u)))
        .collect();
    let mut analyses: BTreeMap<usize, usize> = bucket_of.values().map(|&b| (b, 0)).collect();
    for row in 0..plan.catalog.len() {
        if let Some(b) = bucket_of.get(plan.catalog.get(row, col::USER_ID)) {
            *analyses.entry(*b).or_default() += 1;
        }
    }
    split_buckets(&analyses, partitions)
        .into_iter()
        .map(|buckets| Chunk {
            files: buckets
                .iter()
                .map(|&b| {
                    (
                        staging.file(Table::Analysis, b),
                        staging.file(Table::FuelBySpeedBand, b),
                    )
                })
                .collect(),
            buckets,
        })
        .collect()
}

/// Consecutive buckets (`analyses`: how many each holds) in chunks of about
/// `1 / partitions` of the analyses, at most [`CHUNK_ANALYSES`]` /
/// partitions` each: as many chunks as cores even for a few users, and no
/// more held at once than [`CHUNK_ANALYSES`] when `partitions` run together.
fn split_buckets(analyses: &BTreeMap<usize, usize>, partitions: usize) -> Vec<Vec<usize>> {
    let partitions = partitions.max(1);
    let total: usize = analyses.values().sum();
    let target = total
        .div_ceil(partitions)
        .clamp(1, (CHUNK_ANALYSES / partitions).max(1));
    let mut chunks: Vec<Vec<usize>> = Vec::new();
    let mut rows = target;
    for (&bucket, &count) in analyses {
        if rows >= target {
            chunks.push(Vec::new());
            rows = 0;
        }
        if let Some(chunk) = chunks.last_mut() {
            chunk.push(bucket);
        }
        rows += count;
    }
    chunks
}

/// The objects consumers hold (see [`held_objects`]) of the users of
/// `buckets`, under each of their groups.
fn held_keys(
    held: &HashMap<String, Arc<HeldObject>>,
    plan: &RunPlan,
    buckets: &[usize],
) -> Vec<(GroupKey, String, Arc<HeldObject>)> {
    let mut keys = Vec::new();
    for (id, object) in held {
        let Some(row) = plan.catalog.row(id) else {
            continue;
        };
        let user = plan.catalog.get(row, col::USER_ID);
        if !buckets.contains(&snapshot::bucket(user)) {
            continue;
        }
        let date = object.value["overall"]["date"]["date"].as_str();
        for key in GroupKey::all_for(user, date) {
            keys.push((key, id.clone(), object.clone()));
        }
    }
    keys
}

impl GroupModels {
    /// The averages of one chunk's groups, as snapshot rows.
    async fn average(
        &self,
        chunk: Chunk,
        held: Vec<(GroupKey, String, Arc<HeldObject>)>,
    ) -> Result<ChunkAverages, JobError> {
        let mut timings = Timings::default();
        let t = Instant::now();
        let columns: Vec<&str> = self.analysis_columns.iter().map(String::as_str).collect();
        let (mut analysis, mut bands) = (Vec::new(), Vec::new());
        for (analysis_file, bands_file) in chunk.files {
            analysis.extend(read_users(analysis_file, Some(&columns), &self.changed)?);
            bands.extend(read_users(bands_file, None, &self.changed)?);
        }
        timings.add("read", t);
        let t = Instant::now();
        // Membership (SQL), plus the held objects of this chunk's users.
        let catalog = self.catalog.rows_of(
            analysis
                .iter()
                .map(|batch| text_column(batch, "analysis_id"))
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .flat_map(|ids| ids.iter().flatten()),
        )?;
        let membership = &self.membership;
        let rows = conform(analysis.clone(), &membership.analysis)?;
        let keys = membership.spawn(&membership.keys, &rows, &bands, &catalog);
        let members = membership.spawn(&membership.members, &rows, &bands, &catalog);
        let bands_of_members = membership.spawn(&membership.member_bands, &rows, &bands, &catalog);
        let keys = joined(keys).await?;
        let mut members = conform(joined(members).await?, self.averager.members_schema())?;
        let mut member_bands = conform(
            joined(bands_of_members).await?,
            self.averager.member_bands_schema(),
        )?;
        if !held.is_empty() {
            let objects: Vec<(GroupKey, String, &Value)> = held
                .iter()
                .map(|(key, id, object)| (key.clone(), id.clone(), &object.value))
                .collect();
            let (rows, band_rows) = members_from_json(
                &objects,
                self.averager.members_schema(),
                self.averager.member_bands_schema(),
            )?;
            members.push(rows);
            member_bands.push(band_rows);
        }
        timings.add("members", t);
        // Each group's analysisSha is hashed on a thread of its own while
        // the averages are computed.
        let catalog = self.catalog.clone();
        let shas =
            SpawnedTask::spawn_blocking(move || group_shas(&catalog, &keys, &analysis, &held));
        let t = Instant::now();
        let (averages, bands) = self.averager.run(members, member_bands).await?;
        timings.add("average", t);
        let recomputed = averages.num_rows();
        if recomputed == 0 {
            return Ok(ChunkAverages {
                averages: Vec::new(),
                bands: Vec::new(),
                recomputed,
                timings,
            });
        }
        let t = Instant::now();
        let shas = joined(shas).await?;
        let objects = average_objects(&averages, &bands)?;
        let sha_column: StringArray = (0..averages.num_rows())
            .map(|row| shas.get(&GroupKey::of_row(&averages, row)).cloned())
            .collect();
        let averages = self
            .snapshot_average
            .run(&averages, sha_column, StringArray::from(objects))
            .await?;
        timings.add("shape", t);
        Ok(ChunkAverages {
            averages,
            bands,
            recomputed,
            timings,
        })
    }
}

/// Closes the two average tables: the parent's rows are kept except those
/// of `recomputed` users (schemas are used when a table has no row at all).
fn close_averages(
    staging: &mut Staging,
    average: &SchemaRef,
    bands: &SchemaRef,
    recomputed: Arc<HashSet<String>>,
) -> Result<(), JobError> {
    staging.close_table(
        Table::Average,
        average,
        &keep_unless("user_id", recomputed.clone()),
    )?;
    staging.close_table(
        Table::AverageFuelBySpeedBand,
        bands,
        &keep_unless("user_id", recomputed),
    )?;
    Ok(())
}

/// Analyses the group stage holds at once, about: its chunks in flight
/// together (each run of the plans amortized over many).
const CHUNK_ANALYSES: usize = 10_000;

/// `batches` with the columns of `schema`, taken by name and cast (a column
/// they lack is null).
fn conform(batches: Vec<RecordBatch>, schema: &SchemaRef) -> Result<Vec<RecordBatch>, JobError> {
    batches
        .into_iter()
        .map(|batch| {
            let columns = schema
                .fields()
                .iter()
                .map(|field| match batch.column_by_name(field.name()) {
                    Some(column) => datafusion::arrow::compute::cast(column, field.data_type()),
                    None => Ok(datafusion::arrow::array::new_null_array(
                        field.data_type(),
                        batch.num_rows(),
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?;
            let options = datafusion::arrow::array::RecordBatchOptions::new()
                .with_row_count(Some(batch.num_rows()));
            Ok(RecordBatch::try_new_with_options(
                schema.clone(),
                columns,
                &options,
            )?)
        })
        .collect()
}

/// The schema `table` was written with (read back from its staged files).
fn table_schema(staging: &Staging, table: Table) -> Result<SchemaRef, JobError> {
    let path = (0..snapshot::BUCKETS)
        .find_map(|bucket| staging.file(table, bucket))
        .ok_or_else(|| {
            snapshot::SnapshotError::Missing(format!("staged table {}", table.name()))
        })?;
    Ok(snapshot::parquet_schema(&path)?)
}

/// The staged `analysis` columns the membership models read: not the
/// objects' texts, most of the bytes, which every member row would carry
/// (only [`group_shas`] reads `analysis_jsonb`).
fn membership_input(schema: &SchemaRef) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .filter(|f| !matches!(f.name().as_str(), "analysis_json" | "analysis_jsonb"))
        .map(|f| f.as_ref().clone())
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// The rows of a staged bucket file that belong to `users`.
fn read_users(
    path: Option<std::path::PathBuf>,
    columns: Option<&[&str]>,
    users: &HashSet<String>,
) -> Result<Vec<RecordBatch>, JobError> {
    let Some(path) = path else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for batch in read_parquet(&path, columns)? {
        let ids = text_column(&batch, "user_id")?;
        let mask: BooleanArray = (0..batch.num_rows())
            .map(|i| Some(users.contains(ids.value(i))))
            .collect();
        let kept = filter_record_batch(&batch, &mask)?;
        if kept.num_rows() > 0 {
            out.push(kept);
        }
    }
    Ok(out)
}

/// Each group's `analysisSha`: the sha256 of its analyses as one JSON array,
/// ordered by the log's sha256 then id, each printed as the backend prints
/// jsonb — the bytes the backend hashes for the same group.
fn group_shas(
    catalog: &CatalogIndex,
    keys: &[RecordBatch],
    analysis: &[RecordBatch],
    held: &[(GroupKey, String, Arc<HeldObject>)],
) -> Result<HashMap<GroupKey, String>, JobError> {
    let mut jsonb_of: HashMap<&str, &str> = HashMap::new();
    for batch in analysis {
        let ids = text_column(batch, "analysis_id")?;
        let jsonb = text_column(batch, "analysis_jsonb")?;
        for row in 0..batch.num_rows() {
            jsonb_of.insert(ids.value(row), jsonb.value(row));
        }
    }
    for (_, id, object) in held {
        jsonb_of.entry(id).or_insert(&object.jsonb);
    }
    let mut members: HashMap<GroupKey, Vec<(String, String)>> = HashMap::new();
    for batch in keys {
        let ids = text_column(batch, "analysis_id")?;
        for row in 0..batch.num_rows() {
            members
                .entry(GroupKey::of_row(batch, row))
                .or_default()
                .push(order_key(catalog, ids.value(row)));
        }
    }
    for (key, id, _) in held {
        members
            .entry(key.clone())
            .or_default()
            .push(order_key(catalog, id));
    }
    Ok(members
        .into_iter()
        .map(|(key, mut ids)| {
            ids.sort();
            ids.dedup();
            let mut hash = Sha256::new();
            hash.update(b"[");
            for (i, (_, id)) in ids.iter().enumerate() {
                if i > 0 {
                    hash.update(b",");
                }
                hash.update(
                    jsonb_of
                        .get(id.as_str())
                        .copied()
                        .unwrap_or("null")
                        .as_bytes(),
                );
            }
            hash.update(b"]");
            (key, format!("{:x}", hash.finalize()))
        })
        .collect())
}

/// The backend's order of a group's analyses: its `(user_id, sha256)` index.
fn order_key(catalog: &CatalogIndex, id: &str) -> (String, String) {
    let sha = catalog
        .row(id)
        .map(|r| catalog.get(r, col::FILE_SHA256).to_string())
        .unwrap_or_default();
    (sha, id.to_string())
}

/// `snapshot_average.sql`, planned once.
struct SnapshotAverage {
    input: SchemaRef,
    prepared: Prepared,
}

impl SnapshotAverage {
    async fn prepare(engine: &Engine, averager: &Averager) -> Result<Self, JobError> {
        let mut fields: Vec<Field> = averager
            .averages_schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new("analysis_sha", DataType::Utf8, true));
        fields.push(Field::new("average_json", DataType::Utf8, false));
        let input = Arc::new(Schema::new(fields));
        let ctx = engine.serial_context();
        register_input(&ctx, "averages", &input, vec![])?;
        engine.register_model(&ctx, "snapshot_average").await?;
        Ok(Self {
            prepared: Prepared::new(&ctx, "snapshot_average").await?,
            input,
        })
    }

    fn schema(&self) -> SchemaRef {
        self.prepared.plan().schema()
    }

    async fn run(
        &self,
        averages: &RecordBatch,
        shas: StringArray,
        objects: StringArray,
    ) -> Result<Vec<RecordBatch>, JobError> {
        let mut columns = averages.columns().to_vec();
        columns.push(Arc::new(shas));
        columns.push(Arc::new(objects));
        let batch = RecordBatch::try_new(self.input.clone(), columns)?;
        Ok(self
            .prepared
            .execute(&[Input::Table(self.input.clone(), vec![batch])])?
            .try_collect()
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buckets(counts: &[(usize, usize)]) -> BTreeMap<usize, usize> {
        counts.iter().copied().collect()
    }

    #[test]
    fn a_small_run_is_split_in_as_many_chunks_as_cores() {
        let analyses = buckets(&[(0, 100), (3, 100), (7, 100), (9, 100)]);
        assert_eq!(split_buckets(&analyses, 2), vec![vec![0, 3], vec![7, 9]]);
        assert_eq!(split_buckets(&analyses, 1), vec![vec![0, 3, 7, 9]]);
    }

    #[test]
    fn chunks_keep_bucket_order_and_every_bucket_once() {
        let analyses = buckets(&[(1, 5), (2, 500), (4, 1), (5, 0), (8, 40)]);
        for partitions in 1..=5 {
            let chunks = split_buckets(&analyses, partitions);
            let flat: Vec<usize> = chunks.concat();
            assert_eq!(flat, vec![1, 2, 4, 5, 8], "{partitions} partitions");
            assert!(chunks.iter().all(|c| !c.is_empty()));
        }
    }

    #[test]
    fn a_large_run_holds_at_most_a_chunk_of_analyses_at_once() {
        // 1000 users' buckets of 3000 analyses each: 3M analyses.
        let analyses: BTreeMap<usize, usize> = (0..1000).map(|b| (b, 3000)).collect();
        let partitions = 4;
        let chunks = split_buckets(&analyses, partitions);
        let limit = CHUNK_ANALYSES / partitions;
        for chunk in &chunks {
            let rows: usize = chunk.iter().map(|b| analyses[b]).sum();
            // A chunk ends with the bucket that reaches the target.
            assert!(rows < limit + 3000, "{rows} analyses in one chunk");
        }
        assert!(chunks.len() >= 3_000_000 / (limit + 3000));
    }

    #[test]
    fn no_changed_bucket_means_no_chunk() {
        assert!(split_buckets(&BTreeMap::new(), 2).is_empty());
    }
}
