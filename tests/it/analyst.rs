//! The analyst's side, through the real binary: a schema that needs no
//! quotes and is documented, `query` as datafusion-cli does it, and the
//! feedback a person expects.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::batch_job::{Warehouse, logs, zip_of};
use crate::common::run_bin;
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;

fn warehouse() -> Warehouse {
    let w = Warehouse::new();
    w.ingest("ana@example.com", &logs(&w.path().join("in"), 3, 91));
    w.ok(&["run"]);
    w
}

#[test]
fn snapshot_tables_are_snake_case_typed_and_documented() {
    let w = warehouse();
    let latest = std::fs::read_to_string(w.root().join("snapshots/latest")).unwrap();
    let dir = w.root().join("snapshots").join(latest.trim());
    let mut types = std::collections::HashMap::new();
    for table in [
        "analysis",
        "average",
        "fuel_by_speed_band",
        "average_fuel_by_speed_band",
    ] {
        let file = std::fs::read_dir(dir.join(table))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let reader =
            ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(file).unwrap()).unwrap();
        let schema = reader.schema().clone();
        for field in schema.fields() {
            let name = field.name();
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{table}.{name} needs quotes"
            );
            assert!(
                field
                    .metadata()
                    .get("description")
                    .is_some_and(|d| !d.is_empty()),
                "{table}.{name} has no description"
            );
            if let Some(previous) = types.insert(name.clone(), field.data_type().clone()) {
                assert_eq!(
                    &previous,
                    field.data_type(),
                    "{name}: one type per metric across tables"
                );
            }
        }
        if table == "analysis" {
            assert_eq!(
                schema.field_with_name("log_date").unwrap().data_type(),
                &DataType::Date32
            );
            assert_eq!(
                schema.field_with_name("started_at").unwrap().data_type(),
                &DataType::Timestamp(TimeUnit::Microsecond, None)
            );
            assert_eq!(
                schema.field_with_name("log_year").unwrap().data_type(),
                &DataType::Int32
            );
            assert_eq!(
                schema
                    .field_with_name("driving_speed_max_kmh")
                    .unwrap()
                    .data_type(),
                &DataType::Int64
            );
            assert!(
                schema.field_with_name("fapRegen").is_err()
                    && schema.field_with_name("fap_regen").is_ok()
            );
            assert!(
                schema
                    .fields()
                    .iter()
                    .all(|f| !f.name().starts_with("band_")),
                "bands are a long table"
            );
        }
    }
    assert_eq!(types["fap_pressure_min_mbar"], DataType::Float64);
    assert_eq!(types["fuel_consumption_overall_total_l"], DataType::Float64);
    // The users table joins without quotes either.
    let rows = w.query("SELECT u.email, count(*) AS logs FROM analysis a JOIN users u ON u.id = a.user_id GROUP BY u.email");
    assert_eq!(
        rows,
        vec![serde_json::json!({"email": "ana@example.com", "logs": 3})]
    );
}

#[test]
fn query_reads_sql_from_c_f_stdin_and_runs_several_statements() {
    let w = warehouse();
    let root = w.root();
    let root = root.to_str().unwrap();
    let out = w.ok(&[
        "query",
        "--format",
        "csv",
        "-c",
        "SELECT 1 AS a; SELECT 2 AS b",
    ]);
    assert_eq!(out, "a\n1\nb\n2\n");
    let file = w.path().join("q.sql");
    std::fs::write(&file, "SELECT count(*) AS n FROM analysis;\n").unwrap();
    let out = w.ok(&["query", "--format", "csv", "-f", file.to_str().unwrap()]);
    assert_eq!(out, "n\n3\n");
    let (code, out, err) = run_bin(
        &["--warehouse", root, "query", "--format", "csv", "-"],
        Some("SELECT 3 AS c;"),
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "c\n3\n");
    let out = w.ok(&["query", "SHOW TABLES"]);
    for table in [
        "analysis",
        "average",
        "fuel_by_speed_band",
        "average_fuel_by_speed_band",
        "users",
    ] {
        assert!(out.contains(table), "{out}");
    }
    let out = w.ok(&["query", "-c", "DESCRIBE fuel_by_speed_band"]);
    assert!(out.contains("distance_km"), "{out}");
}

