//! `analyze`, `average`, `gen-logs` and `bench`: one log, one request, demo
//! data, and the engine's benchmark.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use datafusion::arrow::array::AsArray;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::prelude::CsvReadOptions;

use super::{Settings, peak_rss_mib};
use crate::analysis::average::{self, Averager};
use crate::analysis::message;
use crate::generate;
use crate::scan::LogInput;

pub async fn analyze(settings: &Settings, file: &Path, out: &mut impl Write) -> Result<ExitCode> {
    let meta =
        std::fs::metadata(file).with_context(|| format!("cannot read {}", file.display()))?;
    anyhow::ensure!(meta.is_file(), "{} is not a regular file", file.display());
    let result = settings.engine.analyse_files(&[file.to_path_buf()]).await?;
    writeln!(out, "{}", message::analysis_result(&result.batch, 0))?;
    Ok(ExitCode::SUCCESS)
}

pub async fn average(
    settings: &Settings,
    request: &Path,
    out: &mut impl Write,
) -> Result<ExitCode> {
    let mut text = String::new();
    if request == Path::new("-") {
        std::io::stdin().read_to_string(&mut text)?;
    } else {
        text = std::fs::read_to_string(request)
            .with_context(|| format!("cannot read the request {}", request.display()))?;
    }
    let payload: serde_json::Value =
        serde_json::from_str(&text).context("the request is not valid JSON")?;
    let averager = Averager::for_requests(&settings.engine).await?;
    let result = average::answer(&averager, &payload).await?;
    writeln!(out, "{result}")?;
    Ok(ExitCode::SUCCESS)
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

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
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
    /// Print the physical plan instead of running it.
    #[arg(long)]
    explain: bool,
    /// Skip the bare DataFusion `count(*)` over the same files.
    #[arg(long)]
    no_baseline: bool,
    /// Also time each layer alone: the scan, the cleaning, the analysis.
    #[arg(long)]
    stages: bool,
    #[command(flatten)]
    pub engine: super::EngineArg,
}

pub async fn bench(settings: &Settings, args: BenchArgs, out: &mut impl Write) -> Result<ExitCode> {
    let dir = args
        .dir
        .join(format!("{}x{}-seed{}", args.logs, args.size, args.seed));
    let paths: Vec<PathBuf> = if dir.join(".complete").exists() {
        (0..args.logs)
            .map(|i| dir.join(format!("{}.csv", generated_id(args.seed, i))))
            .collect()
    } else {
        let paths = gen_logs(&dir, args.logs, args.size, args.seed)?;
        std::fs::write(dir.join(".complete"), b"")?;
        paths
    };
    let mut inputs = paths
        .iter()
        .map(|p| LogInput::from_path(p))
        .collect::<std::io::Result<Vec<_>>>()?;
    inputs.sort_by(|a, b| a.log_id.cmp(&b.log_id));
    let engine = &settings.engine;
    let logs = engine.log_set(ObjectStoreUrl::local_filesystem(), inputs);
    if args.explain {
        let ctx = engine.context();
        let plan = engine.analysis_plan(&ctx, Arc::new(logs)).await?;
        let text = datafusion::physical_plan::displayable(plan.as_ref()).indent(true);
        writeln!(out, "{text}")?;
        return Ok(ExitCode::SUCCESS);
    }
    if !args.no_baseline {
        let started = Instant::now();
        let rows = bare_count(settings, &dir).await?;
        let seconds = started.elapsed().as_secs_f64();
        let mb = logs.bytes() as f64 / 1e6;
        writeln!(
            out,
            "baseline: bare DataFusion CSV count(*) of {rows} rows, {mb:.1} MB in {seconds:.3} s: {:.1} MB/s",
            mb / seconds
        )?;
        reset_peak_rss();
    }
    if args.stages {
        let logs = Arc::new(logs.clone());
        for table in ["log_rows", "stg_clean_rows", "log_analysis"] {
            let ctx = engine.context();
            engine.register_logs(&ctx, logs.clone()).await?;
            let started = Instant::now();
            let rows = ctx
                .sql(&format!("SELECT count(*) FROM {table}"))
                .await?
                .collect()
                .await?;
            let n = rows
                .first()
                .map(|b| {
                    b.column(0)
                        .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
                        .value(0)
                })
                .unwrap_or(0);
            writeln!(
                out,
                "stage {table}: {n} rows in {:.3} s",
                started.elapsed().as_secs_f64()
            )?;
        }
    }
    let rss_before = peak_rss_mib();
    let started = Instant::now();
    let result = engine.analyse(logs).await?;
    let seconds = started.elapsed().as_secs_f64();
    let mb = result.bytes as f64 / 1e6;
    writeln!(
        out,
        "engine: {} logs, {:.1} MB in {:.3} s: {:.1} MB/s, {:.0} logs/s; failed {}; peak RSS {:.0} MiB (before the run {:.0} MiB); {} partitions",
        result.batch.num_rows(),
        mb,
        seconds,
        mb / seconds,
        result.batch.num_rows() as f64 / seconds,
        message::failed_rows(&result.batch),
        peak_rss_mib().unwrap_or(f64::NAN),
        rss_before.unwrap_or(f64::NAN),
        engine.partitions(),
    )?;
    Ok(ExitCode::SUCCESS)
}

/// DataFusion's own CSV reader counting the rows of the same files: the
/// floor of what reading them costs.
async fn bare_count(settings: &Settings, dir: &Path) -> Result<i64> {
    let ctx = settings.engine.context();
    let options = CsvReadOptions::new()
        .delimiter(b';')
        .has_header(true)
        .schema_infer_max_records(0)
        .truncated_rows(true);
    ctx.register_csv("bare", dir.to_string_lossy().as_ref(), options)
        .await?;
    let batches = ctx
        .sql("SELECT count(*) FROM bare")
        .await?
        .collect()
        .await?;
    Ok(batches
        .first()
        .map(|b| {
            b.column(0)
                .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
                .value(0)
        })
        .unwrap_or(0))
}

/// Resets the process's peak RSS (Linux), so the next phase is measured alone.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}
