//! The batch job end to end through the binary, on the embedded default:
//! ingest → run → outbox, catalog, Parquet, query → a rerun opens no log
//! and sends nothing → new logs send exactly their users' messages →
//! `--full` re-reads everything and a log changed on the volume fails alone
//! → the run lock → a crash before publishing keeps the old latest →
//! experiments (`--dry-run`, `--sql-dir`) never reach consumers → a log
//! gone from the volume still counts in its user's averages.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::common::run_bin;
use serde_json::Value;

pub struct Warehouse {
    dir: tempfile::TempDir,
}

impl Warehouse {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn root(&self) -> PathBuf {
        self.path().join("wh")
    }

    pub fn run(&self, args: &[&str]) -> (i32, String, String) {
        let root = self.root();
        let mut full = vec!["--warehouse", root.to_str().expect("utf8")];
        full.extend_from_slice(args);
        run_bin(&full, None)
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let (code, stdout, stderr) = self.run(args);
        assert_eq!(code, 0, "{args:?}: {stderr}\n{stdout}");
        stdout
    }

    pub fn outbox(&self, stdout: &str) -> Vec<Value> {
        let Some(line) = stdout.lines().find_map(|l| l.strip_prefix("outbox: ")) else {
            return Vec::new();
        };
        std::fs::read_to_string(line)
            .expect("outbox readable")
            .lines()
            .map(|l| serde_json::from_str(l).expect("outbox line is JSON"))
            .collect()
    }

    pub fn query(&self, sql: &str) -> Vec<Value> {
        let out = self.ok(&["query", "--format", "json", sql]);
        serde_json::from_str(out.trim()).expect("query prints a JSON array")
    }

    /// The embedded catalog, to change it behind the job's back.
    pub async fn catalog_pool(&self) -> sqlx::SqlitePool {
        let url = format!("sqlite://{}", self.root().join("catalog.db").display());
        sqlx::SqlitePool::connect(&url)
            .await
            .expect("catalog opens")
    }

    /// Gives the analysis `id` to the user `email` in the catalog.
    pub async fn move_analysis(&self, id: &str, email: &str) {
        let pool = self.catalog_pool().await;
        sqlx::query(
            "UPDATE fap_analysis SET user_id = (SELECT id FROM users WHERE email = ?) WHERE id = ?",
        )
        .bind(email)
        .bind(id)
        .execute(&pool)
        .await
        .expect("analysis moved");
        pool.close().await;
    }

    pub fn volume_files(&self) -> usize {
        std::fs::read_dir(self.root().join("volume")).map_or(0, |d| {
            d.filter_map(|e| e.ok())
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .count()
        })
    }

    /// Ingests `files` for `user`; returns the analysis ids, in order.
    pub fn ingest(&self, user: &str, files: &[PathBuf]) -> Vec<String> {
        let mut args = vec!["ingest", "--user", user];
        args.extend(files.iter().map(|f| f.to_str().expect("utf8")));
        let out = self.ok(&args);
        out.lines()
            .filter_map(|l| l.split_once('\t'))
            .map(|(id, _)| id.to_string())
            .collect()
    }
}

pub fn logs(dir: &Path, count: usize, seed: u64) -> Vec<PathBuf> {
    fap_warehouse::cli::gen_logs(dir, count, 25_000, seed).expect("generated logs")
}

pub fn zip_of(path: &Path, entries: &[(&str, &[u8])]) {
    let file = std::fs::File::create(path).expect("zip file");
    let mut zip = zip::ZipWriter::new(file);
    for (name, bytes) in entries {
        zip.start_file(*name, zip::write::SimpleFileOptions::default())
            .expect("zip entry");
        zip.write_all(bytes).expect("zip data");
    }
    zip.finish().expect("zip closes");
}

