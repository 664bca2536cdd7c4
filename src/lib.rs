//! fap-warehouse: the analysis side of the FAP/DPF log service, done as a
//! warehouse job.
//!
//! Drivers upload OBD logs (one CSV per drive). This crate turns any number
//! of them into the analysis objects and per-user averages the backend reads,
//! with the algorithm written as SQL (`sql/`) and run by DataFusion.
//!
//! # Layout (the data flow)
//! - [`catalog`]: the backend's tables (embedded SQLite or PostgreSQL);
//!   [`ingest`] is the embedded upload path.
//! - [`scan`]: log files → the `log_files` and `log_rows` tables (reading,
//!   §1 of the contract), one streaming plan for the whole set.
//! - [`sql`]: the SQL models, embedded and overridable (`--sql-dir`).
//! - [`udf`]: the two rounding functions DataFusion lacks.
//! - [`engine`]: runs the models: `log_analysis` per log, `group_average` per
//!   group.
//! - [`shape`]: flat metric columns ↔ the contract's nested JSON.
//! - [`message`], [`average`]: `analysis.result` / `average.result`.
//! - [`job`]: the nightly run: catalog → scan → analyse → average →
//!   [`snapshot`] (Parquet) → [`deliver`] (only what changed; [`jsonb`]
//!   prints what the backend hashes).
//! - [`serve`]: the live worker answering the backend's requests over NATS,
//!   and firing the jobs of `jobs/` ([`schedule`]).
//! - [`generate`]: realistic synthetic logs for demos, tests and benchmarks.
//! - [`cli`]: the command line.

pub mod average;
pub mod catalog;
pub mod civil;
pub mod cli;
pub mod deliver;
pub mod engine;
pub mod error;
pub mod generate;
pub mod ingest;
pub mod job;
pub mod jsonb;
pub mod message;
pub mod scan;
pub mod schedule;
pub mod serve;
pub mod shape;
pub mod snapshot;
pub mod sql;
pub mod udf;
