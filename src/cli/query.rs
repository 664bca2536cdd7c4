//! `query`: SQL over a snapshot, for analysts, in the manner of
//! datafusion-cli.
//!
//! - Input: `-c SQL`, `-f FILE`, the positional SQL (`-` for stdin), or a
//!   REPL with history when nothing is given on a terminal. Several
//!   statements per call; `SHOW TABLES`, `DESCRIBE t`, `information_schema`.
//! - Tables: `analysis`, `average`, `fuel_by_speed_band`,
//!   `average_fuel_by_speed_band` of the snapshot, and `users` (id, email)
//!   from the catalog.
//! - Read only: DDL, DML and statements (`COPY`, `INSERT`, `CREATE …`, `SET`)
//!   are refused; a memory limit and a timeout apply; a panic inside the
//!   engine is an error message, not an abort.
//! - Output: `table` (NULL shown, wide cells cut, numbers right-aligned,
//!   `--maxrows`), `csv`, `tsv`, `json` and `ndjson` (null keys kept),
//!   `markdown`; "N rows in X ms" on stderr.

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{ParquetReadOptions, SQLOptions, SessionContext};
use datafusion::sql::parser::DFParser;

use super::Settings;
use crate::job::snapshot::{self, Table};

#[derive(Debug, clap::Args)]
pub struct QueryArgs {
    /// Snapshot id [default: the latest].
    #[arg(long)]
    snapshot: Option<String>,
    /// SQL to run (repeatable; statements separated by `;`).
    #[arg(short = 'c', long = "command")]
    commands: Vec<String>,
    /// A file of SQL statements.
    #[arg(short = 'f', long = "file")]
    files: Vec<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Rows shown by the table format (0: all).
    #[arg(long, default_value_t = 40)]
    maxrows: usize,
    /// Seconds a statement may run.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    /// Megabytes of memory a statement may use.
    #[arg(long, default_value_t = 2048)]
    memory_limit: usize,
    /// SQL to run; `-` reads it from stdin.
    sql: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Tsv,
    Json,
    Ndjson,
    Markdown,
}

pub async fn query(settings: &Settings, args: QueryArgs, out: &mut impl Write) -> Result<ExitCode> {
    let dir = match snapshot::resolve(&settings.warehouse, args.snapshot.as_deref()) {
        Ok(dir) => dir,
        Err(_) if args.snapshot.is_none() => bail!(
            "no snapshot in {}: run the job first (fap-warehouse run), or point --warehouse at a warehouse",
            std::path::absolute(snapshot::root(&settings.warehouse))
                .unwrap_or_else(|_| snapshot::root(&settings.warehouse))
                .display()
        ),
        Err(e) => return Err(e.into()),
    };
    let ctx = context(settings, &dir, args.memory_limit).await?;
    let mut sql = args.commands.join(";\n");
    for file in &args.files {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        sql.push_str(";\n");
        sql.push_str(&text);
    }
    match args.sql.as_deref() {
        Some("-") => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text)?;
            sql.push_str(";\n");
            sql.push_str(&text);
        }
        Some(text) => {
            sql.push_str(";\n");
            sql.push_str(text);
        }
        None => {}
    }
    let runner = Runner {
        ctx,
        format: args.format,
        maxrows: args.maxrows,
        timeout: Duration::from_secs(args.timeout.max(1)),
    };
    if sql
        .trim_matches(|c: char| c == ';' || c.is_whitespace())
        .is_empty()
    {
        if std::io::stdin().is_terminal() {
            return repl(&runner, out).await;
        }
        bail!("no SQL given: use -c SQL, -f FILE, a positional SQL, or - for stdin");
    }
    runner.run_all(&sql, out).await?;
    Ok(ExitCode::SUCCESS)
}

