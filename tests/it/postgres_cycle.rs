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
    let dir = tempfile::tempdir().expect("temp dir");
    let volume = dir.path().join("volume");
    let (mut conn, url, user, ids) = uploaded(&schema, &volume, 3, 51).await;
    let warehouse = dir.path().join("wh").to_string_lossy().into_owned();
    let state = format!("{schema}_state");
    let args = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = [
            "--warehouse",
            &warehouse,
            "--volume",
            volume.to_str().unwrap(),
            "--catalog",
            &url,
            "--state-schema",
            &state,
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
    let (status, logs, messages): (String, Option<i32>, Option<i32>) =
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT status, logs, analysis_messages FROM {state}.runs WHERE id = $1"
        )))
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

    // What the backend holds of one analysis changes after the job
    // remembered the hash of its old text: that one is sent again, and the
    // others, whose remembered hashes stand, are not.
    let changed = ids.iter().min().expect("an analysis").clone();
    sqlx::query(
        "UPDATE fap_analysis SET analysis = jsonb_set(analysis, '{overall}', '{}'::jsonb) WHERE id = $1::uuid",
    )
    .bind(&changed)
    .execute(&mut conn)
    .await
    .expect("change a held object");
    let (code, out, got) = run_listening(args(&["run"]), &ids, &user).await;
    assert_eq!(code, 0, "{out}");
    let sent: Vec<&str> = got
        .iter()
        .map(|(subject, p)| {
            assert_eq!(subject, "analysis.result", "{got:?}");
            p["analysisId"].as_str().unwrap_or_default()
        })
        .collect();
    assert_eq!(sent, [changed.as_str()], "{out}");
    for (subject, payload) in &got {
        apply(&mut conn, subject, payload).await;
    }

    // Two instances, one run: while another session holds the run lock, a run is skipped.
    let mut holder = PgConnection::connect(&base_url()).await.expect("connect");
    let held: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1))")
        .bind(format!("fap-warehouse:run:{state}"))
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

    drop_schemas(&mut conn, &schema, &state).await;
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

/// A backend schema with one user and `n` uploaded logs on `volume`;
/// returns (connection, catalog URL, user id, analysis ids).
async fn uploaded(
    schema: &str,
    volume: &std::path::Path,
    n: usize,
    seed: u64,
) -> (PgConnection, String, String, HashSet<String>) {
    let (mut conn, url) = backend_schema(schema).await;
    std::fs::create_dir_all(volume).expect("volume");
    let logs = fap_warehouse::cli::gen_logs(&volume.join("../in"), n, 20_000, seed).expect("logs");
    let user: String = sqlx::query_scalar(
        "INSERT INTO users (email, password_hash) VALUES ('driver@example.com', 'x') RETURNING id::text",
    )
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
    (conn, url, user, ids)
}