#[test]
fn query_formats_show_nulls() {
    let w = warehouse();
    let sql = "SELECT 1 AS n, CAST(NULL AS VARCHAR) AS missing, 'x' AS s";
    let table = w.ok(&["query", "-c", sql]);
    assert!(table.contains("| NULL"), "{table}");
    assert!(table.contains("| 1 |"), "numbers right-aligned: {table}");
    assert_eq!(
        w.ok(&["query", "--format", "csv", "-c", sql]),
        "n,missing,s\n1,,x\n"
    );
    assert_eq!(
        w.ok(&["query", "--format", "tsv", "-c", sql]),
        "n\tmissing\ts\n1\t\tx\n"
    );
    let json: Value =
        serde_json::from_str(&w.ok(&["query", "--format", "json", "-c", sql])).unwrap();
    assert_eq!(
        json,
        serde_json::json!([{"n": 1, "missing": null, "s": "x"}]),
        "null keys kept"
    );
    let ndjson = w.ok(&["query", "--format", "ndjson", "-c", sql]);
    assert_eq!(ndjson.trim(), r#"{"n":1,"missing":null,"s":"x"}"#);
    let markdown = w.ok(&["query", "--format", "markdown", "-c", sql]);
    assert!(
        markdown.starts_with("| n | missing | s |\n|---:|---|---|\n| 1 | NULL | x |"),
        "{markdown}"
    );
    // Wide cells are cut in tables, whole in CSV.
    let wide = w.ok(&["query", "-c", "SELECT analysis_json FROM analysis LIMIT 1"]);
    assert!(wide.lines().all(|l| l.chars().count() < 120), "{wide}");
    let (_, _, err) = w.run(&["query", "-c", "SELECT 1"]);
    assert!(err.contains("1 row in"), "footer on stderr: {err}");
}

#[test]
fn query_errors_are_short_and_helpful() {
    let w = warehouse();
    let (code, out, err) = w.run(&["query", "-c", "SELECT log_dat FROM analysis"]);
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert!(err.len() < 1024, "{} bytes: {err}", err.len());
    assert!(err.contains("log_date"), "suggests the close name: {err}");
    let (code, _, err) = w.run(&["query", "-c", "SELECT * FROM analyses"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("tables:") && err.contains("fuel_by_speed_band"),
        "{err}"
    );
    assert_eq!(err.matches("analyses").count(), 1, "each cause once: {err}");
}

/// `query … | head -1` printed "Broken pipe" and exited 1.
#[test]
fn regression_a_closed_pipe_is_a_quiet_success() {
    let w = warehouse();
    let script = format!(
        "set -o pipefail; '{}' --warehouse '{}' query --format csv -c 'SELECT * FROM unnest(range(200000)) AS t(v)' | head -1 >/dev/null",
        env!("CARGO_BIN_EXE_fap-warehouse"),
        w.root().display()
    );
    let output = Command::new("bash").args(["-c", &script]).output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("error") && !stderr.to_lowercase().contains("broken pipe"),
        "{stderr}"
    );
}

#[test]
fn redirected_stderr_has_no_escape_codes() {
    let w = Warehouse::new();
    w.ingest("bo@example.com", &logs(&w.path().join("in"), 1, 92));
    let output = Command::new(env!("CARGO_BIN_EXE_fap-warehouse"))
        .args(["--warehouse", w.root().to_str().unwrap(), "run"])
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("INFO"), "{stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "escape codes in redirected stderr: {stderr}"
    );
}

#[test]
fn ingest_checks_the_email_and_says_what_it_did() {
    let w = Warehouse::new();
    let files = logs(&w.path().join("in"), 2, 93);
    let (code, _, err) = w.run(&[
        "ingest",
        "--user",
        "not-an-email",
        files[0].to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("not an email"), "{err}");
    assert_eq!(w.volume_files(), 0);
    let out = w.ok(&[
        "ingest",
        "--user",
        "cy@example.com",
        files[0].to_str().unwrap(),
        files[1].to_str().unwrap(),
    ]);
    assert!(
        out.ends_with("2 new, 0 already there, user cy@example.com created\n"),
        "{out}"
    );
    let out = w.ok(&[
        "ingest",
        "--user",
        "cy@example.com",
        files[0].to_str().unwrap(),
    ]);
    assert!(
        out.ends_with("0 new, 1 already there, user cy@example.com existing\n"),
        "{out}"
    );
}

/// A log given twice in one call, and again inside a zip, is one upload:
/// one id, one "new", one file on the volume.
#[test]
fn ingest_of_the_same_bytes_twice_in_one_call_is_one_upload() {
    let w = Warehouse::new();
    let file = logs(&w.path().join("in"), 1, 94).remove(0);
    let zip = w.path().join("again.zip");
    zip_of(&zip, &[("again.csv", &std::fs::read(&file).unwrap())]);
    let (file, zip) = (file.to_str().unwrap(), zip.to_str().unwrap());
    let out = w.ok(&["ingest", "--user", "di@example.com", file, file, zip]);
    assert!(
        out.ends_with("1 new, 2 already there, user di@example.com created\n"),
        "{out}"
    );
    let ids: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(id, _)| id)
        .collect();
    assert_eq!(ids.len(), 3, "{out}");
    assert!(ids.iter().all(|id| *id == ids[0]), "one analysis: {out}");
    assert_eq!(volume_ids(&w), [ids[0].to_string()].into());
    assert_eq!(catalog_rows(&w).len(), 1);
}

