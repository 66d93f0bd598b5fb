//! Benchmarks that run against real processes on this machine. Run them on a release build:
//! `cargo run --release -- bench webhooks`.
// Benchmarks load their own local servers, never a tenant's target: no outbound guard.
#![allow(clippy::disallowed_methods)]

mod alerts;
mod deploy;
pub mod fixture;
mod jobs;
mod latency;
mod loadgen;
mod quota;
mod scheduler;
mod throughput;
mod webhooks;
mod wrk;

use std::path::PathBuf;

#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Webhook ingest: verified and committed webhooks per second and latency, beside a bare
    /// actix-web handler measured the same way in the same run.
    Webhooks(webhooks::WebhookBenchArgs),
    /// Job layer: queued runs drained per second and pick-up delay on an idle queue, beside
    /// stock apalis measured the same way.
    Jobs(jobs::JobsBenchArgs),
    /// Quota use: worker processes sharing one store's rate limit through the shared buckets.
    Quota(quota::QuotaBenchArgs),
    /// Scheduler scale: tick lateness and memory with N cron flows in mixed zones.
    Scheduler(scheduler::SchedulerBenchArgs),
    /// Throughput: N orders through one flow, simulated Shopify to the store and the ERP.
    Throughput(throughput::ThroughputBenchArgs),
    /// Webhook to ERP: signed orders/create webhooks at a steady rate; for each order, the
    /// time from the webhook's 200 to the simulated ERP holding it.
    Latency(latency::LatencyBenchArgs),
    /// Rollback latency: from the rollback call until new runs use the old version.
    Rollback(deploy::RollbackBenchArgs),
    /// A canary deployment to N connections: total time, verification, quota waits.
    Deploy(deploy::DeployBenchArgs),
    /// Alert latency: events at a steady rate, grouped, throttled and sent to a paced
    /// receiver; time from an alert's first event to its first message.
    Alerts(alerts::AlertsBenchArgs),
    /// (used by `bench quota`) One worker process of the quota benchmark.
    #[command(hide = true)]
    QuotaWorker(quota::QuotaWorkerArgs),
    /// (used by `bench webhooks`) A bare actix-web server that answers 200 to every POST.
    #[command(hide = true)]
    BareServer {
        #[arg(long)]
        listen: String,
    },
}

pub async fn run(command: BenchCommand) -> anyhow::Result<()> {
    // Quiet unless asked: the servers a benchmark starts in this process log here with
    // RUST_LOG set (say `RUST_LOG=warn`), to see why a request was refused.
    if std::env::var_os("RUST_LOG").is_some() {
        crate::telemetry::init_logging(false);
    }
    match command {
        BenchCommand::Webhooks(args) => webhooks::run(args).await,
        BenchCommand::Jobs(args) => jobs::run(args).await,
        BenchCommand::Quota(args) => quota::run(args).await,
        BenchCommand::Scheduler(args) => scheduler::run(args).await,
        BenchCommand::Throughput(args) => throughput::run(args).await,
        BenchCommand::Latency(args) => latency::run(args).await,
        BenchCommand::Rollback(args) => deploy::rollback(args).await,
        BenchCommand::Deploy(args) => deploy::deploy(args).await,
        BenchCommand::Alerts(args) => alerts::run(args).await,
        BenchCommand::QuotaWorker(args) => quota::worker(args).await,
        BenchCommand::BareServer { listen } => webhooks::bare_server(&listen).await,
    }
}

/// The binary being run, to start servers as separate processes.
fn current_exe() -> anyhow::Result<PathBuf> {
    Ok(std::env::current_exe()?)
}
