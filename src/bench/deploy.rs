//! Deployment benchmarks, through the real API, runtime and deployer in one process:
//! - `bench rollback`: from the rollback call to the moment every newly dispatched run uses
//!   the old version, with the workers busy;
//! - `bench deploy`: a canary deployment to N connections (verification of each within the
//!   rate limits, steps of 1, 10, 50 and 100 % with one-second gates): total time, time in
//!   verification, and time spent waiting on quota.

use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};

use super::fixture::{ApiSession, ScratchDatabase, percentile};
use crate::sim::{Faults, Simulator};
use crate::startup::Role;

const SHOPIFY: &str = include_str!("../../connectors/shopify.toml");

#[derive(Debug, Clone, clap::Args)]
pub struct RollbackBenchArgs {
    /// Deploy-then-rollback rounds.
    #[arg(long, default_value_t = 30)]
    rounds: usize,
    /// Stores (connections and flows) under the deployment.
    #[arg(long, default_value_t = 10)]
    stores: usize,
    #[arg(long, default_value = "sqlite")]
    database: String,
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    postgres_url: String,
}

#[derive(Debug, Clone, clap::Args)]
pub struct DeployBenchArgs {
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    #[arg(long, default_value = "sqlite")]
    database: String,
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    postgres_url: String,
}

/// A working 1.2.0 of the Shopify connector to deploy.
async fn publish(api: &ApiSession) -> anyhow::Result<()> {
    let manifest = SHOPIFY
        .replace("version = \"1.0.0\"", "version = \"1.2.0\"")
        .replace("number = \"/name\"", "number = \"/id\"");
    api.post(
        "/v1/connectors/shopify/versions",
        json!({"manifest": manifest, "changelog": "Order number from the id."}),
    )
    .await?;
    Ok(())
}

async fn shop(api: &ApiSession, sim: &str, name: &str) -> anyhow::Result<String> {
    let created = api
        .post("/v1/connections", json!({
            "name": name, "connector": "shopify", "environment": "production",
            "settings": {"shop_domain": format!("{name}.myshopify.com"), "base_url": format!("{sim}/shopify/{name}")},
            "credentials": {"access_token": "shpat_simulated_0123456789"}}))
        .await?;
    Ok(created["id"].as_str().context("connection id")?.to_string())
}

