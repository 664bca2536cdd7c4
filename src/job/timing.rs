//! Where a stage's time goes, recorded in the manifest's `durations` so a
//! slow night can be explained without a profiler.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Time spent per step of a stage, summed over its calls.
#[derive(Debug, Default, Clone)]
pub struct Timings(BTreeMap<&'static str, Duration>);

impl Timings {
    /// Adds the time elapsed since `since` to `step`.
    pub fn add(&mut self, step: &'static str, since: Instant) {
        *self.0.entry(step).or_default() += since.elapsed();
    }

    /// `(<stage>_<step>_ms, milliseconds)` for each step.
    pub fn millis<'a>(&'a self, stage: &'a str) -> impl Iterator<Item = (String, u64)> + 'a {
        self.0
            .iter()
            .map(move |(step, d)| (format!("{stage}_{step}_ms"), d.as_millis() as u64))
    }
}
