//! `synchub demo`: everything a newcomer needs to watch orders flow, in one command. It
//! starts the platform simulator and the full service (API, scheduler, workers) on a scratch
//! SQLite database, creates a tenant, two simulated Shopify stores, a simulated Amazon
//! seller and an ERP, an orders flow from each store every 10 seconds, and keeps adding
//! orders to the stores while a table shows them reaching the ERP. A third store sends its
//! orders into simulated Lingxing, which ships some every few seconds; a shipments flow
//! brings the tracking numbers back to the store as fulfillments.

use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;

use crate::bench::fixture::{ApiSession, ScratchDatabase};
use crate::sim::Simulator;
use crate::sim::signed::{AppRegistration, LwaClient};
use crate::startup::Role;

const STORES: [&str; 2] = ["demo-us", "demo-eu"];
/// The store whose ERP is (simulated) Lingxing, and the AppID it uses.
const LINGXING_STORE: &str = "demo-lx";
const LINGXING_APP: &str = "ak_DEMOLINGXING1";

#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Orders each simulated store starts with.
    #[arg(long, default_value_t = 1_000)]
    orders: usize,
    /// Stop after this many seconds (0: run until Ctrl-C).
    #[arg(long, default_value_t = 0)]
    seconds: u64,
}

/// A Shopify store whose orders go into simulated Lingxing every 10 seconds, and whose
/// shipments come back from it every 10 seconds.
async fn lingxing_flows(api: &ApiSession, sim: &str) -> anyhow::Result<()> {
    let shop = api
        .post(
            "/v1/connections",
            json!({"name": "Shopify demo-lx", "connector": "shopify", "environment": "production",
                   "settings": {"shop_domain": format!("{LINGXING_STORE}.myshopify.com"),
                                "location_id": "gid://shopify/Location/655441491",
                                "base_url": format!("{sim}/shopify/{LINGXING_STORE}")},
                   "credentials": {"access_token": "shpat_simulated_0123456789"}}),
        )
        .await?;
    let lingxing = api
        .post(
            "/v1/connections",
            json!({"name": "Lingxing", "connector": "lingxing", "environment": "production",
                   "settings": {"base_url": format!("{sim}/lingxing"), "store_id": "110283406273996288"},
                   "credentials": {"app_id": LINGXING_APP, "app_secret": "demo-lingxing-secret"}}),
        )
        .await?;
    for (stream, source, destination) in [
        ("orders", &shop, &lingxing),
        ("shipments", &lingxing, &shop),
    ] {
        let flow = api
            .post(
                "/v1/flows",
                json!({"name": format!("{stream} {LINGXING_STORE}"), "stream": stream,
                       "source": source["id"], "destination": destination["id"],
                       "schedule": {"every_seconds": 10}}),
            )
            .await?;
        let id = flow["id"].as_str().context("flow id")?;
        api.post(&format!("/v1/flows/{id}/run"), json!({})).await?;
    }
    Ok(())
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    crate::install_crypto_provider();
    let sim = Simulator::start("127.0.0.1:0", args.orders)?;
    let mut apps = AppRegistration::default();
    apps.lwa.insert(
        "amzn1.application-oa2-client.demo".into(),
        LwaClient {
            client_secret: "demo-client-secret".into(),
            refresh_token: "Atzr|demo-seller".into(),
        },
    );
    apps.lingxing
        .insert(LINGXING_APP.into(), "demo-lingxing-secret".into());
    sim.state.register_apps(apps);
    let database = ScratchDatabase::create("sqlite", "").await?;
    let api = ApiSession::start(&database, Role::All, &[]).await?;
    lingxing_flows(&api, &sim.address).await?;
    let mut flows = Vec::new();
    for store in STORES {
        let flow = api
            .orders_flow(
                &sim.address,
                store,
                json!({"schedule": {"every_seconds": 10}}),
            )
            .await?;
        api.post(&format!("/v1/flows/{flow}/run"), json!({}))
            .await?;
        flows.push((store, flow));
    }
    let amazon = api
        .post(
            "/v1/connections",
            json!({
                "name": "Amazon US", "connector": "amazon-sp-api", "environment": "production",
                "settings": {"region": "na", "marketplace_ids": ["ATVPDKIKX0DER"], "seller_id": "A2DEMO",
                    "base_url": format!("{}/amazon", sim.address),
                    "lwa_endpoint": format!("{}/amazon/auth/o2/token", sim.address)},
                "credentials": {"lwa_client_id": "amzn1.application-oa2-client.demo",
                    "lwa_client_secret": "demo-client-secret", "refresh_token": "Atzr|demo-seller"},
            }),
        )
        .await?;
    println!(
        "synchub demo: API at {} (token {}), simulator at {}",
        api.base, api.token, sim.address
    );
    println!(
        "Amazon connection {} created (orders from Amazon join once its order mapping lands).",
        amazon["id"].as_str().unwrap_or("?")
    );

    let started = Instant::now();
    let mut added = 0usize;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = tick.tick() => {}
        }
        let elapsed = started.elapsed();
        if args.seconds > 0 && elapsed >= Duration::from_secs(args.seconds) {
            break;
        }
        // New orders keep arriving at the stores, a few every 3 seconds.
        if elapsed.as_secs().is_multiple_of(3) {
            for store in STORES {
                added += sim.state.add_orders(store, 1 + added % 5).len();
            }
        }
        let mut rows = Vec::new();
        for (store, flow) in &flows {
            let runs = api.get(&format!("/v1/flows/{flow}/runs?limit=500")).await?;
            let items = runs["data"].as_array().cloned().unwrap_or_default();
            let succeeded = items.iter().filter(|r| r["status"] == "succeeded").count();
            let last = items
                .first()
                .and_then(|r| r["status"].as_str())
                .unwrap_or("-")
                .to_string();
            let in_store = sim.state.shop_order_count(store);
            let in_erp = sim.state.erp_orders(store).len();
            rows.push((store, succeeded, last, in_store, in_erp));
        }
        print!("\x1b[2J\x1b[H");
        println!(
            "synchub demo: {:>4} s   (Ctrl-C to stop)   API {}   token {}\n",
            elapsed.as_secs(),
            api.base,
            api.token
        );
        println!(
            "{:<10} {:>10} {:>12} {:>16} {:>14}  progress",
            "store", "runs ok", "last run", "orders in store", "orders in ERP"
        );
        for (store, succeeded, last, in_store, in_erp) in &rows {
            let width = 30;
            let filled = (*in_erp * width)
                .checked_div(*in_store)
                .unwrap_or(0)
                .min(width);
            println!(
                "{:<10} {:>10} {:>12} {:>16} {:>14}  [{}{}]",
                store,
                succeeded,
                last,
                in_store,
                in_erp,
                "#".repeat(filled),
                ".".repeat(width - filled)
            );
        }
        // Lingxing ships a few of the orders it holds every 5 seconds.
        if elapsed.as_secs().is_multiple_of(5) {
            sim.state.ship_lingxing_orders(LINGXING_APP, 3);
        }
        let in_lingxing = sim.state.lingxing_orders(LINGXING_APP).len();
        let fulfilled = sim.state.shop_fulfillments(LINGXING_STORE).len();
        println!(
            "\n{LINGXING_STORE}: {} orders in the store, {in_lingxing} in Lingxing, {fulfilled} shipped back with tracking",
            sim.state.shop_order_count(LINGXING_STORE)
        );
        let stats = sim.state.stats();
        println!(
            "\nsimulator: {} requests, {} answered 429, {} orders written, {} duplicate writes",
            stats.requests, stats.throttled, stats.orders_written, stats.duplicate_writes
        );
    }
    let behind: usize = STORES
        .iter()
        .map(|s| {
            sim.state
                .shop_order_count(s)
                .saturating_sub(sim.state.erp_orders(s).len())
        })
        .sum();
    let total: usize = STORES.iter().map(|s| sim.state.erp_orders(s).len()).sum();
    println!(
        "\ndemo over: {total} orders in the ERP, {behind} still on their way, {} written twice",
        sim.state.stats().duplicate_writes
    );
    database
        .remove()
        .await
        .context("removing the demo database")?;
    Ok(())
}
