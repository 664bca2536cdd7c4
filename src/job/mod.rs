//! The nightly job, as stages that each take inputs and return a value:
//!
//! [`plan`] (catalog, parent snapshot, volume → what to analyse and what to
//! reuse) → [`analyse`] (one engine plan over the logs that need it, rows
//! streamed into the staged snapshot) → [`diff`] of the analyses (what
//! consumers lack; an outbox starts taking them) → [`group`] (averages of
//! the users whose analyses changed; the others are carried over) →
//! [`diff`] of the averages → [`snapshot`] (published whole) → [`deliver`]
//! (outbox or NATS, state recorded only once confirmed).
//!
//! Guarantees:
//! - incremental: an analysis is a function of (the log's sha256, the
//!   algorithm version); a log with a stored result for the current version
//!   is not opened again, and a group is recomputed only when its user's
//!   analyses changed. `--full` recomputes everything;
//! - a broken log becomes `Failed` and changes nothing else;
//! - catalog rows whose file is missing, and files with no row, are reported
//!   and left alone;
//! - only what differs from what consumers hold is sent (`--force`: all),
//!   every analysis result before the averages;
//! - the snapshot is published before delivery; both wait for a check that
//!   the run still holds its lock; state advances only after delivery is
//!   confirmed;
//! - `--dry-run` writes an experiment snapshot and a change report, and
//!   neither delivers nor touches the catalog or `latest`;
//! - memory is bounded by the engine's partitions and one bucket of users,
//!   not by the number of logs.

pub mod analyse;
pub mod deliver;
pub mod dictionary;
pub mod diff;
pub mod group;
pub mod plan;
pub mod snapshot;
pub mod timing;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;

use crate::analysis::engine::Engine;
use crate::analysis::error::EngineError;
use crate::catalog::lock::{LockError, RunLock};
use crate::catalog::{Catalog, CatalogError, RunRecord};
use crate::scan::ScanProgress;
use crate::volume::{Volume, VolumeError};
use deliver::DeliveryError;
use snapshot::{Parent, SnapshotError, Staging, Table};

/// The analyser version recorded with every result.
pub const VERSION: &str = concat!("fap-warehouse ", env!("CARGO_PKG_VERSION"));

/// What can stop a run (never one bad log).
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
    #[error(transparent)]
    Volume(#[from] VolumeError),
    #[error(transparent)]
    Lock(#[from] LockError),
}

impl From<datafusion::error::DataFusionError> for JobError {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        Self::Engine(EngineError::from(e))
    }
}

impl From<datafusion::arrow::error::ArrowError> for JobError {
    fn from(e: datafusion::arrow::error::ArrowError) -> Self {
        Self::Engine(EngineError::from(e))
    }
}

/// The value of a task the job spawned; a task that panicked is an error.
async fn joined<T, E>(
    task: datafusion::common::runtime::SpawnedTask<Result<T, E>>,
) -> Result<T, JobError>
where
    T: Send + 'static,
    E: Into<JobError> + Send + 'static,
{
    task.join()
        .await
        .map_err(|e| datafusion::error::DataFusionError::ExecutionJoin(Box::new(e)))?
        .map_err(Into::into)
}

/// How a run goes about its work.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct RunOptions {
    /// Re-analyse every log, even those with a stored result.
    pub full: bool,
    /// Re-send every result, changed or not (a consumer lost its data).
    pub force: bool,
    /// Write an experiment snapshot and a change report; deliver nothing.
    pub dry_run: bool,
}

/// Where the job reads and writes.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub warehouse: PathBuf,
    pub volume: Volume,
    /// Deliver over NATS at this URL instead of the outbox file.
    pub nats_url: Option<String>,
    pub options: RunOptions,
    /// The `--sql-dir` in use, for the manifest.
    pub sql_dir: Option<PathBuf>,
    /// Files and bytes read so far, for a progress display.
    pub progress: Arc<ScanProgress>,
    crash_before_publish: bool,
}