fn subject<'a>(messages: &'a [Value], subject: &str) -> Vec<&'a Value> {
    messages
        .iter()
        .filter(|m| m["subject"] == subject)
        .collect()
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
    assert!(
        out.ends_with("2 new, 0 already there, user alice@example.com created\n"),
        "{out}"
    );
    let first_id = out.split('\t').next().unwrap().to_string();
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
        out.contains("\tevil.csv\n"),
        "entry names are labels only: {out}"
    );
    assert!(out.ends_with("user alice@example.com existing\n"), "{out}");
    assert!(!w.path().join("outside").exists());
    let again = w.ingest("alice@example.com", &alice_logs[..1]);
    assert_eq!(again, vec![first_id.clone()], "same bytes, same analysis");
    w.ingest("bob@example.com", &bob_logs[..1]);
    assert_eq!(w.volume_files(), 4);

    // Refused zips write nothing.
    let bad = w.path().join("bad.zip");
    zip_of(
        &bad,
        &[("ok.csv", b"Date;Time;\n"), ("notes.txt", b"hello")],
    );
    let (code, _, stderr) = w.run(&["ingest", "--user", "bob@example.com", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stderr.contains("notes.txt"), "{stderr}");
    let not_zip = w.path().join("fake.zip");
    std::fs::write(&not_zip, b"this is not a zip").unwrap();
    let (code, _, _) = w.run(&[
        "ingest",
        "--user",
        "bob@example.com",
        not_zip.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
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
    let analyses = subject(&messages, "analysis.result");
    assert_eq!(analyses.len(), 4, "{out}");
    assert!(
        analyses.iter().all(|m| m["payload"]["status"] == "Success"),
        "{messages:?}"
    );
    let averages = subject(&messages, "average.result");
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

    // The snapshot is complete and queryable, without quoting.
    let rows = w.query(
        "SELECT analysis_id, user_id, status, log_date, log_year, driving_speed_max_kmh, analysis_json FROM analysis ORDER BY analysis_id",
    );
    assert_eq!(rows.len(), 4);
    for r in &rows {
        assert_eq!(r["status"], "Success");
        assert!(
            r["driving_speed_max_kmh"].is_i64(),
            "typed metric columns: {r}"
        );
        let json: Value = serde_json::from_str(r["analysis_json"].as_str().unwrap()).unwrap();
        assert_eq!(json["overall"]["date"]["date"], r["log_date"], "{r}");
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

    // Second run: nothing changed, nothing sent, every result reused.
    let out = w.ok(&["run"]);
    assert!(
        out.contains(
            "(0 analysed, 4 reused, 0 failed), 0 users changed, 0 analysis + 0 average messages"
        ),
        "{out}"
    );
    assert!(w.outbox(&out).is_empty());

    // A new log for bob: exactly his 1 + 3 messages.
    let new = w.ingest("bob@example.com", &bob_logs[1..2]);
    let out = w.ok(&["run"]);
    assert!(out.contains("(1 analysed, 4 reused, 0 failed)"), "{out}");
    let messages = w.outbox(&out);
    let analyses = subject(&messages, "analysis.result");
    assert_eq!(analyses.len(), 1, "{messages:?}");
    assert_eq!(analyses[0]["payload"]["analysisId"], new[0].as_str());
    let bob = owner[&w.ingest("bob@example.com", &bob_logs[..1])[0]].clone();
    let averages = subject(&messages, "average.result");
    assert!(
        averages
            .iter()
            .all(|m| m["payload"]["userId"] == bob.as_str()),
        "{messages:?}"
    );
    let types: HashSet<&str> = averages
        .iter()
        .filter_map(|m| m["payload"]["type"].as_str())
        .collect();
    assert!(
        types.contains("OVERALL") && types.contains("YEARLY") && types.contains("MONTHLY"),
        "{types:?}"
    );

    // --force re-sends everything, without re-reading anything.
    let out = w.ok(&["run", "--force"]);
    assert!(out.contains("(0 analysed, 5 reused"), "{out}");
    assert_eq!(subject(&w.outbox(&out), "analysis.result").len(), 5);

    // A log changed on the volume after its upload: reused as long as its
    // upload's sha256 is, failed alone once --full reads it again.
    let victim = w.root().join(format!("volume/{first_id}.csv"));
    std::fs::write(&victim, b"\x00\x01garbage").unwrap();
    let out = w.ok(&["run"]);
    assert!(w.outbox(&out).is_empty(), "{out}");
    let out = w.ok(&["run", "--full"]);
    assert!(out.contains("(5 analysed, 0 reused, 1 failed)"), "{out}");
    assert!(
        out.contains("File changed since upload"),
        "failures by message: {out}"
    );
    let messages = w.outbox(&out);
    let analyses = subject(&messages, "analysis.result");
    assert_eq!(
        analyses.len(),
        1,
        "only the changed log's result differs: {messages:?}"
    );
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
    let lock = std::fs::File::open(w.root().join("catalog.db.run.lock")).expect("lock file");
    lock.try_lock().expect("the lock is free between runs");
    let (code, _, stderr) = w.run(&["run"]);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("skipped"), "{stderr}");
    let (code, _, stderr) = w.run(&["snapshots", "prune", "--keep", "1"]);
    assert_eq!(code, 3, "prune waits for runs too: {stderr}");
    drop(lock);

    let listed: Value =
        serde_json::from_str(&w.ok(&["snapshots", "list", "--format", "json"])).unwrap();
    let count = listed.as_array().unwrap().len();
    assert_eq!(count, 6);
    let out = w.ok(&["snapshots", "prune", "--keep", "2", "--dry-run"]);
    assert_eq!(
        out.lines()
            .filter(|l| l.starts_with("would remove"))
            .count(),
        4,
        "{out}"
    );
    let out = w.ok(&["snapshots", "prune", "--keep", "2"]);
    assert_eq!(
        out.lines().filter(|l| l.starts_with("removed")).count(),
        4,
        "{out}"
    );
    let listed: Value =
        serde_json::from_str(&w.ok(&["snapshots", "list", "--format", "json"])).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2);
    // The kept snapshots are whole: their shared files survived the prune.
    assert_eq!(w.query("SELECT count(*) AS n FROM analysis")[0]["n"], 5);
}

/// A rerun with nothing new opens no log of the volume: checked with strace.
#[test]
fn a_rerun_with_nothing_new_opens_no_log() {
    let w = Warehouse::new();
    w.ingest("carol@example.com", &logs(&w.path().join("in"), 4, 21));
    w.ok(&["run"]);
    let trace = w.path().join("trace");
    let root = w.root();
    let output = std::process::Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=open,openat", "-o"])
        .arg(&trace)
        .arg(env!("CARGO_BIN_EXE_fap-warehouse"))
        .args(["--warehouse", root.to_str().unwrap(), "run"])
        .output()
        .expect("strace runs (the machine has it)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("0 analysis + 0 average messages"),
        "{stdout}"
    );
    let opened = std::fs::read_to_string(&trace).unwrap();
    let volume = root.join("volume");
    let logs: Vec<&str> = opened
        .lines()
        .filter(|l| l.contains(volume.to_str().unwrap()) && l.contains(".csv"))
        .collect();
    assert!(logs.is_empty(), "logs opened by a rerun: {logs:?}");
}

/// Ten new logs for two users: only they are analysed, only those two users
/// get messages; an edit of the SQL that changes no result re-reads all and
/// sends nothing; `--full --dry-run` delivers nothing and changes nothing.
#[test]
fn incremental_runs_and_experiments() {
    let w = Warehouse::new();
    let input = w.path().join("input");
    for u in 0..4 {
        w.ingest(
            &format!("u{u}@example.com"),
            &logs(&input.join(format!("u{u}")), 3, 30 + u),
        );
    }
    w.ok(&["run"]);
    let mut new_ids = Vec::new();
    for u in 0..2 {
        new_ids.extend(w.ingest(
            &format!("u{u}@example.com"),
            &logs(&input.join(format!("n{u}")), 5, 50 + u),
        ));
    }
    let out = w.ok(&["run"]);
    assert!(
        out.contains("(10 analysed, 12 reused, 0 failed), 2 users changed"),
        "{out}"
    );
    let messages = w.outbox(&out);
    let analysed: HashSet<&str> = subject(&messages, "analysis.result")
        .iter()
        .filter_map(|m| m["payload"]["analysisId"].as_str())
        .collect();
    assert_eq!(analysed, new_ids.iter().map(String::as_str).collect());
    let users: HashSet<&str> = subject(&messages, "average.result")
        .iter()
        .filter_map(|m| m["payload"]["userId"].as_str())
        .collect();
    assert_eq!(users.len(), 2, "{users:?}");

    // The same SQL plus a comment: a new algorithm version, everything is
    // read again, nothing differs, nothing is sent.
    let sql = w.path().join("sql");
    std::fs::create_dir_all(&sql).unwrap();
    let model =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("sql/log_analysis.sql"))
            .unwrap();
    std::fs::write(
        sql.join("log_analysis.sql"),
        format!("-- reviewed\n{model}"),
    )
    .unwrap();
    let (code, stdout, stderr) = w.run(&["--sql-dir", sql.to_str().unwrap(), "run"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("(22 analysed, 0 reused, 0 failed)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("0 analysis + 0 average messages"),
        "{stdout}"
    );
    assert!(
        stderr.contains("log_analysis"),
        "the override is logged: {stderr}"
    );
    let latest = std::fs::read_to_string(w.root().join("snapshots/latest")).unwrap();
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(
            w.root()
                .join(format!("snapshots/{}/manifest.json", latest.trim())),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        manifest["sql"]["log_analysis.sql"]["overridden"], true,
        "{manifest}"
    );
    assert_eq!(manifest["counts"]["analysed"], 22);

    // A changed algorithm, tried as an experiment: nothing reaches consumers.
    let catalog_before = std::fs::read(w.root().join("catalog.db")).unwrap();
    let changed = model.replace("speed * dt / 3600 AS km", "speed * dt / 3000 AS km");
    assert_ne!(changed, model);
    std::fs::write(sql.join("log_analysis.sql"), changed).unwrap();
    let (code, stdout, stderr) = w.run(&[
        "--sql-dir",
        sql.to_str().unwrap(),
        "run",
        "--full",
        "--dry-run",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("experiment "), "{stdout}");
    assert!(
        !stdout.contains("outbox:"),
        "an experiment delivers nothing: {stdout}"
    );
    assert!(
        stdout.contains("overall_distance_km"),
        "the report names the changed metric: {stdout}"
    );
    assert_eq!(
        std::fs::read_to_string(w.root().join("snapshots/latest")).unwrap(),
        latest,
        "latest untouched"
    );
    assert_eq!(
        std::fs::read(w.root().join("catalog.db")).unwrap(),
        catalog_before,
        "catalog untouched"
    );
    let report_line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("change report: "))
        .expect("report path");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(report_line).unwrap()).unwrap();
    let distance = report["analysis"]["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["metric"] == "overall_distance_km")
        .expect("distance changed");
    assert!(distance["changed"].as_u64().unwrap() > 0);
    assert!(distance["max_abs_diff"].as_f64().unwrap() > 0.0);
    // The next real run builds on latest, not on the experiment.
    let out = w.ok(&["run"]);
    assert!(
        out.contains("(22 analysed, 0 reused"),
        "back to the embedded SQL: {out}"
    );
    assert!(out.contains("0 analysis + 0 average messages"), "{out}");
}

/// Each snapshot shares unchanged files with its parent (hard links): a
/// rerun adds no copy of the data; a diff names what changed.
#[test]
fn snapshots_share_unchanged_files() {
    use std::os::unix::fs::MetadataExt;
    let w = Warehouse::new();
    w.ingest("dave@example.com", &logs(&w.path().join("in"), 3, 61));
    w.ingest("erin@example.com", &logs(&w.path().join("in2"), 3, 62));
    w.ok(&["run"]);
    let first = std::fs::read_to_string(w.root().join("snapshots/latest"))
        .unwrap()
        .trim()
        .to_string();
    w.ok(&["run"]);
    let second = std::fs::read_to_string(w.root().join("snapshots/latest"))
        .unwrap()
        .trim()
        .to_string();
    assert_ne!(first, second);
    for table in [
        "analysis",
        "average",
        "fuel_by_speed_band",
        "average_fuel_by_speed_band",
    ] {
        let dir = w.root().join(format!("snapshots/{second}/{table}"));
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let twin = w
                .root()
                .join(format!("snapshots/{first}/{table}"))
                .join(path.file_name().unwrap());
            assert_eq!(
                std::fs::metadata(&path).unwrap().ino(),
                std::fs::metadata(&twin).unwrap().ino(),
                "{} is a copy, not a link",
                path.display()
            );
        }
    }
    let out = w.ok(&["snapshots", "diff", &first, &second, "--format", "json"]);
    let diff: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(diff["analysis"]["changed"], 0);
    assert_eq!(diff["analysis"]["added"], 0);
}

/// A crash after staging, before publishing: the previous snapshot stays
/// the latest and nothing is delivered.
#[tokio::test]
async fn a_crash_before_publishing_keeps_the_previous_latest() {
    use fap_warehouse::analysis::engine::Engine;
    use fap_warehouse::analysis::models::Models;
    use fap_warehouse::catalog::Catalog;
    use fap_warehouse::catalog::lock::RunLock;
    use fap_warehouse::job::{self, RunConfig};
    use fap_warehouse::volume::Volume;
    let w = Warehouse::new();
    w.ingest("frank@example.com", &logs(&w.path().join("in"), 2, 71));
    w.ok(&["run"]);
    let latest = std::fs::read_to_string(w.root().join("snapshots/latest")).unwrap();
    let catalog = Catalog::connect(
        &format!("sqlite://{}", w.root().join("catalog.db").display()),
        &Default::default(),
    )
    .await
    .unwrap();
    let lock = RunLock::try_take(&catalog, &w.root())
        .await
        .unwrap()
        .expect("free");
    let volume = Volume::local(&w.root().join("volume")).unwrap();
    let mut config = RunConfig::new(w.root(), volume).crash_before_publish();
    config.options.force = true;
    let engine = Engine::new(Models::embedded());
    let err = job::run(&engine, &catalog, &lock, &config)
        .await
        .expect_err("crashed");
    assert!(err.to_string().contains("crash"), "{err}");
    assert_eq!(
        std::fs::read_to_string(w.root().join("snapshots/latest")).unwrap(),
        latest
    );
    assert!(
        std::fs::read_dir(w.root().join("outbox")).unwrap().count() == 1,
        "nothing more delivered"
    );
}

/// A log gone from the volume still counts in its user's averages: `--full`
/// re-reads the others and takes the gone one's result from what consumers
/// hold (no snapshot result is reused), so no average changes.
#[test]
fn a_gone_log_still_counts_in_its_users_averages() {
    let w = Warehouse::new();
    let ids = w.ingest("gina@example.com", &logs(&w.path().join("in"), 3, 81));
    w.ok(&["run"]);
    let averages = "SELECT type, year, month, n_analyses, analysis_sha, overall_distance_km \
                    FROM average ORDER BY type, year, month";
    let before = w.query(averages);
    assert!(
        before
            .iter()
            .any(|r| r["type"] == "OVERALL" && r["n_analyses"] == 3),
        "{before:?}"
    );

    std::fs::remove_file(w.root().join(format!("volume/{}.csv", ids[0]))).unwrap();
    let out = w.ok(&["run", "--full"]);
    assert!(out.contains("(2 analysed, 0 reused, 0 failed)"), "{out}");
    assert!(
        out.contains("catalog rows without a log file (left alone)"),
        "{out}"
    );
    assert!(
        out.contains("0 analysis + 0 average messages"),
        "the averages still hold the gone log: {out}"
    );
    assert_eq!(w.query(averages), before);
}

/// A hand-made log of `seconds` one-second rows at `speed` km/h (0: an idle
/// drive, which has no speed band).
fn drive_log(path: &Path, seconds: usize, speed: u32) -> PathBuf {
    let mut text = String::from("Date;Time;Revs;Speed;InjFlow;REGEN;\n");
    for s in 0..seconds {
        text += &format!(
            "2025.04.0{};10:{:02}:{:02}.0;{};{speed};3;0;\n",
            1 + speed % 7,
            s / 60,
            s % 60,
            800 + 10 * speed
        );
    }
    std::fs::write(path, text).expect("write log");
    path.to_path_buf()
}

/// Whatever came between runs (new logs, idle drives with no speed band,
/// broken logs, users with only those, a log moved to another user, one
/// removed from the catalog, a run with only an idle drive), the incremental snapshot holds
/// exactly what a full recomputation does, table by table, and the full run
/// has nothing to send. (A log gone from the volume is the exception: see
/// `a_gone_log_still_counts_in_its_users_averages`.)
#[tokio::test]
async fn an_incremental_snapshot_equals_a_full_one() {
    let w = Warehouse::new();
    let dir = w.path().join("in");
    std::fs::create_dir_all(&dir).unwrap();
    let hand = |name: &str, seconds: usize, speed: u32| drive_log(&dir.join(name), seconds, speed);
    let broken = dir.join("broken.csv");
    std::fs::write(&broken, "Date;Time;Speed\n").unwrap();
    w.ingest("a@example.com", &logs(&dir.join("a"), 2, 61));
    let b = w.ingest(
        "b@example.com",
        &[
            logs(&dir.join("b"), 1, 62).remove(0),
            hand("b_idle.csv", 90, 0),
        ],
    );
    w.ingest("c@example.com", &[hand("c_idle.csv", 80, 0)]);
    let d = w.ingest(
        "d@example.com",
        &[
            broken,
            hand("d_drive.csv", 120, 50),
            hand("d_drive3.csv", 90, 120),
        ],
    );
    let only_broken = dir.join("only_broken.csv");
    std::fs::write(&only_broken, "").unwrap();
    w.ingest("e@example.com", &[only_broken]);
    w.ok(&["run"]);

    w.ingest("a@example.com", &[hand("a_idle.csv", 70, 0)]);
    let only_broken2 = dir.join("only_broken2.csv");
    std::fs::write(&only_broken2, "Date;Time\n").unwrap();
    w.ingest("e@example.com", &[only_broken2]);
    w.ingest("b@example.com", &logs(&dir.join("b2"), 1, 63));
    w.ingest("c@example.com", &[hand("c_idle2.csv", 75, 0)]);
    let broken2 = dir.join("broken2.csv");
    std::fs::write(&broken2, "Speed;Revs\n1;2\n").unwrap();
    w.ingest("d@example.com", &[broken2, hand("d_drive2.csv", 100, 90)]);
    // One of b's logs moves to a; one of d's leaves the catalog.
    w.move_analysis(&b[0], "a@example.com").await;
    let pool = w.catalog_pool().await;
    sqlx::query("DELETE FROM fap_analysis WHERE id = ?")
        .bind(&d[2])
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let out = w.ok(&["run"]);
    assert!(out.contains("(7 analysed, 7 reused, 4 failed)"), "{out}");
    incremental_equals_full(&w);

    // A run whose only new log writes no speed band at all (an idle drive).
    w.ingest("a@example.com", &[hand("a_idle2.csv", 65, 0)]);
    let out = w.ok(&["run"]);
    assert!(out.contains("(1 analysed, 14 reused"), "{out}");
    incremental_equals_full(&w);
}

/// Runs `--full` after the latest (incremental) run: it has nothing to send,
/// and its four tables equal the incremental snapshot's, row by row.
fn incremental_equals_full(w: &Warehouse) {
    let incremental = std::fs::read_to_string(w.root().join("snapshots/latest")).unwrap();
    let out = w.ok(&["run", "--full"]);
    assert!(out.contains("0 analysis + 0 average messages"), "{out}");
    let full = std::fs::read_to_string(w.root().join("snapshots/latest")).unwrap();
    assert_ne!(incremental, full);
    for table in [
        "analysis",
        "fuel_by_speed_band",
        "average",
        "average_fuel_by_speed_band",
    ] {
        let rows = |snapshot: &str| {
            let out = w.ok(&[
                "query",
                "--snapshot",
                snapshot.trim(),
                "--format",
                "json",
                &format!("SELECT * FROM {table} ORDER BY 1, 2, 3, 4, 5"),
            ]);
            serde_json::from_str::<Vec<Value>>(out.trim()).expect("query prints a JSON array")
        };
        let (inc, all) = (rows(&incremental), rows(&full));
        assert!(!all.is_empty(), "{table} has rows");
        assert_eq!(inc.len(), all.len(), "{table}: row counts");
        for (i, f) in inc.iter().zip(&all) {
            assert_eq!(i, f, "{table}: incremental and full rows differ");
        }
    }
}