/// Regression: a run whose lock session was cut (and whose lock another run
/// then took) used to publish and deliver anyway, exit 0, and leave its
/// record `running` forever. Now it stops before publishing with "run lock
/// lost", records the failure, and the next run marks stale rows abandoned.
#[tokio::test]
async fn regression_a_lost_run_lock_stops_the_run_before_publishing() {
    use fap_warehouse::analysis::engine::Engine;
    use fap_warehouse::analysis::models::Models;
    use fap_warehouse::catalog::lock::{RunLock, advisory_key};
    use fap_warehouse::catalog::{Catalog, StateSchema};
    use fap_warehouse::job::{self, RunConfig};
    use fap_warehouse::volume::Volume;

    let schema = format!("fapw_{}", uuid::Uuid::new_v4().simple());
    let state = StateSchema::parse(&format!("{schema}_state")).expect("name");
    let dir = tempfile::tempdir().expect("temp dir");
    let volume = dir.path().join("volume");
    let (mut conn, url, _, _) = uploaded(&schema, &volume, 2, 61).await;
    let warehouse = dir.path().join("wh");

    let catalog = Catalog::connect(&url, &state).await.expect("catalog");
    let lock = RunLock::try_take(&catalog, &warehouse)
        .await
        .expect("lock")
        .expect("free");
    // The lock's session is cut, and another session takes the lock.
    let key = advisory_key(&state);
    let cut: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' \
         AND objid = (hashtext($1)::bigint & 4294967295)::oid",
    )
    .bind(&key)
    .fetch_all(&mut conn)
    .await
    .expect("terminate");
    assert_eq!(cut, vec![true], "exactly the lock's session was cut");
    let mut other = PgConnection::connect(&base_url()).await.expect("connect");
    let mut taken = false;
    for _ in 0..50 {
        taken = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1))")
            .bind(&key)
            .fetch_one(&mut other)
            .await
            .expect("lock");
        if taken {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(taken, "the lock is free once its session is gone");

    let config = RunConfig::new(warehouse.clone(), Volume::local(&volume).expect("volume"));
    let engine = Engine::new(Models::embedded());
    let err = job::run(&engine, &catalog, &lock, &config)
        .await
        .expect_err("a run without its lock must stop");
    assert!(err.to_string().contains("run lock lost"), "{err}");
    assert!(
        !warehouse.join("snapshots/latest").exists(),
        "nothing published"
    );
    // The outbox folder may exist (a run starts its outbox before the
    // lock's last check), but holds no file, not even a temporary one.
    let outbox_files = std::fs::read_dir(warehouse.join("outbox")).map_or(0, |d| d.count());
    assert_eq!(outbox_files, 0, "nothing delivered");
    let (status, error): (String, Option<String>) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT status, error FROM {state}.runs"
    )))
    .fetch_one(&mut conn)
    .await
    .expect("run record");
    assert_eq!(status, "failed");
    assert!(error.unwrap_or_default().contains("run lock lost"));
    drop(other);

    // A row left `running` by a killed run is marked abandoned by the next.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {state}.runs (id, status) VALUES ('killed-run', 'running')"
    )))
    .execute(&mut conn)
    .await
    .expect("stale row");
    let (code, _, err) = crate::common::run_bin(
        &[
            "--warehouse",
            warehouse.to_str().unwrap(),
            "--volume",
            volume.to_str().unwrap(),
            "--catalog",
            &url,
            "--state-schema",
            state.name(),
            "run",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let stale: String = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT status FROM {state}.runs WHERE id = 'killed-run'"
    )))
    .fetch_one(&mut conn)
    .await
    .expect("stale row");
    assert_eq!(stale, "abandoned");
    drop_schemas(&mut conn, &schema, &state.to_string()).await;
}

/// Regression: a role that could only read the backend's tables could not
/// `run` (the migrations wanted CREATE on the database). With SELECT on the
/// three tables and its own state schema — the README's GRANTs, nothing
/// more — a run succeeds and delivers.
#[tokio::test]
async fn regression_a_least_privilege_role_runs() {
    let schema = format!("fapw_{}", uuid::Uuid::new_v4().simple());
    let state = format!("{schema}_state");
    let role = format!("{schema}_job");
    let dir = tempfile::tempdir().expect("temp dir");
    let volume = dir.path().join("volume");
    let (mut conn, _, user, ids) = uploaded(&schema, &volume, 2, 67).await;
    // The README's GRANTs, for this test's schemas.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE ROLE {role} LOGIN;
         GRANT USAGE ON SCHEMA {schema} TO {role};
         GRANT SELECT ON {schema}.users, {schema}.fap_analysis, {schema}.fap_average TO {role};
         CREATE SCHEMA {state} AUTHORIZATION {role};"
    )))
    .execute(&mut conn)
    .await
    .expect("role");
    let url = format!("postgres://{role}@127.0.0.1:5432/test?options=-c%20search_path%3D{schema}");
    let args: Vec<String> = [
        "--warehouse",
        dir.path().join("wh").to_str().unwrap(),
        "--volume",
        volume.to_str().unwrap(),
        "--catalog",
        &url,
        "--state-schema",
        &state,
        "--nats",
        NATS,
        "run",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (code, out, got) = run_listening(args, &ids, &user).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        got.iter().filter(|(s, _)| s == "analysis.result").count(),
        2,
        "{got:?}"
    );
    // The role really is read-only on the backend's tables.
    let mut as_role = PgConnection::connect(&url).await.expect("connect as role");
    let denied = sqlx::query("UPDATE fap_analysis SET message = 'x'")
        .execute(&mut as_role)
        .await
        .expect_err("no UPDATE right");
    assert!(denied.to_string().contains("permission denied"), "{denied}");
    drop(as_role);
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA {schema} CASCADE; DROP SCHEMA {state} CASCADE; DROP ROLE {role}"
    )))
    .execute(&mut conn)
    .await
    .expect("cleanup");
}

/// Drops a test's backend schema and fap-warehouse's state schema.
async fn drop_schemas(conn: &mut PgConnection, schema: &str, state: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA {schema} CASCADE; DROP SCHEMA {state} CASCADE"
    )))
    .execute(conn)
    .await
    .expect("cleanup");
}
