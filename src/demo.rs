//! `synchub demo`: everything a newcomer needs to watch orders flow, in one command. It
//! starts the platform simulator and the full service (API, scheduler, workers) on a scratch
//! SQLite database, creates a tenant, two simulated Shopify stores and a simulated Amazon
//! seller each with an orders flow into an ERP every 10 seconds, and a third store whose
//! orders go into simulated Lingxing, which ships some every few seconds; a shipments flow
//! brings the tracking numbers back to the store as fulfillments. New orders keep arriving
//! at the stores. The live view has a row per flow: orders at the source and at the far end,
//! its runs, a progress bar and the arrivals of the last 30 seconds; the end says what moved.

use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};

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
/// Returns the orders flow and the shipments flow.
async fn lingxing_flows(api: &ApiSession, sim: &str) -> anyhow::Result<(String, String)> {
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
    let mut flows = Vec::new();
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
        flows.push(id.to_string());
    }
    let shipments = flows.pop().context("the shipments flow")?;
    let orders = flows.pop().context("the orders flow")?;
    Ok((orders, shipments))
}

/// What one row of the live view follows: where its orders come from and go to.
#[derive(Clone, Copy)]
enum Lane {
    /// A Shopify store's orders into the generic ERP's account of the same name.
    ShopifyToErp(&'static str),
    /// The Amazon seller's orders into the ERP account `AMAZON_ERP`.
    AmazonToErp,
    /// The Lingxing store's orders into Lingxing.
    ShopifyToLingxing,
    /// Lingxing's shipments back to the store as fulfillments with tracking.
    LingxingShipments,
}

const AMAZON_ERP: &str = "demo-amazon";

/// A row of the live view: its flow, and how many had arrived at each of the last seconds.
struct Row {
    lane: Lane,
    label: String,
    flow: String,
    arrived: std::collections::VecDeque<usize>,
}

/// Orders at the source so far, and at the destination.
fn counts(lane: Lane, sim: &Simulator, seeded: usize, shipped: usize) -> (usize, usize) {
    match lane {
        Lane::ShopifyToErp(store) => (
            sim.state.shop_order_count(store),
            sim.state.erp_orders(store).len(),
        ),
        Lane::AmazonToErp => (seeded, sim.state.erp_orders(AMAZON_ERP).len()),
        Lane::ShopifyToLingxing => (
            sim.state.shop_order_count(LINGXING_STORE),
            sim.state.lingxing_orders(LINGXING_APP).len(),
        ),
        Lane::LingxingShipments => (shipped, sim.state.shop_fulfillments(LINGXING_STORE).len()),
    }
}

/// The last `width` seconds of arrivals as a sparkline: how fast orders reach the far end.
fn sparkline(arrived: &std::collections::VecDeque<usize>, width: usize) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let steps: Vec<usize> = arrived
        .iter()
        .zip(arrived.iter().skip(1))
        .map(|(before, now)| now.saturating_sub(*before))
        .collect();
    let shown = &steps[steps.len().saturating_sub(width)..];
    let top = shown.iter().copied().max().unwrap_or(0).max(1);
    let line: String = shown
        .iter()
        .map(|n| {
            if *n == 0 {
                ' '
            } else {
                BARS[(n * 7).div_ceil(top).min(7)]
            }
        })
        .collect();
    format!("{line:>width$}")
}

/// The flow's runs: (succeeded, retrying or dead, the newest one's status).
async fn run_counts(api: &ApiSession, flow: &str) -> anyhow::Result<(usize, usize, String)> {
    let runs = api.get(&format!("/v1/flows/{flow}/runs?limit=500")).await?;
    let items = runs["data"].as_array().cloned().unwrap_or_default();
    let ok = items.iter().filter(|r| r["status"] == "succeeded").count();
    let failing = items
        .iter()
        .filter(|r| r["status"] == "retrying" || r["status"] == "dead")
        .count();
    let last = items
        .first()
        .and_then(|r| r["status"].as_str())
        .unwrap_or("-")
        .to_string();
    Ok((ok, failing, last))
}

