//! Throughput: one orders flow moves N orders from simulated Shopify (rate limits lifted on
//! both sides) into the simulated ERP and the store, through the real runtime and engine.
//! Reports orders per second from the run request to the run's success, and checks that
//! every order arrived once. With `--destination lingxing` the ERP is simulated Lingxing,
//! answering in `--answer-ms` with its in-flight cap of 10 kept: the physical limit is then
//! 10 calls per answer time, times the orders per call, and the report gives the ratio.

use std::time::{Duration, Instant};

use anyhow::Context;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::fixture::{ApiSession, ScratchDatabase, unlimited};
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
    /// generic-rest-erp or lingxing.
    #[arg(long, default_value = "generic-rest-erp")]
    destination: String,
    /// How long simulated Lingxing takes to answer a call, in milliseconds.
    #[arg(long, default_value_t = 20)]
    answer_ms: u64,
    /// Keep rate limits and slots in this Redis instead of the database.
    #[arg(long)]
    redis_url: Option<String>,
    /// Orders per Lingxing create call (the manifest's 50 unless given): 1 measures how
    /// well the 10 calls in flight are kept busy.
    #[arg(long)]
    orders_per_call: Option<usize>,
}

const LINGXING_APP: &str = "ak_BENCHLINGXING";

/// A flow from the simulated store into simulated Lingxing answering in `answer_ms`.
async fn lingxing_flow(
    api: &ApiSession,
    sim: &Simulator,
    answer_ms: u64,
) -> anyhow::Result<String> {
    let mut apps = crate::sim::signed::AppRegistration::default();
    apps.lingxing
        .insert(LINGXING_APP.into(), "bench-lingxing-secret".into());
    sim.state.register_apps(apps);
    sim.state.set_lingxing(crate::sim::LingxingSwitches {
        hold_ms: answer_ms,
        ..Default::default()
    });
    let shop = api
        .post(
            "/v1/connections",
            json!({"name": "Shopify", "connector": "shopify", "environment": "production",
                   "settings": {"shop_domain": format!("{STORE}.myshopify.com"), "base_url": format!("{}/shopify/{STORE}", sim.address)},
                   "credentials": {"access_token": "shpat_simulated_0123456789"}}),
        )
        .await?;
    let lingxing = api
        .post(
            "/v1/connections",
            json!({"name": "Lingxing", "connector": "lingxing", "environment": "production",
                   "settings": {"base_url": format!("{}/lingxing", sim.address), "store_id": "1"},
                   "credentials": {"app_id": LINGXING_APP, "app_secret": "bench-lingxing-secret"}}),
        )
        .await?;
    let flow = api
        .post(
            "/v1/flows",
            json!({"name": "orders into Lingxing", "stream": "orders", "source": shop["id"], "destination": lingxing["id"]}),
        )
        .await?;
    Ok(flow["id"].as_str().context("flow id")?.to_string())
}

pub async fn run(args: ThroughputBenchArgs) -> anyhow::Result<()> {
    crate::install_crypto_provider();
    let seeding = Instant::now();
    let sim = Simulator::start("127.0.0.1:0", args.orders)?;
    sim.state.set_shop_limit(STORE, 1e9, 1e9);
    let database = ScratchDatabase::create(&args.database, &args.postgres_url).await?;
    let api = ApiSession::start(&database, Role::Api, &[]).await?;
    let lingxing = args.destination == "lingxing";
    anyhow::ensure!(
        lingxing || args.destination == "generic-rest-erp",
        "--destination is generic-rest-erp or lingxing"
    );
    let flow = if lingxing {
        lingxing_flow(&api, &sim, args.answer_ms).await?
    } else {
        api.orders_flow(&sim.address, STORE, json!({})).await?
    };
    let db = database.connect().await?;
    let settings = database.settings(&[])?;
    // Lingxing's in-flight caps stay: they are what this measures against.
    let mut registry = unlimited(&["shopify", "generic-rest-erp", "lingxing"])?;
    if let Some(size) = args.orders_per_call {
        let mut manifest = (*registry.get("lingxing").context("lingxing")?).clone();
        if let Some(batch) = manifest
            .operations
            .get_mut("create_orders")
            .and_then(|op| op.batch.as_mut())
        {
            batch.max = size.max(1);
        }
        registry = registry.with_manifest(manifest);
    }
    let engine = SyncEngine::new(
        db.clone(),
        Vault::new(resolve_master_key(&settings)?),
        std::sync::Arc::new(registry),
        crate::netpolicy::OutboundPolicy::allowing_private(),
    )?;
    let signal = RunsSignal::new();
    let relaxed = crate::store::connect_relaxed(&settings).await?;
    let engine = engine
        .with_limiter(match &args.redis_url {
            Some(url) => crate::ratelimit::RateLimiter::redis(url).await?,
            None => crate::ratelimit::RateLimiter::configured(&settings).await?,
        })
        .with_runs_signal(signal.clone())
        .with_relaxed_store(relaxed.clone());
    let shutdown = CancellationToken::new();
    let options = RuntimeOptions {
        concurrency: settings.workers.concurrency,
        poll: Duration::from_millis(settings.workers.poll_millis),
        clock: crate::clock::Clock::system(),
        relaxed: Some(relaxed),
        queue: crate::store::connect_queue(&settings, &db).await?,
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
    let in_erp = if lingxing {
        sim.state.lingxing_orders(LINGXING_APP).len()
    } else {
        sim.state.erp_orders(STORE).len()
    };
    let stats = sim.state.stats();
    if lingxing {
        let lx = sim.state.lingxing_stats();
        let per_call = lx.orders_created as f64 / lx.create_calls.max(1) as f64;
        let limit = 10.0 / (args.answer_ms.max(1) as f64 / 1000.0) * per_call;
        let rate = written as f64 / elapsed;
        println!(
            "\nthroughput on {}: {} orders, simulated Shopify -> store -> simulated Lingxing ({} ms an answer, 10 in flight)\n",
            args.database, args.orders, args.answer_ms
        );
        println!(
            "| database | orders | seconds | orders/s | create calls | orders per call | limit (orders/s) | ratio | refused as too frequent | in Lingxing |"
        );
        println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
        println!(
            "| {} | {written} | {elapsed:.2} | {rate:.0} | {} | {per_call:.1} | {limit:.0} | {:.2} | {} | {in_erp} |",
            args.database,
            lx.create_calls,
            rate / limit,
            lx.too_frequent
        );
        anyhow::ensure!(
            written as usize == args.orders && in_erp == args.orders,
            "not every order arrived once"
        );
        shutdown.cancel();
        let _ = runtime.await;
        db.close().await?;
        database.remove().await?;
        sim.stop().await;
        return Ok(());
    }
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
