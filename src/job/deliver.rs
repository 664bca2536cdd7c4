//! Stage 6: delivery of what consumers lack, over NATS when a URL is given,
//! else into an outbox file; then (embedded catalog) recording what they now
//! hold — only what was confirmed.
//!
//! Messages are read back from the snapshot's files bucket by bucket (one
//! bucket of users in memory): every analysis result, then every average,
//! so a user's averages never arrive before one of its analyses.
//!
//! - Outbox: `<warehouse>/outbox/<snapshot-id>.jsonl`, one
//!   `{"subject", "payload"}` per line, written to a temporary name, synced
//!   and renamed: it exists whole or not at all. Its analysis results are
//!   written from the staged files while the averages are computed
//!   ([`start_outbox`]).
//! - JetStream (a stream captures the subject): each message carries a
//!   `Nats-Msg-Id` (its content hash: a retry is stored once) and counts once
//!   the stream acknowledges it.
//! - Core NATS: messages count once a round trip on the same connection
//!   proves the server has them. A reconnect during a chunk (the server
//!   restarted) voids the chunk: what was buffered before may be lost, so
//!   everything since the last confirmed round trip counts as undelivered,
//!   the run fails and the next run sends it again.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{Date32Type, Float64Type, Int32Type, Int64Type};
use datafusion::common::runtime::SpawnedTask;
use futures::StreamExt;

use super::diff::Outgoing;
use super::snapshot::{self, SnapshotError, Table, read_parquet};
use crate::analysis::average::GroupKey;
use crate::analysis::message;
use crate::catalog::{Catalog, Delivered, DeliveredAnalysis, DeliveredAverage, HeldUpdate};

/// The two result subjects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Subject {
    AnalysisResult,
    AverageResult,
}

impl Subject {
    pub fn as_str(self) -> &'static str {
        match self {
            Subject::AnalysisResult => "analysis.result",
            Subject::AverageResult => "average.result",
        }
    }
}

/// One result to send: its subject, raw JSON payload (never an envelope),
/// and what consumers hold once it is delivered.
#[derive(Debug, Clone)]
pub struct Message {
    pub subject: Subject,
    pub payload: String,
    pub record: Delivered,
}

impl Message {
    /// A stable id of this exact content, for idempotent retries.
    pub fn msg_id(&self) -> String {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(self.payload.as_bytes());
        format!("{}:{digest:x}", self.subject.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("outbox {path}: {source}")]
    Outbox {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("NATS: {0}")]
    Nats(String),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error("recording delivered results: {0}")]
    Catalog(#[from] crate::catalog::CatalogError),
    #[error(
        "{failed} of {total} messages were not delivered (first error: {first}); they will be sent again by the next run"
    )]
    Undelivered {
        failed: usize,
        total: usize,
        first: String,
    },
}

/// What a delivery achieved.
#[derive(Debug, Default)]
pub struct DeliveryReport {
    pub outbox: Option<PathBuf>,
    pub undelivered: usize,
    pub first_error: Option<String>,
}

