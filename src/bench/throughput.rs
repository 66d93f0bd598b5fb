//! Throughput: one orders flow moves N orders from simulated Shopify (rate limits lifted on
//! both sides) into the simulated ERP and the store, through the real runtime and engine.
//! Reports orders per second from the run request to the run's success, and checks that
//! every order arrived once.

use std::time::{Duration, Instant};

use anyhow::Context;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::fixture::{ApiSession, ScratchDatabase};
use crate::connectors::ConnectorRegistry;
use crate::runtime::{RunsSignal, RuntimeOptions};
use crate::sim::Simulator;
use crate::startup::{Role, resolve_master_key};
use crate::store::entities::record;
use crate::sync::SyncEngine;
use crate::vault::Vault;

const STORE: &str = "throughput";

#[derive(Debug, Clone, clap::Args)]
pub struct ThroughputBenchArgs {
    #[arg(long, default_value_t = 100_000)]
    orders: usize,
    /// sqlite or postgres.
    #[arg(long, default_value = "sqlite")]
    database: String,
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    postgres_url: String,
}

/// The built-in registry with every rate limit of these connectors lifted.
fn unlimited(names: &[&str]) -> anyhow::Result<ConnectorRegistry> {
    let mut registry = ConnectorRegistry::built_in()?;
    for name in names {
        let mut manifest = (*registry.get(name).context("a built-in connector")?).clone();
        for limit in &mut manifest.rate_limits {
            limit.rate = 1e9;
            limit.burst = 1e9;
        }
        registry = registry.with_manifest(manifest);
    }
    Ok(registry)
}

pub async fn run(args: ThroughputBenchArgs) -> anyhow::Result<()> {
    crate::install_crypto_provider();
    let seeding = Instant::now();
    let sim = Simulator::start("127.0.0.1:0", args.orders)?;
    sim.state.set_shop_limit(STORE, 1e9, 1e9);
    let database = ScratchDatabase::create(&args.database, &args.postgres_url).await?;
    let api = ApiSession::start(&database, Role::Api, &[]).await?;
    let flow = api.orders_flow(&sim.address, STORE, json!({})).await?;
    let db = database.connect().await?;
    let settings = database.settings(&[])?;
    let registry = unlimited(&["shopify", "generic-rest-erp"])?;
    let engine = SyncEngine::new(
        db.clone(),
        Vault::new(resolve_master_key(&settings)?),
        std::sync::Arc::new(registry),
        crate::netpolicy::OutboundPolicy::allowing_private(),
    )?;
    let signal = RunsSignal::new();
    let shutdown = CancellationToken::new();
    let options = RuntimeOptions {
        concurrency: settings.workers.concurrency,
        poll: Duration::from_millis(settings.workers.poll_millis),
        clock: crate::clock::Clock::system(),
    };
    let runtime = tokio::spawn(crate::runtime::run(
        db.clone(),
        engine,
        signal.clone(),
        options,
        shutdown.clone(),
    ));
    eprintln!(
        "set up in {:.1} s; running the flow",
        seeding.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    let run = api
        .post(&format!("/v1/flows/{flow}/run"), json!({}))
        .await?;
    signal.notify();
    let path = format!("/v1/runs/{}", run["id"].as_str().context("run id")?);
    let shown = loop {
        let shown = api.get(&path).await?;
        match shown["status"].as_str() {
            Some("succeeded") => break shown,
            Some("dead") => anyhow::bail!("the run failed: {shown}"),
            _ => {}
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(1800),
            "the run took over 30 minutes: {shown}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let elapsed = started.elapsed().as_secs_f64();
    let written = shown["records_written"].as_i64().unwrap_or(0);
    let stored = record::Entity::find()
        .filter(record::Column::Kind.eq("order"))
        .count(&db)
        .await?;
    let in_erp = sim.state.erp_orders(STORE).len();
    let stats = sim.state.stats();
    println!(
        "\nthroughput on {}: {} orders, simulated Shopify -> store -> simulated ERP (batch writes)\n",
        args.database, args.orders
    );
    println!(
        "| database | orders | seconds | orders/s | in the store | in the ERP | written twice |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    println!(
        "| {} | {written} | {elapsed:.2} | {:.0} | {stored} | {in_erp} | {} |",
        args.database,
        written as f64 / elapsed,
        stats.duplicate_writes
    );
    anyhow::ensure!(
        written as usize == args.orders && in_erp == args.orders && stored as usize == args.orders,
        "not every order arrived once"
    );
    shutdown.cancel();
    let _ = runtime.await;
    db.close().await?;
    database.remove().await?;
    sim.stop().await;
    Ok(())
}
