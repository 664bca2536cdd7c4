//! The batch job end to end through the binary, on the embedded default:
//! ingest → run → outbox, catalog, Parquet, query → rerun sends nothing →
//! one new log sends exactly that user's 1 + 3 messages → a corrupted log
//! fails alone → a crash before the snapshot rename keeps the old latest.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::common::run_bin;
use serde_json::Value;

struct Warehouse {
    dir: tempfile::TempDir,
}

impl Warehouse {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let root = self.path().join("wh");
        let mut full = vec!["--warehouse", root.to_str().expect("utf8")];
        full.extend_from_slice(args);
        run_bin(&full, None)
    }

    fn ok(&self, args: &[&str]) -> String {
        let (code, stdout, stderr) = self.run(args);
        assert_eq!(code, 0, "{args:?}: {stderr}\n{stdout}");
        stdout
    }

    fn outbox(&self, stdout: &str) -> Vec<Value> {
        let Some(line) = stdout.lines().find_map(|l| l.strip_prefix("outbox: ")) else {
            return Vec::new();
        };
        std::fs::read_to_string(line)
            .expect("outbox readable")
            .lines()
            .map(|l| serde_json::from_str(l).expect("outbox line is JSON"))
            .collect()
    }

    fn query(&self, sql: &str) -> Vec<Value> {
        let out = self.ok(&["query", "--format", "json", sql]);
        serde_json::from_str(out.trim()).expect("query prints a JSON array")
    }

    fn volume_files(&self) -> usize {
        std::fs::read_dir(self.path().join("wh/volume")).map_or(0, |d| d.count())
    }
}

fn logs(dir: &Path, count: usize, seed: u64) -> Vec<PathBuf> {
    fap_warehouse::cli::gen_logs(dir, count, 25_000, seed).expect("generated logs")
}

fn zip_of(path: &Path, entries: &[(&str, &[u8])]) {
    let file = std::fs::File::create(path).expect("zip file");
    let mut zip = zip::ZipWriter::new(file);
    for (name, bytes) in entries {
        zip.start_file(*name, zip::write::SimpleFileOptions::default())
            .expect("zip entry");
        zip.write_all(bytes).expect("zip data");
    }
    zip.finish().expect("zip closes");
}

/// Per user, every analysis result comes before any average result.
fn analyses_before_averages(messages: &[Value], owner: &HashMap<String, String>) {
    let mut averaged: HashSet<String> = HashSet::new();
    for m in messages {
        let p = &m["payload"];
        assert!(p.get("data").is_none() && p.get("pattern").is_none());
        match m["subject"].as_str() {
            Some("average.result") => {
                averaged.insert(p["userId"].as_str().expect("userId").to_string());
            }
            Some("analysis.result") => {
                let user = &owner[p["analysisId"].as_str().expect("analysisId")];
                assert!(
                    !averaged.contains(user),
                    "an analysis after its user's averages"
                );
            }
            other => panic!("unexpected subject {other:?}"),
        }
    }
}

