//! Delivery of results to consumers: over NATS when a URL is given, else
//! into an outbox file.
//!
//! Embedded default: an outbox file `<warehouse>/outbox/<snapshot-id>.jsonl`,
//! one `{"subject", "payload"}` per line, written to a temporary name, synced
//! and renamed: it exists whole or not at all. Only after that does the job
//! record the results as held by consumers (at-least-once: a crash between
//! the two sends the same results again next run, never loses them).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

/// One result to send.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// `analysis.result` or `average.result`.
    pub subject: &'static str,
    /// The raw JSON payload (messages.md), never an envelope.
    pub payload: Value,
    /// A stable id of this exact content, for idempotent retries.
    pub msg_id: String,
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
    #[error(
        "{failed} of {total} messages were not delivered (first error: {first}); they will be sent again by the next run"
    )]
    Undelivered {
        failed: usize,
        total: usize,
        first: String,
    },
}

/// Writes the outbox of one run; returns its path.
pub fn write_outbox(
    warehouse: &Path,
    snapshot_id: &str,
    messages: &[Outgoing],
) -> Result<PathBuf, DeliveryError> {
    let dir = warehouse.join("outbox");
    let path = dir.join(format!("{snapshot_id}.jsonl"));
    let tmp = dir.join(format!(".{snapshot_id}.jsonl.tmp"));
    let err = |source| DeliveryError::Outbox {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(&dir).map_err(err)?;
    let mut file = std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(err)?);
    for m in messages {
        let line = json!({"subject": m.subject, "payload": m.payload});
        writeln!(file, "{line}").map_err(err)?;
    }
    let file = file.into_inner().map_err(|e| err(e.into_error()))?;
    file.sync_all().map_err(err)?;
    std::fs::rename(&tmp, &path).map_err(err)?;
    sync_dir(&dir);
    Ok(path)
}

/// Makes a rename durable: the job records results as held right after.
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Delivery over NATS, as the backend listens (core NATS, raw JSON payloads).
///
/// Where a JetStream stream captures a subject, each message is published
/// with a `Nats-Msg-Id` (the content hash: a retry of the same result is
/// stored once) and counts as delivered only when the stream acknowledges it.
/// Otherwise messages are core-published and count as delivered only after a
/// successful flush (the server has them; core NATS promises no more).
#[derive(Debug, Clone)]
pub struct NatsPublisher {
    client: async_nats::Client,
    jetstream: async_nats::jetstream::Context,
}

/// What a delivery attempt achieved: indexes into the messages sent.
#[derive(Debug, Default)]
pub struct Delivered {
    pub ok: Vec<usize>,
    pub failed: Vec<(usize, String)>,
}

/// The stream an operator can create for a durable record of results.
pub const RESULTS_STREAM: &str = "FAP_RESULTS";
pub const RESULT_SUBJECTS: [&str; 2] = ["analysis.result", "average.result"];

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

    /// Proves the server has processed everything published so far: NATS
    /// keeps one connection's messages in order, so our own message coming
    /// back on a fresh inbox means all earlier ones arrived.
    async fn round_trip(&self) -> Result<(), String> {
        use futures::StreamExt;
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

    /// Publishes `messages` in order; reports which were confirmed.
    pub async fn publish_all(&self, messages: &[Outgoing]) -> Delivered {
        let mut delivered = Delivered::default();
        let mut core_pending = Vec::new();
        let mut captured = std::collections::HashMap::new();
        for (index, m) in messages.iter().enumerate() {
            // After a failure the server is likely gone: the rest wait for the next run.
            if let Some((_, first)) = delivered.failed.first() {
                let reason = format!("not sent after an earlier failure: {first}");
                delivered.failed.push((index, reason));
                continue;
            }
            let is_captured = match captured.get(m.subject) {
                Some(c) => *c,
                None => {
                    let c = self.captured(m.subject).await;
                    captured.insert(m.subject, c);
                    c
                }
            };
            if is_captured {
                let mut headers = async_nats::HeaderMap::new();
                headers.insert("Nats-Msg-Id", m.msg_id.as_str());
                let sent = self
                    .jetstream
                    .publish_with_headers(m.subject, headers, m.payload.to_string().into())
                    .await;
                match sent {
                    Ok(ack) => match ack.await {
                        Ok(_) => delivered.ok.push(index),
                        Err(e) => delivered.failed.push((index, e.to_string())),
                    },
                    Err(e) => delivered.failed.push((index, e.to_string())),
                }
            } else {
                match self
                    .client
                    .publish(m.subject, m.payload.to_string().into())
                    .await
                {
                    Ok(()) => core_pending.push(index),
                    Err(e) => delivered.failed.push((index, e.to_string())),
                }
            }
        }
        if !core_pending.is_empty() {
            match self.round_trip().await {
                Ok(()) => delivered.ok.extend(core_pending),
                Err(e) => delivered
                    .failed
                    .extend(core_pending.into_iter().map(|i| (i, e.clone()))),
            }
        }
        delivered.ok.sort_unstable();
        delivered
    }
}