/// Sends `outgoing` from the published snapshot in `dir`: over NATS when
/// `nats_url` is given, else into `outbox` (created here when the run did
/// not start one), which may already hold the analysis results.
pub async fn deliver(
    catalog: &Catalog,
    warehouse: &Path,
    dir: &Path,
    snapshot_id: &str,
    outgoing: &Outgoing,
    nats_url: Option<&str>,
    outbox: Option<Outbox>,
) -> Result<DeliveryReport, DeliveryError> {
    let total = outgoing.analyses.len() + outgoing.averages.len();
    let mut delivered = DeliveryReport::default();
    if let Some(url) = nats_url {
        if total == 0 {
            return Ok(delivered);
        }
        let publisher = NatsPublisher::connect(url).await?;
        let mut sent = 0;
        for table in [Table::Analysis, Table::Average] {
            for bucket in 0..snapshot::BUCKETS {
                let messages = messages(dir, table, bucket, outgoing)?;
                if messages.is_empty() {
                    continue;
                }
                if delivered.first_error.is_some() {
                    delivered.undelivered += messages.len();
                    continue;
                }
                let confirmed = publisher.publish_all(&messages).await;
                sent += confirmed.ok.len();
                if catalog.is_embedded() && !confirmed.ok.is_empty() {
                    let held: Vec<&Delivered> =
                        confirmed.ok.iter().map(|&i| &messages[i].record).collect();
                    catalog.apply_results(&held, super::VERSION).await?;
                }
                if let Some((_, first)) = confirmed.failed.first() {
                    tracing::error!(failed = confirmed.failed.len(), %first, "delivery incomplete");
                    delivered.undelivered += confirmed.failed.len();
                    delivered.first_error = Some(first.clone());
                }
            }
        }
        tracing::info!(
            sent,
            undelivered = delivered.undelivered,
            "results delivered over NATS"
        );
        return Ok(delivered);
    }
    let mut outbox = match outbox {
        Some(outbox) => outbox,
        None if total == 0 => return Ok(delivered),
        None => {
            let mut outbox = Outbox::create(catalog, warehouse, snapshot_id).await?;
            outbox
                .append(|b| messages(dir, Table::Analysis, b, outgoing))
                .await?;
            outbox
        }
    };
    outbox
        .append(|b| messages(dir, Table::Average, b, outgoing))
        .await?;
    let path = outbox.finish().await?;
    tracing::debug!(path = %path.display(), "outbox written");
    delivered.outbox = Some(path);
    Ok(delivered)
}

/// Starts the outbox of a run whose consumers lack `analyses`, and writes
/// their results from the staged `analysis` files (`files`, per bucket)
/// on a task of its own: they need nothing from the stages still to come,
/// which run meanwhile. Averages follow in [`deliver`].
pub async fn start_outbox(
    catalog: &Catalog,
    warehouse: &Path,
    snapshot_id: &str,
    files: Vec<Option<PathBuf>>,
    analyses: Arc<HashSet<String>>,
) -> Result<StartedOutbox, DeliveryError> {
    let mut outbox = Outbox::create(catalog, warehouse, snapshot_id).await?;
    // A second guard on the same file: an aborted task drops its outbox
    // (and the outbox's guard) only when the runtime next polls it.
    let temp = TempFile::new(outbox.temp.path.clone());
    let task = SpawnedTask::spawn(async move {
        outbox
            .append(|b| analysis_messages(files[b].as_deref(), &analyses))
            .await?;
        outbox.sync_so_far().await?;
        Ok(outbox)
    });
    Ok(StartedOutbox { task, temp })
}

/// An outbox being written on a task of its own. Dropped (the run failed),
/// the task stops and the temporary file is gone at once.
pub struct StartedOutbox {
    task: SpawnedTask<Result<Outbox, DeliveryError>>,
    temp: TempFile,
}

impl StartedOutbox {
    /// The outbox, once its analysis results are written.
    pub async fn written(self) -> Result<Outbox, super::JobError> {
        let Self { task, mut temp } = self;
        let outbox = super::joined(task).await?;
        temp.keep();
        Ok(outbox)
    }
}

/// A temporary file, removed when dropped unless kept.
struct TempFile {
    path: PathBuf,
    keep: bool,
}

impl TempFile {
    fn new(path: PathBuf) -> Self {
        Self { path, keep: false }
    }

