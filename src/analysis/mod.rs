//! The analysis: the contract's algorithm as SQL models run by DataFusion.
//!
//! - [`models`]: the SQL files of `sql/`, embedded and overridable.
//! - [`functions`]: the few SQL functions DataFusion lacks.
//! - [`engine`]: runs the models over a set of logs or groups.
//! - [`shape`]: flat metric columns ↔ the contract's nested JSON.
//! - [`message`], [`average`]: `analysis.result` and `average.result`.

pub mod average;
pub mod engine;
pub mod error;
pub mod functions;
pub mod jsonb;
pub mod message;
pub mod models;
pub mod prepared;
pub mod shape;
