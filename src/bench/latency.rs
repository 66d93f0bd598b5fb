//! Webhook to ERP: what a seller feels. Signed Shopify orders/create webhooks arrive at a
//! steady rate for a while (a new order in the simulated store each time) at a `serve`-like
//! process (API, scheduler and workers in this process, as `synchub serve` runs them) whose
//! flow runs on webhooks into the simulated ERP. For each order: the time from the webhook's
//! 200 to the ERP holding it, as p50, p99 and max, and how many orders were written twice.
//! Rate limits are lifted on both sides: this measures synchub, not a platform's quota.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;

use super::fixture::{ApiSession, ScratchDatabase, WEBHOOK_SECRET, percentile, unlimited};
use crate::sim::Simulator;
use crate::startup::Role;
use crate::webhooks::sign;

const STORE: &str = "latency";

#[derive(Debug, Clone, clap::Args)]
pub struct LatencyBenchArgs {
    /// sqlite or postgres.
    #[arg(long, default_value = "sqlite")]
    database: String,
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    postgres_url: String,
    /// Webhooks per second, one measurement each, in this order.
    #[arg(long, value_delimiter = ',', default_value = "100,1000")]
    rates: Vec<u32>,
    /// Seconds of steady load per rate.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
}

struct Measured {
    rate: u32,
    sent: usize,
    /// Why webhooks were refused (the status, or the client's error), and how often.
    refusals: HashMap<String, usize>,
    /// Milliseconds from each order's 200 to its arrival in the ERP, sorted.
    latencies_ms: Vec<f64>,
    /// Arrived before its webhook's 200 reached the sender (counted as 0 ms).
    before_ack: usize,
    /// Milliseconds from each acknowledged webhook's sending to the order's arrival, sorted:
    /// what the seller waits in all. A faster 200 alone shortens this one but lengthens the
    /// time from the 200, which then starts later in the same wait.
    from_sending_ms: Vec<f64>,
    missing: usize,
}

impl Measured {
    fn refused(&self) -> usize {
        self.refusals.values().sum()
    }
}

pub async fn run(args: LatencyBenchArgs) -> anyhow::Result<()> {
    if cfg!(debug_assertions) {
        eprintln!("warning: this is a debug build; run `cargo run --release -- bench latency`");
    }
    crate::install_crypto_provider();
    let sim = Simulator::start("127.0.0.1:0", 0)?;
    sim.state.set_shop_limit(STORE, 1e9, 1e9);
    let database = ScratchDatabase::create(&args.database, &args.postgres_url).await?;
    let registry = unlimited(&["shopify", "generic-rest-erp"])?;
    let api = ApiSession::start_with(
        &database,
        Role::All,
        &[("SYNCHUB_LOG_JSON", "false")],
        registry,
    )
    .await?;
    let flow = api
        .orders_flow(&sim.address, STORE, json!({"on_webhook": true}))
        .await?;
    let shown = api.get(&format!("/v1/flows/{flow}")).await?;
    let source = shown["source"].as_str().context("the flow's source")?;
    let hook = format!("{}/v1/hooks/{source}", api.base);

    let mut results = Vec::new();
    for &rate in &args.rates {
        results.push(measure(&sim, &hook, rate, Duration::from_secs(args.seconds)).await?);
    }
    let duplicates = sim.state.stats().duplicate_writes;

    println!(
        "\nwebhook -> order in the ERP on {}, {} s per rate (simulated Shopify -> simulated ERP, flow on webhooks)\n",
        args.database, args.seconds
    );
    println!(
        "| webhooks/s | sent | refused | p50 ms | p99 ms | max ms | in the ERP before the 200 | missing | from sending: p50 ms | p99 ms |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for m in &results {
        println!(
            "| {} | {} | {} | {:.0} | {:.0} | {:.0} | {} | {} | {:.0} | {:.0} |",
            m.rate,
            m.sent,
            m.refused(),
            percentile(&m.latencies_ms, 0.5),
            percentile(&m.latencies_ms, 0.99),
            m.latencies_ms.last().copied().unwrap_or(0.0),
            m.before_ack,
            m.missing,
            percentile(&m.from_sending_ms, 0.5),
            percentile(&m.from_sending_ms, 0.99),
        );
    }
    for m in &results {
        for (why, count) in &m.refusals {
            println!("\nrefused at {}/s: {count} x {why}", m.rate);
        }
    }
    println!("\norders written twice: {duplicates}");
    drop(api);
    database.remove().await?;
    sim.stop().await;
    anyhow::ensure!(
        results.iter().all(|m| m.missing == 0 && m.refused() == 0),
        "some webhooks were refused or their orders never reached the ERP"
    );
    anyhow::ensure!(duplicates == 0, "orders were written twice");
    Ok(())
}

