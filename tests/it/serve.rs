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

/// A worker process, killed if the test fails before stopping it.
struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn worker(volume: &std::path::Path, group: &str) -> Worker {
    Worker(
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
            .expect("serve starts"),
    )
}

/// Peak resident memory of a process, in MiB (Linux).
fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmHWM")
        / 1024
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

    // An average request cut short is answered FAILED, echoing the key its
    // start names; one holding a metric as text is FAILED, naming it.
    let cut = r#"{"pattern":"average.request","data":{"userId":"u-cut","type":"OVERALL","analysisSha":"s","analysis":[{"overall":"#;
    let text_metric = json!({"pattern": "average.request", "data": {"userId": "u-text", "type": "OVERALL",
        "analysisSha": "s", "analysis": [expected["analysis"], {"overall": {"distance_km": "12.5"}}]}});
    for request in [cut.to_string(), text_metric.to_string()] {
        client
            .publish("average.request", request.into())
            .await
            .expect("publish");
    }
    client.flush().await.expect("flush");
    let got = collect(&mut average_results, Duration::from_secs(3)).await;
    let answer_for = |user: &str| {
        got.iter()
            .find(|r| r["userId"] == user)
            .unwrap_or_else(|| panic!("no average.result for {user}: {got:?}"))
    };
    let cut_answer = answer_for("u-cut");
    assert_eq!(cut_answer["status"], "FAILED", "{cut_answer}");
    assert_eq!(
        (&cut_answer["type"], &cut_answer["analysisSha"]),
        (&json!("OVERALL"), &json!("s"))
    );
    assert!(
        cut_answer["message"]
            .as_str()
            .is_some_and(|m| m.contains("not a JSON object")),
        "{cut_answer}"
    );
    let text_answer = answer_for("u-text");
    assert_eq!(text_answer["status"], "FAILED", "{text_answer}");
    assert_eq!(text_answer["average"], json!({}));
    assert!(
        text_answer["message"]
            .as_str()
            .is_some_and(|m| m.contains("overall.distance_km") && m.contains("2 of 2")),
        "{text_answer}"
    );

    // Requests arriving together go through one plan, each answered as
    // `analyze` answers it: several logs, one of them broken.
    let mut batch_expected = Vec::new();
    let more = fap_warehouse::cli::gen_logs(&dir.path().join("more"), 4, 20_000, 43).expect("logs");
    for (i, path) in more.iter().enumerate() {
        let other = uuid::Uuid::new_v4().to_string();
        let target = volume.join(format!("{other}.csv"));
        if i == 3 {
            std::fs::write(&target, "Date;Time;Speed\nnot;a;log\n").expect("broken log");
        } else {
            std::fs::copy(path, &target).expect("copy log");
        }
        let (_, stdout, _) =
            crate::common::run_bin(&["analyze", target.to_str().expect("utf8")], None);
        batch_expected.push((
            other,
            serde_json::from_str::<Value>(&stdout).expect("analyze JSON"),
        ));
    }
    for (other, _) in &batch_expected {
        client
            .publish("analysis.request", request(other).into())
            .await
            .expect("publish");
    }
    client.flush().await.expect("flush");
    let got = collect(&mut results, Duration::from_secs(3)).await;
    for (other, want) in &batch_expected {
        let answers: Vec<&Value> = got
            .iter()
            .filter(|r| r["analysisId"] == other.as_str())
            .collect();
        assert_eq!(
            answers,
            vec![want],
            "a batched answer equals analyze for {other}"
        );
    }
    assert_eq!(batch_expected[3].1["status"], "Failed");

    // Regression: a FIFO named like a log fails its own request, quickly,
    // and blocks nobody (it used to hang a runtime worker).
    let fifo_id = uuid::Uuid::new_v4().to_string();
    let fifo = volume.join(format!("{fifo_id}.csv"));
    let made = Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo runs");
    assert!(made.success());
    let sent = Instant::now();
    for name in [fifo_id.as_str(), id.as_str()] {
        client
            .publish("analysis.request", request(name).into())
            .await
            .expect("publish");
    }
    client.flush().await.expect("flush");
    let got = collect(&mut results, Duration::from_secs(3)).await;
    let fifo_answer = got
        .iter()
        .find(|r| r["analysisId"] == fifo_id.as_str())
        .expect("the FIFO request is answered");
    assert_eq!(fifo_answer["status"], "Failed");
    assert!(
        fifo_answer["message"]
            .as_str()
            .unwrap_or("")
            .contains("regular file"),
        "{fifo_answer}"
    );
    assert!(
        got.iter().any(|r| ours(r) && r == &expected),
        "others still answered"
    );
    assert!(sent.elapsed() < Duration::from_secs(10));

    // Regression: an 850 KB average.request (hundreds of analyses) is
    // answered without holding hundreds of MB (it took ~650 MB).
    let members: Vec<Value> = std::iter::repeat_n(expected["analysis"].clone(), 650).collect();
    let large =
        json!({"pattern": "average.request", "data": {"userId": "u-large", "type": "OVERALL",
        "year": null, "month": null, "analysisSha": "e".repeat(64), "analysis": members}})
        .to_string();
    assert!(large.len() > 800_000, "{} bytes", large.len());
    client
        .publish("average.request", large.into())
        .await
        .expect("publish");
    client.flush().await.expect("flush");
    let got = collect(&mut average_results, Duration::from_secs(5)).await;
    let answer = got
        .iter()
        .find(|r| r["userId"] == "u-large")
        .expect("large average answered");
    assert_eq!(answer["status"], "SUCCESS");
    let distance = |v: &Value| v["overall"]["distance_km"].as_f64().expect("a distance");
    assert!(
        (distance(&answer["average"]) - distance(&expected["analysis"])).abs() < 0.05,
        "the average of 650 copies is the copy: {}",
        answer["average"]["overall"]
    );
    for w in &workers {
        let peak = peak_rss_mib(w.0.id());
        assert!(peak < 300, "a worker peaked at {peak} MiB");
    }

    // SIGTERM: both workers finish and exit 0.
    for w in &workers {
        let status = Command::new("kill")
            .args(["-TERM", &w.0.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }
    for w in &mut workers {
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = w.0.try_wait().expect("wait") {
                break status;
            }
            assert!(Instant::now() < deadline, "worker did not stop on SIGTERM");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert!(status.success(), "{status:?}");
    }
}
