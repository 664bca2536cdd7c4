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
//!   in its own schema `fap_warehouse`, created by migrations. The role needs
//!   no more than SELECT on the backend's tables and ownership of that schema
//!   (an existing schema is never created again).
//!
//! The job reads the catalog as a stream into a compact index (one Arrow row
//! per analysis, with a hash of what consumers hold instead of the object
//! itself), so its memory stays small however many analyses there are.

pub mod held_memo;
pub mod lock;

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use futures::TryStreamExt;
use serde_json::Value;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{PgPool, Row, SqlSafeStr, SqlitePool};

use held_memo::HeldMemo;

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

/// Every `fap_analysis` row, as far as the job needs it: one Arrow row per
/// analysis (see [`CatalogIndex::schema`]) and a lookup by id.
#[derive(Debug, Clone)]
pub struct CatalogIndex {
    pub batch: RecordBatch,
    by_id: HashMap<String, usize>,
}

impl CatalogIndex {
    /// `analysis_id, user_id, file_name, file_sha256, held_status,
    /// held_sha256`: the last two are what consumers hold (the row's status,
    /// and the hash of status and analysis object, see
    /// [`crate::analysis::jsonb::result_hash`]).
    pub fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("analysis_id", DataType::Utf8, false),
            Field::new("user_id", DataType::Utf8, false),
            Field::new("file_name", DataType::Utf8, false),
            Field::new("file_sha256", DataType::Utf8, false),
            Field::new("held_status", DataType::Utf8, false),
            Field::new("held_sha256", DataType::Utf8, false),
        ]))
    }

    fn build(rows: Vec<[String; 6]>) -> Result<Self> {
        let mut builders: Vec<StringBuilder> = (0..6).map(|_| StringBuilder::new()).collect();
        let mut by_id = HashMap::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            by_id.insert(row[0].clone(), i);
            for (b, v) in builders.iter_mut().zip(row) {
                b.append_value(v);
            }
        }
        let columns = builders
            .into_iter()
            .map(|mut b| Arc::new(b.finish()) as _)
            .collect();
        let batch = RecordBatch::try_new(Self::schema(), columns)
            .map_err(|e| CatalogError::Invalid(e.to_string()))?;
        Ok(Self { batch, by_id })
    }

    pub fn len(&self) -> usize {
        self.batch.num_rows()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The row of analysis `id`.
    pub fn row(&self, id: &str) -> Option<usize> {
        self.by_id.get(id).copied()
    }

    /// The rows of these ids (those the catalog has), as one batch.
    pub fn rows_of<'a>(
        &self,
        ids: impl Iterator<Item = &'a str>,
    ) -> std::result::Result<RecordBatch, datafusion::arrow::error::ArrowError> {
        // In catalog order, as the whole catalog gave them.
        let mut rows: Vec<u32> = ids
            .filter_map(|id| self.row(id).map(|r| r as u32))
            .collect();
        rows.sort_unstable();
        rows.dedup();
        let rows = datafusion::arrow::array::UInt32Array::from(rows);
        datafusion::arrow::compute::take_record_batch(&self.batch, &rows)
    }

    /// Column `column` (see [`Self::schema`]) of row `row`.
    pub fn get(&self, row: usize, column: usize) -> &str {
        use datafusion::arrow::array::AsArray;
        self.batch.column(column).as_string::<i32>().value(row)
    }
}

/// Columns of [`CatalogIndex`].
pub mod col {
    pub const ANALYSIS_ID: usize = 0;
    pub const USER_ID: usize = 1;
    pub const FILE_NAME: usize = 2;
    pub const FILE_SHA256: usize = 3;
    pub const HELD_STATUS: usize = 4;
    pub const HELD_SHA256: usize = 5;
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

/// A new upload to record: its analysis id, the name the user gave it and
/// the sha256 of its bytes.
#[derive(Debug, Clone)]
pub struct NewAnalysis {
    pub id: String,
    pub file_name: String,
    pub sha256: String,
}

/// fap-warehouse's own schema in the backend's database: its run records,
/// and the identity its run lock is keyed by. One per deployment; a second
/// one (another environment on the same database) runs independently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateSchema(String);

impl StateSchema {
    pub const DEFAULT: &'static str = "fap_warehouse";

    /// A plain lower-case SQL identifier, so it can be written into SQL.
    pub fn parse(name: &str) -> Result<Self> {
        let valid = !name.is_empty()
            && name.len() <= 63
            && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if valid {
            Ok(Self(name.to_string()))
        } else {
            Err(CatalogError::Invalid(format!(
                "state schema {name:?}: use lower-case letters, digits and _ (at most 63)"
            )))
        }
    }