impl RunConfig {
    pub fn new(warehouse: PathBuf, volume: Volume) -> Self {
        Self {
            warehouse,
            volume,
            nats_url: None,
            options: RunOptions::default(),
            sql_dir: None,
            progress: Arc::new(ScanProgress::default()),
            crash_before_publish: false,
        }
    }

    /// Test hook: stop after staging the snapshot, as a killed process would.
    #[doc(hidden)]
    pub fn crash_before_publish(mut self) -> Self {
        self.crash_before_publish = true;
        self
    }
}

/// What a run did, for the summary and the manifest.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    pub snapshot_id: String,
    pub experiment: bool,
    /// Catalog analyses, and how they were handled.
    pub logs: usize,
    pub analysed: usize,
    pub reused: usize,
    /// Analyses in the snapshot that failed, by message (most frequent first).
    pub failed: usize,
    pub failures: Vec<(String, usize)>,
    pub missing_files: Vec<String>,
    pub orphan_files: Vec<String>,
    pub groups: usize,
    pub groups_recomputed: usize,
    pub users_changed: usize,
    pub analysis_messages: usize,
    pub average_messages: usize,
    pub input_bytes: u64,
    pub analyse_seconds: f64,
    pub seconds: f64,
    pub outbox: Option<PathBuf>,
    /// Messages whose delivery was not confirmed (sent again next run).
    pub undelivered: usize,
    /// The change report of an experiment.
    pub report: Option<PathBuf>,
}

impl RunSummary {
    pub fn mb_per_s(&self) -> f64 {
        self.input_bytes as f64 / 1e6 / self.analyse_seconds.max(1e-9)
    }
}

/// Runs the job once, inside a span, and records the run and its counts.
pub async fn run(
    engine: &Engine,
    catalog: &Catalog,
    lock: &RunLock,
    config: &RunConfig,
) -> Result<RunSummary, JobError> {
    let snapshot_id = snapshot::new_id();
    let span = tracing::info_span!("run", snapshot = %snapshot_id);
    let started = Instant::now();
    if !config.options.dry_run {
        catalog.record_run_start(&snapshot_id).await?;
    }
    let mut summary = RunSummary {
        snapshot_id: snapshot_id.clone(),
        experiment: config.options.dry_run,
        ..RunSummary::default()
    };
    let stages = run_stages(engine, catalog, lock, config, &mut summary);
    let outcome = tracing::Instrument::instrument(stages, span).await;
    summary.seconds = started.elapsed().as_secs_f64();
    if !config.options.dry_run {
        let record = RunRecord {
            id: &snapshot_id,
            status: if outcome.is_ok() { "done" } else { "failed" },
            logs: summary.logs,
            failed_logs: summary.failed,
            analysis_messages: summary.analysis_messages,
            average_messages: summary.average_messages,
            undelivered: summary.undelivered,
            input_bytes: summary.input_bytes,
            duration_seconds: summary.seconds,
            error: outcome.as_ref().err().map(|e| e.to_string()),
        };
        if let Err(err) = catalog.record_run_end(&record).await {
            tracing::warn!(%err, "the run record could not be written");
        }
    }
    outcome.map(|()| summary)
}

