//! Where a stage's time goes, recorded in the manifest's `durations` so a
//! slow night can be explained without a profiler.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

/// Time spent per step of a stage, summed over its calls.
#[derive(Debug, Default, Clone)]
pub struct Timings(BTreeMap<&'static str, Duration>);

impl Timings {
    /// Adds the time elapsed since `since` to `step`.
    pub fn add(&mut self, step: &'static str, since: Instant) {
        *self.0.entry(step).or_default() += since.elapsed();
    }

    /// Adds `other`'s steps (time spent on another task) to these.
    pub fn merge(&mut self, other: &Timings) {
        for (step, d) in &other.0 {
            *self.0.entry(step).or_default() += *d;
        }
    }

    /// Writes `<stage>_<step>_ms` for each step into `durations`.
    pub fn record(&self, stage: &str, durations: &mut Map<String, Value>) {
        for (step, d) in &self.0 {
            durations.insert(format!("{stage}_{step}_ms"), Value::from(millis(*d)));
        }
    }
}

/// Writes `<stage>_ms`, the time since `since`, into `durations`.
pub fn record(durations: &mut Map<String, Value>, stage: &str, since: Instant) {
    record_duration(durations, stage, since.elapsed());
}

/// Writes `<stage>_ms`, a stage's time spent in several parts.
pub fn record_duration(durations: &mut Map<String, Value>, stage: &str, spent: Duration) {
    durations.insert(format!("{stage}_ms"), Value::from(millis(spent)));
}

fn millis(d: Duration) -> u64 {
    d.as_millis() as u64
}