    pub fn name(&self) -> &str {
        &self.0
    }
}

impl Default for StateSchema {
    fn default() -> Self {
        Self(Self::DEFAULT.to_string())
    }
}

impl std::fmt::Display for StateSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The catalog, embedded or the backend's (with fap-warehouse's own schema).
#[derive(Debug, Clone)]
pub enum Catalog {
    Sqlite(SqlitePool),
    Postgres(PgPool, StateSchema),
}

/// How long an embedded catalog's writer waits for another's transaction.
const SQLITE_BUSY_WAIT: std::time::Duration = std::time::Duration::from_secs(300);

impl Catalog {
    /// Connects; an embedded SQLite catalog is created (with its tables) on
    /// first use; with PostgreSQL, `state` is created if missing and migrated.
    pub async fn connect(url: &str, state: &StateSchema) -> Result<Self> {
        let connect_err = |source| CatalogError::Connect {
            url: redact(url),
            source,
        };
        if url.starts_with("sqlite:") {
            let options: SqliteConnectOptions = url
                .parse::<SqliteConnectOptions>()
                .map_err(connect_err)?
                .create_if_missing(true)
                .foreign_keys(true)
                // A run records its outbox in one transaction that spans
                // its averages: an upload meanwhile waits its turn rather
                // than failing with "database is locked" after 5 s.
                .busy_timeout(SQLITE_BUSY_WAIT);
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
            ensure_own_schema(&pool, state).await?;
            own_state_migrator(state)
                .run(&pool)
                .await
                .map_err(|e| CatalogError::Invalid(format!("migrating the {state} schema: {e}")))?;
            Ok(Self::Postgres(pool, state.clone()))
        } else {
            Err(CatalogError::Scheme(redact(url)))
        }
    }

    /// Whether the job itself records delivered results (embedded mode).
    pub fn is_embedded(&self) -> bool {
        matches!(self, Self::Sqlite(_))
    }

    /// Every analysis row, streamed into a compact index, with the hashes
    /// of what consumers hold taken from `memo` where their text is known;
    /// also the memo of the rows read, for the next run, unless it is
    /// `memo` itself (nothing parsed, nothing dropped).
    pub async fn index(&self, memo: Arc<HeldMemo>) -> Result<(CatalogIndex, Option<HeldMemo>)> {
        const PG: &str = "SELECT id::text AS id, user_id::text AS user_id, file_name, sha256::text AS sha256, \
             status::text AS status, analysis::text AS analysis FROM fap_analysis";
        const LITE: &str =
            "SELECT id, user_id, file_name, sha256, status, analysis FROM fap_analysis";
        let mut hasher = HeldHasher::new(memo);
        match self {
            Self::Sqlite(pool) => {
                let mut stream = sqlx::query(LITE).fetch(pool);
                while let Some(row) = stream.try_next().await? {
                    hasher.push(held_row(&row)?).await?;
                }
            }
            Self::Postgres(pool, _) => {
                let mut stream = sqlx::query(PG).fetch(pool);
                while let Some(row) = stream.try_next().await? {
                    hasher.push(held_row(&row)?).await?;
                }
            }
        }
        let (rows, seen) = hasher.finish().await?;
        Ok((CatalogIndex::build(rows)?, seen))
    }

    /// The analysis objects consumers hold for `ids` (the successes whose
    /// log is gone and that the job never analysed itself).
    pub async fn held_analyses(&self, ids: &[String]) -> Result<Vec<(String, Value)>> {
        let mut out = Vec::new();
        for id in ids {
            let text: Option<Option<String>> = match self {
                Self::Sqlite(pool) => {
                    sqlx::query_scalar("SELECT analysis FROM fap_analysis WHERE id = ? AND status = 'Success'")
                        .bind(id)
                        .fetch_optional(pool)
                        .await?
                }
                Self::Postgres(pool, _) => {
                    sqlx::query_scalar(
                        "SELECT analysis::text FROM fap_analysis WHERE id::text = $1 AND status = 'Success'",
                    )
                    .bind(id)
                    .fetch_optional(pool)
                    .await?
                }
            };
            if let Some(value) = text
                .flatten()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            {
                out.push((id.clone(), value));
            }
        }
        Ok(out)
    }

