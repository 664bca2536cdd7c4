//! The job against the backend's real PostgreSQL (127.0.0.1:5432, database
//! `test`) and NATS: the backend's tables from the project's copy of the
//! schema in a schema of this test's own, rows and files as the backend
//! leaves them, `run` publishes, a small consumer applies the results as the
//! backend does, and the next run publishes nothing.

use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::{Connection, PgConnection};
use std::collections::HashSet;

use crate::common::NATS;

fn base_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A fresh schema holding the backend's tables; returns its URL.
async fn backend_schema(name: &str) -> (PgConnection, String) {
    let mut conn = PgConnection::connect(&base_url())
        .await
        .expect("PostgreSQL is running on 127.0.0.1:5432");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}; SET search_path TO {name};"
    )))
    .execute(&mut conn)
    .await
    .expect("schema");
    let ddl = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/jobs/deploy/backend-schema.sql"
    ))
    .expect("schema file");
    sqlx::raw_sql(sqlx::AssertSqlSafe(ddl))
        .execute(&mut conn)
        .await
        .expect("backend tables");
    let url = format!("{}?options=-c%20search_path%3D{name}", base_url());
    (conn, url)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs the binary while listening; returns (exit code, output, our messages).
async fn run_listening(
    args: Vec<String>,
    ids: &HashSet<String>,
    user: &str,
) -> (i32, String, Vec<(String, Value)>) {
    let (code, out, all) = crate::common::run_while_listening(args).await;
    let ours = |p: &Value| {
        ids.contains(p["analysisId"].as_str().unwrap_or_default()) || p["userId"] == user
    };
    (
        code,
        out,
        all.into_iter().filter(|(_, p)| ours(p)).collect(),
    )
}

/// What the backend does with a result.
async fn apply(conn: &mut PgConnection, subject: &str, p: &Value) {
    if subject == "analysis.result" {
        sqlx::query(
            "UPDATE fap_analysis SET status = $1::text::fap_analysis_status_enum, message = $2, analysis = $3::jsonb, \
             fap_regen = $4, log_date = $5::date, log_year = extract(year from $5::date), \
             log_month = extract(month from $5::date), distance = $6 WHERE id = $7::uuid",
        )
        .bind(p["status"].as_str())
        .bind(p["message"].as_str())
        .bind(p["analysis"].to_string())
        .bind(p["fapRegen"].as_bool())
        .bind(p["logDate"].as_str())
        .bind(p["distance"].as_f64())
        .bind(p["analysisId"].as_str())
        .execute(&mut *conn)
        .await
        .expect("apply analysis");
    } else {
        sqlx::query(
            "INSERT INTO fap_average (user_id, type, year, month, status, message, sha256, average) \
             VALUES ($1::uuid, $2::text::fap_average_type_enum, $3, $4, $5::text::fap_average_status_enum, $6, $7, $8::jsonb) \
             ON CONFLICT (user_id, type, year, month) DO UPDATE SET status = EXCLUDED.status, \
             message = EXCLUDED.message, sha256 = EXCLUDED.sha256, average = EXCLUDED.average",
        )
        .bind(p["userId"].as_str())
        .bind(p["type"].as_str())
        .bind(p["year"].as_i64().map(|v| v as i32))
        .bind(p["month"].as_i64().map(|v| v as i32))
        .bind(p["status"].as_str())
        .bind(p["message"].as_str())
        .bind(p["analysisSha"].as_str())
        .bind(p["average"].to_string())
        .execute(&mut *conn)
        .await
        .expect("apply average");
    }
}

