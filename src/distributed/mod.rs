//! Beyond one machine: the analysis plan on an Apache DataFusion Ballista
//! cluster, with the same SQL models, functions and scan as the local
//! engine (`--engine ballista://HOST:PORT`).
//!
//! Three places must know the project's pieces, and this module gives each
//! the same ones:
//! - the client ([`remote_context`]): its session plans the SQL, so it has
//!   the functions, and it ships the log tables with [`codec::LogicalCodec`];
//! - the scheduler ([`cluster::scheduler`]): it rebuilds the log tables and
//!   plans the physical scan ([`session_builder`]), then ships each task's
//!   slice of the scan with [`codec::PhysicalCodec`];
//! - the executors ([`cluster::executor`]): they rebuild the scan, run the
//!   functions ([`function_registry`]) and read the logs from the volume's
//!   object store ([`runtime_producer`]).
//!
//! Ballista slices a `DataSourceExec` over file groups by partition, so the
//! scan's partitions become tasks; the per-log windows and aggregates stay
//! in the scan's stage, and only one row per log crosses a shuffle (the
//! join with `log_files`, which Ballista runs partitioned).

pub mod cluster;
pub mod codec;

use std::sync::Arc;
use std::time::Duration;

use ballista::prelude::{SessionConfigExt, SessionContextExt};
use ballista_core::registry::BallistaFunctionRegistry;
use datafusion::common::Result;
use datafusion::error::DataFusionError;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::object_store::{DefaultObjectStoreRegistry, ObjectStoreRegistry};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use object_store::ObjectStore;
use url::Url;

use crate::analysis::engine::Engine;
use crate::analysis::functions;

/// Largest plan message: a plan carries the list of its logs (about 250
/// bytes each), so 100k logs make a plan of ~25 MB.
pub const MAX_MESSAGE_BYTES: usize = 512 * 1024 * 1024;

/// The session configuration of a Ballista client: the engine's options,
/// Ballista's, and the project's codecs (set before the session is made:
/// Ballista captures them then).
fn client_config(engine: &Engine) -> Result<SessionConfig> {
    let config = engine
        .configure(SessionConfig::new_with_ballista())
        .with_ballista_logical_extension_codec(Arc::new(codec::LogicalCodec::default()))
        .with_ballista_physical_extension_codec(Arc::new(codec::PhysicalCodec::default()))
        .with_ballista_job_name("fap-warehouse analysis");
    let mut config = config;
    let options = config.options_mut();
    options.set("ballista.client.grpc_connect_timeout_seconds", "5")?;
    options.set(
        "ballista.client.grpc_max_message_size",
        &MAX_MESSAGE_BYTES.to_string(),
    )?;
    Ok(config)
}

/// A session whose plans run on the Ballista scheduler at `address`
/// (`host:port`).
pub async fn remote_context(engine: &Engine, address: &str) -> Result<SessionContext> {
    let state = SessionStateBuilder::new()
        .with_default_features()
        .with_config(client_config(engine)?)
        .build();
    let ctx = SessionContext::remote_with_state(&format!("df://{address}"), state).await?;
    // Ballista's upgrade replaces the function lists: register ours again.
    functions::register(&ctx);
    Ok(ctx)
}

/// A session on an in-process Ballista scheduler and executor: the whole
/// distributed path (codecs, slicing, shuffles) without a cluster. For
/// tests, and to check a change before deploying it.
pub async fn standalone_context(engine: &Engine) -> Result<SessionContext> {
    let mut config = client_config(engine)?;
    config.options_mut().set(
        "ballista.standalone.parallelism",
        &engine.partitions().to_string(),
    )?;
    let runtime = engine.runtime()?;
    let state = SessionStateBuilder::new()
        .with_default_features()
        .with_config(config)
        .with_runtime_env(runtime)
        .with_scalar_functions(with_ballista_scalars())
        .with_window_functions(with_ballista_windows())
        .build();
    let ctx = SessionContext::standalone_with_state(state).await?;
    functions::register(&ctx);
    Ok(ctx)
}

fn with_ballista_scalars() -> Vec<Arc<datafusion::logical_expr::ScalarUDF>> {
    let mut all = ballista_core::extension::ballista_scalar_functions();
    all.extend(functions::scalar_functions().into_iter().map(Arc::new));
    all
}

fn with_ballista_windows() -> Vec<Arc<datafusion::logical_expr::WindowUDF>> {
    let mut all = ballista_core::extension::ballista_window_functions();
    all.extend(functions::window_functions().into_iter().map(Arc::new));
    all
}

/// How the scheduler makes a session for a client's job: Ballista's
/// defaults plus the project's functions.
pub fn session_builder() -> ballista_scheduler::scheduler_server::SessionBuilder {
    Arc::new(|config: SessionConfig| {
        Ok(SessionStateBuilder::new()
            .with_default_features()
            .with_config(config)
            .with_runtime_env(Arc::new(RuntimeEnvBuilder::new().build()?))
            .with_optimizer_rules(ballista_core::optimizer::ballista_default_optimizer_rules())
            .with_scalar_functions(with_ballista_scalars())
            .with_aggregate_functions(ballista_core::extension::ballista_aggregate_functions())
            .with_window_functions(with_ballista_windows())
            .build())
    })
}

/// The functions an executor can run: DataFusion's, Ballista's and ours.
pub fn function_registry() -> Arc<BallistaFunctionRegistry> {
    let state = SessionStateBuilder::new()
        .with_default_features()
        .with_scalar_functions(with_ballista_scalars())
        .with_window_functions(with_ballista_windows())
        .build();
    Arc::new(BallistaFunctionRegistry::from(&state))
}

/// An executor's runtime: its work folder, and object stores made on first
/// use from the URLs the plans name (`s3://bucket` from the usual AWS
/// environment variables; `file://` is built in).
pub fn runtime_producer(work_dir: String) -> ballista_core::RuntimeProducer {
    let stores: Arc<dyn ObjectStoreRegistry> = Arc::new(VolumeStores::default());
    Arc::new(move |_config: &SessionConfig| {
        Ok(Arc::new(
            RuntimeEnvBuilder::new()
                .with_object_store_registry(stores.clone())
                .with_temp_file_path(work_dir.clone())
                .build()?,
        ))
    })
}

/// Object stores by URL, made on first use for the volume schemes.
#[derive(Debug, Default)]
struct VolumeStores {
    known: DefaultObjectStoreRegistry,
}

impl ObjectStoreRegistry for VolumeStores {
    fn register_store(
        &self,
        url: &Url,
        store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        self.known.register_store(url, store)
    }

    fn get_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        if let Ok(store) = self.known.get_store(url) {
            return Ok(store);
        }
        if url.scheme() != "s3" {
            return Err(DataFusionError::Configuration(format!(
                "no object store for {url}: executors read file:// and s3:// volumes"
            )));
        }
        let volume = crate::volume::Volume::parse(url.as_str())
            .map_err(|e| DataFusionError::Configuration(e.to_string()))?;
        let store = volume.store().clone();
        self.known.register_store(url, store.clone());
        Ok(store)
    }
}

/// Fails fast, before a run writes anything, when the scheduler at
/// `address` does not accept connections.
pub async fn check_reachable(address: &str) -> std::result::Result<(), String> {
    let connect = tokio::net::TcpStream::connect(address);
    match tokio::time::timeout(Duration::from_secs(5), connect).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!(
            "cannot reach the Ballista scheduler at {address}: {e}"
        )),
        Err(_) => Err(format!(
            "cannot reach the Ballista scheduler at {address}: no answer within 5 s"
        )),
    }
}
