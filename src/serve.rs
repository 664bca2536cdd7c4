//! The live worker, a drop-in for the old Python service: answers
//! `analysis.request` and `average.request` with `analysis.result` and
//! `average.result`, using the same engine and SQL as the batch job.
//!
//! - Subscribes in a queue group, so several instances share the requests.
//! - `fileName` must be a UUID; the log read is `<volume>/<uuid>.csv` and
//!   nothing else: no path from a message ever reaches the file system.
//! - A malformed message never stops the worker: it is answered `Failed`
//!   where the analysis id is known, otherwise logged and dropped.
//! - At most `concurrency` requests run at once.
//! - On SIGTERM/SIGINT: stop taking work, finish what is in flight, flush.

use std::path::PathBuf;
use std::sync::Arc;

use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::engine::Engine;
use crate::message;
use crate::scan::LogInput;
use crate::schedule::{Cron, JobSpec};

/// How the worker runs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub nats_url: String,
    /// Queue group shared by the instances that split the work.
    pub queue_group: String,
    pub volume: PathBuf,
    pub concurrency: usize,
    /// Scheduled jobs (from `jobs/`), run with this warehouse and catalog.
    pub jobs: Vec<(JobSpec, Cron)>,
    pub warehouse: PathBuf,
    pub catalog_url: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("NATS: {0}")]
    Nats(String),
}

