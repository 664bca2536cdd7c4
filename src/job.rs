//! The nightly job: catalog → scan → analyse → average → snapshot → deliver.
//!
//! Guarantees:
//! - every catalog log present on the volume is analysed in one engine plan;
//!   a broken log becomes `Failed` and changes nothing else;
//! - catalog rows whose file is missing, and files with no row, are reported
//!   and left alone (nothing is turned into `Failed`, nothing is lost);
//! - only what differs from what consumers hold is sent (`--force`: all),
//!   per user all analysis results before the averages;
//! - the snapshot is written before delivery, and state advances only after
//!   delivery is confirmed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
};
use datafusion::arrow::compute::nullif;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use serde_json::{Value, json};

use crate::average::{GroupKey, members_from_json};
use crate::catalog::{Catalog, CatalogAnalysis, CatalogError, RunRecord};
use crate::deliver::{DeliveryError, NatsPublisher, Outgoing, write_outbox};
use crate::engine::Engine;
use crate::error::EngineError;
use crate::message::analysis_result;
use crate::scan::LogInput;
use crate::shape;
use crate::snapshot::{self, SnapshotError};

/// The analyser version recorded with every result.
pub const VERSION: &str = concat!("fap-warehouse ", env!("CARGO_PKG_VERSION"));

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("snapshot: {0}")]
    Snapshot(#[from] SnapshotError),
    #[error("delivery: {0}")]
    Delivery(#[from] DeliveryError),
    #[error("arrow: {0}")]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
}

/// Where the job reads and writes.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub warehouse: PathBuf,
    pub volume: PathBuf,
    /// Re-send everything (a consumer lost its data).
    pub force: bool,
    /// Deliver over NATS at this URL instead of the outbox file.
    pub nats_url: Option<String>,
    /// Test hook: stop after staging the snapshot, like a crash.
    pub crash_before_rename: bool,
}

/// What a run did, for the summary and the manifest.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    pub snapshot_id: String,
    pub logs: usize,
    pub failed: usize,
    pub missing_files: Vec<String>,
    pub orphan_files: Vec<String>,
    pub users_changed: usize,
    pub analysis_messages: usize,
    pub average_messages: usize,
    pub input_bytes: u64,
    pub analyse_seconds: f64,
    pub seconds: f64,
    pub outbox: Option<PathBuf>,
    /// Messages whose delivery was not confirmed (sent again next run).
    pub undelivered: usize,
}

impl RunSummary {
    pub fn mb_per_s(&self) -> f64 {
        self.input_bytes as f64 / 1e6 / self.seconds.max(1e-9)
    }
}

/// Runs the job once, inside a span, and records the run and its counts.
pub async fn run(
    engine: &Engine,
    catalog: &Catalog,
    config: &RunConfig,
) -> Result<RunSummary, JobError> {
    let snapshot_id = snapshot::new_id();
    let span = tracing::info_span!("run", snapshot = %snapshot_id);
    let started = Instant::now();
    catalog.record_run_start(&snapshot_id).await?;
    let mut summary = RunSummary {
        snapshot_id: snapshot_id.clone(),
        ..RunSummary::default()
    };
    let steps = run_steps(engine, catalog, config, &mut summary);
    let outcome = tracing::Instrument::instrument(steps, span).await;
    let record = RunRecord {
        id: &snapshot_id,
        status: if outcome.is_ok() { "done" } else { "failed" },
        logs: summary.logs,
        failed_logs: summary.failed,
        analysis_messages: summary.analysis_messages,
        average_messages: summary.average_messages,
        undelivered: summary.undelivered,
        input_bytes: summary.input_bytes,
        duration_seconds: started.elapsed().as_secs_f64(),
        error: outcome.as_ref().err().map(|e| e.to_string()),
    };
    if let Err(err) = catalog.record_run_end(&record).await {
        tracing::warn!(%err, "the run record could not be written");
    }
    outcome.map(|()| summary)
}