    /// Every user: `(id, email)`.
    pub async fn users(&self) -> Result<Vec<(String, String)>> {
        let rows: Vec<(String, String)> = match self {
            Self::Sqlite(pool) => {
                sqlx::query_as("SELECT id, email FROM users")
                    .fetch_all(pool)
                    .await?
            }
            Self::Postgres(pool, _) => {
                sqlx::query_as("SELECT id::text, email::text FROM users")
                    .fetch_all(pool)
                    .await?
            }
        };
        Ok(rows)
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
            Self::Postgres(pool, _) => sqlx::query(PG)
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
            Self::Postgres(..) => Err(CatalogError::Invalid(
                "the backend's PostgreSQL is read only for fap-warehouse: uploads go through the backend".into(),
            )),
        }
    }

    /// The id of the user with `email`, created when unknown (embedded
    /// only), and whether this call created it.
    pub async fn user_for_email(&self, email: &str) -> Result<(String, bool)> {
        let pool = self.embedded()?;
        let id = uuid::Uuid::new_v4().to_string();
        let created = sqlx::query(
            "INSERT INTO users (id, email) VALUES (?, ?) ON CONFLICT (email) DO NOTHING",
        )
        .bind(&id)
        .bind(email)
        .execute(pool)
        .await?
        .rows_affected()
            > 0;
        let row = sqlx::query("SELECT id FROM users WHERE email = ?")
            .bind(email)
            .fetch_one(pool)
            .await?;
        Ok((row.try_get("id")?, created))
    }

    /// The analyses of this user already uploaded with any of these bytes,
    /// as `sha256 -> analysis id` (embedded only).
    pub async fn analyses_by_sha(
        &self,
        user_id: &str,
        sha256s: &[&str],
    ) -> Result<HashMap<String, String>> {
        let mut conn = self.embedded()?.acquire().await?;
        holders(&mut conn, user_id, sha256s).await
    }

    /// Records new uploads as `Processing` / "Analysis pending" in one
    /// transaction (embedded only) and returns, for each of their sha256,
    /// the id that holds these bytes for this user: the upload's own, or the
    /// one a concurrent upload of the same bytes recorded first. The uploads
    /// must have distinct sha256s. An error records none of them.
    pub async fn insert_analyses(
        &self,
        user_id: &str,
        uploads: &[NewAnalysis],
    ) -> Result<HashMap<String, String>> {
        let pool = self.embedded()?;
        if uploads.is_empty() {
            return Ok(HashMap::new());
        }
        let mut tx = pool.begin().await?;
        for chunk in uploads.chunks(ROWS_PER_STATEMENT) {
            let mut insert = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "INSERT INTO fap_analysis (id, user_id, file_name, sha256, status, message) ",
            );
            insert.push_values(chunk, |mut row, upload| {
                row.push_bind(&upload.id)
                    .push_bind(user_id)
                    .push_bind(&upload.file_name)
                    .push_bind(&upload.sha256)
                    .push("'Processing'")
                    .push("'Analysis pending'");
            });
            insert.push(" ON CONFLICT (user_id, sha256) DO NOTHING");
            insert.build().execute(&mut *tx).await?;
        }
        let sha256s: Vec<&str> = uploads.iter().map(|u| u.sha256.as_str()).collect();
        let holders = holders(&mut tx, user_id, &sha256s).await?;
        if let Some(lost) = uploads.iter().find(|u| !holders.contains_key(&u.sha256)) {
            let id = &lost.id;
            return Err(CatalogError::Invalid(format!(
                "upload {id} was not recorded"
            )));
        }
        tx.commit().await?;
        Ok(holders)
    }

    /// The file of the embedded catalog, which names its run lock.
    pub fn embedded_path(&self) -> Option<std::path::PathBuf> {
        match self {
            Self::Sqlite(pool) => Some(pool.connect_options().get_filename().to_path_buf()),
            Self::Postgres(..) => None,
        }
    }

    /// Records delivered results as consumers hold them, the way the backend
    /// applies them, in one transaction (embedded only).
    pub async fn apply_results(&self, results: &[&Delivered], version: &str) -> Result<()> {
        let mut held = self.begin_held().await?;
        held.apply(results, version).await?;
        held.commit().await
    }

    /// Starts recording delivered results (embedded only): what is applied
    /// counts once [`HeldUpdate::commit`] returns; dropped, it counts for
    /// nothing and the next run sends those results again.
    pub async fn begin_held(&self) -> Result<HeldUpdate> {
        Ok(HeldUpdate(self.embedded()?.begin().await?))
    }
}

