//! `serve`: the live worker and the scheduler.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};

use super::Settings;
use crate::serve::{ServeConfig, schedule};

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Queue group shared by the instances that split the requests.
    #[arg(long, env = "FAP_QUEUE_GROUP", default_value = "fap-warehouse")]
    queue_group: String,
    /// Batches of requests answered at once.
    #[arg(long, default_value_t = 2)]
    concurrency: usize,
    /// Requests answered together by one run of the plan, at most.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Milliseconds the first request of a batch waits for others.
    #[arg(long, default_value_t = 5)]
    batch_wait_ms: u64,
    /// Seconds a log may take to be found and checked before its request fails.
    #[arg(long, default_value_t = 10)]
    read_timeout: u64,
    /// Seconds in-flight work may take after SIGTERM; the rest is left for
    /// the backend to ask again.
    #[arg(long, default_value_t = 25)]
    shutdown_grace: u64,
    /// Folder of job definitions to run on schedule (`*.toml`); none if absent.
    #[arg(long, env = "FAP_JOBS_DIR", default_value = "jobs")]
    jobs: PathBuf,
}

pub async fn serve(settings: Settings, args: ServeArgs) -> Result<ExitCode> {
    let nats_url = settings
        .nats_url
        .clone()
        .context("serve needs --nats URL or NATS_URL")?;
    let jobs = if args.jobs.is_dir() {
        schedule::load_jobs(&args.jobs)?
    } else {
        Vec::new()
    };
    for job in &jobs {
        tracing::info!(job = %job.spec.name, schedule = %job.spec.schedule, "job scheduled (UTC)");
    }
    let config = ServeConfig {
        nats_url,
        queue_group: args.queue_group,
        volume: settings.volume.clone(),
        concurrency: args.concurrency.max(1),
        batch: args.batch.max(1),
        batch_wait: Duration::from_millis(args.batch_wait_ms),
        read_timeout: Duration::from_secs(args.read_timeout.max(1)),
        shutdown_grace: Duration::from_secs(args.shutdown_grace),
        jobs,
        warehouse: settings.warehouse.clone(),
        catalog_url: settings.catalog_url.clone(),
        state_schema: settings.state_schema.clone(),
    };
    crate::serve::serve(settings.engine, config, super::shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}