async fn run_steps(
    engine: &Engine,
    catalog: &Catalog,
    config: &RunConfig,
    summary: &mut RunSummary,
) -> Result<(), JobError> {
    let started = Instant::now();
    let started_at = snapshot::utc_now();
    let snapshot_id = summary.snapshot_id.clone();

    // Catalog: which logs exist and what consumers hold.
    let rows = catalog.analyses().await?;
    let held_averages: HashMap<GroupKey, (String, Option<String>)> = catalog
        .averages()
        .await?
        .into_iter()
        .map(|a| {
            let key = GroupKey {
                user_id: a.user_id,
                kind: a.kind,
                year: a.year,
                month: a.month,
            };
            (key, (a.status, a.sha256))
        })
        .collect();
    let by_id: HashMap<&str, &CatalogAnalysis> = rows.iter().map(|r| (r.id.as_str(), r)).collect();
    let mut logs = Vec::new();
    for row in &rows {
        let path = config.volume.join(format!("{}.csv", row.id));
        if path.is_file() {
            logs.push(LogInput {
                log_id: row.id.clone(),
                path,
            });
        } else {
            summary.missing_files.push(row.id.clone());
        }
    }
    summary.orphan_files = orphans(&config.volume, &by_id);
    tracing::info!(
        logs = logs.len(),
        missing = summary.missing_files.len(),
        orphans = summary.orphan_files.len(),
        "catalog read"
    );

    // Scan + analyse: one plan for the whole volume.
    let analyse_started = Instant::now();
    let analysed = engine.analyse(&logs).await?;
    summary.analyse_seconds = analyse_started.elapsed().as_secs_f64();
    summary.logs = analysed.batch.num_rows();
    summary.input_bytes = analysed.summary.bytes;
    let results: Vec<Value> = (0..analysed.batch.num_rows())
        .map(|row| analysis_result(&analysed.batch, row))
        .collect();
    summary.failed = results.iter().filter(|r| r["status"] == "Failed").count();
    tracing::info!(
        logs = summary.logs,
        failed = summary.failed,
        seconds = summary.analyse_seconds,
        "logs analysed"
    );

    // Averages: each user's OVERALL, YEARLY and MONTHLY groups of successes.
    let mut groups: BTreeMap<GroupKey, Vec<(&CatalogAnalysis, &Value)>> = BTreeMap::new();
    for result in &results {
        let Some(row) = result["analysisId"].as_str().and_then(|id| by_id.get(id)) else {
            continue;
        };
        if result["status"] != "Success" {
            continue;
        }
        for key in group_keys(&row.user_id, result["logDate"].as_str()) {
            groups
                .entry(key)
                .or_default()
                .push((row, &result["analysis"]));
        }
    }
    // A successful analysis whose file is gone still counts in its user's
    // groups, as the backend counts it: with the object consumers hold.
    let missing: HashSet<&str> = summary.missing_files.iter().map(String::as_str).collect();
    for row in rows
        .iter()
        .filter(|r| missing.contains(r.id.as_str()) && r.status == "Success")
    {
        let Some(held) = row.analysis.as_ref().filter(|a| a.is_object()) else {
            continue;
        };
        let log_date = held["overall"]["date"]["date"].as_str();
        for key in group_keys(&row.user_id, log_date) {
            groups.entry(key).or_default().push((row, held));
        }
    }
    let members: Vec<(GroupKey, Value)> = groups
        .iter()
        .flat_map(|(key, items)| items.iter().map(move |(_, a)| (key.clone(), (*a).clone())))
        .collect();
    let averages = engine.average(members_from_json(&members)?).await?;
    let average_layout = shape::average();
    let mut average_results: BTreeMap<GroupKey, Value> = BTreeMap::new();
    let mut group_shas: BTreeMap<GroupKey, String> = BTreeMap::new();
    for row in 0..averages.num_rows() {
        let key = key_of(&averages, row);
        let Some(items) = groups.get_mut(&key) else {
            continue;
        };
        // The backend's order: by the log file's sha256, ties by id.
        items.sort_by(|a, b| (&a.0.sha256, &a.0.id).cmp(&(&b.0.sha256, &b.0.id)));
        let objects: Vec<&Value> = items.iter().map(|(_, a)| *a).collect();
        let sha = crate::jsonb::analysis_sha(&objects);
        let average = shape::to_json(average_layout, &averages, row);
        average_results.insert(
            key.clone(),
            json!({
                "userId": key.user_id, "type": key.kind, "year": key.year, "month": key.month,
                "analysisSha": sha, "status": "SUCCESS",
                "message": "Average calculated successfully.", "average": average,
            }),
        );
        group_shas.insert(key, sha);
    }

    // Change detection against what consumers hold.
    let mut outgoing: BTreeMap<String, (Vec<Outgoing>, Vec<Outgoing>)> = BTreeMap::new();
    for result in &results {
        let Some(row) = result["analysisId"].as_str().and_then(|id| by_id.get(id)) else {
            continue;
        };
        if config.force || analysis_changed(row, result) {
            outgoing
                .entry(row.user_id.clone())
                .or_default()
                .0
                .push(out("analysis.result", result));
        }
    }
    for (key, result) in &average_results {
        let held = held_averages.get(key);
        let current = held.is_some_and(|(status, sha)| {
            status == "SUCCESS" && sha.as_deref() == result["analysisSha"].as_str()
        });
        if config.force || !current {
            outgoing
                .entry(key.user_id.clone())
                .or_default()
                .1
                .push(out("average.result", result));
        }
    }
    summary.users_changed = outgoing.len();
    let messages: Vec<Outgoing> = outgoing
        .into_values()
        .flat_map(|(analyses, averages)| analyses.into_iter().chain(averages))
        .collect();
    summary.analysis_messages = messages
        .iter()
        .filter(|m| m.subject == "analysis.result")
        .count();
    summary.average_messages = messages.len() - summary.analysis_messages;

    // Snapshot: written whole before anything is delivered.
    let analysis_table = analysis_snapshot(&analysed.batch, &results, &by_id)?;
    let average_table = average_snapshot(&averages, &average_results)?;
    summary.seconds = started.elapsed().as_secs_f64();
    let manifest = manifest(engine, summary, &started_at, &average_table);
    snapshot::write(
        &config.warehouse,
        &snapshot_id,
        &analysis_table,
        &average_table,
        &manifest,
        config.crash_before_rename,
    )?;

    // Deliver, then record what consumers now hold: only what was confirmed.
    if !messages.is_empty() {
        let mut first_error = String::new();
        let confirmed: Vec<usize> = match &config.nats_url {
            Some(url) => {
                let publisher = NatsPublisher::connect(url).await?;
                let delivered = publisher.publish_all(&messages).await;
                summary.undelivered = delivered.failed.len();
                if let Some((_, first)) = delivered.failed.first() {
                    tracing::error!(failed = delivered.failed.len(), total = messages.len(), %first, "delivery incomplete");
                    first_error = first.clone();
                }
                delivered.ok
            }
            None => {
                summary.outbox = Some(write_outbox(&config.warehouse, &snapshot_id, &messages)?);
                (0..messages.len()).collect()
            }
        };
        if catalog.is_embedded() {
            let held: Vec<(&str, &Value)> = confirmed
                .iter()
                .map(|&i| (messages[i].subject, &messages[i].payload))
                .collect();
            catalog.apply_results(&held, VERSION).await?;
        }
        if summary.undelivered > 0 {
            return Err(JobError::Delivery(DeliveryError::Undelivered {
                failed: summary.undelivered,
                total: messages.len(),
                first: first_error,
            }));
        }
    }
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(())
}