/// Delivered results being recorded, in one transaction: one commit (one
/// sync of the database) for a whole outbox.
pub struct HeldUpdate(sqlx::Transaction<'static, sqlx::Sqlite>);

impl HeldUpdate {
    /// Applies `results`. Rows go a few hundred per statement: one statement
    /// per result costs more than the analysis of its log.
    pub async fn apply(&mut self, results: &[&Delivered], version: &str) -> Result<()> {
        let analyses: Vec<&DeliveredAnalysis> = results
            .iter()
            .filter_map(|r| match r {
                Delivered::Analysis(a) => Some(a),
                Delivered::Average(_) => None,
            })
            .collect();
        let averages: Vec<&DeliveredAverage> = results
            .iter()
            .filter_map(|r| match r {
                Delivered::Average(a) => Some(a),
                Delivered::Analysis(_) => None,
            })
            .collect();
        for chunk in analyses.chunks(ROWS_PER_STATEMENT) {
            apply_analysis_results(&mut self.0, chunk, version).await?;
        }
        for chunk in averages.chunks(ROWS_PER_STATEMENT) {
            apply_average_results(&mut self.0, chunk).await?;
        }
        Ok(())
    }

    pub async fn commit(self) -> Result<()> {
        Ok(self.0.commit().await?)
    }
}

/// Rows per multi-row statement (SQLite allows 32766 parameters).
const ROWS_PER_STATEMENT: usize = 500;

/// A result as consumers hold it once delivered.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivered {
    Analysis(DeliveredAnalysis),
    Average(DeliveredAverage),
}

impl Delivered {
    /// What orders results of one kind: an analysis by id, an average by
    /// user and period.
    pub fn order(&self) -> (&str, &str, Option<i64>, Option<i64>) {
        match self {
            Self::Analysis(a) => (a.id.as_str(), "", None, None),
            Self::Average(a) => (a.user_id.as_str(), a.kind.as_str(), a.year, a.month),
        }
    }
}

/// An `analysis.result`, typed.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveredAnalysis {
    pub id: String,
    pub success: bool,
    pub message: String,
    /// The object as sent (`{}` when failed).
    pub analysis: String,
    pub fap_regen: bool,
    pub log_date: Option<String>,
    pub distance: Option<f64>,
}

/// An `average.result` of a computed group, typed.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveredAverage {
    pub user_id: String,
    pub kind: String,
    pub year: Option<i64>,
    pub month: Option<i64>,
    pub analysis_sha: String,
    /// The object as sent.
    pub average: String,
}

/// Applies `analysis.result`s the way the backend does.
async fn apply_analysis_results(
    conn: &mut sqlx::SqliteConnection,
    results: &[&DeliveredAnalysis],
    version: &str,
) -> Result<()> {
    let mut query = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
        "WITH v (id, status, message, analysis, fap_regen, log_date, log_year, log_month, distance) AS (",
    );
    query.push_values(results, |mut row, result| {
        let log_date = result.log_date.as_deref();
        let (year, month) = log_date
            .and_then(|d| {
                let mut parts = d.split('-');
                Some((
                    parts.next()?.parse::<i64>().ok()?,
                    parts.next()?.parse::<i64>().ok()?,
                ))
            })
            .unzip();
        row.push_bind(result.id.as_str())
            .push_bind(if result.success { "Success" } else { "Failed" })
            .push_bind(crate::analysis::message::clip(&result.message))
            .push_bind(result.analysis.as_str())
            .push_bind(result.fap_regen)
            .push_bind(log_date.map(|d| format!("{d}T00:00:00.000Z")))
            .push_bind(year)
            .push_bind(month)
            .push_bind(result.distance);
    });
    query
        .push(
            ") UPDATE fap_analysis SET status = v.status, message = v.message, \
             analysis = v.analysis, fap_regen = v.fap_regen, log_date = v.log_date, \
             log_year = v.log_year, log_month = v.log_month, distance = v.distance, version = ",
        )
        .push_bind(version)
        .push(
            ", updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') \
             FROM v WHERE fap_analysis.id = v.id",
        );
    query.build().execute(&mut *conn).await?;
    Ok(())
}

