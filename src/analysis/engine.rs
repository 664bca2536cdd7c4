//! The analysis engine: DataFusion plans over whole sets of logs.
//!
//! A run registers the logs (see [`crate::scan`]), stacks the SQL models as
//! views and streams `log_analysis`: one row per log, whatever happened to
//! the others, in one plan for the whole set. Memory is bounded by
//! partitions × the largest log: the scan declares its partitioning and
//! order, and every whole-log step streams (see [`super::functions`]).
//! Averages run the `group_average` model over `group_members`.
//! Each call gets a fresh `SessionContext`, so concurrent calls never share
//! tables.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::TryStreamExt;
use object_store::ObjectStore;

use super::error::{EngineError, Result};
use super::functions;
use super::models::Models;
use super::prepared::Prepared;
use crate::scan::{self, LogInput, LogLimits, LogSet};

/// The engine: which SQL models to run, on how many partitions, with which
/// per-log limits and object stores, and where the analysis plan runs.
#[derive(Debug, Clone)]
pub struct Engine {
    models: Arc<Models>,
    partitions: usize,
    limits: LogLimits,
    /// Object stores the logs may live in, beyond the local file system.
    stores: Vec<(ObjectStoreUrl, Arc<dyn ObjectStore>)>,
    target: Target,
}

/// Where the analysis plan runs (`--engine`). Averages always run locally:
/// they are small.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Target {
    /// In this process.
    #[default]
    Local,
    /// On the Ballista scheduler at `host:port`.
    Ballista(String),
}

impl Target {
    /// `local` or `ballista://HOST:PORT`.
    pub fn parse(spec: &str) -> std::result::Result<Self, String> {
        if spec == "local" {
            return Ok(Self::Local);
        }
        let Some(address) = spec.strip_prefix("ballista://") else {
            return Err(format!(
                "unknown engine {spec:?}: use local or ballista://HOST:PORT"
            ));
        };
        let address = address.trim_end_matches('/');
        let valid = address
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !valid {
            return Err(format!("{spec}: expected ballista://HOST:PORT"));
        }
        if cfg!(not(feature = "ballista")) {
            return Err(format!(
                "{spec}: this build has no Ballista support (cargo feature `ballista`)"
            ));
        }
        Ok(Self::Ballista(address.to_string()))
    }
}

/// What one analysis run produced.
#[derive(Debug, Clone)]
pub struct LogAnalyses {
    /// One row per input log (log_analysis.sql columns), in no set order.
    pub batch: RecordBatch,
    pub logs: usize,
    pub bytes: u64,
}

