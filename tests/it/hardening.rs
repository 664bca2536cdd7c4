//! Regressions from the fault probe (issue "Hardening"): each test is named
//! after what broke, and fails on the code before its fix.

use crate::batch_job::{Warehouse, logs};
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