#[tokio::test]
async fn full_cycle_with_the_backends_database() {
    let schema = format!("fapw_{}", uuid::Uuid::new_v4().simple());
    let (mut conn, url) = backend_schema(&schema).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let volume = dir.path().join("volume");
    std::fs::create_dir_all(&volume).expect("volume");
    let logs = fap_warehouse::cli::gen_logs(&dir.path().join("in"), 3, 20_000, 51).expect("logs");

    let user: String = sqlx::query_scalar("INSERT INTO users (email, password_hash) VALUES ('pg@example.com', 'x') RETURNING id::text")
        .fetch_one(&mut conn)
        .await
        .expect("user");
    let mut ids = HashSet::new();
    for log in &logs {
        let bytes = std::fs::read(log).expect("log");
        let id: String = sqlx::query_scalar(
            "INSERT INTO fap_analysis (user_id, file_name, sha256, message) VALUES ($1::uuid, $2, $3, 'Analysis pending') RETURNING id::text",
        )
        .bind(&user)
        .bind(log.file_name().and_then(|n| n.to_str()))
        .bind(hex(&Sha256::digest(&bytes)))
        .fetch_one(&mut conn)
        .await
        .expect("row");
        std::fs::write(volume.join(format!("{id}.csv")), &bytes).expect("volume file");
        ids.insert(id);
    }
    let warehouse = dir.path().join("wh").to_string_lossy().into_owned();
    let args = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = [
            "--warehouse",
            &warehouse,
            "--volume",
            volume.to_str().unwrap(),
            "--catalog",
            &url,
            "--nats",
            NATS,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };

    let (code, out, got) = run_listening(args(&["run"]), &ids, &user).await;
    assert_eq!(code, 0, "{out}");
    let analyses: Vec<&(String, Value)> =
        got.iter().filter(|(s, _)| s == "analysis.result").collect();
    assert_eq!(analyses.len(), 3, "{got:?}");
    assert!(got.iter().filter(|(s, _)| s == "average.result").count() >= 3);
    // The job never writes the backend's tables.
    let processing: i64 =
        sqlx::query_scalar("SELECT count(*) FROM fap_analysis WHERE status = 'Processing'")
            .fetch_one(&mut conn)
            .await
            .expect("count");
    assert_eq!(processing, 3);

    // The run is recorded, with its counts, in fap-warehouse's own schema.
    let snapshot = out
        .lines()
        .find_map(|l| l.strip_prefix("snapshot "))
        .and_then(|l| l.split(':').next())
        .expect("summary line")
        .to_string();
    let (status, logs, messages): (String, Option<i32>, Option<i32>) = sqlx::query_as(
        "SELECT status, logs, analysis_messages FROM fap_warehouse.runs WHERE id = $1",
    )
    .bind(&snapshot)
    .fetch_one(&mut conn)
    .await
    .expect("run record");
    assert_eq!(
        (status.as_str(), logs, messages),
        ("done", Some(3), Some(3))
    );

    for (subject, payload) in &got {
        apply(&mut conn, subject, payload).await;
    }
    let (code, out, got) = run_listening(args(&["run"]), &ids, &user).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        got.is_empty(),
        "the backend holds everything: nothing to send, got {got:?}"
    );

    // Two instances, one run: while another session holds the run lock, a run is skipped.
    let mut holder = PgConnection::connect(&base_url()).await.expect("connect");
    let held: bool =
        sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext('fap-warehouse:run'))")
            .fetch_one(&mut holder)
            .await
            .expect("lock");
    assert!(held);
    let refs = args(&["run"]);
    let refs: Vec<&str> = refs.iter().map(String::as_str).collect();
    let (code, _, err) = crate::common::run_bin(&refs, None);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("skipped"), "{err}");
    drop(holder);

    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&mut conn)
        .await
        .expect("cleanup");
}

#[test]
fn an_unreachable_database_is_a_clear_error_and_no_snapshot() {
    let dir = tempfile::tempdir().expect("temp dir");
    let wh = dir.path().join("wh");
    let (code, _, err) = crate::common::run_bin(
        &[
            "--warehouse",
            wh.to_str().unwrap(),
            "--catalog",
            "postgres://postgres@127.0.0.1:1/test",
            "run",
        ],
        None,
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("catalog"), "{err}");
    assert!(!wh.join("snapshots/latest").exists());
}