/// Applies `average.result`s the way the backend does: upsert by period.
async fn apply_average_results(
    conn: &mut sqlx::SqliteConnection,
    results: &[&DeliveredAverage],
) -> Result<()> {
    let mut query = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
        "INSERT INTO fap_average (id, user_id, type, year, month, status, message, sha256, average) ",
    );
    query.push_values(results, |mut row, result| {
        row.push_bind(uuid::Uuid::new_v4().to_string())
            .push_bind(result.user_id.as_str())
            .push_bind(result.kind.as_str())
            .push_bind(result.year)
            .push_bind(result.month)
            .push("'SUCCESS'")
            .push("'Average calculated successfully.'")
            .push_bind(result.analysis_sha.as_str())
            .push_bind(result.average.as_str());
    });
    query.push(
        " ON CONFLICT (user_id, type, COALESCE(year, 0), COALESCE(month, 0)) DO UPDATE SET \
         status = excluded.status, message = excluded.message, sha256 = excluded.sha256, \
         average = excluded.average, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
    );
    query.build().execute(&mut *conn).await?;
    Ok(())
}

/// `sha256 -> analysis id` of this user's analyses with any of these bytes.
async fn holders(
    conn: &mut sqlx::SqliteConnection,
    user_id: &str,
    sha256s: &[&str],
) -> Result<HashMap<String, String>> {
    let mut found = HashMap::with_capacity(sha256s.len());
    for chunk in sha256s.chunks(ROWS_PER_STATEMENT) {
        let mut select = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "SELECT sha256, id FROM fap_analysis WHERE user_id = ",
        );
        select.push_bind(user_id).push(" AND sha256 IN (");
        let mut list = select.separated(", ");
        for sha256 in chunk {
            list.push_bind(*sha256);
        }
        list.push_unseparated(")");
        let rows: Vec<(String, String)> = select.build_query_as().fetch_all(&mut *conn).await?;
        found.extend(rows);
    }
    Ok(found)
}

/// Creates the `fap_warehouse` schema when it does not exist. PostgreSQL
/// checks the database's CREATE right before it looks for an existing
/// schema, so `CREATE SCHEMA IF NOT EXISTS` fails for a role that only owns
/// the schema: look first.
async fn ensure_own_schema(pool: &PgPool, state: &StateSchema) -> Result<()> {
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
            .bind(state.name())
            .fetch_one(pool)
            .await?;
    if !exists {
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {state}")))
            .execute(pool)
            .await
            .map_err(|e| {
                CatalogError::Invalid(format!(
                    "the schema {state} does not exist and cannot be created ({e}); \
                     create it once for this role: CREATE SCHEMA {state} AUTHORIZATION <role>"
                ))
            })?;
    }
    Ok(())
}

/// The migrations of fap-warehouse's own schema.
fn own_state_migrator(state: &StateSchema) -> Migrator {
    let sql = include_str!("pg_state.sql").replace("fap_warehouse.", &format!("{state}."));
    let mut migrator = Migrator::with_migrations(vec![Migration::new(
        1,
        "run records".into(),
        MigrationType::Simple,
        sqlx::AssertSqlSafe(sql).into_sql_str(),
        false,
    )]);
    migrator.dangerous_set_table_name(format!("{state}._sqlx_migrations"));
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
    /// The caller holds the run lock, so a `running` row left by an earlier
    /// run is a run that died: it is marked `abandoned`.
    pub async fn record_run_start(&self, id: &str) -> Result<()> {
        if let Self::Postgres(pool, state) = self {
            let abandoned = sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE {state}.runs SET status = 'abandoned', finished_at = now(), \
                 error = 'the run ended without recording an outcome (killed, or its lock was lost)' \
                 WHERE status = 'running'"
            )))
            .execute(pool)
            .await?
            .rows_affected();
            if abandoned > 0 {
                tracing::warn!(abandoned, "earlier runs never finished: marked abandoned");
            }
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO {state}.runs (id, status) VALUES ($1, 'running') ON CONFLICT (id) DO NOTHING"
            )))
                .bind(id)
                .execute(pool)
                .await?;
        }
        Ok(())
    }

    /// Records how a run ended, with its counts.
    pub async fn record_run_end(&self, r: &RunRecord<'_>) -> Result<()> {
        if let Self::Postgres(pool, state) = self {
            let int = |v: usize| i32::try_from(v).unwrap_or(i32::MAX);
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE {state}.runs SET finished_at = now(), status = $2, logs = $3, failed_logs = $4, \
                 analysis_messages = $5, average_messages = $6, undelivered = $7, input_bytes = $8, \
                 duration_seconds = $9, error = $10 WHERE id = $1"
            )))
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

/// A `fap_analysis` row as read, before its held object is hashed.
struct HeldRow {
    fields: [String; 5],
    analysis: Option<String>,
}

