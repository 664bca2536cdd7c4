//! The live worker, a drop-in for the old Python service: answers
//! `analysis.request` and `average.request` with `analysis.result` and
//! `average.result`, using the same engine and SQL as the batch job, and
//! fires the scheduled jobs of `jobs/` ([`schedule`]).
//!
//! - Subscribes in a queue group, so several instances share the requests.
//! - Requests arriving together are answered together: up to `batch` of one
//!   subject, or what arrives within `batch_wait`, go through one run of a
//!   plan made once at start (planning costs ~170 ms; a log, a few ms). Each
//!   request still gets its own answer, identical to `analyze`'s.
//! - `fileName` must be a UUID; the log read is `<volume>/<uuid>.csv` and
//!   nothing else. It must be a regular file, checked off the async threads
//!   with a timeout, so a FIFO or a hung network file fails that request
//!   only.
//! - A request larger than the server's `max_payload` is answered `Failed`;
//!   a malformed message is logged and dropped, never fatal.
//! - On SIGTERM/SIGINT: stop taking work, finish what is in flight within
//!   `shutdown_grace`, log what was left (the backend asks again), exit.

pub mod schedule;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use datafusion::execution::object_store::ObjectStoreUrl;
use futures::{StreamExt, TryStreamExt};
use serde_json::Value;
use tokio::sync::Semaphore;

use crate::analysis::average::{self, Averager};
use crate::analysis::engine::Engine;
use crate::analysis::message::{self, AnalysisWriter};
use crate::analysis::prepared::{Input, Prepared};
use crate::scan::LogInput;
use crate::volume::Volume;
use schedule::Job;

/// How the worker runs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub nats_url: String,
    /// Queue group shared by the instances that split the work.
    pub queue_group: String,
    pub volume: Volume,
    /// Batches answered at once.
    pub concurrency: usize,
    /// Requests answered by one run of the plan, at most.
    pub batch: usize,
    /// How long the first request of a batch waits for others.
    pub batch_wait: Duration,
    /// How long a log may take to be checked before its request fails.
    pub read_timeout: Duration,
    /// How long in-flight work may take after SIGTERM.
    pub shutdown_grace: Duration,
    /// Scheduled jobs (from `jobs/`), run with this warehouse and catalog.
    pub jobs: Vec<Job>,
    pub warehouse: std::path::PathBuf,
    pub catalog_url: String,
    pub state_schema: crate::catalog::StateSchema,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("NATS: {0}")]
    Nats(String),
    #[error(transparent)]
    Engine(#[from] crate::analysis::error::EngineError),
}

/// The plans of the worker, made once.
struct Answerer {
    engine: Engine,
    volume: Volume,
    analysis: Prepared,
    averager: Averager,
    read_timeout: Duration,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Kind {
    Analysis,
    Average,
}

impl Kind {
    fn result_subject(self) -> &'static str {
        match self {
            Kind::Analysis => "analysis.result",
            Kind::Average => "average.result",
        }
    }
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
    let max_payload = client.server_info().max_payload;
    let answerer = Arc::new(Answerer::new(&engine, &config).await?);
    let group = config.queue_group.clone();
    let analyses = client
        .queue_subscribe("analysis.request", group.clone())
        .await
        .map_err(|e| nats(&e))?;
    let averages = client
        .queue_subscribe("average.request", group)
        .await
        .map_err(|e| nats(&e))?;
    client.flush().await.map_err(|e| nats(&e))?;
    tracing::info!(
        url = %crate::catalog::redact(&config.nats_url),
        group = %config.queue_group,
        batch = config.batch,
        concurrency = config.concurrency,
        "serving analysis.request and average.request"
    );

