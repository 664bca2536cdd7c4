//! Jobs on a schedule, and the lock that keeps one run of a job at a time.
//!
//! `jobs/*.toml` define jobs (name, 5-field cron schedule in UTC, options of
//! `run`). `serve` fires them on time. Whoever runs a job — the scheduler of
//! any instance, or a `run` by hand — first takes the job's lock: a
//! PostgreSQL advisory lock with the backend's database, a file lock in the
//! warehouse on the embedded default. A run that finds the lock held is
//! skipped and logged, never queued.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use sqlx::Connection;

use crate::catalog::{Catalog, CatalogError};

/// A job definition (`jobs/<name>.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    pub name: String,
    /// `minute hour day-of-month month day-of-week`, UTC.
    pub schedule: String,
    /// `run --force`.
    #[serde(default)]
    pub force: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("{path}: {message}")]
    Spec { path: PathBuf, message: String },
    #[error("lock: {0}")]
    Lock(String),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

/// Reads every `*.toml` job of `dir`, checking each schedule.
pub fn load_jobs(dir: &Path) -> Result<Vec<(JobSpec, Cron)>, ScheduleError> {
    let spec_err = |path: &Path, message: String| ScheduleError::Spec {
        path: path.to_path_buf(),
        message,
    };
    let mut jobs = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| spec_err(dir, e.to_string()))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    for path in paths {
        let text = std::fs::read_to_string(&path).map_err(|e| spec_err(&path, e.to_string()))?;
        let spec: JobSpec = toml::from_str(&text).map_err(|e| spec_err(&path, e.to_string()))?;
        let cron = Cron::parse(&spec.schedule).map_err(|e| spec_err(&path, e))?;
        jobs.push((spec, cron));
    }
    Ok(jobs)
}

/// A parsed 5-field cron schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct Cron {
    fields: [Vec<bool>; 5],
}

const RANGES: [(u32, u32); 5] = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)];

impl Cron {
    /// Parses `*`, `*/n`, `a`, `a-b`, `a-b/n` and comma lists in each field.
    pub fn parse(text: &str) -> Result<Self, String> {
        let parts: Vec<&str> = text.split_whitespace().collect();
        if parts.len() != 5 {
            return Err(format!(
                "schedule {text:?}: expected 5 fields (minute hour day month weekday)"
            ));
        }
        let mut fields: [Vec<bool>; 5] = Default::default();
        for (i, part) in parts.iter().enumerate() {
            let (lo, hi) = RANGES[i];
            let mut allowed = vec![false; hi as usize + 1];
            for item in part.split(',') {
                let (range, step) = match item.split_once('/') {
                    Some((r, s)) => (
                        r,
                        s.parse::<u32>()
                            .map_err(|_| format!("bad step in {item:?}"))?,
                    ),
                    None => (item, 1),
                };
                let (a, b) = match range {
                    "*" => (lo, hi),
                    r => match r.split_once('-') {
                        Some((a, b)) => (num(a)?, num(b)?),
                        None => (num(r)?, num(r)?),
                    },
                };
                if a < lo || b > hi || a > b || step == 0 {
                    return Err(format!("{item:?} is out of range {lo}-{hi}"));
                }
                (a..=b)
                    .step_by(step as usize)
                    .for_each(|v| allowed[v as usize] = true);
            }
            fields[i] = allowed;
        }
        // Sunday is 0 and 7.
        if fields[4][7] {
            fields[4][0] = true;
        }
        Ok(Self { fields })
    }

    /// Whether the schedule fires at this minute (seconds since the epoch, UTC).
    pub fn matches(&self, epoch_minute: i64) -> bool {
        let days = epoch_minute.div_euclid(1440);
        let minute_of_day = epoch_minute.rem_euclid(1440);
        let (_, month, day) = crate::civil::civil_from_days(days);
        let weekday = (days + 4).rem_euclid(7) as usize; // 1970-01-01 was a Thursday
        self.fields[0][(minute_of_day % 60) as usize]
            && self.fields[1][(minute_of_day / 60) as usize]
            && self.fields[2][day as usize]
            && self.fields[3][month as usize]
            && self.fields[4][weekday]
    }

    /// The first minute after `epoch_minute` that matches, within ~4 years.
    pub fn next_after(&self, epoch_minute: i64) -> Option<i64> {
        (epoch_minute + 1..epoch_minute + 4 * 366 * 1440).find(|m| self.matches(*m))
    }
}

fn num(text: &str) -> Result<u32, String> {
    text.parse()
        .map_err(|_| format!("{text:?} is not a number"))
}

/// The lock every run of the job takes, by hand or on schedule: all runs
/// recompute the same volume, so they must never overlap.
pub const RUN_LOCK: &str = "run";

/// A held job lock; released when dropped (or on process exit).
#[derive(Debug)]
pub enum JobLock {
    File(std::fs::File),
    Postgres(sqlx::PgConnection),
}

/// Takes the lock of job `name`, or `None` when another run holds it.
pub async fn try_lock(
    catalog: &Catalog,
    warehouse: &Path,
    name: &str,
) -> Result<Option<JobLock>, ScheduleError> {
    match catalog {
        Catalog::Postgres(pool) => {
            let options = pool.connect_options();
            let mut conn = sqlx::PgConnection::connect_with(&options)
                .await
                .map_err(|e| ScheduleError::Lock(e.to_string()))?;
            let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1))")
                .bind(format!("fap-warehouse:{name}"))
                .fetch_one(&mut conn)
                .await
                .map_err(|e| ScheduleError::Lock(e.to_string()))?;
            // The lock lives as long as this dedicated session.
            Ok(got.then_some(JobLock::Postgres(conn)))
        }
        Catalog::Sqlite(_) => {
            let dir = warehouse.join("locks");
            std::fs::create_dir_all(&dir).map_err(|e| ScheduleError::Lock(e.to_string()))?;
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(dir.join(format!("{name}.lock")))
                .map_err(|e| ScheduleError::Lock(e.to_string()))?;
            match file.try_lock() {
                Ok(()) => Ok(Some(JobLock::File(file))),
                Err(std::fs::TryLockError::WouldBlock) => Ok(None),
                Err(std::fs::TryLockError::Error(e)) => Err(ScheduleError::Lock(e.to_string())),
            }
        }
    }
}

/// The current minute since the epoch.
pub fn now_minute() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64 / 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_fires_when_it_should() {
        let nightly = Cron::parse("30 2 * * *").expect("valid");
        // 2025-02-03 00:00 UTC = day 20122.
        let midnight = 20_122 * 1440;
        assert_eq!(nightly.next_after(midnight), Some(midnight + 150));
        assert_eq!(
            nightly.next_after(midnight + 150),
            Some(midnight + 1440 + 150)
        );
        let weekdays = Cron::parse("0 6 * * 1-5").expect("valid");
        // 2025-02-03 was a Monday; the Saturday after is skipped.
        let friday = midnight + 4 * 1440 + 360;
        assert_eq!(weekdays.next_after(friday), Some(midnight + 7 * 1440 + 360));
        let every = Cron::parse("*/15 * * * *").expect("valid");
        assert_eq!(every.next_after(midnight), Some(midnight + 15));
        assert!(Cron::parse("61 * * * *").is_err());
        assert!(Cron::parse("* * *").is_err());
        assert!(
            Cron::parse("0 0 * * 7")
                .expect("sunday")
                .matches(midnight - 1440)
        );
    }

    #[test]
    fn the_shipped_jobs_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs");
        let jobs = load_jobs(&dir).expect("jobs/ parses");
        assert!(jobs.iter().any(|(spec, _)| spec.name == "nightly"));
    }
}
