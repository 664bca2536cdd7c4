//! The catalog: which analyses exist, whose they are, which file each one is,
//! and what consumers currently hold (the backend's `users`, `fap_analysis`,
//! `fap_average`, shared/spec/catalog.sql).
//!
//! Two homes, one interface:
//! - embedded SQLite (`<warehouse>/catalog.db`, created on first use): the
//!   job also plays the backend and applies the results it emits, so the
//!   catalog always holds what consumers hold;
//! - the backend's PostgreSQL: read only; the backend writes its tables when
//!   it receives the results. fap-warehouse's own state (run records) lives
//!   in its own schema `fap_warehouse`, created by migrations.

use serde_json::Value;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{PgPool, Row, SqlSafeStr, SqlitePool};

/// Errors talking to the catalog.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("catalog {url}: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error("catalog query failed: {0}")]
    Query(#[from] sqlx::Error),
    #[error("catalog URL {0} is neither sqlite: nor postgres:")]
    Scheme(String),
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = CatalogError> = std::result::Result<T, E>;

/// A `fap_analysis` row, as far as the job needs it.
#[derive(Debug, Clone)]
pub struct CatalogAnalysis {
    pub id: String,
    pub user_id: String,
    pub file_name: String,
    pub sha256: String,
    pub status: String,
    pub message: String,
    /// The stored analysis object (what consumers hold), if any.
    pub analysis: Option<Value>,
}

/// A `fap_average` row: what consumers hold for one user and period.
#[derive(Debug, Clone)]
pub struct CatalogAverage {
    pub user_id: String,
    pub kind: String,
    pub year: Option<i64>,
    pub month: Option<i64>,
    pub status: String,
    pub sha256: Option<String>,
}

/// The catalog, embedded or the backend's.
#[derive(Debug, Clone)]
pub enum Catalog {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Catalog {
    /// Connects; an embedded SQLite catalog is created (with its tables) on first use.
    pub async fn connect(url: &str) -> Result<Self> {
        let connect_err = |source| CatalogError::Connect {
            url: redact(url),
            source,
        };
        if url.starts_with("sqlite:") {
            let options: SqliteConnectOptions = url
                .parse::<SqliteConnectOptions>()
                .map_err(connect_err)?
                .create_if_missing(true)
                .foreign_keys(true);
            let pool = SqlitePoolOptions::new()
                .max_connections(4)
                .connect_with(options)
                .await
                .map_err(connect_err)?;
            sqlx::raw_sql(include_str!("sqlite_schema.sql"))
                .execute(&pool)
                .await?;
            Ok(Self::Sqlite(pool))
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let pool = PgPoolOptions::new()
                .max_connections(4)
                .acquire_timeout(std::time::Duration::from_secs(10))
                .connect(url)
                .await
                .map_err(connect_err)?;
            own_state_migrator().run(&pool).await.map_err(|e| {
                CatalogError::Invalid(format!("migrating fap_warehouse schema: {e}"))
            })?;
            Ok(Self::Postgres(pool))
        } else {
            Err(CatalogError::Scheme(redact(url)))
        }
    }

    /// Whether the job itself records delivered results (embedded mode).
    pub fn is_embedded(&self) -> bool {
        matches!(self, Self::Sqlite(_))
    }

    /// Every analysis row.
    pub async fn analyses(&self) -> Result<Vec<CatalogAnalysis>> {
        const PG: &str = "SELECT id::text AS id, user_id::text AS user_id, file_name, sha256::text AS sha256, \
             status::text AS status, message, analysis::text AS analysis FROM fap_analysis";
        const LITE: &str = "SELECT id, user_id, file_name, sha256, status, message, analysis \
             FROM fap_analysis";
        match self {
            Self::Sqlite(pool) => sqlx::query(LITE)
                .fetch_all(pool)
                .await?
                .into_iter()
                .map(analysis_row)
                .collect(),
            Self::Postgres(pool) => sqlx::query(PG)
                .fetch_all(pool)
                .await?
                .into_iter()
                .map(analysis_row)
                .collect(),
        }
    }

    /// Every average row.
    pub async fn averages(&self) -> Result<Vec<CatalogAverage>> {
        const PG: &str = "SELECT user_id::text AS user_id, type::text AS type, year::bigint AS year, \
             month::bigint AS month, status::text AS status, sha256::text AS sha256 FROM fap_average";
        const LITE: &str = "SELECT user_id, type, year, month, status, sha256 FROM fap_average";
        match self {
            Self::Sqlite(pool) => sqlx::query(LITE)
                .fetch_all(pool)
                .await?
                .into_iter()
                .map(average_row)
                .collect(),
            Self::Postgres(pool) => sqlx::query(PG)
                .fetch_all(pool)
                .await?
                .into_iter()
                .map(average_row)
                .collect(),
        }
    }

    fn embedded(&self) -> Result<&SqlitePool> {
        match self {
            Self::Sqlite(pool) => Ok(pool),
            Self::Postgres(_) => Err(CatalogError::Invalid(
                "the backend's PostgreSQL is read only for fap-warehouse: uploads go through the backend".into(),
            )),
        }
    }

    /// The id of the user with `email`, created when unknown (embedded only).
    pub async fn user_for_email(&self, email: &str) -> Result<String> {
        let pool = self.embedded()?;
        let id = uuid::Uuid::new_v4().to_string();
        sqlx::query("INSERT INTO users (id, email) VALUES (?, ?) ON CONFLICT (email) DO NOTHING")
            .bind(&id)
            .bind(email)
            .execute(pool)
            .await?;
        let row = sqlx::query("SELECT id FROM users WHERE email = ?")
            .bind(email)
            .fetch_one(pool)
            .await?;
        Ok(row.try_get("id")?)
    }

    /// The analysis of this user with these bytes, if already uploaded.
    pub async fn analysis_by_sha(&self, user_id: &str, sha256: &str) -> Result<Option<String>> {
        let pool = self.embedded()?;
        let row = sqlx::query("SELECT id FROM fap_analysis WHERE user_id = ? AND sha256 = ?")
            .bind(user_id)
            .bind(sha256)
            .fetch_optional(pool)
            .await?;
        Ok(row.map(|r| r.try_get("id")).transpose()?)
    }

    /// Records a new upload as `Processing` / "Analysis pending" (embedded only).
    pub async fn insert_analysis(
        &self,
        id: &str,
        user_id: &str,
        file_name: &str,
        sha256: &str,
    ) -> Result<()> {
        let pool = self.embedded()?;
        sqlx::query(
            "INSERT INTO fap_analysis (id, user_id, file_name, sha256, status, message) \
             VALUES (?, ?, ?, ?, 'Processing', 'Analysis pending')",
        )
        .bind(id)
        .bind(user_id)
        .bind(file_name)
        .bind(sha256)
        .execute(pool)
        .await?;
        Ok(())
    }

    /// Records delivered results as consumers hold them, the way the backend
    /// applies them, in one transaction (embedded only).
    pub async fn apply_results(&self, results: &[(&str, &Value)], version: &str) -> Result<()> {
        let pool = self.embedded()?;
        let mut tx = pool.begin().await?;
        for (subject, payload) in results {
            match *subject {
                "analysis.result" => apply_analysis_result(&mut tx, payload, version).await?,
                _ => apply_average_result(&mut tx, payload).await?,
            }
        }
        tx.commit().await?;
        Ok(())
    }
}

/// Applies an `analysis.result` the way the backend does.
async fn apply_analysis_result(
    conn: &mut sqlx::SqliteConnection,
    result: &Value,
    version: &str,
) -> Result<()> {
    let log_date = result["logDate"].as_str();
    let (year, month) = log_date
        .and_then(|d| {
            let mut parts = d.split('-');
            Some((
                parts.next()?.parse::<i64>().ok()?,
                parts.next()?.parse::<i64>().ok()?,
            ))
        })
        .unzip();
    sqlx::query(
        "UPDATE fap_analysis SET status = ?, message = ?, analysis = ?, fap_regen = ?, \
         log_date = ?, log_year = ?, log_month = ?, distance = ?, version = ?, \
         updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = ?",
    )
    .bind(result["status"].as_str())
    .bind(result["message"].as_str())
    .bind(result["analysis"].to_string())
    .bind(result["fapRegen"].as_bool().unwrap_or(false))
    .bind(log_date.map(|d| format!("{d}T00:00:00.000Z")))
    .bind(year)
    .bind(month)
    .bind(result["distance"].as_f64())
    .bind(version)
    .bind(result["analysisId"].as_str())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Applies an `average.result` the way the backend does: upsert by period.
async fn apply_average_result(conn: &mut sqlx::SqliteConnection, result: &Value) -> Result<()> {
    let updated = sqlx::query(
        "UPDATE fap_average SET status = ?, message = ?, sha256 = ?, average = ?, \
         updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') \
         WHERE user_id = ? AND type = ? AND year IS ? AND month IS ?",
    )
    .bind(result["status"].as_str())
    .bind(result["message"].as_str())
    .bind(result["analysisSha"].as_str())
    .bind(result["average"].to_string())
    .bind(result["userId"].as_str())
    .bind(result["type"].as_str())
    .bind(result["year"].as_i64())
    .bind(result["month"].as_i64())
    .execute(&mut *conn)
    .await?;
    if updated.rows_affected() == 0 {
        sqlx::query(
            "INSERT INTO fap_average (id, user_id, type, year, month, status, message, sha256, average) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(result["userId"].as_str())
        .bind(result["type"].as_str())
        .bind(result["year"].as_i64())
        .bind(result["month"].as_i64())
        .bind(result["status"].as_str())
        .bind(result["message"].as_str())
        .bind(result["analysisSha"].as_str())
        .bind(result["average"].to_string())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// The migrations of fap-warehouse's own schema (`fap_warehouse`).
fn own_state_migrator() -> Migrator {
    let mut migrator = Migrator::with_migrations(vec![Migration::new(
        1,
        "run records".into(),
        MigrationType::Simple,
        include_str!("pg_state.sql").into_sql_str(),
        false,
    )]);
    migrator.create_schema("fap_warehouse");
    migrator.dangerous_set_table_name("fap_warehouse._sqlx_migrations");
    migrator
}

/// How a run ended, for its record.
#[derive(Debug, Clone)]
pub struct RunRecord<'a> {
    pub id: &'a str,
    pub status: &'a str,
    pub logs: usize,
    pub failed_logs: usize,
    pub analysis_messages: usize,
    pub average_messages: usize,
    pub undelivered: usize,
    pub input_bytes: u64,
    pub duration_seconds: f64,
    pub error: Option<String>,
}

impl Catalog {
    /// Records that a run started (PostgreSQL only; the embedded default
    /// keeps its record in the snapshot manifest).
    pub async fn record_run_start(&self, id: &str) -> Result<()> {
        if let Self::Postgres(pool) = self {
            sqlx::query("INSERT INTO fap_warehouse.runs (id, status) VALUES ($1, 'running') ON CONFLICT (id) DO NOTHING")
                .bind(id)
                .execute(pool)
                .await?;
        }
        Ok(())
    }

    /// Records how a run ended, with its counts.
    pub async fn record_run_end(&self, r: &RunRecord<'_>) -> Result<()> {
        if let Self::Postgres(pool) = self {
            let int = |v: usize| i32::try_from(v).unwrap_or(i32::MAX);
            sqlx::query(
                "UPDATE fap_warehouse.runs SET finished_at = now(), status = $2, logs = $3, failed_logs = $4, \
                 analysis_messages = $5, average_messages = $6, undelivered = $7, input_bytes = $8, \
                 duration_seconds = $9, error = $10 WHERE id = $1",
            )
            .bind(r.id)
            .bind(r.status)
            .bind(int(r.logs))
            .bind(int(r.failed_logs))
            .bind(int(r.analysis_messages))
            .bind(int(r.average_messages))
            .bind(int(r.undelivered))
            .bind(i64::try_from(r.input_bytes).unwrap_or(i64::MAX))
            .bind(r.duration_seconds)
            .bind(r.error.as_deref())
            .execute(pool)
            .await?;
        }
        Ok(())
    }
}

fn analysis_row<R: Row>(row: R) -> Result<CatalogAnalysis>
where
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let analysis: Option<String> = row.try_get("analysis")?;
    Ok(CatalogAnalysis {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        file_name: row.try_get("file_name")?,
        sha256: row.try_get::<String, _>("sha256")?.trim().to_string(),
        status: row.try_get("status")?,
        message: row.try_get("message")?,
        analysis: analysis.and_then(|text| serde_json::from_str(&text).ok()),
    })
}

fn average_row<R: Row>(row: R) -> Result<CatalogAverage>
where
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(CatalogAverage {
        user_id: row.try_get("user_id")?,
        kind: row.try_get("type")?,
        year: row.try_get("year")?,
        month: row.try_get("month")?,
        status: row.try_get("status")?,
        sha256: row
            .try_get::<Option<String>, _>("sha256")?
            .map(|s| s.trim().to_string()),
    })
}

/// A URL with its password hidden (user info and `password=`), for messages.
pub fn redact(url: &str) -> String {
    let url = redact_userinfo(url);
    match url.find("password=") {
        Some(start) => {
            let value = start + "password=".len();
            let end = url[value..].find('&').map_or(url.len(), |e| value + e);
            format!("{}***{}", &url[..value], &url[end..])
        }
        None => url,
    }
}

fn redact_userinfo(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn secrets_never_reach_messages() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/fap"),
            "postgres://app:***@db:5432/fap"
        );
        assert_eq!(
            redact("postgres://app@db/fap?password=s3cret&x=1"),
            "postgres://app@db/fap?password=***&x=1"
        );
        assert_eq!(
            redact("nats://user:pw@nats:4222"),
            "nats://user:***@nats:4222"
        );
        assert_eq!(
            redact("sqlite://warehouse/catalog.db"),
            "sqlite://warehouse/catalog.db"
        );
    }
}