    fn keep(&mut self) {
        self.keep = true;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The messages of `outgoing` in one bucket of `table` (`analysis` or
/// `average`) of the snapshot in `dir`.
fn messages(
    dir: &Path,
    table: Table,
    bucket: usize,
    outgoing: &Outgoing,
) -> Result<Vec<Message>, DeliveryError> {
    let path = snapshot::file_in(dir, table, bucket);
    match table {
        Table::Average => average_messages(&path, &outgoing.averages),
        _ => analysis_messages(Some(&path), &outgoing.analyses),
    }
}

/// The `analysis.result` messages of `wanted` analyses in one bucket file
/// (none when there is none), per user by id.
fn analysis_messages(
    path: Option<&Path>,
    wanted: &HashSet<String>,
) -> Result<Vec<Message>, DeliveryError> {
    let mut out: Vec<(String, Message)> = Vec::new();
    let Some(path) = path.filter(|p| !wanted.is_empty() && p.is_file()) else {
        return Ok(Vec::new());
    };
    let columns = [
        "analysis_id",
        "user_id",
        "status",
        "message",
        "analysis_json",
        "fap_regen",
        "log_date",
        "overall_distance_km",
    ];
    for batch in read_parquet(path, Some(&columns))? {
        for row in 0..batch.num_rows() {
            let id = text(&batch, "analysis_id", row).unwrap_or_default();
            if !wanted.contains(id) {
                continue;
            }
            let success = text(&batch, "status", row) == Some("Success");
            let record = DeliveredAnalysis {
                id: id.to_string(),
                success,
                message: text(&batch, "message", row).unwrap_or_default().to_string(),
                analysis: if success {
                    text(&batch, "analysis_json", row)
                        .unwrap_or("{}")
                        .to_string()
                } else {
                    "{}".to_string()
                },
                fap_regen: success && boolean(&batch, "fap_regen", row),
                log_date: date(&batch, "log_date", row).filter(|_| success),
                distance: float(&batch, "overall_distance_km", row)
                    .filter(|d| success && d.is_finite() && d.abs() < 1e8),
            };
            let payload = message::result_payload(
                &record.id,
                record.success,
                &record.message,
                &record.analysis,
                record.fap_regen,
                record.log_date.as_deref(),
                record.distance,
            );
            let user = text(&batch, "user_id", row).unwrap_or_default().to_string();
            out.push((
                user,
                Message {
                    subject: Subject::AnalysisResult,
                    payload,
                    record: Delivered::Analysis(record),
                },
            ));
        }
    }
    Ok(in_order(out))
}

/// The `average.result` messages of `wanted` groups in one bucket file
/// (none when it does not exist), per user by period.
fn average_messages(
    path: &Path,
    wanted: &HashSet<GroupKey>,
) -> Result<Vec<Message>, DeliveryError> {
    let mut out: Vec<(String, Message)> = Vec::new();
    if wanted.is_empty() || !path.is_file() {
        return Ok(Vec::new());
    }
    let columns = [
        "user_id",
        "type",
        "year",
        "month",
        "analysis_sha",
        "average_json",
    ];
    for batch in read_parquet(path, Some(&columns))? {
        for row in 0..batch.num_rows() {
            let key = GroupKey::of_row(&batch, row);
            if !wanted.contains(&key) {
                continue;
            }
            let record = DeliveredAverage {
                user_id: key.user_id.clone(),
                kind: key.kind.clone(),
                year: key.year,
                month: key.month,
                analysis_sha: text(&batch, "analysis_sha", row)
                    .unwrap_or_default()
                    .to_string(),
                average: text(&batch, "average_json", row)
                    .unwrap_or("{}")
                    .to_string(),
            };
            let payload = message::average_payload(&key, &record.analysis_sha, &record.average);
            out.push((
                key.user_id,
                Message {
                    subject: Subject::AverageResult,
                    payload,
                    record: Delivered::Average(record),
                },
            ));
        }
    }
    Ok(in_order(out))
}

/// Messages by user, then in their kind's order, whatever order the
/// snapshot's files hold them in.
fn in_order(mut messages: Vec<(String, Message)>) -> Vec<Message> {
    messages.sort_by(|a, b| {
        (a.0.as_str(), a.1.record.order()).cmp(&(b.0.as_str(), b.1.record.order()))
    });
    messages.into_iter().map(|(_, m)| m).collect()
}

fn text<'a>(batch: &'a RecordBatch, name: &str, row: usize) -> Option<&'a str> {
    let column = batch.column_by_name(name)?;
    (!column.is_null(row)).then(|| column.as_string::<i32>().value(row))
}

fn boolean(batch: &RecordBatch, name: &str, row: usize) -> bool {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_boolean_opt().map(|b| b.is_valid(row) && b.value(row)))
        .unwrap_or(false)
}

