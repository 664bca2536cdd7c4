//! The command line. Exit codes scripts can trust:
//! - 0: the command did its work (an analysis that ends `Failed` is a result,
//!   not an error);
//! - 1: the command could not do its work (unreadable request, engine error);
//! - 2: wrong usage (unknown flag, missing argument);
//! - 3: `run` skipped because another run of the same warehouse is in
//!   progress (nothing was done; try later).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use datafusion::arrow::array::RecordBatch;

use crate::catalog::Catalog;
use crate::engine::Engine;
use crate::generate;
use crate::message;
use crate::scan::LogInput;
use crate::sql::Models;
use crate::{ingest, job, snapshot};

#[derive(Debug, Parser)]
#[command(
    name = "fap-warehouse",
    version,
    about = "Analyses FAP/DPF vehicle logs with SQL: per log, per user, as a batch job."
)]
pub struct Cli {
    /// Log lines on stderr as text or as JSON objects (for log collectors).
    #[arg(long, global = true, env = "FAP_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Input megabytes analysed by one plan at most (bounds memory; 0 = all in one plan).
    #[arg(long, global = true, env = "FAP_CHUNK_MB", default_value_t = 128)]
    chunk_mb: u64,
    /// Folder of SQL models overriding the embedded ones (same file names as sql/).
    #[arg(long, global = true, env = "FAP_SQL_DIR")]
    sql_dir: Option<PathBuf>,
    /// The warehouse folder: snapshots, outbox, embedded catalog.
    #[arg(
        long,
        global = true,
        env = "FAP_WAREHOUSE",
        default_value = "warehouse"
    )]
    warehouse: PathBuf,
    /// The log volume (`<analysis-id>.csv` files) [default: <warehouse>/volume].
    #[arg(long, global = true, env = "FAP_VOLUME")]
    volume: Option<PathBuf>,
    /// The catalog database URL [default: sqlite://<warehouse>/catalog.db].
    #[arg(long, global = true, env = "DATABASE_URL", hide_env_values = true)]
    catalog: Option<String>,
    /// Deliver results over NATS at this URL [default: the outbox file].
    #[arg(long, global = true, env = "NATS_URL", hide_env_values = true)]
    nats: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Analyse one log and print its `analysis.result` message as JSON.
    Analyze {
        /// The log (CSV); its name without `.csv` is the analysis id.
        file: PathBuf,
    },
    /// Answer an `average.request` (file or `-` for stdin) with its `average.result`.
    Average {
        /// The request: the `{"pattern","data"}` envelope or the bare `data` object.
        request: PathBuf,
    },
    /// Upload logs for a user into the embedded catalog and volume (`.csv`, or
    /// `.zip` of `.csv`); prints `<analysis-id>\t<file name>` per log.
    Ingest {
        /// The user's email; an unknown user is created.
        #[arg(long)]
        user: String,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// The batch job: analyse every catalog log on the volume, average per
    /// user, write a Parquet snapshot and send what changed.
    Run {
        /// Re-send every result, changed or not (a consumer lost its data).
        #[arg(long)]
        force: bool,
    },
    /// The live worker: answer `analysis.request` / `average.request` over
    /// NATS (needs `--nats` or `NATS_URL`) until SIGTERM/SIGINT.
    Serve {
        /// Queue group shared by the instances that split the requests.
        #[arg(long, env = "FAP_QUEUE_GROUP", default_value = "fap-warehouse")]
        queue_group: String,
        /// Requests analysed at once.
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        /// Folder of job definitions to run on schedule (`*.toml`); none if absent.
        #[arg(long, env = "FAP_JOBS_DIR", default_value = "jobs")]
        jobs: PathBuf,
    },
    /// Create the JetStream stream that keeps a durable record of results
    /// (delivery then waits for its acknowledgement).
    CreateStream {
        #[arg(long, default_value = crate::deliver::RESULTS_STREAM)]
        name: String,
    },
    /// List or prune the Parquet snapshots.
    Snapshots {
        #[command(subcommand)]
        action: SnapshotAction,
    },
    /// Run SQL on a snapshot's tables `analysis` and `average`.
    Query {
        /// Snapshot id [default: the latest].
        #[arg(long)]
        snapshot: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        sql: String,
    },
    /// Write realistic synthetic logs (deterministic by seed).
    GenLogs {
        /// Folder to write `<uuid-like id>.csv` files into (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// How many logs.
        #[arg(long, default_value_t = 20)]
        count: usize,
        /// Approximate size of each log in bytes.
        #[arg(long, default_value_t = 300_000)]
        size: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Benchmark the engine: analyse N generated logs in one plan and report
    /// MB/s, logs/s and peak memory.
    Bench {
        /// How many logs.
        #[arg(long, default_value_t = 1000)]
        logs: usize,
        /// Approximate size of each log in bytes.
        #[arg(long, default_value_t = 300_000)]
        size: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Folder for the generated logs (reused when it already holds them).
        #[arg(long, default_value = "target/bench-logs")]
        dir: PathBuf,
        /// Print the physical plan (EXPLAIN) instead of running it.
        #[arg(long)]
        explain: bool,
    },
}

#[derive(Debug, Subcommand)]
enum SnapshotAction {
    /// Snapshot ids, oldest first; the latest is marked with `*`.
    List,
    /// Delete all but the newest N snapshots (never the latest).
    Prune {
        #[arg(long)]
        keep: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Format {
    Table,
    Csv,
    Json,
}

/// Runs the command line and maps the outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "fap_warehouse=info,warn".into());
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    if cli.log_format == LogFormat::Json {
        logs.json().with_current_span(true).init();
    } else {
        logs.init();
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli, &mut std::io::stdout().lock())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if err.downcast_ref::<Skipped>().is_some() => {
            eprintln!("skipped: {err}");
            ExitCode::from(3)
        }
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// A run that did not start because another run holds the lock (exit 3).
#[derive(Debug, thiserror::Error)]
#[error("another run of this warehouse is in progress (it holds the run lock)")]
pub struct Skipped;

/// Runs one command, writing its output to `out`.
pub async fn run(cli: Cli, out: &mut impl Write) -> Result<()> {
    let models = match &cli.sql_dir {
        Some(dir) => Models::from_dir(dir)?,
        None => Models::embedded(),
    };
    let engine = Engine::new(models).with_chunk_bytes(cli.chunk_mb * 1024 * 1024);
    let warehouse = cli.warehouse.clone();
    let volume = cli
        .volume
        .clone()
        .unwrap_or_else(|| warehouse.join("volume"));
    let catalog_url = cli
        .catalog
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", warehouse.join("catalog.db").display()));
    match cli.command {
        Command::Ingest { user, files } => {
            std::fs::create_dir_all(&warehouse)?;
            let catalog = Catalog::connect(&catalog_url).await?;
            for item in ingest::ingest(&catalog, &volume, &user, &files).await? {
                writeln!(out, "{}\t{}", item.analysis_id, item.file_name)?;
            }
            Ok(())
        }
        Command::Run { force } => {
            std::fs::create_dir_all(&warehouse)?;
            let catalog = Catalog::connect(&catalog_url).await?;
            let Some(_lock) =
                crate::schedule::try_lock(&catalog, &warehouse, crate::schedule::RUN_LOCK).await?
            else {
                return Err(Skipped.into());
            };
            let config = job::RunConfig {
                warehouse: warehouse.clone(),
                volume,
                force,
                nats_url: cli.nats.clone(),
                crash_before_rename: std::env::var("FAP_TEST_CRASH_BEFORE_RENAME").is_ok(),
            };
            let spinner = progress("analysing the volume");
            let summary = job::run(&engine, &catalog, &config).await;
            spinner.finish_and_clear();
            let s = summary?;
            writeln!(
                out,
                "snapshot {}: {} logs ({} failed), {} users changed, {} analysis + {} average messages, {:.1} MB at {:.1} MB/s in {:.2} s",
                s.snapshot_id,
                s.logs,
                s.failed,
                s.users_changed,
                s.analysis_messages,
                s.average_messages,
                s.input_bytes as f64 / 1e6,
                s.mb_per_s(),
                s.seconds
            )?;
            if !s.missing_files.is_empty() {
                writeln!(
                    out,
                    "catalog rows without a log file (left alone): {}",
                    s.missing_files.join(", ")
                )?;
            }
            if !s.orphan_files.is_empty() {
                writeln!(
                    out,
                    "log files without a catalog row (left alone): {}",
                    s.orphan_files.join(", ")
                )?;
            }
            writeln!(
                out,
                "snapshot: {}",
                snapshot::root(&warehouse).join(&s.snapshot_id).display()
            )?;
            if let Some(outbox) = &s.outbox {
                writeln!(out, "outbox: {}", outbox.display())?;
            }
            writeln!(out, "catalog: {}", crate::catalog::redact(&catalog_url))?;
            Ok(())
        }
        Command::Serve {
            queue_group,
            concurrency,
            jobs,
        } => {
            let nats_url = cli
                .nats
                .clone()
                .context("serve needs --nats URL or NATS_URL")?;
            let jobs = if jobs.is_dir() {
                crate::schedule::load_jobs(&jobs)?
            } else {
                Vec::new()
            };
            for (spec, _) in &jobs {
                tracing::info!(job = %spec.name, schedule = %spec.schedule, "job scheduled (UTC)");
            }
            let config = crate::serve::ServeConfig {
                nats_url,
                queue_group,
                volume,
                concurrency,
                jobs,
                warehouse: warehouse.clone(),
                catalog_url: catalog_url.clone(),
            };
            crate::serve::serve(engine, config, shutdown_signal()).await?;
            Ok(())
        }
        Command::CreateStream { name } => {
            let nats_url = cli
                .nats
                .clone()
                .context("create-stream needs --nats URL or NATS_URL")?;
            let publisher = crate::deliver::NatsPublisher::connect(&nats_url).await?;
            let name = publisher.create_results_stream(&name).await?;
            writeln!(
                out,
                "stream {name} captures {}",
                crate::deliver::RESULT_SUBJECTS.join(", ")
            )?;
            Ok(())
        }
        Command::Snapshots { action } => match action {
            SnapshotAction::List => {
                let latest = snapshot::latest(&warehouse);
                for id in snapshot::list(&warehouse)? {
                    let mark = if Some(&id) == latest.as_ref() {
                        "*"
                    } else {
                        " "
                    };
                    writeln!(out, "{mark} {id}")?;
                }
                Ok(())
            }
            SnapshotAction::Prune { keep } => {
                for id in snapshot::prune(&warehouse, keep)? {
                    writeln!(out, "removed {id}")?;
                }
                Ok(())
            }
        },
        Command::Query {
            snapshot: id,
            format,
            sql,
        } => query(&engine, &warehouse, id.as_deref(), format, &sql, out).await,
        Command::Analyze { file } => analyze(&engine, &file, out).await,
        Command::Average { request } => average(&engine, &request, out).await,
        Command::GenLogs {
            out: dir,
            count,
            size,
            seed,
        } => {
            let paths = gen_logs(&dir, count, size, seed)?;
            writeln!(out, "wrote {} logs to {}", paths.len(), dir.display())?;
            Ok(())
        }
        Command::Bench {
            logs,
            size,
            seed,
            dir,
            explain,
        } => bench(&engine, logs, size, seed, &dir, explain, out).await,
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received");
}

/// A spinner on a terminal, nothing otherwise (logs say the same).
fn progress(message: &'static str) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new_spinner().with_message(message);
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

async fn query(
    engine: &Engine,
    warehouse: &Path,
    id: Option<&str>,
    format: Format,
    sql: &str,
    out: &mut impl Write,
) -> Result<()> {
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::prelude::ParquetReadOptions;
    let dir = snapshot::resolve(warehouse, id)?;
    let ctx = engine.context();
    for table in ["analysis", "average"] {
        let path = dir.join(table);
        ctx.register_parquet(
            table,
            path.to_string_lossy().as_ref(),
            ParquetReadOptions::default(),
        )
        .await?;
    }
    let batches = ctx.sql(sql).await?.collect().await?;
    match format {
        Format::Table => writeln!(out, "{}", pretty_format_batches(&batches)?)?,
        Format::Csv => {
            let mut writer = datafusion::arrow::csv::Writer::new(&mut *out);
            for b in &batches {
                writer.write(b)?;
            }
        }
        Format::Json => {
            let mut writer = datafusion::arrow::json::ArrayWriter::new(&mut *out);
            let refs: Vec<&RecordBatch> = batches.iter().collect();
            writer.write_batches(&refs)?;
            writer.finish()?;
            if batches.iter().all(|b| b.num_rows() == 0) {
                write!(out, "[]")?;
            }
            writeln!(out)?;
        }
    }
    Ok(())
}

async fn analyze(engine: &Engine, file: &Path, out: &mut impl Write) -> Result<()> {
    let result = engine.analyse(&[LogInput::from_path(file)]).await?;
    let message = message::analysis_result(&result.batch, 0);
    writeln!(out, "{message}")?;
    Ok(())
}

async fn average(engine: &Engine, request: &Path, out: &mut impl Write) -> Result<()> {
    let mut text = String::new();
    if request == Path::new("-") {
        std::io::stdin().read_to_string(&mut text)?;
    } else {
        text = std::fs::read_to_string(request)
            .with_context(|| format!("cannot read the request {}", request.display()))?;
    }
    let payload: serde_json::Value =
        serde_json::from_str(&text).context("the request is not valid JSON")?;
    let result = crate::average::answer(engine, &payload).await?;
    writeln!(out, "{result}")?;
    Ok(())
}

/// Writes `count` generated logs named like analysis ids; returns their paths.
pub fn gen_logs(dir: &Path, count: usize, size: usize, seed: u64) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    (0..count)
        .map(|index| {
            let spec = generate::spec_for(seed, index, size);
            let path = dir.join(format!("{}.csv", generated_id(seed, index)));
            std::fs::write(&path, generate::generate_log(&spec))
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(path)
        })
        .collect()
}

/// A UUID-shaped id, stable for (seed, index), so demo logs look like uploads.
pub fn generated_id(seed: u64, index: usize) -> String {
    let a = splitmix(seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let b = splitmix(a);
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        b >> 52,
        b & 0xffff_ffff_ffff
    )
}

fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

async fn bench(
    engine: &Engine,
    count: usize,
    size: usize,
    seed: u64,
    dir: &Path,
    explain: bool,
    out: &mut impl Write,
) -> Result<()> {
    let dir = dir.join(format!("{count}x{size}-seed{seed}"));
    let paths = if dir.join(".complete").exists() {
        (0..count)
            .map(|i| dir.join(format!("{}.csv", generated_id(seed, i))))
            .collect()
    } else {
        let paths = gen_logs(&dir, count, size, seed)?;
        std::fs::write(dir.join(".complete"), b"")?;
        paths
    };
    let logs: Vec<LogInput> = paths.iter().map(LogInput::from_path).collect();
    if explain {
        let (ctx, _) = engine.log_context(&logs).await?;
        let plan = ctx
            .sql("EXPLAIN SELECT * FROM log_analysis")
            .await?
            .collect()
            .await?;
        writeln!(
            out,
            "{}",
            datafusion::arrow::util::pretty::pretty_format_batches(&plan)?
        )?;
        return Ok(());
    }
    let rss_before = peak_rss_mib();
    let started = Instant::now();
    let result = engine.analyse(&logs).await?;
    let seconds = started.elapsed().as_secs_f64();
    let mb = result.summary.bytes as f64 / 1e6;
    writeln!(
        out,
        "{} logs, {:.1} MB in {:.3} s: {:.1} MB/s, {:.0} logs/s; failed {}; peak RSS {:.0} MiB (before the run {:.0} MiB)",
        result.batch.num_rows(),
        mb,
        seconds,
        mb / seconds,
        result.batch.num_rows() as f64 / seconds,
        message::failed_rows(&result.batch),
        peak_rss_mib().unwrap_or(f64::NAN),
        rss_before.unwrap_or(f64::NAN),
    )?;
    Ok(())
}

/// The process's peak resident set size (Linux `VmHWM`), in MiB.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
