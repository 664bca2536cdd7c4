//! `serve` against the real NATS server on 127.0.0.1:4222: two workers in a
//! queue group answer each request once, with the same result as `analyze`;
//! hostile requests are answered `Failed` or dropped without stopping the
//! worker; SIGTERM drains and exits 0. One test function: the subjects are
//! the backend's and shared, so the steps must not run alongside each other.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};

const NATS: &str = "nats://127.0.0.1:4222";

fn worker(volume: &std::path::Path, group: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_fap-warehouse"))
        .args([
            "--nats",
            NATS,
            "--volume",
            volume.to_str().expect("utf8"),
            "serve",
            "--queue-group",
            group,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve starts")
}

/// Collects results on `sub` until `quiet` passes with nothing new.
async fn collect(sub: &mut async_nats::Subscriber, quiet: Duration) -> Vec<Value> {
    let mut got = Vec::new();
    while let Ok(Some(m)) = tokio::time::timeout(quiet, sub.next()).await {
        got.push(serde_json::from_slice(&m.payload).expect("results are JSON"));
    }
    got
}

#[tokio::test]
async fn the_live_worker_answers_like_the_old_service() {
    let dir = tempfile::tempdir().expect("temp dir");
    let volume = dir.path().join("volume");
    let id = uuid::Uuid::new_v4().to_string();
    let logs = fap_warehouse::cli::gen_logs(&dir.path().join("in"), 1, 30_000, 41).expect("log");
    std::fs::create_dir_all(&volume).expect("volume");
    let log = volume.join(format!("{id}.csv"));
    std::fs::copy(&logs[0], &log).expect("copy log");
    let (code, stdout, stderr) =
        crate::common::run_bin(&["analyze", log.to_str().expect("utf8")], None);
    assert_eq!(code, 0, "{stderr}");
    let expected: Value = serde_json::from_str(&stdout).expect("analyze JSON");
    assert_eq!(expected["status"], "Success");

    let client = async_nats::connect(NATS)
        .await
        .expect("NATS is running on 127.0.0.1:4222");
    let mut results = client
        .subscribe("analysis.result")
        .await
        .expect("subscribe");
    let mut average_results = client.subscribe("average.result").await.expect("subscribe");
    let group = format!("test-{}", uuid::Uuid::new_v4().simple());
    let mut workers = [worker(&volume, &group), worker(&volume, &group)];

    let request = |file_name: &str| {
        json!({"pattern": "analysis.request", "data": {"fileName": file_name}}).to_string()
    };
    let ours = |v: &Value| v["analysisId"] == id.as_str();

    // Wait until both workers listen (requests sent to nobody are lost).
    let started = Instant::now();
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "workers never answered"
        );
        client
            .publish("analysis.request", request(&id).into())
            .await
            .expect("publish");
        client.flush().await.expect("flush");
        if collect(&mut results, Duration::from_millis(500))
            .await
            .iter()
            .any(ours)
        {
            break;
        }
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let _ = collect(&mut results, Duration::from_millis(300)).await;

    // Ten requests, ten answers: the queue group splits, nobody answers twice.
    for _ in 0..10 {
        client
            .publish("analysis.request", request(&id).into())
            .await
            .expect("publish");
    }
    client.flush().await.expect("flush");
    let got: Vec<Value> = collect(&mut results, Duration::from_secs(3))
        .await
        .into_iter()
        .filter(ours)
        .collect();
    assert_eq!(got.len(), 10, "each request answered exactly once");
    assert!(got.iter().all(|r| r == &expected), "serve equals analyze");

    // Hostile requests: traversal answered Failed, junk dropped, worker alive.
    for junk in [
        "not json",
        "",
        "{}",
        "[1,2]",
        r#"{"pattern":"analysis.request","data":{"fileName":42}}"#,
    ] {
        client
            .publish("analysis.request", junk.to_string().into())
            .await
            .expect("publish");
    }
    for path in ["../../etc/passwd", "/etc/passwd", ""] {
        client
            .publish("analysis.request", request(path).into())
            .await
            .expect("publish");
    }
    let unknown = json!({"pattern": "analysis.request", "data": {"fileName": id, "extra": {"x": 1}}, "id": 7});
    client
        .publish("analysis.request", unknown.to_string().into())
        .await
        .expect("publish");
    client.flush().await.expect("flush");
    let got = collect(&mut results, Duration::from_secs(3)).await;
    for path in ["../../etc/passwd", "/etc/passwd", ""] {
        let answer = got
            .iter()
            .find(|r| r["analysisId"] == path)
            .unwrap_or_else(|| panic!("no answer for {path:?}"));
        assert_eq!(answer["status"], "Failed");
        assert_eq!(answer["analysis"], json!({}));
    }
    assert_eq!(
        got.iter().filter(|r| ours(r)).count(),
        1,
        "unknown fields are ignored"
    );

    // average.request: answered with the echoed key and the same SQL.
    let avg = json!({"pattern": "average.request", "data": {"userId": "u-serve", "type": "MONTHLY", "year": 2025,
        "month": 2, "analysisSha": "f".repeat(64), "analysis": [expected["analysis"], {}, null]}});
    client
        .publish("average.request", avg.to_string().into())
        .await
        .expect("publish");
    client.flush().await.expect("flush");
    let got = collect(&mut average_results, Duration::from_secs(3)).await;
    let answer = got
        .iter()
        .find(|r| r["userId"] == "u-serve")
        .expect("average answered");
    assert_eq!(answer["status"], "SUCCESS");
    assert_eq!(
        (
            answer["type"].clone(),
            answer["year"].clone(),
            answer["month"].clone()
        ),
        (json!("MONTHLY"), json!(2025), json!(2))
    );
    assert_eq!(answer["analysisSha"], "f".repeat(64).as_str());

    // SIGTERM: both workers finish and exit 0.
    for w in &workers {
        let status = Command::new("kill")
            .args(["-TERM", &w.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }
    for w in &mut workers {
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = w.try_wait().expect("wait") {
                break status;
            }
            assert!(Instant::now() < deadline, "worker did not stop on SIGTERM");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert!(status.success(), "{status:?}");
    }
}