impl HeldRow {
    /// The row of the index: the held object parsed, printed as the backend
    /// prints jsonb, and hashed with its status (the costly part), unless
    /// `memo` knows the hash of this status and text; and the memo entry.
    fn into_index_row(self, memo: &HeldMemo) -> HashedRow {
        let [id, user_id, file_name, sha256, status] = self.fields;
        let Some(text) = self.analysis else {
            let held_sha256 = crate::analysis::jsonb::result_hash(&status, "null");
            return ([id, user_id, file_name, sha256, status, held_sha256], None);
        };
        let key = held_memo::key(&status, &text);
        let (hash, parsed) = match memo.get(&key) {
            Some(hash) => (hash, false),
            None => {
                let held = serde_json::from_str::<Value>(&text).map_or_else(
                    |_| "null".to_string(),
                    |v| crate::analysis::jsonb::to_string(&v),
                );
                (crate::analysis::jsonb::result_digest(&status, &held), true)
            }
        };
        let held_sha256 = crate::analysis::jsonb::hex(hash);
        let row = [id, user_id, file_name, sha256, status, held_sha256];
        (row, Some(Remembered { key, hash, parsed }))
    }
}

fn held_row<R: Row>(row: &R) -> Result<HeldRow>
where
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(HeldRow {
        fields: [
            row.try_get("id")?,
            row.try_get("user_id")?,
            row.try_get("file_name")?,
            row.try_get::<String, _>("sha256")?.trim().to_string(),
            row.try_get("status")?,
        ],
        analysis: row.try_get("analysis")?,
    })
}

/// Hashes held objects on a blocking thread, a batch at a time, while the
/// next batch is fetched: parsing what consumers hold was most of a rerun's
/// plan (3.7 s of a 3.9 s rerun at 100k logs), so objects whose hash the
/// memo knows are not parsed at all.
struct HeldHasher {
    memo: Arc<HeldMemo>,
    /// The memo of the rows hashed so far.
    seen: HeldMemo,
    /// Rows whose held object was parsed (the memo did not know it).
    parsed: usize,
    done: Vec<[String; 6]>,
    batch: Vec<HeldRow>,
    running: Option<tokio::task::JoinHandle<Vec<HashedRow>>>,
}

/// A row of the index, and its memo entry when consumers hold an object.
type HashedRow = ([String; 6], Option<Remembered>);

/// A memo entry, and whether its object had to be parsed.
struct Remembered {
    key: held_memo::Key,
    hash: held_memo::Key,
    parsed: bool,
}

/// Rows hashed per hand-off to the blocking thread.
const HELD_BATCH: usize = 2048;

impl HeldHasher {
    fn new(memo: Arc<HeldMemo>) -> Self {
        Self {
            memo,
            seen: HeldMemo::default(),
            parsed: 0,
            done: Vec::new(),
            batch: Vec::new(),
            running: None,
        }
    }

    async fn push(&mut self, row: HeldRow) -> Result<()> {
        self.batch.push(row);
        if self.batch.len() >= HELD_BATCH {
            self.hand_off().await?;
        }
        Ok(())
    }

    /// Waits for the batch being hashed, then starts the current one.
    async fn hand_off(&mut self) -> Result<()> {
        if let Some(running) = self.running.take() {
            let hashed = running
                .await
                .map_err(|e| CatalogError::Invalid(format!("hashing held results: {e}")))?;
            for (row, entry) in hashed {
                self.done.push(row);
                if let Some(entry) = entry {
                    self.parsed += usize::from(entry.parsed);
                    self.seen.insert(entry.key, entry.hash);
                }
            }
        }
        let batch = std::mem::take(&mut self.batch);
        if !batch.is_empty() {
            let memo = self.memo.clone();
            self.running = Some(tokio::task::spawn_blocking(move || {
                batch
                    .into_iter()
                    .map(|row| row.into_index_row(&memo))
                    .collect()
            }));
        }
        Ok(())
    }

    /// The rows, and the memo of them unless it is the one given: with
    /// nothing parsed every entry came from it, and as many means all.
    async fn finish(mut self) -> Result<(Vec<[String; 6]>, Option<HeldMemo>)> {
        // Once for the batch in flight (starting the last), once for the last.
        self.hand_off().await?;
        self.hand_off().await?;
        let changed = self.parsed > 0 || self.seen.len() != self.memo.len();
        Ok((self.done, changed.then_some(self.seen)))
    }
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
