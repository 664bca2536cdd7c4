//! Regressions from the fault probe (issue "Hardening"): each test is named
//! after what broke, and fails on the code before its fix.

use crate::batch_job::{Warehouse, logs, zip_of};
use serde_json::Value;

/// A 6 MB log of 3M one-cell rows took a run to 3.2 GiB, and a bigger one
/// aborted every user's night. Now it fails alone, by its row count.
#[test]
fn regression_a_log_of_millions_of_tiny_rows_fails_alone() {
    let w = Warehouse::new();
    let mut tiny = b"Date;Time;Speed\n".to_vec();
    tiny.extend(std::iter::repeat_n(*b"1\n", 3_000_000).flatten());
    let path = w.path().join("tiny.csv");
    std::fs::write(&path, &tiny).unwrap();
    let mut files = logs(&w.path().join("in"), 5, 81);
    files.push(path);
    let (code, stdout, stderr) = w.run(
        &["ingest", "--user", "gina@example.com"]
            .iter()
            .copied()
            .chain(files.iter().map(|f| f.to_str().unwrap()))
            .collect::<Vec<_>>(),
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("Log too large"), "ingest warns: {stderr}");
    assert!(stdout.contains("6 new"), "{stdout}");
    let out = w.ok(&["run"]);
    assert!(out.contains("(6 analysed, 0 reused, 1 failed)"), "{out}");
    let failed = w.query("SELECT message FROM analysis WHERE status = 'Failed'");
    assert_eq!(failed.len(), 1);
    let message = failed[0]["message"].as_str().unwrap();
    assert!(
        message.starts_with("Log too large: 3000000 rows, limit 200000"),
        "{message}"
    );
    assert_eq!(
        w.query("SELECT count(*) AS n FROM analysis WHERE status = 'Success'")[0]["n"],
        5
    );
}

/// `COPY … TO` in `query` replaced a user's log on the volume, and the next
/// run sent the forged analysis; `INSERT` broke the snapshot.
#[test]
fn regression_query_is_read_only() {
    let w = Warehouse::new();
    let ids = w.ingest("hank@example.com", &logs(&w.path().join("in"), 1, 82));
    w.ok(&["run"]);
    let target = w.root().join(format!("volume/{}.csv", ids[0]));
    let before = std::fs::read(&target).unwrap();
    for sql in [
        format!(
            "COPY (SELECT 1 AS x) TO '{}' STORED AS CSV",
            target.display()
        ),
        "INSERT INTO analysis SELECT * FROM analysis".to_string(),
        "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/passwd'".to_string(),
        "CREATE TABLE t AS SELECT 1".to_string(),
        "SET datafusion.execution.batch_size = 1".to_string(),
    ] {
        let (code, _, stderr) = w.run(&["query", "-c", &sql]);
        assert_eq!(code, 1, "{sql}: {stderr}");
        assert!(stderr.contains("read only"), "{sql}: {stderr}");
    }
    assert_eq!(
        std::fs::read(&target).unwrap(),
        before,
        "the log is untouched"
    );
    assert_eq!(w.query("SELECT count(*) AS n FROM analysis")[0]["n"], 1);
}

/// A log replaced on the volume after its upload was analysed as if it were
/// the upload: its bytes are now checked against the catalog's sha256.
#[test]
fn regression_a_log_changed_since_upload_fails() {
    let w = Warehouse::new();
    let ids = w.ingest("ivan@example.com", &logs(&w.path().join("in"), 2, 83));
    let other = logs(&w.path().join("other"), 1, 84);
    std::fs::copy(&other[0], w.root().join(format!("volume/{}.csv", ids[0]))).unwrap();
    let out = w.ok(&["run"]);
    let messages = w.outbox(&out);
    let forged = messages
        .iter()
        .find(|m| m["payload"]["analysisId"] == ids[0].as_str())
        .expect("a result for the changed log");
    assert_eq!(forged["payload"]["status"], "Failed");
    assert!(
        forged["payload"]["message"]
            .as_str()
            .unwrap()
            .starts_with("File changed since upload")
    );
    let fine = messages
        .iter()
        .find(|m| m["payload"]["analysisId"] == ids[1].as_str())
        .unwrap();
    assert_eq!(fine["payload"]["status"], "Success");
}

