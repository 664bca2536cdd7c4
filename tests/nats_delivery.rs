//! Delivery over the real NATS server on 127.0.0.1:4222 (core NATS, as the
//! backend listens). Messages of other tests share the subjects, so each test
//! keeps only the messages about its own analyses and users.

mod common;

use serde_json::Value;
use std::collections::HashSet;

use common::NATS;

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
        common::run_bin(&full, None)
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
        .filter_map(|l| l.split('\t').next())
        .map(str::to_string)
        .collect();
    s
}

/// Runs `args` on this test's warehouse; returns this test's messages.
async fn run_and_listen(s: &Setup, args: &[&str]) -> (i32, String, Vec<(String, Value)>) {
    let mut full = vec!["--warehouse".to_string(), s.warehouse()];
    full.extend(args.iter().map(|a| a.to_string()));
    let (code, out, all) = common::run_while_listening(full).await;
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