    let (stop_jobs, stopped) = tokio::sync::watch::channel(false);
    let scheduler = tokio::spawn(run_schedule(engine.clone(), config.clone(), stopped));
    let mut requests = futures::stream::select(
        analyses.map(|m| (Kind::Analysis, m)),
        averages.map(|m| (Kind::Average, m)),
    );
    let limit = Arc::new(Semaphore::new(config.concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    let mut pending: HashMap<Kind, Vec<async_nats::Message>> = HashMap::new();
    let mut deadline: Option<tokio::time::Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let wait = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut shutdown => break,
            message = requests.next() => {
                let Some((kind, message)) = message else { break };
                let batch = pending.entry(kind).or_default();
                batch.push(message);
                if deadline.is_none() {
                    deadline = Some(tokio::time::Instant::now() + config.batch_wait);
                }
                if batch.len() < config.batch.max(1) {
                    continue;
                }
            }
            () = wait => {}
        }
        // A batch is full, or the first request waited long enough.
        for (kind, batch) in pending.drain() {
            if batch.is_empty() {
                continue;
            }
            let Ok(permit) = limit.clone().acquire_owned().await else {
                break;
            };
            let (answerer, client) = (answerer.clone(), client.clone());
            tasks.spawn(async move {
                answer_batch(&answerer, &client, kind, batch, max_payload).await;
                drop(permit);
            });
        }
        deadline = None;
        while tasks.try_join_next().is_some() {}
    }

    // Stop taking work; finish what is in flight, within the grace period.
    let left: usize = pending.values().map(Vec::len).sum();
    while tasks.try_join_next().is_some() {}
    let in_flight = tasks.len();
    tracing::info!(
        in_flight,
        grace_seconds = config.shutdown_grace.as_secs_f64(),
        "stopping: no new work"
    );
    let drained = tokio::time::timeout(config.shutdown_grace, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    let unfinished = if drained.is_err() {
        let n = tasks.len();
        tasks.abort_all();
        n
    } else {
        0
    };
    if left > 0 || unfinished > 0 {
        tracing::warn!(
            requests_not_started = left,
            batches_cut_off = unfinished,
            "left unanswered at shutdown: the backend asks again"
        );
    }
    let _ = stop_jobs.send(true);
    let _ = tokio::time::timeout(config.shutdown_grace, scheduler).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), client.flush()).await;
    tracing::info!("stopped");
    Ok(())
}

impl Answerer {
    async fn new(engine: &Engine, config: &ServeConfig) -> Result<Self, ServeError> {
        let analysis = engine.prepare_analysis(config.volume.url().clone()).await?;
        Ok(Self {
            engine: engine.clone(),
            volume: config.volume.clone(),
            analysis,
            averager: Averager::for_requests(engine).await?,
            read_timeout: config.read_timeout,
        })
    }

    /// The `analysis.result` of each request, in order.
    async fn analyses(&self, requests: &[Option<Value>]) -> Vec<Option<Value>> {
        // Which logs to read: each distinct, valid id once.
        let mut answers: Vec<Option<Value>> = vec![None; requests.len()];
        let mut wanted: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, request) in requests.iter().enumerate() {
            let Some(request) = request else { continue };
            let Some(file_name) = data_of(request).get("fileName").and_then(Value::as_str) else {
                tracing::warn!("analysis.request without a fileName: dropped");
                continue;
            };
            if analysis_id(file_name).is_none() {
                answers[i] = Some(message::failed_result(
                    file_name,
                    "The file name is not a valid analysis id.",
                ));
                continue;
            }
            wanted.entry(file_name.to_string()).or_default().push(i);
        }
        let mut inputs = Vec::new();
        for id in wanted.keys() {
            match self.check(id).await {
                Ok(bytes) => inputs.push(LogInput {
                    log_id: id.clone(),
                    location: self.volume.location(id),
                    bytes,
                    sha256: None,
                }),
                Err(why) => {
                    for &i in &wanted[id] {
                        answers[i] = Some(message::failed_result(id, &why));
                    }
                }
            }
        }
        if !inputs.is_empty() {
            let ids: Vec<String> = inputs.iter().map(|l| l.log_id.clone()).collect();
            match self.run(inputs).await {
                Ok(results) => {
                    for id in ids {
                        let result = results.get(&id).cloned().unwrap_or_else(|| {
                            message::failed_result(&id, "The log could not be analysed.")
                        });
                        for &i in &wanted[&id] {
                            answers[i] = Some(result.clone());
                        }
                    }
                }
                Err(err) => {
                    tracing::error!(%err, "analysis failed");
                    for id in ids {
                        for &i in &wanted[&id] {
                            answers[i] = Some(message::failed_result(
                                &id,
                                "The log could not be analysed.",
                            ));
                        }
                    }
                }
            }
        }
        answers
    }

    /// Whether the log of `id` is a regular file, checked off the async
    /// threads and within the read timeout; its size.
    async fn check(&self, id: &str) -> Result<u64, String> {
        let missing = "The log file was not found.".to_string();
        let check = async {
            match self.volume.local_path(id) {
                Some(path) => tokio::task::spawn_blocking(move || std::fs::metadata(path))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|_| missing.clone())
                    .and_then(|m| {
                        if m.is_file() {
                            Ok(m.len())
                        } else {
                            Err("The log is not a regular file.".to_string())
                        }
                    }),
                None => {
                    use object_store::ObjectStoreExt;
                    self.volume
                        .store()
                        .head(&self.volume.location(id))
                        .await
                        .map(|m| m.size)
                        .map_err(|_| missing.clone())
                }
            }
        };
        match tokio::time::timeout(self.read_timeout, check).await {
            Ok(result) => result,
            Err(_) => Err("The log file could not be read in time.".into()),
        }
    }

    /// One run of the prepared plan over `inputs`: `analysis.result` by id.
    async fn run(&self, mut inputs: Vec<LogInput>) -> anyhow::Result<HashMap<String, Value>> {
        inputs.sort_by(|a, b| a.log_id.cmp(&b.log_id));
        let store: ObjectStoreUrl = self.volume.url().clone();
        let logs = self.engine.log_set(store, inputs);
        let stream = self.analysis.execute(&[Input::Logs(&logs)])?;
        let schema = stream.schema();
        let batches: Vec<_> =
            tokio::time::timeout(Duration::from_secs(120), stream.try_collect::<Vec<_>>())
                .await
                .map_err(|_| anyhow::anyhow!("the analysis took longer than 120 s"))??;
        let writer = AnalysisWriter::new(&schema)?;
        let mut out = HashMap::new();
        for batch in &batches {
            for row in 0..batch.num_rows() {
                out.insert(
                    writer.log_id(batch, row).to_string(),
                    writer.result(batch, row),
                );
            }
        }
        Ok(out)
    }
}