/// `ingest` of a `.csv` symlink to /dev/zero read until memory ran out; a
/// FIFO hung forever. Only regular files are read.
#[test]
fn regression_ingest_refuses_special_files() {
    let w = Warehouse::new();
    let zero = w.path().join("zero.csv");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    let (code, _, stderr) = w.run(&[
        "ingest",
        "--user",
        "jane@example.com",
        zero.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(stderr.contains("not a regular file"), "{stderr}");
    let fifo = w.path().join("fifo.csv");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let started = std::time::Instant::now();
    let (code, _, stderr) = w.run(&[
        "ingest",
        "--user",
        "jane@example.com",
        fifo.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(stderr.contains("not a regular file"), "{stderr}");
    assert!(started.elapsed().as_secs() < 10, "no hang on a FIFO");
}

/// A zip whose entries overlap (the same compressed bytes read many times)
/// reached 2.4 GB of RAM, and with 8 entries was accepted.
#[test]
fn regression_a_zip_with_overlapping_entries_is_refused() {
    let w = Warehouse::new();
    let zip = w.path().join("overlap.zip");
    std::fs::write(&zip, overlapping_zip(8)).unwrap();
    let (code, _, stderr) = w.run(&["ingest", "--user", "kim@example.com", zip.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("overlap"), "{stderr}");
    assert_eq!(w.volume_files(), 0);
}

/// Zip entry names were printed raw (terminal escapes, newlines) and a
/// 5,000-character name was stored (the backend allows 255).
#[test]
fn regression_zip_entry_names_are_cleaned_and_cut() {
    use std::io::Write;
    let w = Warehouse::new();
    let log = std::fs::read(&logs(&w.path().join("in"), 1, 85)[0]).unwrap();
    let zip = w.path().join("names.zip");
    let mut writer = zip::ZipWriter::new(std::fs::File::create(&zip).unwrap());
    let name = format!("\u{1b}[31mred\nline{}.csv", "x".repeat(5000));
    writer
        .start_file(name.as_str(), zip::write::SimpleFileOptions::default())
        .unwrap();
    writer.write_all(&log).unwrap();
    writer.finish().unwrap();
    let out = w.ok(&["ingest", "--user", "lee@example.com", zip.to_str().unwrap()]);
    let label = out.lines().next().unwrap().split_once('\t').unwrap().1;
    assert!(!label.chars().any(char::is_control), "{label:?}");
    assert_eq!(label.chars().count(), 255);
    w.ok(&["run"]);
    let stored = w.query("SELECT file_name FROM analysis");
    assert_eq!(
        stored[0]["file_name"].as_str().unwrap().chars().count(),
        255
    );
}

/// Concurrent ingests of the same file failed with a raw SQLite UNIQUE error
/// and left orphan files on the volume.
#[test]
fn regression_concurrent_ingests_of_the_same_bytes() {
    let w = Warehouse::new();
    let file = logs(&w.path().join("in"), 1, 86).remove(0);
    w.ok(&[
        "ingest",
        "--user",
        "max@example.com",
        file.to_str().unwrap(),
    ]);
    let other = logs(&w.path().join("in2"), 1, 87).remove(0);
    let root = w.root();
    let children: Vec<_> = (0..4)
        .map(|_| {
            std::process::Command::new(env!("CARGO_BIN_EXE_fap-warehouse"))
                .args([
                    "--warehouse",
                    root.to_str().unwrap(),
                    "ingest",
                    "--user",
                    "max@example.com",
                ])
                .arg(&other)
                .output()
                .expect("ingest runs")
        })
        .collect();
    let mut ids = std::collections::HashSet::new();
    for output in children {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{stderr}");
        assert!(!stderr.contains("UNIQUE"), "{stderr}");
        ids.insert(
            String::from_utf8_lossy(&output.stdout)
                .split('\t')
                .next()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(ids.len(), 1, "one analysis for the same bytes");
    assert_eq!(w.volume_files(), 2, "no orphan file");
}

/// Timestamps in 1677/2262 gave negative durations that reached averages.
#[tokio::test]
async fn regression_far_timestamps_are_invalid_rows() {
    let header = "Date;Time;Speed;Revs\n";
    let mut text = header.to_string();
    for s in 0..20 {
        text.push_str(&format!("2025.02.03;10:00:{s:02}.0;30;1500\n"));
    }
    text.push_str("1677.09.21;00:12:44.0;30;1500\n2262.04.11;23:47:16.8;30;1500\n");
    let result = analyse_text(&text).await;
    assert_eq!(result["status"], "Success", "{result}");
    let duration = &result["analysis"]["overall"]["duration"];
    assert_eq!(duration["overall_sec"], 19, "{duration}");
}

/// A Date/Time header after the first 64 KB (a very wide header) was
/// reported as missing.
#[tokio::test]
async fn regression_a_wide_header_is_read_whole() {
    let mut text: String = (0..20_000).map(|i| format!("Extra{i};")).collect();
    text.push_str("Date;Time;Speed;Revs\n");
    let filler = ";".repeat(20_000);
    for s in 0..20 {
        text.push_str(&format!("{filler}2025.02.03;10:00:{s:02}.0;30;1500\n"));
    }
    assert!(text.find("Date").unwrap() > 64 * 1024);
    let result = analyse_text(&text).await;
    assert_eq!(result["status"], "Success", "{result}");
}

async fn analyse_text(text: &str) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.csv");
    std::fs::write(&path, text).unwrap();
    let engine = fap_warehouse::analysis::engine::Engine::new(
        fap_warehouse::analysis::models::Models::embedded(),
    );
    let result = engine.analyse_files(&[path]).await.unwrap();
    fap_warehouse::analysis::message::analysis_result(&result.batch, 0)
}

/// A zip of `copies` entries that all point at the same compressed data.
fn overlapping_zip(copies: usize) -> Vec<u8> {
    let data = vec![b'1'; 1000];
    let crc = crc32(&data);
    let mut out = Vec::new();
    // One local header and its data, at offset 0.
    let name = b"a.csv";
    out.extend_from_slice(&0x04034b50u32.to_le_bytes());
    out.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&(name.len() as u16).to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(name);
    out.extend_from_slice(&data);
    // A central directory whose entries all point at offset 0.
    let start = out.len();
    for i in 0..copies {
        let name = format!("{i}.csv");
        out.extend_from_slice(&0x02014b50u32.to_le_bytes());
        out.extend_from_slice(&[20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(&[0; 12]);
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(name.as_bytes());
    }
    let size = out.len() - start;
    out.extend_from_slice(&0x06054b50u32.to_le_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&(copies as u16).to_le_bytes());
    out.extend_from_slice(&(copies as u16).to_le_bytes());
    out.extend_from_slice(&(size as u32).to_le_bytes());
    out.extend_from_slice(&(start as u32).to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// The text of an embedded SQL model, to edit for `--sql-dir`.
fn embedded_sql(name: &str) -> String {
    std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("sql")
            .join(name),
    )
    .expect("the model exists")
}

/// The payloads of the outbox's `analysis.result` messages.
fn analysis_results(messages: &[Value]) -> Vec<&Value> {
    messages
        .iter()
        .filter(|m| m["subject"] == "analysis.result")
        .map(|m| &m["payload"])
        .collect()
}

/// A log that failed for a reason outside its bytes (unreadable, changed
/// since upload, over the run's limits) kept its `Failed` result forever:
/// it was reused like any other. Such a log is now read again by each run.
#[test]
fn regression_a_failure_not_about_the_bytes_is_tried_again() {
    let w = Warehouse::new();
    w.ingest("olga@example.com", &logs(&w.path().join("in"), 2, 91));
    let out = w.ok(&["--max-log-rows", "10", "run"]);
    assert!(out.contains("(2 analysed, 0 reused, 2 failed)"), "{out}");
    let out = w.ok(&["run"]);
    assert!(out.contains("(2 analysed, 0 reused, 0 failed)"), "{out}");
    let messages = w.outbox(&out);
    let results = analysis_results(&messages);
    assert_eq!(results.len(), 2, "{results:?}");
    assert!(
        results.iter().all(|r| r["status"] == "Success"),
        "{results:?}"
    );
    // Analysed now: reused like any result.
    let out = w.ok(&["run"]);
    assert!(out.contains("(0 analysed, 2 reused, 0 failed)"), "{out}");
}

/// An analysis moved to another user stayed in its old user's bucket and
/// averages: counted twice, once for each.
#[tokio::test]
async fn regression_an_analysis_moved_to_another_user_leaves_the_first() {
    let w = Warehouse::new();
    let ids = w.ingest("pia@example.com", &logs(&w.path().join("a"), 2, 92));
    w.ingest("ravi@example.com", &logs(&w.path().join("b"), 1, 93));
    w.ok(&["run"]);
    w.move_analysis(&ids[0], "ravi@example.com").await;
    let out = w.ok(&["run"]);
    assert!(out.contains("2 users changed"), "{out}");
    let rows = w.query(&format!(
        "SELECT u.email FROM analysis a JOIN users u ON u.id = a.user_id WHERE a.analysis_id = '{}'",
        ids[0]
    ));
    assert_eq!(rows, vec![serde_json::json!({"email": "ravi@example.com"})]);
    let overall = w.query(
        "SELECT u.email, a.n_analyses FROM average a JOIN users u ON u.id = a.user_id \
         WHERE a.type = 'OVERALL' ORDER BY u.email",
    );
    assert_eq!(
        overall,
        vec![
            serde_json::json!({"email": "pia@example.com", "n_analyses": 1}),
            serde_json::json!({"email": "ravi@example.com", "n_analyses": 2}),
        ]
    );
}

/// Snapshot rows were read back by position: a `--sql-dir` model with its
/// columns in another order made the next run duplicate every analysis
/// (`snapshot_analysis`), or panicked (`snapshot_average`).
#[test]
fn regression_sql_models_may_order_their_columns_freely() {
    let w = Warehouse::new();
    let sql = w.path().join("sql");
    std::fs::create_dir_all(&sql).unwrap();
    let analysis = embedded_sql("snapshot_analysis.sql").replacen(
        "    c.analysis_id,\n    c.user_id,\n",
        "    c.user_id,\n    c.analysis_id,\n",
        1,
    );
    let average = embedded_sql("snapshot_average.sql")
        .replacen("AS month,\n    analysis_sha,\n", "AS month,\n", 1)
        .replacen(
            "SELECT\n    user_id,\n",
            "SELECT\n    analysis_sha,\n    user_id,\n",
            1,
        );
    assert_ne!(analysis, embedded_sql("snapshot_analysis.sql"));
    assert_eq!(average.matches("analysis_sha,").count(), 1, "{average}");
    assert!(average.contains("SELECT\n    analysis_sha,"), "{average}");
    std::fs::write(sql.join("snapshot_analysis.sql"), analysis).unwrap();
    std::fs::write(sql.join("snapshot_average.sql"), average).unwrap();
    let dir = sql.to_str().unwrap();

    w.ingest("sam@example.com", &logs(&w.path().join("a"), 3, 94));
    let out = w.ok(&["--sql-dir", dir, "run"]);
    let messages = w.outbox(&out);
    assert_eq!(analysis_results(&messages).len(), 3, "{out}");
    assert!(
        messages.iter().any(|m| m["subject"] == "average.result"),
        "{out}"
    );
    w.ingest("sam@example.com", &logs(&w.path().join("b"), 1, 95));
    let out = w.ok(&["--sql-dir", dir, "run"]);
    assert!(out.contains("(1 analysed, 3 reused, 0 failed)"), "{out}");
    assert_eq!(
        w.query("SELECT count(*) AS n, count(DISTINCT analysis_id) AS d FROM analysis"),
        vec![serde_json::json!({"n": 4, "d": 4})]
    );
}

/// A `latest` naming a removed snapshot, a damaged manifest or a damaged
/// Parquet file in the latest snapshot failed every later run. Now such a
/// run analyses everything again (same results: nothing is sent).
#[test]
fn regression_a_damaged_latest_snapshot_costs_one_full_run() {
    let w = Warehouse::new();
    w.ingest("tess@example.com", &logs(&w.path().join("in"), 2, 96));
    w.ok(&["run"]);
    let latest = |w: &Warehouse| {
        let id = std::fs::read_to_string(w.root().join("snapshots/latest")).unwrap();
        w.root().join("snapshots").join(id.trim())
    };
    type Damage = fn(&std::path::Path);
    let damages: [(&str, Damage); 3] = [
        ("manifest", |dir| {
            std::fs::write(dir.join("manifest.json"), "{").unwrap()
        }),
        ("parquet", |dir| {
            let part = std::fs::read_dir(dir.join("analysis"))
                .unwrap()
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .find(|p| std::fs::metadata(p).is_ok_and(|m| m.len() > 100))
                .expect("a part file with rows");
            // Unlinked first: the older snapshots keep their own copy.
            let bytes = std::fs::read(&part).unwrap();
            std::fs::remove_file(&part).unwrap();
            std::fs::write(&part, &bytes[..bytes.len() / 2]).unwrap();
        }),
        ("folder", |dir| std::fs::remove_dir_all(dir).unwrap()),
    ];
    for (what, damage) in damages {
        damage(&latest(&w));
        let (code, stdout, stderr) = w.run(&["run"]);
        assert_eq!(code, 0, "{what}: {stderr}");
        assert!(
            stderr.contains("every log is analysed again"),
            "{what}: {stderr}"
        );
        assert!(
            stdout.contains("(2 analysed, 0 reused, 0 failed)"),
            "{what}: {stdout}"
        );
        assert!(
            stdout.contains("0 analysis + 0 average messages"),
            "{what}: {stdout}"
        );
        let out = w.ok(&["run"]);
        assert!(
            out.contains("(0 analysed, 2 reused, 0 failed)"),
            "{what}: {out}"
        );
    }
}

/// A prune that died half-way left a listed snapshot with files missing.
/// Now a snapshot leaves the listing first; what is left is removed later.
#[test]
fn regression_a_prune_that_died_leaves_no_broken_snapshot() {
    let w = Warehouse::new();
    w.ingest("uma@example.com", &logs(&w.path().join("in"), 1, 97));
    w.ok(&["run"]);
    w.ok(&["run", "--force"]);
    let snapshots = w.root().join("snapshots");
    // What a prune killed after its rename leaves behind.
    let leftover = snapshots.join(".pruned-20000101T000000.000Z-dead00");
    std::fs::create_dir_all(leftover.join("analysis")).unwrap();
    std::fs::write(leftover.join("manifest.json"), "{}").unwrap();
    let listed: Value =
        serde_json::from_str(&w.ok(&["snapshots", "list", "--format", "json"])).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    let out = w.ok(&["snapshots", "prune", "--keep", "1"]);
    assert_eq!(
        out.lines().filter(|l| l.starts_with("removed")).count(),
        1,
        "{out}"
    );
    assert!(!leftover.exists(), "the leftover is removed");
    let names: Vec<String> = std::fs::read_dir(&snapshots)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(names.is_empty(), "{names:?}");
    assert_eq!(w.query("SELECT count(*) AS n FROM analysis")[0]["n"], 1);
}

/// An experiment that adds a column to a snapshot table failed its change
/// report (and `snapshots diff`): only the columns both sides have are
/// compared, the others are listed.
#[test]
fn regression_an_experiment_may_add_a_column() {
    let w = Warehouse::new();
    w.ingest("vic@example.com", &logs(&w.path().join("in"), 2, 98));
    w.ok(&["run"]);
    let sql = w.path().join("sql");
    std::fs::create_dir_all(&sql).unwrap();
    let model = embedded_sql("snapshot_analysis.sql");
    let extra = model.replacen(
        "SELECT\n",
        "SELECT\n    r.overall_distance_km * 1000 AS overall_distance_m,\n",
        1,
    );
    assert_ne!(extra, model);
    std::fs::write(sql.join("snapshot_analysis.sql"), extra).unwrap();
    let out = w.ok(&["--sql-dir", sql.to_str().unwrap(), "run", "--dry-run"]);
    let report = out
        .lines()
        .find_map(|l| l.strip_prefix("change report: "))
        .expect("a change report");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(report).unwrap()).unwrap();
    assert_eq!(
        report["analysis"]["columns_added"],
        serde_json::json!(["overall_distance_m"])
    );
    assert_eq!(report["analysis"]["changed"], 0, "{report}");
}

/// An upload while a run recorded its outbox failed with "database is
/// locked" after 5 s: an embedded catalog's writers now wait their turn.
#[tokio::test]
async fn regression_an_upload_waits_for_a_run_recording_its_outbox() {
    use fap_warehouse::catalog::{Catalog, Delivered, DeliveredAverage};
    let w = Warehouse::new();
    w.ingest("wes@example.com", &logs(&w.path().join("in"), 1, 99));
    let catalog = Catalog::connect(
        &format!("sqlite://{}", w.root().join("catalog.db").display()),
        &Default::default(),
    )
    .await
    .unwrap();
    let (user_id, _) = catalog.user_for_email("wes@example.com").await.unwrap();
    let mut held = catalog.begin_held().await.unwrap();
    let average = Delivered::Average(DeliveredAverage {
        user_id,
        kind: "OVERALL".into(),
        year: None,
        month: None,
        analysis_sha: "0".repeat(64),
        average: "{}".into(),
    });
    held.apply(&[&average], "test").await.unwrap();
    let root = w.root();
    let more = logs(&w.path().join("more"), 1, 100);
    let upload = tokio::task::spawn_blocking(move || {
        crate::common::run_bin(
            &[
                "--warehouse",
                root.to_str().unwrap(),
                "ingest",
                "--user",
                "wes@example.com",
                more[0].to_str().unwrap(),
            ],
            None,
        )
    });
    tokio::time::sleep(std::time::Duration::from_secs(7)).await;
    assert!(
        !upload.is_finished(),
        "the upload waits for the transaction"
    );
    held.commit().await.unwrap();
    let (code, stdout, stderr) = upload.await.unwrap();
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("1 new"), "{stdout}");
}

/// A log lost from the volume could not be uploaded again: its bytes were
/// "already there". The same upload now puts its file back.
#[test]
fn regression_uploading_a_lost_log_again_restores_it() {
    let w = Warehouse::new();
    let files = logs(&w.path().join("in"), 1, 101);
    let ids = w.ingest("xena@example.com", &files);
    let path = w.root().join(format!("volume/{}.csv", ids[0]));
    let original = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(
        w.ingest("xena@example.com", &files),
        ids,
        "the same analysis"
    );
    assert_eq!(std::fs::read(&path).unwrap(), original);
    let out = w.ok(&["run"]);
    assert!(out.contains("(1 analysed, 0 reused, 0 failed)"), "{out}");
}

/// A user with a log gone from the volume was "changed" by every run after
/// a full one: their averages recomputed and their files rewritten each
/// night. Now only a change in what consumers hold of such logs counts.
#[test]
fn regression_a_gone_log_does_not_change_its_user_every_night() {
    let w = Warehouse::new();
    let ids = w.ingest("yann@example.com", &logs(&w.path().join("in"), 3, 102));
    w.ok(&["run"]);
    std::fs::remove_file(w.root().join(format!("volume/{}.csv", ids[0]))).unwrap();
    let out = w.ok(&["run", "--full"]);
    assert!(out.contains("(2 analysed, 0 reused, 0 failed)"), "{out}");
    let out = w.ok(&["run"]);
    assert!(out.contains("(0 analysed, 2 reused, 0 failed)"), "{out}");
    let id = std::fs::read_to_string(w.root().join("snapshots/latest")).unwrap();
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(
            w.root()
                .join("snapshots")
                .join(id.trim())
                .join("manifest.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["counts"]["users_changed"], 0, "{manifest}");
    for (table, stats) in manifest["tables"].as_object().unwrap() {
        assert_eq!(stats["files_written"], 0, "{table}: {manifest}");
    }
    assert_eq!(
        w.query("SELECT n_analyses FROM average WHERE type = 'OVERALL'"),
        vec![serde_json::json!({"n_analyses": 3})],
        "the gone log still counts"
    );
}

/// Zipping a folder in the Finder adds `__MACOSX/._<name>.csv` copies (they
/// became Failed logs) and a `.DS_Store` (it refused the whole upload).
#[test]
fn regression_files_a_system_adds_to_a_zip_are_skipped() {
    let w = Warehouse::new();
    let log = std::fs::read(&logs(&w.path().join("in"), 1, 88)[0]).unwrap();
    let zip = w.path().join("finder.zip");
    zip_of(
        &zip,
        &[
            ("trip/drive.csv", &log),
            (
                "__MACOSX/trip/._drive.csv",
                b"\0\x05\x16\x07\0\x02\0\0Mac OS X",
            ),
            ("trip/.DS_Store", b"\0\0\0\x01Bud1"),
            ("trip/Thumbs.db", b"\xd0\xcf\x11\xe0"),
        ],
    );
    let out = w.ok(&["ingest", "--user", "ann@example.com", zip.to_str().unwrap()]);
    assert!(out.contains("1 new"), "{out}");
    assert_eq!(w.volume_files(), 1);
    let out = w.ok(&["run"]);
    assert!(out.contains("0 failed"), "{out}");
}

/// Two entries of one name in a zip became one log: the zip reader keeps
/// one entry per name, and the other vanished without a word.
#[test]
fn regression_a_zip_holding_one_name_twice_is_refused() {
    let w = Warehouse::new();
    let files = logs(&w.path().join("in"), 2, 89);
    let (a, b) = (
        std::fs::read(&files[0]).unwrap(),
        std::fs::read(&files[1]).unwrap(),
    );
    let zip = w.path().join("twice.zip");
    // The zip writer refuses a repeated name: write two, then rename one in
    // place (local header and directory; the name is not in the checksum).
    zip_of(&zip, &[("DUPLICATE-A.csv", &a), ("DUPLICATE-B.csv", &b)]);
    let mut bytes = std::fs::read(&zip).unwrap();
    let (from, to) = (b"DUPLICATE-B.csv", b"DUPLICATE-A.csv");
    let mut renamed = 0;
    for at in 0..bytes.len() - from.len() {
        if &bytes[at..at + from.len()] == from {
            bytes[at..at + from.len()].copy_from_slice(to);
            renamed += 1;
        }
    }
    assert_eq!(
        renamed, 2,
        "the name is in the local header and the directory"
    );
    std::fs::write(&zip, bytes).unwrap();
    let (code, _, stderr) = w.run(&["ingest", "--user", "bo@example.com", zip.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("more than one entry named \"DUPLICATE-A.csv\""),
        "{stderr}"
    );
    assert_eq!(w.volume_files(), 0);
}

/// With its catalog out of reach, prune went on without the run lock: a run
/// holding the lock could lose a snapshot under it.
#[test]
fn regression_prune_refuses_when_the_catalog_cannot_be_reached() {
    let w = Warehouse::new();
    w.ingest("cy@example.com", &logs(&w.path().join("in"), 1, 90));
    w.ok(&["run"]);
    w.ingest("cy@example.com", &logs(&w.path().join("in2"), 1, 91));
    w.ok(&["run"]);
    let snapshots = || {
        std::fs::read_dir(w.root().join("snapshots"))
            .unwrap()
            .count()
    };
    let before = snapshots();
    let (code, _, stderr) = w.run(&[
        "--catalog",
        "postgres://nobody@127.0.0.1:1/none",
        "snapshots",
        "prune",
        "--keep",
        "1",
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("cannot be reached"), "{stderr}");
    assert_eq!(snapshots(), before, "nothing removed without the lock");
    // With its catalog, the same prune removes the older snapshot.
    let out = w.ok(&["snapshots", "prune", "--keep", "1"]);
    assert!(out.contains("removed"), "{out}");
    assert!(snapshots() < before);
}

/// A new log with no speed band (an idle drive: parked while the engine
/// runs, as in a forced regeneration) for a user whose snapshot file held
/// band rows stopped the run, and every run after it: the table's schema
/// lacked its data dictionary, and the user's kept rows could not take it.
#[test]
fn regression_a_new_log_without_speed_bands_does_not_stop_the_run() {
    let w = Warehouse::new();
    w.ingest("ida@example.com", &logs(&w.path().join("in"), 1, 92));
    w.ok(&["run"]);
    let bands = || w.query("SELECT COUNT(*) AS n FROM fuel_by_speed_band")[0]["n"].clone();
    let before = bands();
    assert_ne!(
        before,
        serde_json::json!(0),
        "the first log has speed bands"
    );
    let mut idle = b"Date;Time;Revs;Speed;InjFlow;REGEN;\n".to_vec();
    for second in 0..120 {
        idle.extend(
            format!(
                "2025.03.01;10:{:02}:{:02}.0;800;0;3;0;\n",
                second / 60,
                second % 60
            )
            .bytes(),
        );
    }
    let path = w.path().join("idle.csv");
    std::fs::write(&path, idle).unwrap();
    w.ingest("ida@example.com", &[path]);
    let out = w.ok(&["run"]);
    assert!(out.contains("(1 analysed, 1 reused, 0 failed)"), "{out}");
    assert_eq!(bands(), before, "the first log's bands are kept");
    let analyses = w.query("SELECT COUNT(*) AS n FROM analysis WHERE status = 'Success'");
    assert_eq!(analyses[0]["n"], serde_json::json!(2));
}