fn out(subject: &'static str, payload: &Value) -> Outgoing {
    let bytes = crate::jsonb::to_string(payload);
    let digest = <sha2::Sha256 as sha2::Digest>::digest(bytes.as_bytes());
    Outgoing {
        subject,
        payload: payload.clone(),
        msg_id: format!("{subject}:{}", crate::sql::hex(&digest)),
    }
}

/// Whether consumers hold another status or analysis object than `result`.
fn analysis_changed(row: &CatalogAnalysis, result: &Value) -> bool {
    if row.status != result["status"].as_str().unwrap_or_default() {
        return true;
    }
    let held = row.analysis.clone().unwrap_or(Value::Null);
    crate::jsonb::to_string(&held) != crate::jsonb::to_string(&result["analysis"])
}

/// The groups an analysis of `log_date` (`YYYY-MM-DD`, UTC) belongs to.
fn group_keys(user_id: &str, log_date: Option<&str>) -> Vec<GroupKey> {
    let key = |kind: &str, year, month| GroupKey {
        user_id: user_id.to_string(),
        kind: kind.to_string(),
        year,
        month,
    };
    let mut keys = vec![key("OVERALL", None, None)];
    let mut parts = log_date.unwrap_or_default().split('-');
    if let (Some(Ok(y)), Some(Ok(m))) = (parts.next().map(str::parse), parts.next().map(str::parse))
    {
        keys.push(key("YEARLY", Some(y), None));
        keys.push(key("MONTHLY", Some(y), Some(m)));
    }
    keys
}

fn key_of(batch: &RecordBatch, row: usize) -> GroupKey {
    let text = |c: &str| {
        shape::cell(batch, c, row)
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let int = |c: &str| shape::cell(batch, c, row).as_i64();
    GroupKey {
        user_id: text("user_id"),
        kind: text("type"),
        year: int("year"),
        month: int("month"),
    }
}

/// Volume files with no catalog row.
fn orphans(volume: &Path, known: &HashMap<&str, &CatalogAnalysis>) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(volume) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".csv") && !n.starts_with('.'))
        .filter(|n| !known.contains_key(n.trim_end_matches(".csv")))
        .collect();
    names.sort();
    names
}