/// Answers one batch of requests of one subject.
async fn answer_batch(
    answerer: &Answerer,
    client: &async_nats::Client,
    kind: Kind,
    batch: Vec<async_nats::Message>,
    max_payload: usize,
) {
    let span = tracing::info_span!(
        "batch",
        subject = kind.result_subject(),
        requests = batch.len()
    );
    let _enter = span.enter();
    // Requests that cannot be read get a FAILED answer, not silence: the
    // backend would otherwise wait for a result that never comes.
    let mut unreadable: Vec<(usize, &str)> = Vec::new();
    let requests: Vec<Option<Value>> = batch
        .iter()
        .enumerate()
        .map(|(i, m)| {
            if m.payload.len() > max_payload {
                tracing::warn!(
                    bytes = m.payload.len(),
                    max_payload,
                    "request larger than the server's max_payload"
                );
                unreadable.push((i, "The request is larger than the message server accepts."));
                return None;
            }
            match serde_json::from_slice::<Value>(&m.payload) {
                Ok(v) if v.is_object() => Some(v),
                _ => {
                    tracing::warn!(
                        bytes = m.payload.len(),
                        "a request is not a JSON object: answered as failed"
                    );
                    unreadable.push((i, "The request is not a JSON object."));
                    None
                }
            }
        })
        .collect();
    let mut answers: Vec<Option<Value>> = match kind {
        Kind::Analysis => answerer.analyses(&requests).await,
        Kind::Average => {
            let valid: Vec<(usize, Value)> = requests
                .iter()
                .enumerate()
                .filter_map(|(i, r)| r.clone().map(|r| (i, r)))
                .collect();
            let payloads: Vec<Value> = valid.iter().map(|(_, v)| v.clone()).collect();
            let mut answers = vec![None; requests.len()];
            match average::answer_all(&answerer.averager, &payloads).await {
                Ok(results) => {
                    for ((i, _), result) in valid.iter().zip(results) {
                        answers[*i] = Some(result);
                    }
                }
                Err(err) => {
                    tracing::error!(%err, "average failed");
                    for (i, payload) in &valid {
                        let request = average::AverageRequest::parse(payload);
                        answers[*i] = Some(
                            request.result(Err("The average could not be calculated.".into())),
                        );
                    }
                }
            }
            answers
        }
    };
    for (i, why) in unreadable {
        answers[i] = unreadable_answer(kind, &batch[i].payload, why);
    }
    for answer in answers.into_iter().flatten() {
        if let Err(err) = client
            .publish(kind.result_subject(), answer.to_string().into())
            .await
        {
            tracing::error!(%err, "cannot publish the result");
        }
    }
    if let Err(err) = client.flush().await {
        tracing::error!(%err, "cannot flush the results");
    }
}