/// Serves until `shutdown` resolves, then drains.
pub async fn serve(
    engine: Engine,
    config: ServeConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ServeError> {
    let nats = |e: &dyn std::fmt::Display| ServeError::Nats(e.to_string());
    let client = async_nats::ConnectOptions::new()
        .name("fap-warehouse serve")
        .connect(&config.nats_url)
        .await
        .map_err(|e| nats(&e))?;
    let group = config.queue_group.clone();
    let mut analyses = client
        .queue_subscribe("analysis.request", group.clone())
        .await
        .map_err(|e| nats(&e))?;
    let mut averages = client
        .queue_subscribe("average.request", group)
        .await
        .map_err(|e| nats(&e))?;
    client.flush().await.map_err(|e| nats(&e))?;
    tracing::info!(url = %crate::catalog::redact(&config.nats_url), group = %config.queue_group, "serving analysis.request and average.request");

    let limit = Arc::new(Semaphore::new(config.concurrency.max(1)));
    let (stop_jobs, stopped) = tokio::sync::watch::channel(false);
    let scheduler = tokio::spawn(run_schedule(engine.clone(), config.clone(), stopped));
    let config = Arc::new(config);
    let mut tasks = tokio::task::JoinSet::new();
    let spawn = |tasks: &mut tokio::task::JoinSet<()>,
                 subject: &'static str,
                 msg: async_nats::Message,
                 permit| {
        let (engine, client, config) = (engine.clone(), client.clone(), config.clone());
        tasks.spawn(async move {
            let span = tracing::info_span!("request", subject);
            let answer = tracing::Instrument::instrument(
                async {
                    match subject {
                        "analysis.request" => answer_analysis(&engine, &config, &msg.payload).await,
                        _ => answer_average(&engine, &msg.payload).await,
                    }
                },
                span,
            )
            .await;
            if let Some((result_subject, payload)) = answer
                && let Err(err) = client
                    .publish(result_subject, payload.to_string().into())
                    .await
            {
                tracing::error!(%err, "cannot publish the result");
            }
            drop(permit);
        });
    };
    tokio::pin!(shutdown);
    loop {
        let (subject, msg) = tokio::select! {
            _ = &mut shutdown => break,
            Some(m) = analyses.next() => ("analysis.request", m),
            Some(m) = averages.next() => ("average.request", m),
            else => break,
        };
        let Ok(permit) = limit.clone().acquire_owned().await else {
            break;
        };
        spawn(&mut tasks, subject, msg, permit);
        // Reap finished tasks so the set does not grow.
        while tasks.try_join_next().is_some() {}
    }
    // Stop taking work, but answer what the server already handed us.
    tracing::info!(
        in_flight = tasks.len(),
        "stopping: no new work, finishing what is in flight"
    );
    let _ = analyses.drain().await;
    let _ = averages.drain().await;
    for (subject, stream) in [
        ("analysis.request", &mut analyses),
        ("average.request", &mut averages),
    ] {
        while let Ok(Some(msg)) =
            tokio::time::timeout(std::time::Duration::from_secs(2), stream.next()).await
        {
            let Ok(permit) = limit.clone().acquire_owned().await else {
                break;
            };
            spawn(&mut tasks, subject, msg, permit);
        }
    }
    while tasks.join_next().await.is_some() {}
    let _ = stop_jobs.send(true);
    let _ = scheduler.await;
    client.flush().await.map_err(|e| nats(&e))?;
    tracing::info!("stopped");
    Ok(())
}

/// Fires the scheduled jobs until told to stop; a job in progress finishes.
async fn run_schedule(
    engine: Engine,
    config: ServeConfig,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    if config.jobs.is_empty() {
        return;
    }
    loop {
        let now = crate::schedule::now_minute();
        let Some(next) = config
            .jobs
            .iter()
            .filter_map(|(_, cron)| cron.next_after(now))
            .min()
        else {
            return;
        };
        let wait =
            std::time::Duration::from_secs(((next * 60) as u64).saturating_sub(now_seconds()));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
        for (spec, cron) in &config.jobs {
            if cron.matches(next) {
                run_job(&engine, &config, spec).await;
            }
        }
    }
}

fn now_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// One scheduled run: skipped when another instance holds the lock.
async fn run_job(engine: &Engine, config: &ServeConfig, spec: &JobSpec) {
    let span = tracing::info_span!("job", name = %spec.name);
    let _enter = span.enter();
    let catalog = match crate::catalog::Catalog::connect(&config.catalog_url).await {
        Ok(c) => c,
        Err(err) => return tracing::error!(%err, "job not run: catalog unavailable"),
    };
    let lock =
        match crate::schedule::try_lock(&catalog, &config.warehouse, crate::schedule::RUN_LOCK)
            .await
        {
            Ok(Some(lock)) => lock,
            Ok(None) => return tracing::warn!("skipped: another run holds the lock"),
            Err(err) => return tracing::error!(%err, "job not run"),
        };
    let run = crate::job::RunConfig {
        warehouse: config.warehouse.clone(),
        volume: config.volume.clone(),
        force: spec.force,
        nats_url: Some(config.nats_url.clone()),
        crash_before_rename: false,
    };
    match crate::job::run(engine, &catalog, &run).await {
        Ok(s) => {
            tracing::info!(snapshot = %s.snapshot_id, logs = s.logs, failed = s.failed, analysis_messages = s.analysis_messages, average_messages = s.average_messages, "job done")
        }
        Err(err) => tracing::error!(%err, "job failed"),
    }
    drop(lock);
}

/// The request's `data` (the backend's envelope) or the payload itself.
fn data_of(payload: &Value) -> &Value {
    match payload.get("data") {
        Some(data) if payload.get("pattern").is_some() => data,
        _ => payload,
    }
}

async fn answer_analysis(
    engine: &Engine,
    config: &ServeConfig,
    bytes: &[u8],
) -> Option<(&'static str, Value)> {
    let Ok(payload) = serde_json::from_slice::<Value>(bytes) else {
        tracing::warn!(bytes = bytes.len(), "analysis.request is not JSON: dropped");
        return None;
    };
    let Some(file_name) = data_of(&payload).get("fileName").and_then(Value::as_str) else {
        tracing::warn!("analysis.request without a fileName: dropped");
        return None;
    };
    let Some(id) = analysis_id(file_name) else {
        return Some((
            "analysis.result",
            failed(file_name, "The file name is not a valid analysis id."),
        ));
    };
    let log = LogInput {
        log_id: file_name.to_string(),
        path: config.volume.join(format!("{id}.csv")),
    };
    match engine.analyse(&[log]).await {
        Ok(result) if result.batch.num_rows() == 1 => Some((
            "analysis.result",
            message::analysis_result(&result.batch, 0),
        )),
        Ok(_) => Some((
            "analysis.result",
            failed(file_name, "The log could not be analysed."),
        )),
        Err(err) => {
            tracing::error!(%err, file_name, "analysis failed");
            Some((
                "analysis.result",
                failed(file_name, "The log could not be analysed."),
            ))
        }
    }
}

/// A UUID in canonical form, or nothing: no other text names a file.
fn analysis_id(file_name: &str) -> Option<uuid::Uuid> {
    let id = uuid::Uuid::parse_str(file_name).ok()?;
    (id.hyphenated().to_string() == file_name.to_ascii_lowercase()).then_some(id)
}

fn failed(id: &str, why: &str) -> Value {
    json!({
        "analysisId": id, "status": "Failed", "message": message::clip(why),
        "analysis": {}, "fapRegen": false, "logDate": null, "distance": null,
    })
}

async fn answer_average(engine: &Engine, bytes: &[u8]) -> Option<(&'static str, Value)> {
    let Ok(payload) = serde_json::from_slice::<Value>(bytes) else {
        tracing::warn!(bytes = bytes.len(), "average.request is not JSON: dropped");
        return None;
    };
    if !data_of(&payload).is_object() {
        tracing::warn!("average.request without a data object: dropped");
        return None;
    }
    match crate::average::answer(engine, &payload).await {
        Ok(result) => Some(("average.result", result)),
        Err(err) => {
            tracing::error!(%err, "average failed");
            let request = crate::average::AverageRequest::parse(&payload);
            Some((
                "average.result",
                request.result(Err("The average could not be calculated.".into())),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_canonical_uuids_name_files() {
        assert!(analysis_id("9fa3fb19-02b0-4052-bb69-a1e15a253219").is_some());
        for bad in [
            "../../etc/passwd",
            "/etc/passwd",
            "",
            "9fa3fb1902b04052bb69a1e15a253219",
            "{9fa3fb19-02b0-4052-bb69-a1e15a253219}",
            "9fa3fb19-02b0-4052-bb69-a1e15a253219/../x",
        ] {
            assert!(analysis_id(bad).is_none(), "{bad}");
        }
    }
}