fn float(batch: &RecordBatch, name: &str, row: usize) -> Option<f64> {
    let column = batch.column_by_name(name)?;
    if column.is_null(row) {
        return None;
    }
    column
        .as_primitive_opt::<Float64Type>()
        .map(|a| a.value(row))
        .or_else(|| {
            column
                .as_primitive_opt::<Int64Type>()
                .map(|a| a.value(row) as f64)
        })
        .or_else(|| {
            column
                .as_primitive_opt::<Int32Type>()
                .map(|a| f64::from(a.value(row)))
        })
}

fn date(batch: &RecordBatch, name: &str, row: usize) -> Option<String> {
    let column = batch.column_by_name(name)?;
    if column.is_null(row) {
        return None;
    }
    let days = column.as_primitive_opt::<Date32Type>()?.value(row);
    let date = chrono::NaiveDate::from_num_days_from_ce_opt(days + 719_163)?;
    Some(date.format("%Y-%m-%d").to_string())
}

/// The outbox of one run, `<warehouse>/outbox/<snapshot-id>.jsonl`: one
/// `{"subject", "payload"}` per line, written while the run goes on under a
/// temporary name. It gets its name, synced, and (embedded catalog) its
/// results count as held only once whole ([`Outbox::finish`]); dropped
/// before, it leaves no file and records nothing, so the next run sends
/// them again.
pub struct Outbox {
    path: PathBuf,
    /// Where it is written, until it has its name.
    temp: TempFile,
    file: std::io::BufWriter<std::fs::File>,
    held: Option<HeldUpdate>,
}

impl Outbox {
    async fn create(
        catalog: &Catalog,
        warehouse: &Path,
        snapshot_id: &str,
    ) -> Result<Self, DeliveryError> {
        let dir = warehouse.join("outbox");
        let path = dir.join(format!("{snapshot_id}.jsonl"));
        let tmp = dir.join(format!(".{snapshot_id}.jsonl.tmp"));
        let err = |source| DeliveryError::Outbox {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(err)?;
        remove_abandoned(&dir);
        let file = std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(err)?);
        let temp = TempFile::new(tmp);
        let held = if catalog.is_embedded() {
            Some(catalog.begin_held().await?)
        } else {
            None
        };
        Ok(Self {
            path,
            temp,
            file,
            held,
        })
    }

    /// Appends each bucket's `messages(bucket)`; the catalog records one
    /// bucket (on SQLite's thread) while the next is read and written.
    async fn append(
        &mut self,
        mut messages: impl FnMut(usize) -> Result<Vec<Message>, DeliveryError>,
    ) -> Result<(), DeliveryError> {
        let Self {
            path, file, held, ..
        } = self;
        let err = |source| DeliveryError::Outbox {
            path: path.clone(),
            source,
        };
        let mut previous: Vec<Message> = Vec::new();
        for bucket in 0..=snapshot::BUCKETS {
            let records: Vec<&Delivered> = previous.iter().map(|m| &m.record).collect();
            let apply = async {
                match held.as_mut() {
                    Some(held) if !records.is_empty() => held.apply(&records, super::VERSION).await,
                    _ => Ok(()),
                }
            };
            let next = async {
                if bucket == snapshot::BUCKETS {
                    return Ok(Vec::new());
                }
                let messages = messages(bucket)?;
                for m in &messages {
                    writeln!(
                        file,
                        "{{\"subject\":\"{}\",\"payload\":{}}}",
                        m.subject.as_str(),
                        m.payload
                    )
                    .map_err(err)?;
                }
                Ok::<_, DeliveryError>(messages)
            };
            let (applied, next) = tokio::join!(apply, next);
            applied?;
            previous = next?;
        }
        Ok(())
    }