#[test]
fn the_nightly_job_end_to_end() {
    let w = Warehouse::new();
    let input = w.path().join("input");
    let alice_logs = logs(&input.join("alice"), 3, 11);
    let bob_logs = logs(&input.join("bob"), 2, 12);

    // Ingest: csv files, then a zip; the same bytes again are deduplicated.
    let out = w.ok(&[
        "ingest",
        "--user",
        "alice@example.com",
        alice_logs[0].to_str().unwrap(),
        alice_logs[1].to_str().unwrap(),
    ]);
    assert_eq!(out.lines().count(), 2, "{out}");
    let first_id = out
        .lines()
        .next()
        .unwrap()
        .split('\t')
        .next()
        .unwrap()
        .to_string();
    let zip = w.path().join("drives.zip");
    let third = std::fs::read(&alice_logs[2]).unwrap();
    zip_of(&zip, &[("../../outside/evil.csv", &third)]);
    let out = w.ok(&[
        "ingest",
        "--user",
        "alice@example.com",
        zip.to_str().unwrap(),
    ]);
    assert!(
        out.ends_with("\tevil.csv\n"),
        "entry names are labels only: {out}"
    );
    assert!(!w.path().join("outside").exists());
    let again = w.ok(&[
        "ingest",
        "--user",
        "alice@example.com",
        alice_logs[0].to_str().unwrap(),
    ]);
    assert_eq!(
        again.split('\t').next(),
        Some(first_id.as_str()),
        "same bytes, same analysis"
    );
    let out = w.ok(&[
        "ingest",
        "--user",
        "bob@example.com",
        bob_logs[0].to_str().unwrap(),
    ]);
    assert_eq!(out.lines().count(), 1);
    assert_eq!(w.volume_files(), 4);

    // Refused zips write nothing.
    let bad = w.path().join("bad.zip");
    zip_of(
        &bad,
        &[("ok.csv", b"Date;Time;\n"), ("notes.txt", b"hello")],
    );
    let (code, _, stderr) = w.run(&["ingest", "--user", "bob@example.com", bad.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(stderr.contains("notes.txt"), "{stderr}");
    let not_zip = w.path().join("fake.zip");
    std::fs::write(&not_zip, b"this is not a zip").unwrap();
    let (code, _, _) = w.run(&[
        "ingest",
        "--user",
        "bob@example.com",
        not_zip.to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert_eq!(w.volume_files(), 4);

    // First run: everything is new.
    let out = w.ok(&["run"]);
    let messages = w.outbox(&out);
    let owner: HashMap<String, String> = w
        .query("SELECT analysis_id, user_id FROM analysis")
        .iter()
        .map(|r| {
            (
                r["analysis_id"].as_str().unwrap().to_string(),
                r["user_id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    analyses_before_averages(&messages, &owner);
    let analyses: Vec<&Value> = messages
        .iter()
        .filter(|m| m["subject"] == "analysis.result")
        .collect();
    assert_eq!(analyses.len(), 4, "{out}");
    assert!(
        analyses.iter().all(|m| m["payload"]["status"] == "Success"),
        "{messages:?}"
    );
    let averages: Vec<&Value> = messages
        .iter()
        .filter(|m| m["subject"] == "average.result")
        .collect();
    assert!(
        averages.len() >= 6,
        "2 users × at least OVERALL+YEARLY+MONTHLY: {}",
        averages.len()
    );
    for a in &averages {
        let p = &a["payload"];
        assert_eq!(p["status"], "SUCCESS");
        assert_eq!(p["analysisSha"].as_str().map(str::len), Some(64));
        match p["type"].as_str() {
            Some("OVERALL") => assert!(p["year"].is_null() && p["month"].is_null()),
            Some("YEARLY") => assert!(p["year"].is_i64() && p["month"].is_null()),
            Some("MONTHLY") => assert!(p["year"].is_i64() && p["month"].is_i64()),
            other => panic!("type {other:?}"),
        }
    }

    // The snapshot is complete and queryable.
    let rows = w.query("SELECT analysis_id, user_id, status, log_year, \"driving_speed_max_kmh\", analysis_json FROM analysis ORDER BY analysis_id");
    assert_eq!(rows.len(), 4);
    for r in &rows {
        assert_eq!(r["status"], "Success");
        assert!(
            r["driving_speed_max_kmh"].is_i64(),
            "typed metric columns: {r}"
        );
        let json: Value = serde_json::from_str(r["analysis_json"].as_str().unwrap()).unwrap();
        assert!(json["overall"]["distance_km"].as_f64().is_some());
    }
    let groups = w.query("SELECT type, count(*) AS n FROM average GROUP BY type ORDER BY type");
    assert_eq!(
        groups
            .iter()
            .find(|g| g["type"] == "OVERALL")
            .map(|g| g["n"].clone()),
        Some(2.into())
    );
    let csv = w.ok(&[
        "query",
        "--format",
        "csv",
        "SELECT count(*) AS n FROM analysis",
    ]);
    assert_eq!(csv, "n\n4\n");

    // Second run: nothing changed, nothing sent.
    let out = w.ok(&["run"]);
    assert!(
        out.contains("0 users changed, 0 analysis + 0 average messages"),
        "{out}"
    );
    assert!(w.outbox(&out).is_empty());

    // A new log for bob: exactly his 1 + 3 messages.
    w.ok(&[
        "ingest",
        "--user",
        "bob@example.com",
        bob_logs[1].to_str().unwrap(),
    ]);
    let out = w.ok(&["run"]);
    let messages = w.outbox(&out);
    let bob = owner[&out_id(&w, &bob_logs[0])].clone();
    assert_eq!(
        messages
            .iter()
            .filter(|m| m["subject"] == "analysis.result")
            .count(),
        1,
        "{messages:?}"
    );
    let averages: Vec<&Value> = messages
        .iter()
        .filter(|m| m["subject"] == "average.result")
        .collect();
    assert_eq!(averages.len(), 3, "{messages:?}");
    assert!(
        averages
            .iter()
            .all(|m| m["payload"]["userId"] == bob.as_str())
    );
    let types: HashSet<&str> = averages
        .iter()
        .filter_map(|m| m["payload"]["type"].as_str())
        .collect();
    assert_eq!(types, HashSet::from(["OVERALL", "YEARLY", "MONTHLY"]));

    // --force re-sends everything.
    let out = w.ok(&["run", "--force"]);
    assert_eq!(
        w.outbox(&out)
            .iter()
            .filter(|m| m["subject"] == "analysis.result")
            .count(),
        5
    );

    // A corrupted log fails alone.
    let victim = w.path().join(format!("wh/volume/{first_id}.csv"));
    std::fs::write(&victim, b"\x00\x01garbage").unwrap();
    let out = w.ok(&["run"]);
    let messages = w.outbox(&out);
    let analyses: Vec<&Value> = messages
        .iter()
        .filter(|m| m["subject"] == "analysis.result")
        .collect();
    assert_eq!(analyses.len(), 1, "{messages:?}");
    assert_eq!(analyses[0]["payload"]["analysisId"], first_id.as_str());
    assert_eq!(analyses[0]["payload"]["status"], "Failed");
    let rows =
        w.query("SELECT status, count(*) AS n FROM analysis GROUP BY status ORDER BY status");
    assert_eq!(
        rows,
        vec![
            serde_json::json!({"status": "Failed", "n": 1}),
            serde_json::json!({"status": "Success", "n": 4})
        ]
    );

    // Two runs never overlap: while another holds the run lock, a run is skipped (exit 3).
    let lock = std::fs::File::open(w.path().join("wh/locks/run.lock")).expect("lock file");
    lock.try_lock().expect("the lock is free between runs");
    let (code, _, stderr) = w.run(&["run"]);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("skipped"), "{stderr}");
    drop(lock);

    // A crash between staging and rename leaves the previous latest.
    let before = w.ok(&["snapshots", "list"]);
    let root = w.path().join("wh");
    let (code, _, _) = run_bin_env(&["--warehouse", root.to_str().unwrap(), "run", "--force"]);
    assert_ne!(code, 0);
    assert_eq!(w.ok(&["snapshots", "list"]), before);
    let out = w.ok(&["snapshots", "prune", "--keep", "2"]);
    assert!(out.lines().count() >= 3, "{out}");
    assert_eq!(w.ok(&["snapshots", "list"]).lines().count(), 2);
}

/// The analysis id that ingesting `log` (again) reports.
fn out_id(w: &Warehouse, log: &Path) -> String {
    let out = w.ok(&["ingest", "--user", "bob@example.com", log.to_str().unwrap()]);
    out.split('\t').next().unwrap().to_string()
}

fn run_bin_env(args: &[&str]) -> (i32, String, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_fap-warehouse"))
        .args(args)
        .env("FAP_TEST_CRASH_BEFORE_RENAME", "1")
        .output()
        .expect("binary runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