impl Engine {
    pub fn new(models: Models) -> Self {
        let partitions = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            models: Arc::new(models),
            partitions,
            limits: LogLimits::default(),
            stores: Vec::new(),
            target: Target::Local,
        }
    }

    /// Runs the analysis plan on `target`.
    pub fn with_target(mut self, target: Target) -> Self {
        self.target = target;
        self
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Overrides the number of partitions (default: the core count).
    pub fn with_partitions(mut self, partitions: usize) -> Self {
        self.partitions = partitions.max(1);
        self
    }

    /// Overrides the per-log limits.
    pub fn with_limits(mut self, limits: LogLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Makes the logs of an object store readable (`s3://…`, `memory://`).
    pub fn with_store(mut self, url: ObjectStoreUrl, store: Arc<dyn ObjectStore>) -> Self {
        self.stores.push((url, store));
        self
    }

    pub fn models(&self) -> &Models {
        &self.models
    }

    pub fn partitions(&self) -> usize {
        self.partitions
    }

    pub fn limits(&self) -> LogLimits {
        self.limits
    }

    /// The session configuration every context of this engine uses.
    pub fn config(&self) -> SessionConfig {
        self.configure(SessionConfig::new())
    }

    /// `config` with this engine's options (also for Ballista sessions).
    pub fn configure(&self, config: SessionConfig) -> SessionConfig {
        let mut config = config.with_target_partitions(self.partitions);
        // A log is read whole by one partition; never split files by bytes.
        config.options_mut().optimizer.repartition_file_scans = false;
        config
    }

    /// A runtime with this engine's object stores.
    pub fn runtime(
        &self,
    ) -> datafusion::error::Result<Arc<datafusion::execution::runtime_env::RuntimeEnv>> {
        let runtime = datafusion::execution::runtime_env::RuntimeEnvBuilder::new().build()?;
        for (url, store) in &self.stores {
            runtime.register_object_store(url.as_ref(), store.clone());
        }
        Ok(Arc::new(runtime))
    }

    /// A local context with the project's functions and object stores
    /// registered.
    pub fn context(&self) -> SessionContext {
        self.context_with(self.config())
    }

    /// A local context whose plans run in one partition: rows reach each
    /// aggregate in the order given, so a float sum is the same on every run
    /// (the averages), and small inputs skip exchanges between partitions.
    pub fn serial_context(&self) -> SessionContext {
        self.context_with(self.config().with_target_partitions(1))
    }

    fn context_with(&self, config: SessionConfig) -> SessionContext {
        let ctx = SessionContext::new_with_config(config);
        functions::register(&ctx);
        for (url, store) in &self.stores {
            ctx.register_object_store(url.as_ref(), store.clone());
        }
        ctx
    }

    /// The context the analysis plan runs in: local, or a Ballista
    /// session. The only place the two differ.
    pub async fn analysis_context(&self) -> Result<SessionContext> {
        match &self.target {
            Target::Local => Ok(self.context()),
            #[cfg(feature = "ballista")]
            Target::Ballista(address) => {
                Ok(crate::distributed::remote_context(self, address).await?)
            }
            #[cfg(not(feature = "ballista"))]
            Target::Ballista(_) => Err(EngineError::Target(
                "this build has no Ballista support".into(),
            )),
        }
    }

    /// Fails fast when the target cannot be reached (before a run writes
    /// anything).
    pub async fn check_target(&self) -> Result<()> {
        match &self.target {
            Target::Local => Ok(()),
            #[cfg(feature = "ballista")]
            Target::Ballista(address) => crate::distributed::check_reachable(address)
                .await
                .map_err(EngineError::Target),
            #[cfg(not(feature = "ballista"))]
            Target::Ballista(_) => Err(EngineError::Target(
                "this build has no Ballista support".into(),
            )),
        }
    }

    /// The logs `inputs`, in the store at `store`, split for this engine.
    pub fn log_set(&self, store: ObjectStoreUrl, inputs: Vec<LogInput>) -> LogSet {
        LogSet::new(store, inputs, self.partitions).with_limits(self.limits)
    }

    /// Registers the model `name` as a view on `ctx`.
    pub async fn register_model(&self, ctx: &SessionContext, name: &str) -> Result<()> {
        let model = self
            .models
            .get(name)
            .ok_or_else(|| EngineError::Request(format!("no SQL model named {name}")))?;
        let frame = ctx
            .sql(&model.query)
            .await
            .map_err(|source| EngineError::Model {
                name: name.to_string(),
                source,
            })?;
        ctx.register_table(name, frame.into_view())?;
        Ok(())
    }

    /// Registers the logs and the per-log models on `ctx`, ready for
    /// `SELECT … FROM log_analysis` (or any other query an analyst writes).
    pub async fn register_logs(&self, ctx: &SessionContext, logs: Arc<LogSet>) -> Result<()> {
        scan::register(ctx, logs)?;
        self.register_model(ctx, "stg_clean_rows").await?;
        self.register_model(ctx, "log_analysis").await?;
        Ok(())
    }

    /// The physical plan of `log_analysis` over `logs`.
    pub async fn analysis_plan(
        &self,
        ctx: &SessionContext,
        logs: Arc<LogSet>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.register_logs(ctx, logs).await?;
        let frame = ctx.table("log_analysis").await?;
        Ok(frame.create_physical_plan().await?)
    }

    /// `log_analysis` planned once, over no logs, for local runs on any
    /// logs of the store at `store` ([`Prepared::execute`] with
    /// [`Input::Logs`](crate::analysis::prepared::Input::Logs)): the plan does
    /// not depend on which logs, so it can be made before they are known.
    pub async fn prepare_analysis(&self, store: ObjectStoreUrl) -> Result<Prepared> {
        self.prepare_analysis_then(store, |_| ()).await
    }

    /// [`Self::prepare_analysis`], handing `schema_known` the plan's output
    /// schema as soon as the SQL is read: the models downstream of it can be
    /// planned while this plan is optimized, which is most of its cost.
    pub async fn prepare_analysis_then(
        &self,
        store: ObjectStoreUrl,
        schema_known: impl FnOnce(SchemaRef),
    ) -> Result<Prepared> {
        let ctx = self.context();
        let placeholder = self.log_set(store, Vec::new());
        self.register_logs(&ctx, Arc::new(placeholder)).await?;
        let frame = ctx.table("log_analysis").await?;
        schema_known(Arc::clone(frame.schema().inner()));
        Ok(Prepared::of(&ctx, frame).await?)
    }

    /// Streams `log_analysis` over `logs`: one plan for the whole set.
    pub async fn analyse_stream(&self, logs: LogSet) -> Result<SendableRecordBatchStream> {
        let ctx = self.analysis_context().await?;
        self.analyse_stream_in(&ctx, logs).await
    }

    /// Streams `log_analysis` over `logs` in `ctx` (any session with this
    /// engine's functions: local, Ballista).
    pub async fn analyse_stream_in(
        &self,
        ctx: &SessionContext,
        logs: LogSet,
    ) -> Result<SendableRecordBatchStream> {
        self.register_logs(ctx, Arc::new(logs)).await?;
        Ok(ctx.table("log_analysis").await?.execute_stream().await?)
    }

    /// Analyses every log and collects the results, ordered by log id (for
    /// a few logs: the batch job streams instead).
    pub async fn analyse(&self, logs: LogSet) -> Result<LogAnalyses> {
        let ctx = self.analysis_context().await?;
        self.analyse_in(&ctx, logs).await
    }

    /// [`Self::analyse`] in `ctx`.
    pub async fn analyse_in(&self, ctx: &SessionContext, logs: LogSet) -> Result<LogAnalyses> {
        let (count, bytes) = (logs.logs(), logs.bytes());
        let stream = self.analyse_stream_in(ctx, logs).await?;
        let schema = stream.schema();
        let batches: Vec<RecordBatch> = stream.try_collect().await?;
        let batch = concat_batches(&schema, &batches)?;
        let ids = batch.column_by_name("log_id").cloned();
        let batch = match ids {
            Some(ids) => {
                let order = datafusion::arrow::compute::sort_to_indices(&ids, None, None)?;
                datafusion::arrow::compute::take_record_batch(&batch, &order)?
            }
            None => batch,
        };
        Ok(LogAnalyses {
            batch,
            logs: count,
            bytes,
        })
    }

    /// Analyses local files (the `analyze` command, tests).
    pub async fn analyse_files(&self, paths: &[std::path::PathBuf]) -> Result<LogAnalyses> {
        let mut inputs = paths
            .iter()
            .map(|p| LogInput::from_path(p))
            .collect::<std::io::Result<Vec<_>>>()?;
        inputs.sort_by(|a, b| a.log_id.cmp(&b.log_id));
        self.analyse(self.log_set(ObjectStoreUrl::local_filesystem(), inputs))
            .await
    }

    /// Averages groups of analyses: `members` has the group key and the analysis
    /// metric columns (see [`crate::analysis::average::members_schema`]).
    pub async fn average(&self, members: RecordBatch) -> Result<RecordBatch> {
        let ctx = self.context();
        ctx.register_batch("group_members", members)?;
        self.register_model(&ctx, "group_average").await?;
        let frame = ctx.table("group_average").await?;
        let schema = Arc::new(frame.schema().as_arrow().clone());
        let batches = frame.collect().await?;
        Ok(concat_batches(&schema, &batches)?)
    }
}