    /// Syncs what is written so far, off the runtime's threads: the disk
    /// works while the run goes on, and [`Outbox::finish`] then waits only
    /// for the rest.
    async fn sync_so_far(&mut self) -> Result<(), DeliveryError> {
        let err = |source| DeliveryError::Outbox {
            path: self.path.clone(),
            source,
        };
        self.file.flush().map_err(err)?;
        let file = self.file.get_ref().try_clone().map_err(err)?;
        tokio::task::spawn_blocking(move || file.sync_data())
            .await
            .map_err(|e| err(std::io::Error::other(e)))?
            .map_err(err)
    }

    /// Syncs the file, gives it its name, then commits what it recorded.
    async fn finish(self) -> Result<PathBuf, DeliveryError> {
        let Self {
            path,
            mut temp,
            file,
            held,
        } = self;
        let err = |source| DeliveryError::Outbox {
            path: path.clone(),
            source,
        };
        let file = file.into_inner().map_err(|e| err(e.into_error()))?;
        file.sync_all().map_err(err)?;
        std::fs::rename(&temp.path, &path).map_err(err)?;
        temp.keep();
        if let Some(dir) = path.parent() {
            crate::volume::sync_dir(dir);
        }
        if let Some(held) = held {
            held.commit().await?;
        }
        Ok(path)
    }
}

