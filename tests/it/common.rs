//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;

/// `../shared/fixtures/real`, or `None` (with a notice) where a user's clone
/// has no `../shared`. In CI (`CI=true`) a missing folder fails the test.
pub fn real_fixtures() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/real");
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true but {} is missing", dir.display());
    }
    eprintln!("notice: {} not found; fixture test skipped", dir.display());
    None
}

/// Runs the binary with `args` (and `stdin`), returning (exit code, stdout, stderr).
pub fn run_bin(args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fap-warehouse"))
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    if let Some(input) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(input.as_bytes())
            .expect("stdin accepts the request");
    }
    let output = child.wait_with_output().expect("the binary finishes");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Compares JSON: same keys in the same order, same nulls, numbers within 1e-9.
/// Returns the first difference as a path and both values.
pub fn json_diff(path: &str, got: &Value, want: &Value) -> Option<String> {
    match (got, want) {
        (Value::Number(a), Value::Number(b)) => {
            let (a, b) = (a.as_f64()?, b.as_f64()?);
            ((a - b).abs() > 1e-9).then(|| format!("{path}: got {a}, want {b}"))
        }
        (Value::Object(a), Value::Object(b)) => {
            let (ka, kb): (Vec<_>, Vec<_>) = (a.keys().collect(), b.keys().collect());
            if ka != kb {
                return Some(format!("{path}: keys {ka:?}, want {kb:?}"));
            }
            a.iter()
                .find_map(|(k, v)| json_diff(&format!("{path}.{k}"), v, &b[k]))
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .find_map(|(i, (x, y))| json_diff(&format!("{path}[{i}]"), x, y)),
        _ => (got != want).then(|| format!("{path}: got {got}, want {want}")),
    }
}

pub fn read_json(path: &std::path::Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The NATS server the service tests use.
pub const NATS: &str = "nats://127.0.0.1:4222";

/// Runs the binary with `args` while a core NATS subscriber listens on the
/// result subjects; returns (exit code, stdout + stderr, every result seen
/// until 700 ms pass without one). Other tests share the subjects: callers
/// keep only the messages about their own analyses and users.
pub async fn run_while_listening(args: Vec<String>) -> (i32, String, Vec<(String, Value)>) {
    use futures::StreamExt;
    let client = async_nats::connect(NATS)
        .await
        .expect("NATS is running on 127.0.0.1:4222");
    let mut analyses = client
        .subscribe("analysis.result")
        .await
        .expect("subscribe");
    let mut averages = client.subscribe("average.result").await.expect("subscribe");
    client.flush().await.expect("flush");
    let (code, stdout, stderr) = tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        run_bin(&refs, None)
    })
    .await
    .expect("the run finishes");
    let mut all = Vec::new();
    loop {
        let next = tokio::time::timeout(std::time::Duration::from_millis(700), async {
            tokio::select! {
                Some(m) = analyses.next() => Some(("analysis.result".to_string(), m)),
                Some(m) = averages.next() => Some(("average.result".to_string(), m)),
                else => None,
            }
        })
        .await;
        let Ok(Some((subject, message))) = next else {
            break;
        };
        let payload: Value = serde_json::from_slice(&message.payload).expect("raw JSON payload");
        all.push((subject, payload));
    }
    (code, format!("{stdout}{stderr}"), all)
}

/// A port nothing listens on now (for servers the tests start).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .expect("address")
        .port()
}
