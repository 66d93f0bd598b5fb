//! Scheduler scale: N enabled flows with cron schedules in mixed zones, a `synchub serve`
//! process running only the scheduler, and for every tick that fell due while it ran, how
//! late its run was queued (the run's creation minus its scheduled instant). Also the
//! process's peak memory.
//!
//! Schedules are every 15 minutes at an offset of 0-14 minutes past, so each minute a
//! fifteenth of the flows fall due at once, in zones from UTC-5 to UTC+10:30.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QuerySelect};
use serde_json::json;

use super::fixture::{ApiSession, ScratchDatabase, Server, copy_flow, free_port, wait_until_up};
use crate::ids::FlowId;
use crate::scheduler::flow_schedule;
use crate::sim::Simulator;
use crate::startup::Role;
use crate::store::entities::{flow, run};

const ZONES: [&str; 6] = [
    "America/New_York",
    "Europe/London",
    "Asia/Shanghai",
    "Asia/Kolkata",
    "Australia/Lord_Howe",
    "UTC",
];

#[derive(Debug, Clone, clap::Args)]
pub struct SchedulerBenchArgs {
    #[arg(long, default_value_t = 50_000)]
    flows: usize,
    /// How long the scheduler runs; each minute boundary in it is a burst of due flows.
    #[arg(long, default_value_t = 150)]
    seconds: u64,
    /// sqlite or postgres.
    #[arg(long, default_value = "sqlite")]
    database: String,
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    postgres_url: String,
}

pub async fn run(args: SchedulerBenchArgs) -> anyhow::Result<()> {
    crate::install_crypto_provider();
    let database = ScratchDatabase::create(&args.database, &args.postgres_url).await?;
    let sim = Simulator::start("127.0.0.1:0", 0)?;
    let template_id = {
        let api = ApiSession::start(
            &database,
            Role::Api,
            &[("SYNCHUB_SCHEDULER__ENABLED", "false")],
        )
        .await?;
        api.orders_flow(
            &sim.address,
            "sched",
            json!({"schedule": {"cron": "0 * * * *"}}),
        )
        .await?
    };
    let db = database.connect().await?;
    let template = flow::Entity::find_by_id(FlowId::parse(&template_id).context("flow id")?)
        .one(&db)
        .await?
        .context("the template flow")?;
    let seeding = Instant::now();
    let now = chrono::Utc::now();
    copy_flow(&db, &template, 0..args.flows, |i, mut row| {
        row.id = FlowId::generate();
        row.name = format!("flow {i}");
        row.timezone = ZONES[i % ZONES.len()].to_string();
        row.schedule = Some(json!({"cron": format!("{}-59/15 * * * *", i % 15)}));
        row.next_run_at = flow_schedule(&row)?.next_after(now);
        Some(row)
    })
    .await?;
    let seeded = flow::Entity::find()
        .filter(flow::Column::NextRunAt.is_not_null())
        .count(&db)
        .await?;
    anyhow::ensure!(
        seeded as usize > args.flows,
        "only {seeded} flows were seeded"
    );
    println!(
        "\nscheduler scale on {}: {} flows (every 15 min at offsets 0-14, {} zones), seeded in {:.1} s",
        args.database,
        seeded,
        ZONES.len(),
        seeding.elapsed().as_secs_f64()
    );

    let port = free_port()?;
    let mut command = Command::new(super::current_exe()?);
    command
        .arg("serve")
        .env("SYNCHUB_LISTEN", format!("127.0.0.1:{port}"))
        .env("SYNCHUB_DATA_DIR", database.settings(&[])?.data_dir)
        .env("DATABASE_URL", &database.url)
        .env("SYNCHUB_WORKERS__ENABLED", "false")
        .env("SYNCHUB_SCHEDULER__ENABLED", "true")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let started_at = chrono::Utc::now();
    let server = Server(command.spawn().context("starting synchub serve")?);
    wait_until_up(&format!("http://127.0.0.1:{port}/healthz")).await?;
    let pid = server.0.id();
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let peak_kib = peak_rss_kib(pid);
    drop(server);
    let ended_at = chrono::Utc::now();

    // Ticks that fell due while the scheduler ran (not the ones missed before it started).
    let runs: Vec<(
        Option<chrono::DateTime<chrono::Utc>>,
        chrono::DateTime<chrono::Utc>,
    )> = run::Entity::find()
        .select_only()
        .column(run::Column::ScheduledFor)
        .column(run::Column::CreatedAt)
        .filter(run::Column::Trigger.eq("schedule"))
        .filter(run::Column::ScheduledFor.gte(started_at + chrono::Duration::seconds(2)))
        .filter(run::Column::ScheduledFor.lte(ended_at - chrono::Duration::seconds(5)))
        .into_tuple()
        .all(&db)
        .await?;
    let mut lateness = hdrhistogram::Histogram::<u64>::new(3)?;
    for (scheduled, created) in &runs {
        if let Some(scheduled) = scheduled {
            let late = (*created - *scheduled).num_milliseconds().max(0) as u64;
            lateness.record(late)?;
        }
    }
    println!("| database | ticks fired | lateness p50 ms | p99 ms | max ms | peak memory MiB |");
    println!("| --- | --- | --- | --- | --- | --- |");
    println!(
        "| {} | {} | {} | {} | {} | {} |",
        args.database,
        runs.len(),
        lateness.value_at_quantile(0.5),
        lateness.value_at_quantile(0.99),
        lateness.max(),
        peak_kib
            .map(|k| format!("{:.0}", k as f64 / 1024.0))
            .unwrap_or_else(|| "?".into()),
    );
    db.close().await?;
    database.remove().await?;
    sim.stop().await;
    Ok(())
}

/// The process's peak resident memory (VmHWM), on Linux.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
