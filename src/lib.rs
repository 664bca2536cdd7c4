//! fap-warehouse: the analysis side of the FAP/DPF log service, done as a
//! warehouse job.
//!
//! Drivers upload OBD logs (one CSV per drive). This crate turns any number
//! of them into the analysis objects and per-user averages the backend reads,
//! with the algorithm written as SQL (`sql/`) and run by DataFusion.
//!
//! # Layout (the data flow)
//! - [`catalog`]: the backend's tables (embedded SQLite or PostgreSQL), read
//!   as a compact index; [`catalog::lock`] keeps one run at a time.
//! - [`volume`]: where the logs are (a folder or an object store);
//!   [`ingest`] is the embedded upload path.
//! - [`scan`]: log files → the `log_files` and `log_rows` tables, as file
//!   scans that declare their partitioning and order (contract §1).
//! - [`analysis`]: the SQL models ([`analysis::models`], `sql/`), the few
//!   functions DataFusion lacks, the engine, and the JSON of the wire
//!   messages.
//! - [`job`]: the nightly run as stages: plan → analyse → group → diff →
//!   snapshot (Parquet) → deliver (outbox or NATS).
//! - [`distributed`] (feature `ballista`): the same analysis plan on a
//!   Ballista cluster: codecs, and the scheduler and executor processes.
//! - [`serve`]: the live worker answering the backend's requests over NATS,
//!   and the scheduler of `jobs/`.
//! - [`generate`]: realistic synthetic logs for demos, tests and benchmarks.
//! - [`cli`]: the command line.

pub mod analysis;
pub mod catalog;
pub mod cli;
#[cfg(feature = "ballista")]
pub mod distributed;
pub mod generate;
pub mod ingest;
pub mod job;
pub mod scan;
pub mod serve;
pub mod volume;