/// Removes the temporary outboxes of runs that died (only one run writes at
/// a time: the run lock).
fn remove_abandoned(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name.ends_with(".jsonl.tmp") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Delivery over NATS, as the backend listens (core NATS, raw JSON
/// payloads), or acknowledged by a JetStream stream where one captures the
/// subject.
#[derive(Debug, Clone)]
pub struct NatsPublisher {
    client: async_nats::Client,
    jetstream: async_nats::jetstream::Context,
}

/// What a delivery attempt achieved: indexes into the messages sent.
#[derive(Debug, Default)]
pub struct Confirmed {
    pub ok: Vec<usize>,
    pub failed: Vec<(usize, String)>,
}

/// The stream an operator can create for a durable record of results.
pub const RESULTS_STREAM: &str = "FAP_RESULTS";
pub const RESULT_SUBJECTS: [&str; 2] = ["analysis.result", "average.result"];

/// Core messages confirmed by one round trip.
const CHUNK: usize = 256;

impl NatsPublisher {
    pub async fn connect(url: &str) -> Result<Self, DeliveryError> {
        let client = async_nats::ConnectOptions::new()
            .name("fap-warehouse")
            .connection_timeout(std::time::Duration::from_secs(5))
            .connect(url)
            .await
            .map_err(|e| {
                let url = crate::catalog::redact(url);
                DeliveryError::Nats(format!("cannot connect to {url}: {e}"))
            })?;
        let jetstream = async_nats::jetstream::new(client.clone());
        Ok(Self { client, jetstream })
    }

    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// Creates (or keeps) the results stream; returns its name.
    pub async fn create_results_stream(&self, name: &str) -> Result<String, DeliveryError> {
        let config = async_nats::jetstream::stream::Config {
            name: name.to_string(),
            subjects: RESULT_SUBJECTS.iter().map(|s| s.to_string()).collect(),
            duplicate_window: std::time::Duration::from_secs(24 * 3600),
            ..Default::default()
        };
        self.jetstream
            .get_or_create_stream(config)
            .await
            .map_err(|e| DeliveryError::Nats(format!("cannot create stream {name}: {e}")))?;
        Ok(name.to_string())
    }

    /// How many times the client has connected (reconnects included).
    fn connects(&self) -> u64 {
        self.client.statistics().connects.load(Ordering::SeqCst)
    }

    /// Proves the server has processed everything this connection published:
    /// NATS keeps one connection's messages in order, so our own message
    /// coming back on a fresh inbox means all earlier ones arrived.
    async fn round_trip(&self) -> Result<(), String> {
        let inbox = self.client.new_inbox();
        let confirm = async {
            let mut sub = self
                .client
                .subscribe(inbox.clone())
                .await
                .map_err(|e| e.to_string())?;
            self.client
                .publish(inbox, "ok".into())
                .await
                .map_err(|e| e.to_string())?;
            self.client.flush().await.map_err(|e| e.to_string())?;
            sub.next()
                .await
                .map(|_| ())
                .ok_or_else(|| "connection closed".to_string())
        };
        match tokio::time::timeout(std::time::Duration::from_secs(15), confirm).await {
            Ok(result) => result.map_err(|e| format!("delivery not confirmed: {e}")),
            Err(_) => Err("delivery not confirmed within 15 s".into()),
        }
    }

    async fn captured(&self, subject: &str) -> bool {
        self.jetstream.stream_by_subject(subject).await.is_ok()
    }

    /// Publishes `messages` in order; reports which were confirmed. After a
    /// failure the rest are not sent (the server is likely gone).
    pub async fn publish_all(&self, messages: &[Message]) -> Confirmed {
        let mut confirmed = Confirmed::default();
        let mut captured = std::collections::HashMap::new();
        let mut pending: Vec<usize> = Vec::new();
        let mut connects = self.connects();
        for (index, m) in messages.iter().enumerate() {
            if let Some((_, first)) = confirmed.failed.first() {
                let reason = format!("not sent after an earlier failure: {first}");
                confirmed.failed.push((index, reason));
                continue;
            }
            let subject = m.subject.as_str();
            let is_captured = match captured.get(subject) {
                Some(c) => *c,
                None => {
                    let c = self.captured(subject).await;
                    captured.insert(subject, c);
                    c
                }
            };
            if is_captured {
                let mut headers = async_nats::HeaderMap::new();
                headers.insert("Nats-Msg-Id", m.msg_id().as_str());
                let sent = self
                    .jetstream
                    .publish_with_headers(subject, headers, m.payload.clone().into())
                    .await;
                match sent {
                    Ok(ack) => match ack.await {
                        Ok(_) => confirmed.ok.push(index),
                        Err(e) => confirmed.failed.push((index, e.to_string())),
                    },
                    Err(e) => confirmed.failed.push((index, e.to_string())),
                }
                continue;
            }
            match self.client.publish(subject, m.payload.clone().into()).await {
                Ok(()) => pending.push(index),
                Err(e) => {
                    confirmed.failed.push((index, e.to_string()));
                    continue;
                }
            }
            if pending.len() >= CHUNK {
                self.confirm(&mut pending, &mut connects, &mut confirmed)
                    .await;
            }
        }
        if !pending.is_empty() {
            self.confirm(&mut pending, &mut connects, &mut confirmed)
                .await;
        }
        confirmed.ok.sort_unstable();
        confirmed.failed.sort_unstable_by_key(|(i, _)| *i);
        confirmed
    }

    async fn confirm(
        &self,
        pending: &mut Vec<usize>,
        connects: &mut u64,
        confirmed: &mut Confirmed,
    ) {
        let trip = self.round_trip().await;
        let now = self.connects();
        let outcome = match trip {
            Ok(()) if now == *connects => Ok(()),
            Ok(()) => Err(
                "the connection to NATS was re-established during delivery: \
                           messages published before it may be lost"
                    .to_string(),
            ),
            Err(e) => Err(e),
        };
        *connects = now;
        match outcome {
            Ok(()) => confirmed.ok.append(pending),
            Err(e) => confirmed
                .failed
                .extend(pending.drain(..).map(|i| (i, e.clone()))),
        }
    }
}
