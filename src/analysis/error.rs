//! The engine's error type: what can stop a whole run (never one bad log).

/// Errors of the analysis engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("query engine: {0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    #[error("arrow: {0}")]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
    #[error("SQL model {name}: {source}")]
    Model {
        name: String,
        source: datafusion::error::DataFusionError,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("invalid request: {0}")]
    Request(String),
    /// The distributed engine cannot be used (unreachable, not built in).
    #[error("{0}")]
    Target(String),
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;