/// The `analysis` table of a snapshot: catalog facts, result facts, one typed
/// column per metric (null where the log failed) and the full JSON.
fn analysis_snapshot(
    batch: &RecordBatch,
    results: &[Value],
    by_id: &HashMap<&str, &CatalogAnalysis>,
) -> Result<RecordBatch, JobError> {
    let ids: Vec<&str> = results
        .iter()
        .map(|r| r["analysisId"].as_str().unwrap_or_default())
        .collect();
    let catalog = |f: fn(&CatalogAnalysis) -> &str| -> ArrayRef {
        Arc::new(
            ids.iter()
                .map(|id| by_id.get(id).map(|r| f(r)))
                .collect::<StringArray>(),
        )
    };
    let log_date: Vec<Option<&str>> = results.iter().map(|r| r["logDate"].as_str()).collect();
    let part = |i: usize| -> ArrayRef {
        Arc::new(
            log_date
                .iter()
                .map(|d| d.and_then(|d| d.split('-').nth(i)?.parse::<i64>().ok()))
                .collect::<Int64Array>(),
        )
    };
    let failed = BooleanArray::from_iter(results.iter().map(|r| Some(r["status"] != "Success")));
    let text = |key: &str| -> ArrayRef {
        Arc::new(
            results
                .iter()
                .map(|r| r[key].as_str())
                .collect::<StringArray>(),
        )
    };
    let facts: Vec<(&str, DataType, ArrayRef)> = vec![
        (
            "analysis_id",
            DataType::Utf8,
            Arc::new(StringArray::from_iter_values(ids.iter())),
        ),
        ("user_id", DataType::Utf8, catalog(|r| &r.user_id)),
        ("file_name", DataType::Utf8, catalog(|r| &r.file_name)),
        ("file_sha256", DataType::Utf8, catalog(|r| &r.sha256)),
        ("status", DataType::Utf8, text("status")),
        ("message", DataType::Utf8, text("message")),
        ("log_date", DataType::Utf8, text("logDate")),
        ("log_year", DataType::Int64, part(0)),
        ("log_month", DataType::Int64, part(1)),
        (
            "fap_regen",
            DataType::Boolean,
            Arc::new(
                results
                    .iter()
                    .map(|r| r["fapRegen"].as_bool())
                    .collect::<BooleanArray>(),
            ),
        ),
        (
            "distance_km",
            DataType::Float64,
            Arc::new(
                results
                    .iter()
                    .map(|r| r["distance"].as_f64())
                    .collect::<Float64Array>(),
            ),
        ),
    ];
    let (mut fields, mut columns): (Vec<Field>, Vec<ArrayRef>) = facts
        .into_iter()
        .map(|(name, data_type, column)| (Field::new(name, data_type, true), column))
        .unzip();
    let skip: HashSet<&str> = ["log_id", "status", "message"].into();
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        if skip.contains(field.name().as_str()) {
            continue;
        }
        fields.push(Field::new(field.name(), field.data_type().clone(), true));
        columns.push(nullif(column.as_ref(), &failed)?);
    }
    fields.push(Field::new("analysis_json", DataType::Utf8, false));
    columns.push(Arc::new(StringArray::from_iter_values(
        results.iter().map(|r| r["analysis"].to_string()),
    )));
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

/// The `average` table of a snapshot: key, sha, count, metrics, full JSON.
fn average_snapshot(
    batch: &RecordBatch,
    results: &BTreeMap<GroupKey, Value>,
) -> Result<RecordBatch, JobError> {
    let keys: Vec<GroupKey> = (0..batch.num_rows())
        .map(|row| key_of(batch, row))
        .collect();
    let result = |k: &GroupKey, field: &str| {
        results
            .get(k)
            .map(|r| r[field].clone())
            .unwrap_or(Value::Null)
    };
    let mut fields = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        fields.push(Field::new(
            field.name(),
            field.data_type().clone(),
            field.is_nullable(),
        ));
        columns.push(column.clone());
        if field.name() == "month" {
            fields.push(Field::new("analysis_sha", DataType::Utf8, true));
            let shas: StringArray = keys
                .iter()
                .map(|k| result(k, "analysisSha").as_str().map(str::to_string))
                .collect();
            columns.push(Arc::new(shas));
        }
    }
    fields.push(Field::new("average_json", DataType::Utf8, true));
    let json: StringArray = keys
        .iter()
        .map(|k| Some(result(k, "average").to_string()))
        .collect();
    columns.push(Arc::new(json));
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

fn manifest(engine: &Engine, s: &RunSummary, started_at: &str, averages: &RecordBatch) -> Value {
    let sql: serde_json::Map<String, Value> = engine
        .models()
        .iter()
        .map(|m| (format!("{}.sql", m.name), Value::from(m.sha256())))
        .collect();
    json!({
        "id": s.snapshot_id,
        "started_at": started_at,
        "finished_at": snapshot::utc_now(),
        "algorithm_version": VERSION,
        "sql_sha256": sql,
        "counts": {
            "logs": s.logs,
            "failed": s.failed,
            "groups": averages.num_rows(),
            "missing_files": s.missing_files.len(),
            "orphan_files": s.orphan_files.len(),
            "analysis_messages": s.analysis_messages,
            "average_messages": s.average_messages,
        },
        "input_bytes": s.input_bytes,
        "analyse_seconds": s.analyse_seconds,
        "duration_seconds": s.seconds,
    })
}
