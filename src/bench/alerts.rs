//! Alert latency: events arrive at a steady rate (1,000 a second by default) for many flows;
//! the alerter groups, throttles and sends them to a signed webhook receiver paced at its
//! limit. Reports, per alert, the time from its first event to the receiver's 2xx for its
//! first message, and the most messages the receiver got in one second.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::fixture::{ApiSession, ScratchDatabase, percentile};
use crate::alerts::events::{Event, emit};
use crate::alerts::message::Severity;
use crate::alerts::{AlertChannels, Alerter};
use crate::ids::TenantId;
use crate::netpolicy::OutboundPolicy;
use crate::ratelimit::RateLimiter;
use crate::sim::Simulator;
use crate::startup::{Role, resolve_master_key};
use crate::store::entities::{alert, alert_delivery};
use crate::vault::Vault;

const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[derive(Debug, Clone, clap::Args)]
pub struct AlertsBenchArgs {
    /// Events a second.
    #[arg(long, default_value_t = 1000)]
    rate: usize,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Distinct flows the events are about (one alert each).
    #[arg(long, default_value_t = 200)]
    flows: usize,
    #[arg(long, default_value = "sqlite")]
    database: String,
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    postgres_url: String,
}

pub async fn run(args: AlertsBenchArgs) -> anyhow::Result<()> {
    crate::install_crypto_provider();
    let sim = Simulator::start("127.0.0.1:0", 0)?;
    sim.state.register_robot("bench", Some(WHSEC.into()));
    let database = ScratchDatabase::create(&args.database, &args.postgres_url).await?;
    let api = ApiSession::start(&database, Role::Api, &[]).await?;
    let channel = api
        .post("/v1/alert-channels", json!({"name": "bench", "kind": "webhook", "secret": WHSEC, "url": format!("{}/hook/bench", sim.address)}))
        .await?;
    api.post("/v1/alert-rules", json!({"name": "failing runs", "kinds": ["run_failed"], "severity": "critical", "channels": [channel["id"]], "throttle_seconds": 60}))
        .await?;
    let db = database.connect().await?;
    let settings = database.settings(&[])?;
    let vault = Vault::new(resolve_master_key(&settings)?);
    let tenant_id = crate::store::entities::alert_channel::Entity::find()
        .one(&db)
        .await?
        .map(|c| c.tenant_id)
        .context("the channel's tenant")?;
    let alerter = Alerter::new(
        db.clone(),
        AlertChannels::new(db.clone(), vault, OutboundPolicy::allowing_private())?,
        RateLimiter::new(db.clone()),
        api.base.clone(),
    );
    let shutdown = CancellationToken::new();
    let loop_handle = tokio::spawn(alerter.run(Duration::from_millis(100), shutdown.clone()));

    let started = Instant::now();
    let batch = (args.rate / 100).max(1);
    let mut sent = 0usize;
    let mut next = Instant::now();
    while started.elapsed() < Duration::from_secs(args.seconds) {
        emit_batch(&db, &tenant_id, sent, batch, args.flows).await?;
        sent += batch;
        next += Duration::from_millis(10);
        tokio::time::sleep_until(next.into()).await;
    }
    let emitted_in = started.elapsed();
    // Wait for the first message of every alert.
    let deadline = Instant::now() + Duration::from_secs(120);
    let alerts = loop {
        let alerts = alert::Entity::find().all(&db).await?;
        let delivered = alert_delivery::Entity::find()
            .filter(alert_delivery::Column::Status.eq(alert_delivery::DeliveryStatus::Delivered))
            .all(&db)
            .await?;
        if alerts.len() >= args.flows.min(sent) && delivered.len() >= alerts.len()
            || Instant::now() > deadline
        {
            break (alerts, delivered);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    shutdown.cancel();
    let _ = loop_handle.await;
    let (alerts, delivered) = alerts;
    let mut first_delivery: BTreeMap<String, chrono::DateTime<chrono::Utc>> = BTreeMap::new();
    let mut per_second: BTreeMap<i64, usize> = BTreeMap::new();
    for d in &delivered {
        if let Some(at) = d.delivered_at {
            *per_second.entry(at.timestamp()).or_default() += 1;
            let entry = first_delivery.entry(d.alert_id.to_string()).or_insert(at);
            if at < *entry {
                *entry = at;
            }
        }
    }
    let mut latencies: Vec<f64> = alerts
        .iter()
        .filter_map(|a| {
            first_delivery
                .get(a.id.as_str())
                .map(|at| (*at - a.first_at).num_milliseconds() as f64)
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    let received = sim.state.chat_messages("bench").len();
    println!(
        "\nalert latency ({} database): {sent} events in {:.1} s ({:.0}/s) about {} flows, one signed webhook receiver paced at 50/s after a burst of 100:\n",
        args.database,
        emitted_in.as_secs_f64(),
        sent as f64 / emitted_in.as_secs_f64(),
        args.flows
    );
    println!(
        "| alerts | messages received | first message p50 ms | p99 ms | max ms | most messages in one second |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    println!(
        "| {} | {received} | {:.0} | {:.0} | {:.0} | {} |",
        alerts.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default(),
        per_second.values().max().copied().unwrap_or_default()
    );
    sim.stop().await;
    database.remove().await?;
    Ok(())
}

async fn emit_batch(
    db: &sea_orm::DatabaseConnection,
    tenant: &TenantId,
    from: usize,
    count: usize,
    flows: usize,
) -> anyhow::Result<()> {
    let txn = crate::store::begin_write(db).await?;
    for i in from..from + count {
        let flow = format!("flow_bench_{}", i % flows);
        emit(
            &txn,
            Event {
                at: chrono::Utc::now(),
                tenant,
                kind: "run_failed",
                severity: Severity::Critical,
                group_key: flow.clone(),
                connection_id: None,
                flow_id: Some(flow),
                message: format!("run {i} failed (server_error): HTTP 500"),
                details: json!({}),
            },
        )
        .await?;
    }
    txn.commit().await?;
    Ok(())
}
