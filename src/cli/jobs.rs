//! `ingest`, `run` and `snapshots`: the batch job's commands.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Result, bail};

use super::terminal::Progress;
use super::{Settings, Skipped};
use crate::catalog::Catalog;
use crate::catalog::lock::RunLock;
use crate::ingest;
use crate::job::{self, RunConfig, RunOptions, snapshot};

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Re-send every result, changed or not (a consumer lost its data).
    #[arg(long)]
    force: bool,
    /// Re-analyse every log, even those with a result for this algorithm version.
    #[arg(long)]
    full: bool,
    /// Compute an experiment snapshot and a change report; deliver nothing,
    /// leave the catalog and `latest` untouched.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    pub engine: super::EngineArg,
}

#[derive(Debug, clap::Subcommand)]
pub enum SnapshotAction {
    /// Snapshots, oldest first: time, logs, failed, size, algorithm version.
    List {
        #[arg(long, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
    },
    /// Delete all but the newest N snapshots (never the latest) and their outboxes.
    Prune {
        #[arg(long)]
        keep: usize,
        /// Say what would be deleted, delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Added, removed and changed analyses and averages between two
    /// snapshots, per metric with the largest difference.
    Diff {
        /// The older snapshot id.
        old: String,
        /// The newer snapshot id [default: the latest].
        new: Option<String>,
        #[arg(long, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ListFormat {
    Table,
    Json,
}

/// The catalog a command works on. The embedded one must already exist
/// unless `create` (ingest): a run in a folder with no warehouse is a
/// mistake, not an empty warehouse.
async fn catalog(settings: &Settings, create: bool) -> Result<Catalog> {
    if let Some(path) = settings.embedded_catalog()
        && !create
        && !path.is_file()
    {
        bail!(
            "no warehouse at {}: there is no catalog ({}). Ingest logs first (fap-warehouse ingest), \
             or point --warehouse / DATABASE_URL at an existing one",
            absolute(&settings.warehouse).display(),
            absolute(&path).display()
        );
    }
    if create {
        std::fs::create_dir_all(&settings.warehouse)?;
    }
    Ok(Catalog::connect(&settings.catalog_url, &settings.state_schema).await?)
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

pub async fn ingest(
    settings: &Settings,
    user: &str,
    files: &[PathBuf],
    out: &mut impl Write,
) -> Result<ExitCode> {
    ingest::validate_email(user)?;
    let catalog = catalog(settings, true).await?;
    let summary = ingest::ingest(&catalog, &settings.volume, user, files, settings.limits).await?;
    for item in &summary.logs {
        writeln!(out, "{}\t{}", item.analysis_id, item.file_name)?;
        if let Some(warning) = &item.warning {
            tracing::warn!(file = %item.file_name, "{warning} Its analysis will fail.");
        }
    }
    let new = summary.logs.iter().filter(|l| l.created).count();
    writeln!(
        out,
        "{new} new, {} already there, user {} {}",
        summary.logs.len() - new,
        user,
        if summary.user_created {
            "created"
        } else {
            "existing"
        }
    )?;
    Ok(ExitCode::SUCCESS)
}

pub async fn run(settings: &Settings, args: &RunArgs, out: &mut impl Write) -> Result<ExitCode> {
    let catalog = catalog(settings, false).await?;
    std::fs::create_dir_all(&settings.warehouse)?;
    let Some(lock) = RunLock::try_take(&catalog, &settings.warehouse).await? else {
        return Err(Skipped("a run is in progress".into()).into());
    };
    let mut config = RunConfig::new(settings.warehouse.clone(), settings.volume.clone());
    config.nats_url = settings.nats_url.clone();
    config.sql_dir = settings.sql_dir.clone();
    config.options = RunOptions {
        full: args.full,
        force: args.force,
        dry_run: args.dry_run,
    };
    let progress = Progress::scan("analysing", config.progress.clone());
    let summary = {
        let _progress = progress;
        job::run(&settings.engine, &catalog, &lock, &config).await
    };
    let s = summary?;
    let kind = if s.experiment {
        "experiment"
    } else {
        "snapshot"
    };
    writeln!(
        out,
        "{kind} {}: {} logs ({} analysed, {} reused, {} failed), {} users changed, {} analysis + {} average messages, {:.1} MB at {:.1} MB/s in {:.2} s",
        s.snapshot_id,
        s.logs,
        s.analysed,
        s.reused,
        s.failed,
        s.users_changed,
        s.analysis_messages,
        s.average_messages,
        s.input_bytes as f64 / 1e6,
        s.mb_per_s(),
        s.seconds
    )?;
    if !s.failures.is_empty() {
        writeln!(out, "failed logs by message:")?;
        for (message, count) in s.failures.iter().take(10) {
            writeln!(out, "  {count:>6}  {message}")?;
        }
        if s.failures.len() > 10 {
            writeln!(out, "  ({} more messages)", s.failures.len() - 10)?;
        }
    }
    if !s.missing_files.is_empty() {
        writeln!(
            out,
            "catalog rows without a log file (left alone): {}",
            shorten(&s.missing_files)
        )?;
    }
    if !s.orphan_files.is_empty() {
        writeln!(
            out,
            "log files without a catalog row (left alone): {}",
            shorten(&s.orphan_files)
        )?;
    }
    writeln!(
        out,
        "{kind}: {}",
        snapshot::root(&settings.warehouse)
            .join(&s.snapshot_id)
            .display()
    )?;
    if let Some(outbox) = &s.outbox {
        writeln!(out, "outbox: {}", outbox.display())?;
    }
    if let Some(report) = &s.report {
        print_report(report, out)?;
        writeln!(out, "change report: {}", report.display())?;
    }
    writeln!(
        out,
        "catalog: {}",
        crate::catalog::redact(&settings.catalog_url)
    )?;
    Ok(ExitCode::SUCCESS)
}

fn shorten(ids: &[String]) -> String {
    let shown: Vec<&str> = ids.iter().take(5).map(String::as_str).collect();
    if ids.len() > 5 {
        format!("{} (and {} more)", shown.join(", "), ids.len() - 5)
    } else {
        shown.join(", ")
    }
}

fn print_report(path: &Path, out: &mut impl Write) -> Result<()> {
    let Some(report) = job::diff::read_report(path) else {
        return Ok(());
    };
    print_comparison(&report, out)
}

fn print_comparison(report: &serde_json::Value, out: &mut impl Write) -> Result<()> {
    for table in ["analysis", "average"] {
        let t = &report[table];
        writeln!(
            out,
            "{table}: {} added, {} removed, {} changed",
            t["added"], t["removed"], t["changed"]
        )?;
        for m in t["metrics"].as_array().into_iter().flatten() {
            let max = m["max_abs_diff"]
                .as_f64()
                .map_or(String::new(), |d| format!(", largest difference {d}"));
            writeln!(
                out,
                "  {:<48} {:>7} changed{max}",
                m["metric"].as_str().unwrap_or_default(),
                m["changed"]
            )?;
        }
    }
    Ok(())
}

pub async fn snapshots(
    settings: &Settings,
    action: SnapshotAction,
    out: &mut impl Write,
) -> Result<ExitCode> {
    let root = absolute(&snapshot::root(&settings.warehouse));
    match action {
        SnapshotAction::List { format } => {
            let all = snapshot::describe_all(&settings.warehouse)?;
            match format {
                ListFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(&all)?)?,
                ListFormat::Table if all.is_empty() => {
                    writeln!(out, "no snapshots in {}", root.display())?
                }
                ListFormat::Table => {
                    writeln!(
                        out,
                        "  {:<28} {:<20} {:>7} {:>7} {:>10} {:>10}  algorithm",
                        "id", "finished (UTC)", "logs", "failed", "size MB", "new MB"
                    )?;
                    for s in all {
                        let mark = if s.latest {
                            "*"
                        } else if s.experiment {
                            "e"
                        } else {
                            " "
                        };
                        writeln!(
                            out,
                            "{mark} {:<28} {:<20} {:>7} {:>7} {:>10.1} {:>10.1}  {}",
                            s.id,
                            s.finished_at,
                            s.logs,
                            s.failed,
                            s.bytes as f64 / 1e6,
                            s.bytes_new as f64 / 1e6,
                            s.algorithm_version
                        )?;
                    }
                    writeln!(out, "(* latest, e experiment)")?;
                }
            }
        }
        SnapshotAction::Prune { keep, dry_run } => {
            // Snapshots copied without their catalog have no run to race;
            // a catalog that exists but cannot be reached might have one.
            let copied_alone = settings.embedded_catalog().is_some_and(|p| !p.is_file());
            let catalog = if copied_alone {
                None
            } else {
                Some(catalog(settings, false).await.map_err(|e| {
                    anyhow::anyhow!(
                        "prune needs the run lock, and the catalog cannot be reached: {e:#}"
                    )
                })?)
            };
            let lock = match &catalog {
                Some(catalog) => match RunLock::try_take(catalog, &settings.warehouse).await? {
                    Some(lock) => Some(lock),
                    None => return Err(Skipped("a run is in progress; prune later".into()).into()),
                },
                None => None,
            };
            let ids = snapshot::prunable(&settings.warehouse, keep)?;
            if ids.is_empty() {
                writeln!(out, "nothing to prune in {}", root.display())?;
            }
            if !dry_run && lock.is_some() {
                snapshot::remove_abandoned_staging(&settings.warehouse);
            }
            for id in &ids {
                if dry_run {
                    writeln!(out, "would remove {id}")?;
                } else {
                    snapshot::remove(&settings.warehouse, id)?;
                    writeln!(out, "removed {id}")?;
                }
            }
            drop(lock);
        }
        SnapshotAction::Diff { old, new, format } => {
            let old_dir = snapshot::resolve(&settings.warehouse, Some(&old))?;
            let new_dir = snapshot::resolve(&settings.warehouse, new.as_deref())?;
            let comparison = job::diff::compare(&settings.engine, Some(&old_dir), &new_dir).await?;
            let value = serde_json::to_value(&comparison)?;
            match format {
                ListFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?,
                ListFormat::Table => {
                    writeln!(out, "{} → {}", old, comparison.new)?;
                    print_comparison(&value, out)?;
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
