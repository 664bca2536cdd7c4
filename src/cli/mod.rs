//! The command line: raw arguments are checked once into [`Settings`], each
//! command family lives in its own file, and exit codes are decided in one
//! place ([`main`]):
//! - 0: the command did its work (an analysis that ends `Failed` is a
//!   result, not an error);
//! - 1: the command could not do its work (unreadable input, unreachable
//!   catalog or NATS, lost run lock, failed delivery…);
//! - 2: wrong usage (unknown flag, missing argument);
//! - 3: `run` or `snapshots prune` skipped: another run holds the run lock
//!   (nothing was done; try later).

mod jobs;
mod live;
pub mod query;
pub mod terminal;
mod tools;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use crate::analysis::engine::Engine;
use crate::analysis::models::Models;
use crate::scan::LogLimits;
use crate::volume::Volume;
pub use terminal::LogFormat;
pub use tools::{gen_logs, generated_id};

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
    /// The log volume: a folder, or file:///path, s3://bucket/prefix [default: <warehouse>/volume].
    #[arg(long, global = true, env = "FAP_VOLUME")]
    volume: Option<String>,
    /// The catalog database URL [default: sqlite://<warehouse>/catalog.db].
    #[arg(long, global = true, env = "DATABASE_URL", hide_env_values = true)]
    catalog: Option<String>,
    /// fap-warehouse's own schema in the backend's PostgreSQL: run records,
    /// and the run lock's identity.
    #[arg(long, global = true, env = "FAP_STATE_SCHEMA", default_value = crate::catalog::StateSchema::DEFAULT)]
    state_schema: String,
    /// Deliver results over NATS at this URL [default: the outbox file].
    #[arg(long, global = true, env = "NATS_URL", hide_env_values = true)]
    nats: Option<String>,
    /// Rows a log may hold; a larger one fails alone ("log too large").
    #[arg(long, global = true, env = "FAP_MAX_LOG_ROWS", default_value_t = LogLimits::default().max_rows)]
    max_log_rows: u64,
    /// Megabytes a log may hold; a larger one fails alone.
    #[arg(long, global = true, env = "FAP_MAX_LOG_MB", default_value_t = LogLimits::default().max_bytes / (1024 * 1024))]
    max_log_mb: u64,
    /// Partitions of the engine's plans [default: the number of cores].
    #[arg(long, global = true, env = "FAP_PARTITIONS")]
    partitions: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Analyse one log and print its `analysis.result` message as JSON.
    Analyze {
        /// The log (CSV); its name without `.csv` is the analysis id.
        file: PathBuf,
        #[command(flatten)]
        engine: EngineArg,
    },
    /// Answer an `average.request` (file or `-` for stdin) with its `average.result`.
    Average {
        /// The request: the `{"pattern","data"}` envelope or the bare `data` object.
        request: PathBuf,
    },
    /// Upload logs for a user into the embedded catalog and volume (`.csv`, or
    /// `.zip` of `.csv`); prints `<analysis-id>\t<file name>` per log, then a summary.
    Ingest {
        /// The user's email; an unknown user is created.
        #[arg(long)]
        user: String,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// The batch job: analyse what changed on the volume, average per user,
    /// publish a Parquet snapshot and send what consumers lack.
    Run(jobs::RunArgs),
    /// The live worker: answer `analysis.request` / `average.request` over
    /// NATS (needs `--nats` or `NATS_URL`) and fire the jobs of `jobs/`,
    /// until SIGTERM/SIGINT.
    Serve(live::ServeArgs),
    /// Create the JetStream stream that keeps a durable record of results
    /// (delivery then waits for its acknowledgement).
    CreateStream {
        #[arg(long, default_value = crate::job::deliver::RESULTS_STREAM)]
        name: String,
    },
    /// List, compare or prune the Parquet snapshots.
    Snapshots {
        #[command(subcommand)]
        action: jobs::SnapshotAction,
    },
    /// The data dictionary: every column of the snapshot tables, with its
    /// unit, weighting and definition.
    Describe {
        /// analysis, average, fuel_by_speed_band or average_fuel_by_speed_band [default: all].
        table: Option<String>,
        #[arg(long, value_enum, default_value_t = DescribeFormat::Table)]
        format: DescribeFormat,
    },
    /// Query a snapshot with SQL (tables: analysis, average,
    /// fuel_by_speed_band, average_fuel_by_speed_band, users).
    Query(query::QueryArgs),
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
    /// MB/s, logs/s and peak memory, beside a bare scan of the same files.
    Bench(tools::BenchArgs),
    /// A Ballista scheduler for `--engine ballista://HOST:PORT`, with this
    /// project's codecs and functions (until SIGTERM).
    #[cfg(feature = "ballista")]
    Scheduler {
        /// Address to listen on (gRPC for clients and executors).
        #[arg(long, default_value = "0.0.0.0:50050")]
        bind: std::net::SocketAddr,
        /// Host name executors and clients use to reach it [default: the bind address].
        #[arg(long)]
        external_host: Option<String>,
        /// Seconds without a heartbeat (executors beat every 3 s) before an
        /// executor is lost and its tasks run elsewhere.
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(10..))]
        executor_timeout_seconds: u64,
    },
    /// A Ballista executor: runs the analysis tasks the scheduler gives it,
    /// reading logs from the volume the plans name (until SIGTERM, after its
    /// running tasks end).
    #[cfg(feature = "ballista")]
    Executor {
        /// The scheduler, HOST:PORT.
        #[arg(long)]
        scheduler: String,
        /// Address for Arrow Flight (shuffle and result fetches).
        #[arg(long, default_value = "0.0.0.0:50051")]
        bind: std::net::SocketAddr,
        /// Address for task launches from the scheduler (same host as --bind).
        #[arg(long, default_value = "0.0.0.0:50052")]
        grpc_bind: std::net::SocketAddr,
        /// Host name the scheduler and other executors use to reach it
        /// [default: the address it connects from].
        #[arg(long)]
        external_host: Option<String>,
        /// Tasks at a time [default: the number of cores].
        #[arg(long)]
        concurrent_tasks: Option<usize>,
        /// Folder for shuffle files [default: in the system's temp folder].
        #[arg(long)]
        work_dir: Option<PathBuf>,
    },
}