async fn run_stages(
    engine: &Engine,
    catalog: &Catalog,
    lock: &RunLock,
    config: &RunConfig,
    summary: &mut RunSummary,
) -> Result<(), JobError> {
    let started_at = chrono::Utc::now();
    tracing::debug!("run started");
    let mut durations = serde_json::Map::new();

    // 1. Plan: what changed since the parent snapshot.
    let t = Instant::now();
    let version = engine.models().version();
    // A `latest` that names a removed folder, or a damaged manifest, costs
    // one full run (same results), never every run from now on.
    let parent = Parent::latest(&config.warehouse).unwrap_or_else(|err| {
        tracing::warn!(%err, "the latest snapshot cannot be read: every log is analysed again");
        None
    });
    // No stored result is reused (a first run, a new algorithm, `--full`):
    // every log is analysed, so the engine and the models downstream of it
    // are planned while the catalog is read. Otherwise most runs analyse
    // little or nothing, and plan later.
    let engine_plan = (!plan::reuses(parent.as_ref(), &version, config.options.full))
        .then(|| analyse::EnginePlan::spawn(engine, &config.volume))
        .flatten();
    let plan = plan::plan(
        catalog,
        &config.volume,
        &config.warehouse,
        parent,
        &version,
        config.options.full,
    )
    .await?;
    summary.logs = plan.catalog.len();
    summary.reused = plan.reused;
    summary.missing_files = plan.missing.clone();
    summary.orphan_files = plan.orphans.clone();
    summary.users_changed = plan.changed_users.len();
    timing::record(&mut durations, "plan", t);
    tracing::info!(
        logs = plan.catalog.len(),
        analyse = plan.to_analyse.len(),
        reuse = plan.reused,
        missing = plan.missing.len(),
        orphans = plan.orphans.len(),
        users_changed = plan.changed_users.len(),
        "run planned"
    );

    // Averaging models for the group stage, planned beside the engine's plan.
    let averaging = (!plan.changed_users.is_empty()).then(|| group::Averaging::spawn(engine));

    snapshot::remove_abandoned_staging(&config.warehouse);
    let mut staging = Staging::create(
        &config.warehouse,
        &summary.snapshot_id,
        plan.reusable_parent().cloned(),
        plan.touched_buckets(),
    )?;

    // 2. Analyse the logs that need it, straight into the staged snapshot.
    let t = Instant::now();
    let analysed = analyse::analyse(
        engine,
        &plan,
        &config.volume,
        &mut staging,
        config.progress.clone(),
        engine_plan,
    )
    .await?;
    summary.analysed = analysed.logs;
    summary.input_bytes = analysed.bytes;
    summary.analyse_seconds = t.elapsed().as_secs_f64();
    timing::record(&mut durations, "analyse", t);
    analysed.timings.record("analyse", &mut durations);
    tracing::info!(
        logs = analysed.logs,
        failed = analysed.failed,
        mb = analysed.bytes as f64 / 1e6,
        seconds = summary.analyse_seconds,
        "logs analysed"
    );

    // 3. What consumers lack of the analyses, and what they hold, read
    // before an outbox takes the embedded catalog's write lock. In outbox
    // mode their results are written while the averages are computed.
    let t = Instant::now();
    let held_averages = diff::held_averages(catalog).await?;
    let held_objects = group::held_objects(catalog, &plan).await?;
    let mut outgoing = diff::outgoing_analyses(&staging, &plan, config.options.force)?;
    let outbox = match &config.nats_url {
        None if !config.options.dry_run && !outgoing.analyses.is_empty() => {
            let files = (0..snapshot::BUCKETS)
                .map(|b| staging.file(Table::Analysis, b))
                .collect();
            let analyses = outgoing.analyses.clone();
            let (warehouse, id) = (&config.warehouse, &summary.snapshot_id);
            Some(deliver::start_outbox(catalog, warehouse, id, files, analyses).await?)
        }
        _ => None,
    };
    let mut diff_time = t.elapsed();

    // 4. Averages of the users whose analyses changed.
    let t = Instant::now();
    let grouped = group::group(
        engine,
        &held_objects,
        &plan,
        &mut staging,
        averaging,
        analysed.membership,
    )
    .await?;
    summary.groups_recomputed = grouped.recomputed;
    timing::record(&mut durations, "group", t);
    grouped.timings.record("group", &mut durations);
    tracing::debug!(recomputed = grouped.recomputed, "groups averaged");

    // 5. What consumers lack of the averages.
    let t = Instant::now();
    outgoing.add_averages(&staging, &held_averages, config.options.force)?;
    diff_time += t.elapsed();
    summary.failed = outgoing.failed;
    summary.failures = outgoing.failures.clone();
    summary.groups = outgoing.groups;
    summary.analysis_messages = outgoing.analyses.len();
    summary.average_messages = outgoing.averages.len();
    timing::record_duration(&mut durations, "diff", diff_time);
    tracing::debug!("changes found");

    // 6. Snapshot (an experiment gets its change report).
    let parent_dir = plan.parent.as_ref().map(|p| p.dir.clone());
    let mut manifest = json!({
        "id": summary.snapshot_id,
        "experiment": config.options.dry_run,
        "started_at": started_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "finished_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "analyser": VERSION,
        "algorithm_version": version,
        "sql": engine.models().iter().map(|m| (format!("{}.sql", m.name), json!({
            "sha256": m.sha256(), "overridden": m.overridden,
        }))).collect::<serde_json::Map<_, _>>(),
        "sql_dir": config.sql_dir.as_ref().map(|d| d.display().to_string()),
        "options": config.options,
        "parent": plan.parent.as_ref().map(|p| p.id.clone()),
        "input_fingerprint": plan.fingerprint,
        "buckets": snapshot::BUCKETS,
        "counts": {
            "logs": summary.logs,
            "analysed": summary.analysed,
            "reused": summary.reused,
            "failed": summary.failed,
            "missing_files": summary.missing_files.len(),
            "orphan_files": summary.orphan_files.len(),
            "users_changed": summary.users_changed,
            "groups": summary.groups,
            "groups_recomputed": summary.groups_recomputed,
            "analysis_messages": summary.analysis_messages,
            "average_messages": summary.average_messages,
        },
        "tables": snapshot::Table::ALL.iter().map(|t| {
            (t.name().to_string(), json!(staging.stats.get(t).copied().unwrap_or_default()))
        }).collect::<serde_json::Map<_, _>>(),
        "input_bytes": summary.input_bytes,
        "durations": durations,
    });
    manifest[plan::HELD_ONLY] = json!(plan.held_only_digests);
    if config.crash_before_publish {
        return Err(SnapshotError::Incomplete {
            id: summary.snapshot_id.clone(),
            why: "stopped before publishing (crash simulation)".into(),
        }
        .into());
    }
    // The outbox's analysis results come from the staged files: all read
    // before the snapshot moves.
    let outbox = match outbox {
        Some(started) => Some(started.written().await?),
        None => None,
    };
    let make_latest = !config.options.dry_run;
    staging.seal(&manifest)?;
    let still_ours = lock.check().await.map_err(|e| e.to_string());
    let dir = staging.publish(make_latest, still_ours)?;
    tracing::info!(snapshot = %dir.display(), latest = make_latest, "snapshot published");
    if config.options.dry_run {
        let report = diff::change_report(engine, parent_dir.as_deref(), &dir).await?;
        summary.report = Some(report);
        return Ok(());
    }

    // 7. Deliver, then record what consumers now hold: only what was confirmed.
    let t = Instant::now();
    lock.check().await?;
    let delivered = deliver::deliver(
        catalog,
        &config.warehouse,
        &dir,
        &summary.snapshot_id,
        &outgoing,
        config.nats_url.as_deref(),
        outbox,
    )
    .await?;
    summary.outbox = delivered.outbox;
    summary.undelivered = delivered.undelivered;
    tracing::info!(
        messages = summary.analysis_messages + summary.average_messages,
        undelivered = summary.undelivered,
        seconds = t.elapsed().as_secs_f64(),
        "results delivered"
    );
    if let Some(first) = delivered.first_error {
        return Err(DeliveryError::Undelivered {
            failed: delivered.undelivered,
            total: outgoing.analyses.len() + outgoing.averages.len(),
            first,
        }
        .into());
    }
    Ok(())
}