/// One call of more logs than a batch holds (with a log given again in the
/// next batch, and twice in it) records each log once, and the catalog's
/// rows are exactly the files on the volume, with their bytes' sha256.
#[test]
fn ingest_of_more_logs_than_a_batch_records_each_once() {
    use sha2::Digest;
    let w = Warehouse::new();
    let count = fap_warehouse::ingest::BATCH_LOGS + 100;
    let mut files = fap_warehouse::cli::gen_logs(&w.path().join("in"), count, 600, 95).unwrap();
    files.push(files[0].clone());
    files.push(files[count - 1].clone());
    let mut args = vec!["ingest", "--user", "ed@example.com"];
    args.extend(files.iter().map(|f| f.to_str().unwrap()));
    let out = w.ok(&args);
    assert!(
        out.ends_with(&format!(
            "{count} new, 2 already there, user ed@example.com created\n"
        )),
        "{}",
        out.lines().last().unwrap_or_default()
    );
    let ids: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(id, _)| id)
        .collect();
    assert_eq!(ids.len(), count + 2);
    let distinct: std::collections::HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(distinct.len(), count, "distinct ids");
    assert_eq!(
        ids[count], ids[0],
        "the first batch's log, again in the second"
    );
    assert_eq!(ids[count + 1], ids[count - 1]);
    let rows = catalog_rows(&w);
    assert_eq!(rows.len(), count, "one catalog row per log");
    assert_eq!(
        rows.keys()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>(),
        volume_ids(&w),
        "the catalog names exactly the files on the volume"
    );
    for (id, file) in ids.iter().zip(&files) {
        let stored = std::fs::read(w.root().join(format!("volume/{id}.csv"))).unwrap();
        assert_eq!(stored, std::fs::read(file).unwrap(), "{id}");
        assert_eq!(
            rows[*id],
            format!("{:x}", sha2::Sha256::digest(&stored)),
            "{id}"
        );
    }
}

/// The analysis ids of the logs on the volume.
fn volume_ids(w: &Warehouse) -> std::collections::BTreeSet<String> {
    std::fs::read_dir(w.root().join("volume"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|name| name.strip_suffix(".csv").map(str::to_string))
        .collect()
}

/// `id -> sha256` of every analysis in the warehouse's catalog.
fn catalog_rows(w: &Warehouse) -> std::collections::HashMap<String, String> {
    let url = format!("sqlite://{}", w.root().join("catalog.db").display());
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        let rows: Vec<(String, String)> = sqlx::query_as("SELECT id, sha256 FROM fap_analysis")
            .fetch_all(&pool)
            .await
            .unwrap();
        pool.close().await;
        rows.into_iter().collect()
    })
}

#[test]
fn a_folder_without_a_warehouse_is_said_so() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("nothing-here");
    let absolute = empty.to_str().unwrap();
    for args in [vec!["run"], vec!["query", "-c", "SELECT 1"]] {
        let mut full = vec!["--warehouse", absolute];
        full.extend(args.iter().copied());
        let (code, _, err) = run_bin(&full, None);
        assert_eq!(code, 1, "{args:?}");
        assert!(err.contains(absolute), "the absolute path: {err}");
        assert!(
            err.contains("no warehouse") || err.contains("no snapshot"),
            "{err}"
        );
    }
    assert!(!empty.exists(), "nothing was created");
    let (code, out, _) = run_bin(&["--warehouse", absolute, "snapshots", "list"], None);
    assert_eq!(code, 0);
    assert!(out.starts_with("no snapshots in "), "{out}");
}

/// The REPL, through a pseudo-terminal (`script`).
#[test]
fn the_repl_answers_on_a_terminal() {
    let w = warehouse();
    let command = format!(
        "'{}' --warehouse '{}' query",
        env!("CARGO_BIN_EXE_fap-warehouse"),
        w.root().display()
    );
    let mut child = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("HOME", w.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script (util-linux) runs");
    let mut stdin = child.stdin.take().unwrap();
    // A line editor discards what was typed before it took the terminal:
    // type as a person would, after the prompt.
    let pause = || std::thread::sleep(std::time::Duration::from_millis(1500));
    pause();
    stdin
        .write_all(b"SELECT count(*) AS logs_in_repl\n")
        .unwrap();
    pause();
    stdin.write_all(b"  FROM analysis;\n").unwrap();
    pause();
    stdin.write_all(b"\\q\n").unwrap();
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("logs_in_repl"), "{text}");
    assert!(text.contains(" 3 |"), "{text}");
    assert!(
        w.path().join(".fap_warehouse_history").exists(),
        "history kept"
    );
}

/// docs/columns.md is what `describe` prints, and `describe` covers every column.
#[test]
fn describe_prints_the_dictionary() {
    let (code, out, _) = run_bin(&["describe", "--format", "markdown"], None);
    assert_eq!(code, 0);
    let file =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/columns.md")).unwrap();
    assert_eq!(out, file);
    let (code, out, _) = run_bin(&["describe", "average"], None);
    assert_eq!(code, 0);
    assert!(out.contains("weighting: weighted by driving time"), "{out}");
    let (code, _, err) = run_bin(&["describe", "nope"], None);
    assert_eq!(code, 1);
    assert!(err.contains("tables:"), "{err}");
}
