//! The command line. Exit codes scripts can trust:
//! - 0: the command did its work (an analysis that ends `Failed` is a result,
//!   not an error);
//! - 1: the command could not do its work (unreadable request, engine error);
//! - 2: wrong usage (unknown flag, missing argument).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use crate::engine::Engine;
use crate::generate;
use crate::message;
use crate::scan::LogInput;
use crate::sql::Models;

#[derive(Debug, Parser)]
#[command(
    name = "fap-warehouse",
    version,
    about = "Analyses FAP/DPF vehicle logs with SQL: per log, per user, as a batch job."
)]
pub struct Cli {
    /// Folder of SQL models overriding the embedded ones (same file names as sql/).
    #[arg(long, global = true, env = "FAP_SQL_DIR")]
    sql_dir: Option<PathBuf>,
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
    },
}

/// Runs the command line and maps the outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "fap_warehouse=info,warn".into()),
        )
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli, &mut std::io::stdout().lock())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one command, writing its output to `out`.
pub async fn run(cli: Cli, out: &mut impl Write) -> Result<()> {
    let models = match &cli.sql_dir {
        Some(dir) => Models::from_dir(dir)?,
        None => Models::embedded(),
    };
    let engine = Engine::new(models);
    match cli.command {
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
        } => bench(&engine, logs, size, seed, &dir, out).await,
    }
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