/// Where the analysis plan runs.
#[derive(Debug, Clone, clap::Args)]
pub struct EngineArg {
    /// Where the analysis plan runs: `local`, or `ballista://HOST:PORT` (a
    /// Ballista scheduler; executors must reach the volume).
    #[arg(long = "engine", env = "FAP_ENGINE", default_value = "local", value_parser = crate::analysis::engine::Target::parse)]
    pub target: crate::analysis::engine::Target,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum DescribeFormat {
    Table,
    Markdown,
    Json,
}

/// Settings checked once from the command line and environment.
pub struct Settings {
    pub warehouse: PathBuf,
    pub volume: Volume,
    pub catalog_url: String,
    pub state_schema: crate::catalog::StateSchema,
    pub nats_url: Option<String>,
    pub sql_dir: Option<PathBuf>,
    pub engine: Engine,
    pub limits: LogLimits,
}

impl Settings {
    fn from_cli(cli: &Cli) -> Result<Self> {
        let models = match &cli.sql_dir {
            Some(dir) => Models::from_dir(dir)?,
            None => Models::embedded(),
        };
        for name in models.overridden() {
            tracing::info!(model = name, dir = %cli.sql_dir.as_deref().unwrap_or_else(|| std::path::Path::new("")).display(), "SQL model overridden by --sql-dir");
        }
        let limits = LogLimits {
            max_rows: cli.max_log_rows.max(1),
            max_bytes: cli.max_log_mb.max(1).saturating_mul(1024 * 1024),
        };
        let volume = match &cli.volume {
            Some(spec) => Volume::parse(spec)?,
            None => Volume::local(&cli.warehouse.join("volume"))?,
        };
        let mut engine = Engine::new(models).with_limits(limits);
        if let Some(partitions) = cli.partitions {
            engine = engine.with_partitions(partitions);
        }
        if volume.is_remote() {
            engine = engine.with_store(volume.url().clone(), volume.store().clone());
        }
        let catalog_url = cli
            .catalog
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", cli.warehouse.join("catalog.db").display()));
        Ok(Self {
            warehouse: cli.warehouse.clone(),
            volume,
            catalog_url,
            state_schema: crate::catalog::StateSchema::parse(&cli.state_schema)?,
            nats_url: cli.nats.clone(),
            sql_dir: cli.sql_dir.clone(),
            engine,
            limits,
        })
    }