/// Sends `rate` webhooks a second for `length` (each after its order exists in the store),
/// then waits until every acknowledged order is in the ERP (a minute at most).
async fn measure(
    sim: &Simulator,
    hook: &str,
    rate: u32,
    length: Duration,
) -> anyhow::Result<Measured> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .timeout(Duration::from_secs(30))
        .build()?;
    // Each acknowledged order: when its webhook was sent, and when its 200 came.
    let acked: Arc<Mutex<HashMap<String, (Instant, Instant)>>> = Arc::default();
    let refused: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate.max(1))));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let total = (u64::from(rate) * length.as_secs()) as usize;
    let mut senders = tokio::task::JoinSet::new();
    for _ in 0..total {
        ticks.tick().await;
        let Some(id) = sim.state.add_orders(STORE, 1).first().copied() else {
            anyhow::bail!("the simulated store took no order");
        };
        let (http, hook, acked, refused) = (
            http.clone(),
            hook.to_string(),
            acked.clone(),
            refused.clone(),
        );
        senders.spawn(async move {
            let body =
                json!({"id": id, "name": format!("#{id}"), "financial_status": "paid"}).to_string();
            let answer = http
                .post(&hook)
                .header("content-type", "application/json")
                .header("x-shopify-topic", "orders/create")
                .header("x-shopify-shop-domain", format!("{STORE}.myshopify.com"))
                .header("x-shopify-event-id", format!("latency-{id}"))
                .header(
                    "x-shopify-hmac-sha256",
                    sign::shopify(WEBHOOK_SECRET, body.as_bytes()),
                )
                .body(body);
            let sent_at = Instant::now();
            let answer = answer.send().await;
            match answer {
                Ok(answer) if answer.status().is_success() => {
                    if let Ok(mut acked) = acked.lock() {
                        acked.insert(id.to_string(), (sent_at, Instant::now()));
                    }
                }
                // Tallied by cause: a refusal is rare, and its cause is what to look at next.
                other => {
                    let why = match other {
                        Ok(answer) => format!("HTTP {}", answer.status()),
                        // reqwest's own text is terse ("error sending request"): the
                        // causes under it say what happened.
                        Err(err) => format!("{:#}", anyhow::Error::from(err.without_url())),
                    };
                    if let Ok(mut refused) = refused.lock() {
                        *refused.entry(why).or_default() += 1;
                    }
                }
            }
        });
    }
    while senders.join_next().await.is_some() {}
    let acked = acked.lock().map(|a| a.clone()).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(60);
    let arrivals = loop {
        let arrivals = sim.state.erp_arrivals(STORE);
        if acked.keys().all(|id| arrivals.contains_key(id)) || Instant::now() > deadline {
            break arrivals;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut latencies_ms = Vec::with_capacity(acked.len());
    let mut from_sending_ms = Vec::with_capacity(acked.len());
    let (mut before_ack, mut missing) = (0, 0);
    for (id, (sent, at)) in &acked {
        let Some(arrived) = arrivals.get(id) else {
            missing += 1;
            continue;
        };
        from_sending_ms.push(arrived.saturating_duration_since(*sent).as_secs_f64() * 1000.0);
        if arrived >= at {
            latencies_ms.push(arrived.duration_since(*at).as_secs_f64() * 1000.0);
        } else {
            before_ack += 1;
            latencies_ms.push(0.0);
        }
    }
    latencies_ms.sort_by(f64::total_cmp);
    from_sending_ms.sort_by(f64::total_cmp);
    let refusals = refused.lock().map(|r| r.clone()).unwrap_or_default();
    Ok(Measured {
        rate,
        sent: total,
        refusals,
        latencies_ms,
        before_ack,
        from_sending_ms,
        missing,
    })
}
