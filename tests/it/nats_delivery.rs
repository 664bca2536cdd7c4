//! Delivery over the real NATS server on 127.0.0.1:4222 (core NATS, as the
//! backend listens). Messages of other tests share the subjects, so each test
//! keeps only the messages about its own analyses and users.

use futures::StreamExt;
use serde_json::Value;
use std::collections::HashSet;

use crate::common::NATS;

/// The tests here share the result subjects (and, in one, a stream that
/// captures them): they run one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Setup {
    dir: tempfile::TempDir,
    ids: HashSet<String>,
}

impl Setup {
    fn warehouse(&self) -> String {
        self.dir.path().join("wh").to_string_lossy().into_owned()
    }

    fn bin(&self, args: &[&str]) -> (i32, String, String) {
        let wh = self.warehouse();
        let mut full = vec!["--warehouse", wh.as_str()];
        full.extend_from_slice(args);
        crate::common::run_bin(&full, None)
    }
}

fn setup(logs: usize, seed: u64) -> Setup {
    let dir = tempfile::tempdir().expect("temp dir");
    let paths =
        fap_warehouse::cli::gen_logs(&dir.path().join("in"), logs, 20_000, seed).expect("logs");
    let mut s = Setup {
        dir,
        ids: HashSet::new(),
    };
    let mut args = vec![
        "ingest".to_string(),
        "--user".into(),
        format!("nats-{seed}@example.com"),
    ];
    args.extend(paths.iter().map(|p| p.to_string_lossy().into_owned()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out, err) = s.bin(&refs);
    assert_eq!(code, 0, "{err}");
    s.ids = out
        .lines()
        .filter_map(|l| l.split_once('\t').map(|(id, _)| id))
        .map(str::to_string)
        .collect();
    s
}

/// Runs `args` on this test's warehouse; returns this test's messages.
async fn run_and_listen(s: &Setup, args: &[&str]) -> (i32, String, Vec<(String, Value)>) {
    let mut full = vec!["--warehouse".to_string(), s.warehouse()];
    full.extend(args.iter().map(|a| a.to_string()));
    let (code, out, all) = crate::common::run_while_listening(full).await;
    let users = user_of(s);
    let got = all
        .into_iter()
        .filter(|(subject, p)| match subject.as_str() {
            "analysis.result" => s.ids.contains(p["analysisId"].as_str().unwrap_or_default()),
            _ => users.contains(p["userId"].as_str().unwrap_or_default()),
        })
        .collect();
    (code, out, got)
}

fn user_of(s: &Setup) -> HashSet<String> {
    let (_, out, _) = s.bin(&[
        "query",
        "--format",
        "csv",
        "SELECT DISTINCT user_id FROM analysis",
    ]);
    out.lines().skip(1).map(str::to_string).collect()
}

#[tokio::test]
async fn run_publishes_exactly_what_changed_over_core_nats() {
    let _serial = SERIAL.lock().await;
    let s = setup(3, 31);
    let (code, out, got) = run_and_listen(&s, &["--nats", NATS, "run"]).await;
    assert_eq!(code, 0, "{out}");
    let analyses: Vec<&Value> = got
        .iter()
        .filter(|(s, _)| s == "analysis.result")
        .map(|(_, p)| p)
        .collect();
    assert_eq!(analyses.len(), 3, "{got:?}");
    for p in &analyses {
        assert_eq!(p["status"], "Success");
        assert!(p.get("data").is_none() && p.get("pattern").is_none());
    }
    let averages = got.iter().filter(|(s, _)| s == "average.result").count();
    assert!(averages >= 3, "{got:?}");
    assert!(!out.contains("outbox:"), "NATS replaces the outbox: {out}");

    // What consumers hold is recorded: the next run sends nothing.
    let (code, out, got) = run_and_listen(&s, &["--nats", NATS, "run"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(got.is_empty(), "{got:?}");
}

#[tokio::test]
async fn unreachable_nats_fails_the_run_and_records_nothing() {
    let _serial = SERIAL.lock().await;
    let s = setup(2, 32);
    let (code, out, _) = run_and_listen(&s, &["--nats", "nats://127.0.0.1:9", "run"]).await;
    assert_ne!(code, 0, "{out}");
    assert!(out.to_lowercase().contains("nats"), "{out}");
    // Nothing was recorded as delivered: the next run delivers everything.
    let (code, out, got) = run_and_listen(&s, &["--nats", NATS, "run"]).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        got.iter().filter(|(s, _)| s == "analysis.result").count(),
        2,
        "{got:?}"
    );
}

#[tokio::test]
async fn a_jetstream_stream_acknowledges_and_deduplicates_results() {
    let _serial = SERIAL.lock().await;
    let client = async_nats::connect(NATS)
        .await
        .expect("NATS is running on 127.0.0.1:4222");
    let js = async_nats::jetstream::new(client);
    // Only one stream may capture the result subjects: make ours, or use the operator's.
    let name = format!("FAP_TEST_{}", uuid::Uuid::new_v4().simple());
    let s = setup(2, 33);
    let (code, out, _) = s.bin(&["--nats", NATS, "create-stream", "--name", &name]);
    let ours = code == 0;
    let stream_name = if ours {
        name.clone()
    } else {
        assert!(out.is_empty(), "unexpected output {out}");
        js.stream_by_subject("analysis.result")
            .await
            .expect("a stream already captures the results")
    };
    let mut stream = js.get_stream(&stream_name).await.expect("stream");
    let before = stream.info().await.expect("info").state.messages;

    let (code, out, got) = run_and_listen(&s, &["--nats", NATS, "run"]).await;
    assert_eq!(code, 0, "{out}");
    let sent = got.len() as u64;
    assert!(sent >= 5, "2 analyses + at least 3 averages: {got:?}");
    let after = stream.info().await.expect("info").state.messages;
    assert!(
        after >= before + sent,
        "every result is stored and acknowledged"
    );

    // The same results again (--force): same Nats-Msg-Id, stored once.
    let (code, out, _) = run_and_listen(&s, &["--nats", NATS, "run", "--force"]).await;
    assert_eq!(code, 0, "{out}");
    let again = stream.info().await.expect("info").state.messages;
    if ours {
        assert_eq!(again, after, "retries are de-duplicated by Nats-Msg-Id");
        js.delete_stream(&name).await.expect("cleanup");
    }
}

/// A nats-server of the test's own, on a free port, with JetStream off
/// (core NATS, as the backend listens).
struct OwnServer {
    port: u16,
    child: std::process::Child,
}

impl OwnServer {
    fn start(port: u16) -> Self {
        let child = std::process::Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nats-server is installed");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Self { port, child }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A TCP relay in front of a NATS server, standing for the network between
/// the job and the server. It forwards both ways until the client sends the
/// first message on the subject it waits for; from there on it holds the
/// client's bytes (the server never has that message nor any after it) and
/// reports the cut once. Each connection ends when the server's side does;
/// the relay ends with the test's runtime.
struct Relay {
    port: u16,
    cut: tokio::sync::oneshot::Receiver<()>,
}

type Cut = std::sync::Arc<std::sync::Mutex<Option<tokio::sync::oneshot::Sender<()>>>>;

impl Relay {
    async fn start(upstream: u16, subject: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("relay binds");
        let port = listener.local_addr().expect("relay address").port();
        let (fire, cut) = tokio::sync::oneshot::channel();
        let armed: Cut = std::sync::Arc::new(std::sync::Mutex::new(Some(fire)));
        // "PUB <subject> " also matches "HPUB <subject> ".
        let pattern = format!("PUB {subject} ").into_bytes();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                // While the server is down the client is dropped; it reconnects.
                if let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await {
                    tokio::spawn(relay_one(client, server, armed.clone(), pattern.clone()));
                }
            }
        });
        Self { port, cut }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

async fn relay_one(
    client: tokio::net::TcpStream,
    server: tokio::net::TcpStream,
    armed: Cut,
    pattern: Vec<u8>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let down = tokio::io::copy(&mut server_read, &mut client_write);
    let up = async {
        let mut buf = vec![0u8; 16 * 1024];
        // The last bytes forwarded, for a pattern split across two reads.
        let mut tail: Vec<u8> = Vec::new();
        loop {
            let n = match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let chunk = &buf[..n];
            // Decided under the lock, acted on after it (a guard is not Send).
            let cut = {
                let mut fire = armed.lock().expect("relay state");
                if fire.is_some() {
                    let window = [tail.as_slice(), chunk].concat();
                    let at = window.windows(pattern.len()).position(|w| w == pattern);
                    tail = window[window.len().saturating_sub(pattern.len())..].to_vec();
                    at.map(|at| (at.saturating_sub(window.len() - n), fire.take()))
                } else {
                    None
                }
            };
            if let Some((keep, fire)) = cut {
                let _ = server_write.write_all(&chunk[..keep]).await;
                if let Some(fire) = fire {
                    let _ = fire.send(());
                }
                return std::future::pending().await;
            }
            if server_write.write_all(chunk).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        _ = down => {}
        () = up => {}
    }
}

/// Core NATS delivery once lied after a quick server restart: the run
/// exited 0 and recorded every result as held, yet most never arrived, and
/// the next run sent none of them. Here the server restarts once the job has
/// published its first result but before the server has it (a relay holds
/// the job's bytes from there on): the run must say so, and over two runs
/// nothing is lost.
#[tokio::test]
async fn regression_a_server_restart_during_delivery_loses_nothing_over_two_runs() {
    let s = setup(60, 34);
    let port = crate::common::free_port();
    let mut server = OwnServer::start(port);
    let relay = Relay::start(port, "analysis.result").await;
    let listener = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(server.url())
        .await
        .expect("listener connects");
    let mut results = listener
        .subscribe("analysis.result")
        .await
        .expect("subscribe");
    listener.flush().await.expect("flush");

    let wh = s.warehouse();
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_fap-warehouse"))
        .args(["--warehouse", &wh, "--nats", &relay.url(), "run"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run starts");
    tokio::time::timeout(std::time::Duration::from_secs(120), relay.cut)
        .await
        .expect("the run published a result within 120 s")
        .expect("the relay is running");
    server.kill();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    server = OwnServer::start(port);

    let first_run = run.wait_with_output().await.expect("run ends");
    let stderr = String::from_utf8_lossy(&first_run.stderr);
    assert!(
        !first_run.status.success(),
        "results the server never had are not delivered: {stderr}"
    );
    assert!(
        stderr.contains("not delivered") || stderr.contains("NATS"),
        "{stderr}"
    );
    let mut seen = HashSet::new();
    drain(&mut results, &mut seen).await;

    // The listener is back on the restarted server; the next run sends the rest.
    listener.flush().await.expect("listener reconnected");
    let (code, out, err) = s.bin(&["--nats", &server.url(), "run"]);
    assert_eq!(code, 0, "{out}{err}");
    drain(&mut results, &mut seen).await;
    assert_eq!(seen, s.ids, "every analysis arrived over the two runs");
}

/// Collects analysis ids from `results` until 700 ms pass with nothing new.
async fn drain(results: &mut async_nats::Subscriber, seen: &mut HashSet<String>) {
    while let Ok(Some(m)) =
        tokio::time::timeout(std::time::Duration::from_millis(700), results.next()).await
    {
        let p: Value = serde_json::from_slice(&m.payload).unwrap();
        seen.insert(p["analysisId"].as_str().unwrap_or_default().to_string());
    }
}