    /// Whether the catalog is the embedded SQLite file of the warehouse.
    fn embedded_catalog(&self) -> Option<PathBuf> {
        self.catalog_url
            .strip_prefix("sqlite://")
            .or_else(|| self.catalog_url.strip_prefix("sqlite:"))
            .map(|p| PathBuf::from(p.split('?').next().unwrap_or(p)))
    }
}

/// A command that did not start because another run holds the lock (exit 3).
#[derive(Debug, thiserror::Error)]
#[error("another run holds the run lock ({0}); nothing was done")]
pub struct Skipped(String);

/// Runs the command line and maps the outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    terminal::init_logging(cli.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let stdout = std::io::stdout();
    let outcome = runtime.block_on(run(cli, &mut stdout.lock()));
    match outcome {
        Ok(code) => code,
        Err(err) if err.downcast_ref::<Skipped>().is_some() => {
            eprintln!("skipped: {err}");
            ExitCode::from(3)
        }
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", causes(&err));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, each said once.
fn causes(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

/// A closed pipe (`… | head`) is the reader's choice, not an error.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Runs one command, writing its output to `out`.
pub async fn run(cli: Cli, out: &mut impl Write) -> Result<ExitCode> {
    let mut settings = Settings::from_cli(&cli)?;
    let target = match &cli.command {
        Command::Run(args) => Some(&args.engine),
        Command::Bench(args) => Some(&args.engine),
        Command::Analyze { engine, .. } => Some(engine),
        _ => None,
    };
    if let Some(engine) = target {
        settings.engine = settings.engine.clone().with_target(engine.target.clone());
        settings.engine.check_target().await?;
    }
    match cli.command {
        Command::Ingest { user, files } => jobs::ingest(&settings, &user, &files, out).await,
        Command::Run(args) => jobs::run(&settings, &args, out).await,
        Command::Snapshots { action } => jobs::snapshots(&settings, action, out).await,
        Command::Serve(args) => live::serve(settings, args).await,
        Command::CreateStream { name } => {
            let nats_url = settings
                .nats_url
                .clone()
                .context("create-stream needs --nats URL or NATS_URL")?;
            let publisher = crate::job::deliver::NatsPublisher::connect(&nats_url).await?;
            let name = publisher.create_results_stream(&name).await?;
            writeln!(
                out,
                "stream {name} captures {}",
                crate::job::deliver::RESULT_SUBJECTS.join(", ")
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Query(args) => query::query(&settings, args, out).await,
        Command::Describe { table, format } => describe(table.as_deref(), format, out),
        Command::Analyze { file, .. } => tools::analyze(&settings, &file, out).await,
        Command::Average { request } => tools::average(&settings, &request, out).await,
        Command::GenLogs {
            out: dir,
            count,
            size,
            seed,
        } => {
            let paths = tools::gen_logs(&dir, count, size, seed)?;
            writeln!(out, "wrote {} logs to {}", paths.len(), dir.display())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(args) => tools::bench(&settings, args, out).await,
        #[cfg(feature = "ballista")]
        Command::Scheduler {
            bind,
            external_host,
            executor_timeout_seconds,
        } => {
            crate::distributed::cluster::scheduler(crate::distributed::cluster::SchedulerOptions {
                bind,
                external_host,
                executor_timeout_seconds,
            })
            .await?;
            Ok(ExitCode::SUCCESS)
        }
        #[cfg(feature = "ballista")]
        Command::Executor {
            scheduler,
            bind,
            grpc_bind,
            external_host,
            concurrent_tasks,
            work_dir,
        } => {
            let concurrent_tasks = concurrent_tasks
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
            crate::distributed::cluster::executor(crate::distributed::cluster::ExecutorOptions {
                scheduler,
                bind,
                grpc_bind,
                external_host,
                concurrent_tasks,
                work_dir,
            })
            .await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn describe(table: Option<&str>, format: DescribeFormat, out: &mut impl Write) -> Result<ExitCode> {
    use crate::job::dictionary;
    use crate::job::snapshot::Table;
    let tables: Vec<Table> = match table {
        None => Table::ALL.to_vec(),
        Some(name) => match Table::ALL.into_iter().find(|t| t.name() == name) {
            Some(t) => vec![t],
            None => anyhow::bail!(
                "no table {name:?}; tables: {}",
                Table::ALL.map(|t| t.name()).join(", ")
            ),
        },
    };
    match format {
        DescribeFormat::Markdown => write!(out, "{}", dictionary::markdown())?,
        DescribeFormat::Json => {
            let all: serde_json::Map<String, serde_json::Value> = tables
                .iter()
                .map(|t| {
                    (
                        t.name().to_string(),
                        serde_json::json!(dictionary::columns(*t)),
                    )
                })
                .collect();
            writeln!(out, "{}", serde_json::to_string_pretty(&all)?)?;
        }
        DescribeFormat::Table => {
            for t in tables {
                writeln!(out, "{}", t.name())?;
                for c in dictionary::columns(t) {
                    let unit = c
                        .unit
                        .as_deref()
                        .map(|u| format!(" [{u}]"))
                        .unwrap_or_default();
                    writeln!(out, "  {}{unit}: {}", c.name, c.description)?;
                    if let Some(w) = &c.weighting {
                        writeln!(out, "      weighting: {w}")?;
                    }
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received");
}

/// The process's peak resident set size (Linux `VmHWM`), in MiB.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