/// A read-only context over the snapshot in `dir`.
async fn context(
    settings: &Settings,
    dir: &std::path::Path,
    memory_mb: usize,
) -> Result<SessionContext> {
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(FairSpillPool::new(
            memory_mb.max(16) * 1024 * 1024,
        )))
        .build_arc()?;
    let config = settings.engine.config().with_information_schema(true);
    let ctx = SessionContext::new_with_config_rt(config, runtime);
    crate::analysis::functions::register(&ctx);
    for table in Table::ALL {
        let path = dir.join(table.name());
        if path.is_dir() {
            ctx.register_parquet(
                table.name(),
                path.to_string_lossy().as_ref(),
                ParquetReadOptions::default(),
            )
            .await?;
        }
    }
    // The catalog's users, when it is reachable.
    let users =
        match crate::catalog::Catalog::connect(&settings.catalog_url, &settings.state_schema).await
        {
            Ok(catalog) => catalog.users().await.unwrap_or_default(),
            Err(err) => {
                tracing::warn!(%err, "the catalog is unreachable: the users table is empty");
                Vec::new()
            }
        };
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("email", DataType::Utf8, false),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from_iter_values(
                users.iter().map(|u| u.0.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                users.iter().map(|u| u.1.as_str()),
            )),
        ],
    )?;
    ctx.register_batch("users", batch)?;
    Ok(ctx)
}

struct Runner {
    ctx: SessionContext,
    format: Format,
    maxrows: usize,
    timeout: Duration,
}

impl Runner {
    /// Runs every statement of `sql`, in order; stops at the first error.
    async fn run_all(&self, sql: &str, out: &mut impl Write) -> Result<()> {
        let statements =
            DFParser::parse_sql(sql).map_err(|e| anyhow!("{}", plain(&e.to_string())))?;
        for statement in statements {
            self.run_one(statement, out).await?;
        }
        Ok(())
    }

    async fn run_one(
        &self,
        statement: datafusion::sql::parser::Statement,
        out: &mut impl Write,
    ) -> Result<()> {
        let started = Instant::now();
        let state = self.ctx.state();
        let plan = state
            .statement_to_plan(statement)
            .await
            .map_err(|e| self.explain_error(&e.to_string()))?;
        SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false)
            .verify_plan(&plan)
            .map_err(|e| anyhow!("{} (query is read only)", plain(&e.to_string())))?;
        let frame = self.ctx.execute_logical_plan(plan).await?;
        // A panic inside the engine ends this task, not the process.
        let task = tokio::spawn(async move { frame.collect().await });
        let batches = match tokio::time::timeout(self.timeout, task).await {
            Err(_) => bail!(
                "the query took longer than {} s (--timeout)",
                self.timeout.as_secs()
            ),
            Ok(Err(join)) if join.is_panic() => {
                bail!("the query engine failed on this query (internal panic)")
            }
            Ok(Err(join)) => bail!("the query was cancelled: {join}"),
            Ok(Ok(result)) => result.map_err(|e| self.explain_error(&e.to_string()))?,
        };
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        write_batches(&batches, self.format, self.maxrows, out)?;
        out.flush()?;
        eprintln!(
            "{rows} row{} in {} ms",
            if rows == 1 { "" } else { "s" },
            started.elapsed().as_millis()
        );
        Ok(())
    }

    /// DataFusion's message, cut to what helps: an unknown column suggests
    /// at most five close names; an unknown table lists the tables.
    fn explain_error(&self, message: &str) -> anyhow::Error {
        if let Some(rest) = message.split("No field named ").nth(1) {
            let name = rest
                .split(['.', ' '])
                .next()
                .unwrap_or_default()
                .trim_matches('"');
            let valid = rest.split("Valid fields are ").nth(1).unwrap_or_default();
            let mut names: Vec<&str> = valid
                .split(", ")
                .map(|f| {
                    f.trim_end_matches('.')
                        .rsplit('.')
                        .next()
                        .unwrap_or(f)
                        .trim_matches('"')
                })
                .collect();
            names.sort_by_key(|n| edit_distance(name, n));
            names.dedup();
            let close: Vec<&str> = names.into_iter().take(5).collect();
            return anyhow!("unknown column {name:?}; close names: {}", close.join(", "));
        }
        if message.contains("table") && message.contains("not found") {
            let tables = [
                "analysis",
                "average",
                "fuel_by_speed_band",
                "average_fuel_by_speed_band",
                "users",
            ];
            return anyhow!("{}; tables: {}", plain(message), tables.join(", "));
        }
        anyhow!("{}", plain(message))
    }
}

