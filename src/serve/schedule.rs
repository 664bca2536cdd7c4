//! Jobs on a schedule: `jobs/*.toml` define jobs (name, 5-field cron
//! schedule in UTC, options of `run`), and `serve` fires them on time.
//!
//! Schedules are parsed by `croner` with cron's own rules (when both
//! day-of-month and day-of-week are set, either one fires) and checked at
//! load: a schedule that never fires (`0 0 31 2 *`) is an error naming its
//! job, not a job that silently never runs. Whoever runs a job takes the run
//! lock first (see [`crate::catalog::lock`]).

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use serde::Deserialize;

/// A job definition (`jobs/<name>.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    pub name: String,
    /// `minute hour day-of-month month day-of-week`, UTC.
    pub schedule: String,
    /// `run --force`: re-send every result.
    #[serde(default)]
    pub force: bool,
    /// `run --full`: re-analyse every log.
    #[serde(default)]
    pub full: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("{path}: {message}")]
    Spec { path: PathBuf, message: String },
}

/// A job and its parsed schedule.
#[derive(Debug, Clone)]
pub struct Job {
    pub spec: JobSpec,
    schedule: Cron,
}

impl Job {
    /// The first time after `after` the job fires.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.schedule.find_next_occurrence(&after, false).ok()
    }
}

/// Parses a 5-field cron schedule and checks that it fires at all.
pub fn parse_schedule(text: &str) -> Result<Cron, String> {
    let cron = CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(text)
        .map_err(|e| format!("schedule {text:?}: {e} (expected: minute hour day month weekday)"))?;
    cron.find_next_occurrence(&Utc::now(), false)
        .map_err(|_| format!("schedule {text:?} never fires"))?;
    Ok(cron)
}

/// Reads every `*.toml` job of `dir`, checking each schedule.
pub fn load_jobs(dir: &Path) -> Result<Vec<Job>, ScheduleError> {
    let spec_err = |path: &Path, message: String| ScheduleError::Spec {
        path: path.to_path_buf(),
        message,
    };
    let entries = std::fs::read_dir(dir).map_err(|e| spec_err(dir, e.to_string()))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    let mut jobs = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(&path).map_err(|e| spec_err(&path, e.to_string()))?;
        let spec: JobSpec = toml::from_str(&text).map_err(|e| spec_err(&path, e.to_string()))?;
        let schedule = parse_schedule(&spec.schedule)
            .map_err(|e| spec_err(&path, format!("job {:?}: {e}", spec.name)))?;
        jobs.push(Job { spec, schedule });
    }
    Ok(jobs)
}

#[cfg(test)]
#[path = "schedule_tests.rs"]
mod tests;
