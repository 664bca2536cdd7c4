//! The cluster's processes, from this binary: a Ballista scheduler and
//! executors that know the project's codecs, functions and volumes.
//!
//! Both stop on SIGTERM/SIGINT: the scheduler at once (a job in flight
//! fails, and its run publishes nothing); an executor once its running
//! tasks end (Ballista's own drain).

use std::net::SocketAddr;
use std::sync::Arc;

use ballista_core::config::TaskSchedulingPolicy;
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::start_server;

use super::codec::{LogicalCodec, PhysicalCodec};

/// How often an executor tells the scheduler it is alive.
pub const HEARTBEAT_SECONDS: u64 = 3;

/// How the scheduler runs.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    pub bind: SocketAddr,
    /// The host executors and clients use to reach it [default: the bind
    /// address, or `localhost` when it binds every interface].
    pub external_host: Option<String>,
    /// Seconds without a heartbeat before an executor is declared lost and
    /// its tasks run elsewhere.
    pub executor_timeout_seconds: u64,
}

/// Runs a scheduler until SIGTERM/SIGINT.
pub async fn scheduler(options: SchedulerOptions) -> anyhow::Result<()> {
    let external = options.external_host.clone().unwrap_or_else(|| {
        if options.bind.ip().is_unspecified() {
            "localhost".into()
        } else {
            options.bind.ip().to_string()
        }
    });
    let mut config = SchedulerConfig::default()
        .with_hostname(external)
        .with_port(options.bind.port())
        .with_scheduler_policy(TaskSchedulingPolicy::PushStaged)
        .with_override_session_builder(super::session_builder());
    config.bind_host = options.bind.ip().to_string();
    config.override_logical_codec = Some(Arc::new(LogicalCodec::default()));
    config.override_physical_codec = Some(Arc::new(PhysicalCodec::default()));
    // Executors beat every HEARTBEAT_SECONDS: a timeout of a few beats, and a
    // check a few times per timeout.
    config.executor_timeout_seconds = options.executor_timeout_seconds;
    config.expire_dead_executor_interval_seconds =
        (options.executor_timeout_seconds / 3).clamp(1, 15);
    let size = super::MAX_MESSAGE_BYTES as u32;
    config.grpc_server_max_decoding_message_size = size;
    config.grpc_server_max_encoding_message_size = size;
    config.grpc_client_max_message_size = size;
    let config = Arc::new(config);
    let cluster = BallistaCluster::new_from_config(&config).await?;
    tracing::info!(bind = %options.bind, "Ballista scheduler starting");
    let server = tokio::spawn(start_server(cluster, options.bind, config));
    tokio::select! {
        ended = server => {
            ended??;
            anyhow::bail!("the scheduler stopped on its own")
        }
        () = crate::cli::shutdown_signal() => {
            tracing::info!("scheduler stopping (signal)");
            Ok(())
        }
    }
}

/// How an executor runs.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    /// The scheduler, `host:port`.
    pub scheduler: String,
    /// Arrow Flight (shuffle and result fetches).
    pub bind: SocketAddr,
    /// Task launches from the scheduler (same host as `bind`).
    pub grpc_bind: SocketAddr,
    /// The host the scheduler and other executors use to reach it
    /// [default: the address its connection to the scheduler comes from].
    pub external_host: Option<String>,
    /// Tasks at a time [default: the core count].
    pub concurrent_tasks: usize,
    /// Shuffle files [default: a folder in the system's temp dir].
    pub work_dir: Option<std::path::PathBuf>,
}

/// Runs an executor until SIGTERM/SIGINT (then its running tasks end).
pub async fn executor(options: ExecutorOptions) -> anyhow::Result<()> {
    if options.bind.ip() != options.grpc_bind.ip() {
        anyhow::bail!(
            "--bind and --grpc-bind must use the same host ({} vs {})",
            options.bind.ip(),
            options.grpc_bind.ip()
        );
    }
    let (scheduler_host, scheduler_port) = split_host_port(&options.scheduler)?;
    let work_dir = match &options.work_dir {
        Some(dir) => dir.clone(),
        None => {
            std::env::temp_dir().join(format!("fap-warehouse-executor-{}", options.bind.port()))
        }
    };
    std::fs::create_dir_all(&work_dir)?;
    let work_dir = work_dir.to_string_lossy().into_owned();
    let config = ExecutorProcessConfig {
        bind_host: options.bind.ip().to_string(),
        port: options.bind.port(),
        grpc_port: options.grpc_bind.port(),
        external_host: options.external_host.clone(),
        scheduler_host,
        scheduler_port,
        vcores: options.concurrent_tasks,
        task_scheduling_policy: TaskSchedulingPolicy::PushStaged,
        work_dir: Some(work_dir.clone()),
        executor_heartbeat_interval_seconds: HEARTBEAT_SECONDS,
        grpc_max_decoding_message_size: super::MAX_MESSAGE_BYTES as u32,
        grpc_max_encoding_message_size: super::MAX_MESSAGE_BYTES as u32,
        // Finished jobs' shuffle files are removed after a day.
        job_data_ttl_seconds: 24 * 3600,
        job_data_clean_up_interval_seconds: 600,
        override_function_registry: Some(super::function_registry()),
        override_runtime_producer: Some(super::runtime_producer(work_dir)),
        override_logical_codec: Some(Arc::new(LogicalCodec::default())),
        override_physical_codec: Some(Arc::new(PhysicalCodec::default())),
        ..ExecutorProcessConfig::default()
    };
    tracing::info!(bind = %options.bind, grpc = %options.grpc_bind, scheduler = %options.scheduler, "Ballista executor starting");
    start_executor_process(Arc::new(config)).await?;
    tracing::info!("executor stopped");
    Ok(())
}

/// `host:port` as its two parts.
fn split_host_port(address: &str) -> anyhow::Result<(String, u16)> {
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| anyhow::anyhow!("{address}: expected HOST:PORT"))?;
    let port = port
        .parse()
        .map_err(|_| anyhow::anyhow!("{address}: the port is not a number"))?;
    Ok((host.to_string(), port))
}