/// An error message without DataFusion's repeated prefixes.
fn plain(message: &str) -> String {
    let mut text = message.trim();
    for prefix in [
        "Error during planning: ",
        "SQL error: ",
        "Schema error: ",
        "Execution error: ",
        "ParserError(\"",
    ] {
        while let Some(rest) = text.strip_prefix(prefix) {
            text = rest;
        }
    }
    text.trim_end_matches("\")").to_string()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for j in 0..b.len() {
            let cost = usize::from(ca != b[j]);
            let next = (row[j + 1] + 1).min(row[j] + 1).min(prev + cost);
            prev = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

async fn repl(runner: &Runner, out: &mut impl Write) -> Result<ExitCode> {
    use rustyline::error::ReadlineError;
    let mut editor = rustyline::DefaultEditor::new()?;
    let history = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".fap_warehouse_history"));
    if let Some(path) = &history {
        let _ = editor.load_history(path);
    }
    eprintln!(
        "fap-warehouse query: SQL ending with ';', \\q to quit. Tables: analysis, average, fuel_by_speed_band, average_fuel_by_speed_band, users."
    );
    let mut buffer = String::new();
    loop {
        let prompt = if buffer.is_empty() { "fap> " } else { "...> " };
        match editor.readline(prompt) {
            Ok(line) => {
                if buffer.is_empty() && matches!(line.trim(), "\\q" | "quit" | "exit") {
                    break;
                }
                buffer.push_str(&line);
                buffer.push('\n');
                if line.trim_end().ends_with(';') {
                    let _ = editor.add_history_entry(buffer.trim());
                    if let Err(err) = runner.run_all(&buffer, out).await {
                        eprintln!("error: {err}");
                    }
                    buffer.clear();
                }
            }
            Err(ReadlineError::Interrupted) => buffer.clear(),
            Err(ReadlineError::Eof) => break,
            Err(err) => return Err(err.into()),
        }
    }
    if let Some(path) = &history {
        let _ = editor.save_history(path);
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints result batches in `format`.
pub fn write_batches(
    batches: &[RecordBatch],
    format: Format,
    maxrows: usize,
    out: &mut impl Write,
) -> Result<()> {
    match format {
        Format::Table => write_table(batches, maxrows, out),
        Format::Markdown => write_markdown(batches, out),
        Format::Csv | Format::Tsv => {
            let delimiter = if format == Format::Csv { b',' } else { b'\t' };
            let mut header = true;
            for batch in batches {
                // Through a buffer, so a closed pipe stays an io error.
                let mut buffer = Vec::new();
                let mut writer = datafusion::arrow::csv::WriterBuilder::new()
                    .with_delimiter(delimiter)
                    .with_header(header)
                    .build(&mut buffer);
                writer.write(batch)?;
                drop(writer);
                out.write_all(&buffer)?;
                header = false;
            }
            Ok(())
        }
        Format::Json => {
            let mut buffer = Vec::new();
            let mut writer = datafusion::arrow::json::WriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, datafusion::arrow::json::writer::JsonArray>(&mut buffer);
            for batch in batches {
                writer.write(batch)?;
            }
            writer.finish()?;
            drop(writer);
            if batches.iter().all(|b| b.num_rows() == 0) {
                buffer.extend_from_slice(b"[]");
            }
            buffer.push(b'\n');
            out.write_all(&buffer)?;
            Ok(())
        }
        Format::Ndjson => {
            for batch in batches {
                let mut buffer = Vec::new();
                let mut writer = datafusion::arrow::json::WriterBuilder::new()
                    .with_explicit_nulls(true)
                    .build::<_, datafusion::arrow::json::writer::LineDelimited>(&mut buffer);
                writer.write(batch)?;
                writer.finish()?;
                drop(writer);
                out.write_all(&buffer)?;
            }
            Ok(())
        }
    }
}

/// The widest a table cell is shown.
const MAX_CELL: usize = 40;

/// Results as text: column names, whether each is numeric (right-aligned),
/// and the formatted rows.
struct Cells {
    names: Vec<String>,
    numeric: Vec<bool>,
    rows: Vec<Vec<String>>,
}

fn cells(batches: &[RecordBatch], limit: usize) -> Result<Cells> {
    let options = FormatOptions::default().with_null("NULL");
    let Some(first) = batches.first() else {
        return Ok(Cells {
            names: Vec::new(),
            numeric: Vec::new(),
            rows: Vec::new(),
        });
    };
    let schema = first.schema();
    let names = schema.fields().iter().map(|f| f.name().clone()).collect();
    let numeric = schema
        .fields()
        .iter()
        .map(|f| f.data_type().is_numeric())
        .collect();
    let mut rows = Vec::new();
    'outer: for batch in batches {
        let formatters: Vec<ArrayFormatter> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<_, _>>()?;
        for row in 0..batch.num_rows() {
            if limit > 0 && rows.len() >= limit {
                break 'outer;
            }
            rows.push(
                formatters
                    .iter()
                    .map(|f| f.value(row).to_string())
                    .collect(),
            );
        }
    }
    Ok(Cells {
        names,
        numeric,
        rows,
    })
}

fn cut(text: &str) -> String {
    if text.chars().count() <= MAX_CELL {
        return text.replace('\n', " ");
    }
    let mut out: String = text
        .chars()
        .take(MAX_CELL - 1)
        .collect::<String>()
        .replace('\n', " ");
    out.push('…');
    out
}

fn write_table(batches: &[RecordBatch], maxrows: usize, out: &mut impl Write) -> Result<()> {
    let total: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let Cells {
        names,
        numeric,
        rows,
    } = cells(batches, maxrows)?;
    if names.is_empty() {
        writeln!(out, "(no columns)")?;
        return Ok(());
    }
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| cut(c)).collect())
        .collect();
    let names: Vec<String> = names.iter().map(|n| cut(n)).collect();
    let widths: Vec<usize> = (0..names.len())
        .map(|c| {
            rows.iter()
                .map(|r| r[c].chars().count())
                .chain([names[c].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = format!(
        "+{}+",
        widths
            .iter()
            .map(|w| "-".repeat(w + 2))
            .collect::<Vec<_>>()
            .join("+")
    );
    let render = |cells: &[String], header: bool| -> String {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(c, text)| {
                let pad = widths[c] - text.chars().count();
                if numeric[c] && !header {
                    format!(" {}{text} ", " ".repeat(pad))
                } else {
                    format!(" {text}{} ", " ".repeat(pad))
                }
            })
            .collect();
        format!("|{}|", parts.join("|"))
    };
    writeln!(out, "{line}")?;
    writeln!(out, "{}", render(&names, true))?;
    writeln!(out, "{line}")?;
    for row in &rows {
        writeln!(out, "{}", render(row, false))?;
    }
    writeln!(out, "{line}")?;
    if total > rows.len() {
        writeln!(
            out,
            "({} of {total} rows shown; --maxrows 0 shows all)",
            rows.len()
        )?;
    }
    Ok(())
}

fn write_markdown(batches: &[RecordBatch], out: &mut impl Write) -> Result<()> {
    let Cells {
        names,
        numeric,
        rows,
    } = cells(batches, 0)?;
    if names.is_empty() {
        return Ok(());
    }
    let escape = |s: &str| s.replace('|', "\\|").replace('\n', " ");
    writeln!(
        out,
        "| {} |",
        names
            .iter()
            .map(|n| escape(n))
            .collect::<Vec<_>>()
            .join(" | ")
    )?;
    writeln!(
        out,
        "|{}|",
        numeric
            .iter()
            .map(|n| if *n { "---:" } else { "---" })
            .collect::<Vec<_>>()
            .join("|")
    )?;
    for row in rows {
        writeln!(
            out,
            "| {} |",
            row.iter()
                .map(|c| escape(c))
                .collect::<Vec<_>>()
                .join(" | ")
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_names_come_first() {
        assert!(edit_distance("log_dat", "log_date") < edit_distance("log_dat", "user_id"));
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }

    #[test]
    fn prefixes_are_said_once() {
        assert_eq!(
            plain("Error during planning: Error during planning: x"),
            "x"
        );
    }
}