/// An orders flow from `source` into a new generic ERP connection for `account`, every 10 s.
async fn erp_flow(
    api: &ApiSession,
    sim: &str,
    source: &Value,
    account: &str,
) -> anyhow::Result<String> {
    let erp = api
        .post(
            "/v1/connections",
            json!({"name": format!("ERP {account}"), "connector": "generic-rest-erp", "environment": "production",
                   "settings": {"base_url": format!("{sim}/erp/{account}")}, "credentials": {"api_key": "erp-key-1"}}),
        )
        .await?;
    let flow = api
        .post(
            "/v1/flows",
            json!({"name": format!("orders into {account}"), "stream": "orders", "source": source["id"],
                   "destination": erp["id"], "schedule": {"every_seconds": 10}}),
        )
        .await?;
    let id = flow["id"].as_str().context("flow id")?.to_string();
    api.post(&format!("/v1/flows/{id}/run"), json!({})).await?;
    Ok(id)
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
    let (lx_orders, lx_shipments) = lingxing_flows(&api, &sim.address).await?;
    let mut rows = Vec::new();
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
        rows.push((
            Lane::ShopifyToErp(store),
            format!("Shopify {store} → ERP"),
            flow,
        ));
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
    let amazon_flow = erp_flow(&api, &sim.address, &amazon, AMAZON_ERP).await?;
    rows.push((Lane::AmazonToErp, "Amazon US → ERP".into(), amazon_flow));
    rows.push((
        Lane::ShopifyToLingxing,
        format!("Shopify {LINGXING_STORE} → Lingxing"),
        lx_orders,
    ));
    rows.push((
        Lane::LingxingShipments,
        format!("Lingxing → {LINGXING_STORE} shipped"),
        lx_shipments,
    ));
    let mut rows: Vec<Row> = rows
        .into_iter()
        .map(|(lane, label, flow)| Row {
            lane,
            label,
            flow,
            arrived: std::collections::VecDeque::new(),
        })
        .collect();
    println!(
        "synchub demo: API at {} (token {}), simulator at {}",
        api.base, api.token, sim.address
    );

    const HISTORY: usize = 30;
    let started = Instant::now();
    let mut added = 0usize;
    let mut shipped = 0usize;
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
        // New orders keep arriving at the stores, a few every 3 seconds; Lingxing ships a few
        // of the orders it holds every 5 seconds.
        if elapsed.as_secs().is_multiple_of(3) {
            for store in STORES.iter().chain([&LINGXING_STORE]) {
                added += sim.state.add_orders(store, 1 + added % 5).len();
            }
        }
        if elapsed.as_secs().is_multiple_of(5) {
            shipped += sim.state.ship_lingxing_orders(LINGXING_APP, 3).len();
        }
        print!("\x1b[2J\x1b[H");
        println!(
            "synchub demo: {:>4} s   (Ctrl-C to stop)   API {}   token {}\n",
            elapsed.as_secs(),
            api.base,
            api.token
        );
        println!(
            "{:<28} {:>7} {:>7} {:>9} {:>8} {:>10}  {:<22}  arrivals, last {HISTORY} s",
            "flow", "source", "arrived", "runs ok", "failing", "last run", "progress"
        );
        for row in &mut rows {
            let (at_source, arrived) = counts(row.lane, &sim, args.orders, shipped);
            row.arrived.push_back(arrived);
            if row.arrived.len() > HISTORY + 1 {
                row.arrived.pop_front();
            }
            let (ok, failing, last) = run_counts(&api, &row.flow).await?;
            let width = 20;
            let filled = (arrived * width)
                .checked_div(at_source)
                .unwrap_or(0)
                .min(width);
            println!(
                "{:<28} {:>7} {:>7} {:>9} {:>8} {:>10}  [{}{}]  {}",
                row.label,
                at_source,
                arrived,
                ok,
                failing,
                last,
                "#".repeat(filled),
                ".".repeat(width - filled),
                sparkline(&row.arrived, HISTORY)
            );
        }
        let stats = sim.state.stats();
        println!(
            "\nsimulator: {} requests, {} answered 429, {} orders written, {} duplicate writes",
            stats.requests, stats.throttled, stats.orders_written, stats.duplicate_writes
        );
        println!(
            "Amazon's getOrderItems allows 0.5 calls a second (burst 30): its row fills at that pace."
        );
    }

    let seconds = started.elapsed().as_secs_f64().max(1.0);
    println!("\nwhat moved in {seconds:.0} s:");
    let mut into_erps = 0;
    let mut behind = 0;
    for row in &rows {
        let (at_source, arrived) = counts(row.lane, &sim, args.orders, shipped);
        let (ok, failing, _) = run_counts(&api, &row.flow).await?;
        if !matches!(row.lane, Lane::LingxingShipments) {
            into_erps += arrived;
            behind += at_source.saturating_sub(arrived);
        }
        println!(
            "  {:<28} {arrived:>6} of {at_source:<6} ({:.0}/s), {ok} runs succeeded, {failing} retrying or dead",
            row.label,
            arrived as f64 / seconds
        );
    }
    println!(
        "demo over: {into_erps} orders in the ERPs, {behind} still on their way, {} written twice",
        sim.state.stats().duplicate_writes
    );
    database
        .remove()
        .await
        .context("removing the demo database")?;
    Ok(())
}
