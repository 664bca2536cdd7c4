//! Runs the `.slt` files of `tests/sql/` (sqllogictest format) against the
//! project's SQL models on small hand-made tables.
//!
//! Two statements extend plain SQL:
//! - `MODEL name` registers the SQL model `sql/<name>.sql` as a view;
//! - `FILL target FROM source` makes the view `target` (`log_rows`,
//!   `log_files` or `group_members`) out of `source`, taking the columns `source` has (by
//!   name) and NULL for the rest, so a test only writes the columns it needs.

use std::path::PathBuf;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::prelude::SessionContext;
use fap_warehouse::analysis::engine::Engine;
use fap_warehouse::analysis::error::EngineError;
use fap_warehouse::analysis::models::Models;
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType};

struct Db {
    engine: Engine,
    ctx: SessionContext,
}

impl Db {
    fn new() -> Self {
        let engine = Engine::new(Models::embedded());
        let ctx = engine.context();
        Self { engine, ctx }
    }

    async fn fill(&self, target: &str, source: &str) -> Result<(), EngineError> {
        let schema: SchemaRef = match target {
            "log_rows" => fap_warehouse::scan::log_rows_schema(),
            "log_files" => fap_warehouse::scan::log_files_schema(),
            "group_members" => fap_warehouse::analysis::average::members_schema(),
            other => return Err(EngineError::Request(format!("cannot FILL {other}"))),
        };
        let have = self.ctx.table(source).await?.schema().clone();
        let columns: Vec<String> = schema
            .fields()
            .iter()
            .map(|f| {
                let ty = match f.data_type() {
                    DataType::Utf8 => "VARCHAR",
                    DataType::Int64 => "BIGINT",
                    DataType::Boolean => "BOOLEAN",
                    DataType::Timestamp(_, _) => "TIMESTAMP",
                    _ => "DOUBLE",
                };
                let name = f.name();
                if have.field_with_unqualified_name(name).is_ok() {
                    format!("CAST(\"{name}\" AS {ty}) AS \"{name}\"")
                } else {
                    format!("CAST(NULL AS {ty}) AS \"{name}\"")
                }
            })
            .collect();
        let sql = format!(
            "CREATE VIEW {target} AS SELECT {} FROM {source}",
            columns.join(", ")
        );
        self.ctx.sql(&sql).await?.collect().await?;
        Ok(())
    }
}

#[async_trait]
impl AsyncDB for Db {
    type Error = EngineError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<Self::ColumnType>, Self::Error> {
        let trimmed = sql.trim();
        if let Some(name) = trimmed.strip_prefix("MODEL ") {
            self.engine.register_model(&self.ctx, name.trim()).await?;
            return Ok(DBOutput::StatementComplete(0));
        }
        if let Some(rest) = trimmed.strip_prefix("FILL ") {
            let parts: Vec<&str> = rest.split_whitespace().collect();
            if let [target, "FROM", source] = parts.as_slice() {
                self.fill(target, source).await?;
                return Ok(DBOutput::StatementComplete(0));
            }
            return Err(EngineError::Request(format!("bad FILL: {trimmed}")));
        }
        let frame = self.ctx.sql(sql).await?;
        let schema = frame.schema().clone();
        let batches = frame.collect().await?;
        if schema.fields().is_empty() {
            return Ok(DBOutput::StatementComplete(0));
        }
        let options = FormatOptions::default().with_null("NULL");
        let mut rows = Vec::new();
        for batch in &batches {
            let formatters: Vec<ArrayFormatter> = batch
                .columns()
                .iter()
                .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
                .collect::<Result<_, _>>()?;
            for row in 0..batch.num_rows() {
                rows.push(
                    formatters
                        .iter()
                        .map(|f| {
                            let s = f.value(row).to_string();
                            if s.is_empty() {
                                "(empty)".to_string()
                            } else {
                                s
                            }
                        })
                        .collect(),
                );
            }
        }
        Ok(DBOutput::Rows {
            types: vec![DefaultColumnType::Any; schema.fields().len()],
            rows,
        })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "fap-warehouse"
    }
}

#[tokio::test]
async fn sql_models_pass_their_logic_tests() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sql");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/sql exists")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .slt files in {}", dir.display());
    for file in files {
        let mut runner = sqllogictest::Runner::new(|| async { Ok(Db::new()) });
        if let Err(err) = runner.run_file_async(&file).await {
            panic!("{}: {err}", file.display());
        }
    }
}