async fn wait_for_state(
    api: &ApiSession,
    id: &str,
    states: &[&str],
    limit: Duration,
) -> anyhow::Result<Value> {
    let started = Instant::now();
    loop {
        let deployment = api.get(&format!("/v1/deployments/{id}")).await?;
        let state = deployment["state"].as_str().unwrap_or_default();
        if states.contains(&state) {
            return Ok(deployment);
        }
        anyhow::ensure!(
            started.elapsed() < limit,
            "deployment {id} still {state} after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn rollback(args: RollbackBenchArgs) -> anyhow::Result<()> {
    crate::install_crypto_provider();
    let sim = Simulator::start("127.0.0.1:0", 50)?;
    // Busy workers: every call to the platforms takes 50 ms.
    sim.state.set_faults(Faults {
        latency_ms: 50,
        ..Faults::default()
    });
    let database = ScratchDatabase::create(&args.database, &args.postgres_url).await?;
    let api = ApiSession::start(
        &database,
        Role::All,
        &[("SYNCHUB_DEPLOYMENTS__TICK_MILLIS", "50")],
    )
    .await?;
    publish(&api).await?;
    let mut flows = Vec::new();
    for i in 0..args.stores {
        flows.push(
            api.orders_flow(&sim.address, &format!("rb{i}"), json!({}))
                .await?,
        );
    }
    let mut latencies = Vec::with_capacity(args.rounds);
    let mut stale_runs = 0usize;
    let mut checked_runs = 0usize;
    for round in 0..args.rounds {
        // Keep the workers busy with a run of every flow.
        for flow in &flows {
            api.post(&format!("/v1/flows/{flow}/run"), json!({}))
                .await?;
        }
        let deployment = api
            .post("/v1/deployments", json!({"connector": "shopify", "version": "1.2.0", "strategy": "immediate", "rollback_window_seconds": 3600}))
            .await?;
        let id = deployment["id"]
            .as_str()
            .context("deployment id")?
            .to_string();
        wait_for_state(&api, &id, &["promoted"], Duration::from_secs(60)).await?;
        let started = Instant::now();
        api.post(
            &format!("/v1/deployments/{id}/rollback"),
            json!({"reason": format!("bench round {round}")}),
        )
        .await?;
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
        // Every run queued from now on must start on the old version.
        let mut queued = Vec::new();
        for flow in flows.iter().take(5) {
            let run = api
                .post(&format!("/v1/flows/{flow}/run"), json!({}))
                .await?;
            if let Some(run) = run["id"].as_str() {
                queued.push(run.to_string());
            }
        }
        for run in queued {
            let view = loop {
                let view = api.get(&format!("/v1/runs/{run}")).await?;
                if !view["connector_version"].is_null() || view["status"] == "succeeded" {
                    break view;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            checked_runs += 1;
            if view["connector_version"] == "1.2.0" {
                stale_runs += 1;
            }
        }
    }
    latencies.sort_by(f64::total_cmp);
    println!(
        "\nrollback latency ({} database), {} rounds, {} stores, workers busy:\n",
        args.database, args.rounds, args.stores
    );
    println!(
        "| p50 ms | p99 ms | max ms | runs checked after rollback | on the rolled-back version |"
    );
    println!("| --- | --- | --- | --- | --- |");
    println!(
        "| {:.1} | {:.1} | {:.1} | {checked_runs} | {stale_runs} |",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default()
    );
    sim.stop().await;
    database.remove().await?;
    Ok(())
}

pub async fn deploy(args: DeployBenchArgs) -> anyhow::Result<()> {
    crate::install_crypto_provider();
    let sim = Simulator::start("127.0.0.1:0", 5)?;
    let database = ScratchDatabase::create(&args.database, &args.postgres_url).await?;
    let api = ApiSession::start(
        &database,
        Role::All,
        &[("SYNCHUB_DEPLOYMENTS__TICK_MILLIS", "100")],
    )
    .await?;
    publish(&api).await?;
    let setup = Instant::now();
    for i in 0..args.connections {
        shop(&api, &sim.address, &format!("dep{i}")).await?;
    }
    eprintln!(
        "{} connections created in {:.1} s",
        args.connections,
        setup.elapsed().as_secs_f64()
    );
    let waited_before = crate::ratelimit::total_wait();
    let requests_before = sim.state.stats().requests;
    let started = Instant::now();
    let deployment = api
        .post("/v1/deployments", json!({"connector": "shopify", "version": "1.2.0", "strategy": "canary", "steps": [1, 10, 50, 100],
                                        "gate": {"min_runs": 0, "interval_seconds": 1, "max_wait_seconds": 60}, "rollback_window_seconds": 0}))
        .await?;
    let id = deployment["id"]
        .as_str()
        .context("deployment id")?
        .to_string();
    let done = wait_for_state(
        &api,
        &id,
        &["completed", "rolled_back", "failed"],
        Duration::from_secs(3600),
    )
    .await?;
    let total = started.elapsed();
    anyhow::ensure!(
        done["state"] == "completed",
        "the deployment ended {}: {}",
        done["state"],
        done["reason"]
    );
    let at = |kind: &str| -> Option<chrono::DateTime<chrono::Utc>> {
        done["timeline"]
            .as_array()?
            .iter()
            .find(|e| e["kind"] == kind)?["at"]
            .as_str()?
            .parse()
            .ok()
    };
    let verification = match (at("created"), at("verification_passed")) {
        (Some(a), Some(b)) => (b - a).num_milliseconds() as f64 / 1000.0,
        _ => 0.0,
    };
    let waited = crate::ratelimit::total_wait().saturating_sub(waited_before);
    println!(
        "\ndeployment of shopify 1.2.0 to {} connections ({} database), canary 1/10/50/100 % with 1 s gates:\n",
        args.connections, args.database
    );
    println!("| total s | verification s | platform calls | waiting on quota s |");
    println!("| --- | --- | --- | --- |");
    println!(
        "| {:.1} | {verification:.1} | {} | {:.1} |",
        total.as_secs_f64(),
        sim.state.stats().requests - requests_before,
        waited.as_secs_f64()
    );
    sim.stop().await;
    database.remove().await?;
    Ok(())
}