/// The answer to a request that cannot be read whole: failed, echoing the
/// keys found in its first bytes (the backend writes them before the
/// analyses). An analysis request without a file name has no one to answer.
fn unreadable_answer(kind: Kind, payload: &[u8], why: &str) -> Option<Value> {
    let head = String::from_utf8_lossy(&payload[..payload.len().min(4096)]);
    let field = |key: &str| raw_scalar(&head, key);
    match kind {
        Kind::Analysis => field("fileName")
            .as_str()
            .map(|id| message::failed_result(id, why)),
        Kind::Average => {
            let key = serde_json::json!({
                "userId": field("userId"), "type": field("type"), "year": field("year"),
                "month": field("month"), "analysisSha": field("analysisSha"),
            });
            Some(average::AverageRequest::parse(&key).result(Err(why.into())))
        }
    }
}

/// The text, number or null written after the first `"key":` of `text`;
/// null when there is none.
fn raw_scalar(text: &str, key: &str) -> Value {
    text.split(&format!("\"{key}\":"))
        .nth(1)
        .and_then(|rest| {
            serde_json::Deserializer::from_str(rest.trim_start())
                .into_iter::<Value>()
                .next()
        })
        .and_then(Result::ok)
        .filter(|v| !v.is_array() && !v.is_object())
        .unwrap_or(Value::Null)
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
        let now = chrono::Utc::now();
        let Some(next) = config
            .jobs
            .iter()
            .filter_map(|job| job.next_after(now))
            .min()
        else {
            return;
        };
        let wait = (next - now).to_std().unwrap_or_default();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
        for job in &config.jobs {
            if job.next_after(next - chrono::Duration::seconds(1)) == Some(next) {
                run_job(&engine, &config, job).await;
            }
        }
    }
}

/// One scheduled run: skipped when another run holds the lock.
async fn run_job(engine: &Engine, config: &ServeConfig, job: &Job) {
    let span = tracing::info_span!("job", name = %job.spec.name);
    let _enter = span.enter();
    let catalog =
        match crate::catalog::Catalog::connect(&config.catalog_url, &config.state_schema).await {
            Ok(c) => c,
            Err(err) => return tracing::error!(%err, "job not run: catalog unavailable"),
        };
    let lock = match crate::catalog::lock::RunLock::try_take(&catalog, &config.warehouse).await {
        Ok(Some(lock)) => lock,
        Ok(None) => return tracing::warn!("skipped: another run holds the lock"),
        Err(err) => return tracing::error!(%err, "job not run"),
    };
    let mut run = crate::job::RunConfig::new(config.warehouse.clone(), config.volume.clone());
    run.nats_url = Some(config.nats_url.clone());
    run.options.force = job.spec.force;
    run.options.full = job.spec.full;
    match crate::job::run(engine, &catalog, &lock, &run).await {
        Ok(s) => tracing::info!(
            snapshot = %s.snapshot_id, logs = s.logs, analysed = s.analysed, failed = s.failed,
            analysis_messages = s.analysis_messages, average_messages = s.average_messages, "job done"
        ),
        Err(err) => tracing::error!(%err, "job failed"),
    }
}

/// The request's `data` (the backend's envelope) or the payload itself.
fn data_of(payload: &Value) -> &Value {
    match payload.get("data") {
        Some(data) if payload.get("pattern").is_some() => data,
        _ => payload,
    }
}

/// A UUID in canonical form, or nothing: no other text names a file.
fn analysis_id(file_name: &str) -> Option<uuid::Uuid> {
    let id = uuid::Uuid::parse_str(file_name).ok()?;
    (id.hyphenated().to_string() == file_name.to_ascii_lowercase()).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_keys_of_a_cut_request_are_read_from_its_start() {
        let head = r#"{"data":{"userId":"u-1","year":2025,"month":null,"type":"MONTHLY","analysis":[{"a":"#;
        assert_eq!(raw_scalar(head, "userId"), "u-1");
        assert_eq!(raw_scalar(head, "year"), 2025);
        assert_eq!(raw_scalar(head, "month"), Value::Null);
        assert_eq!(raw_scalar(head, "analysisSha"), Value::Null, "absent");
        assert_eq!(raw_scalar(head, "analysis"), Value::Null, "not a scalar");
    }

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
