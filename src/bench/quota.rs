//! Quota use: the simulator allows `rate` calls/s with a burst of `burst` on one store; several
//! worker processes, each with several concurrent tasks, call it through the shared rate
//! limiter for a fixed time. Good: nearly all the allowed calls made, almost no 429s.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use sea_orm::{ConnectionTrait, Database};
use serde_json::json;

use crate::connectors::ConnectorRegistry;
use crate::connectors::client::{ConnectorClient, ErrorClass, Vars};
use crate::ratelimit::RateLimiter;
use crate::sim::Simulator;

const SHOP: &str = "quota";

#[derive(Debug, Clone, clap::Args)]
pub struct QuotaBenchArgs {
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    #[arg(long, default_value_t = 5.0)]
    rate: f64,
    #[arg(long, default_value_t = 10.0)]
    burst: f64,
    #[arg(long, default_value_t = 2)]
    processes: usize,
    #[arg(long, default_value_t = 4)]
    tasks: usize,
    /// sqlite or postgres: where the shared buckets live.
    #[arg(long, default_value = "sqlite")]
    database: String,
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    postgres_url: String,
    /// Keep the buckets in this Redis instead of the database.
    #[arg(long)]
    redis_url: Option<String>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct QuotaWorkerArgs {
    #[arg(long)]
    sim: String,
    #[arg(long)]
    database_url: String,
    #[arg(long)]
    seconds: u64,
    #[arg(long)]
    tasks: usize,
    #[arg(long)]
    rate: f64,
    #[arg(long)]
    burst: f64,
    #[arg(long)]
    redis_url: Option<String>,
}

pub async fn run(args: QuotaBenchArgs) -> anyhow::Result<()> {
    let sim = Simulator::start("127.0.0.1:0", 10)?;
    sim.state.set_shop_limit(SHOP, args.rate, args.burst);
    let dir = super::fixture::scratch_dir("synchub-quota")?;
    let (url, cleanup) = match args.database.as_str() {
        "sqlite" => (
            format!("sqlite://{}?mode=rwc", dir.join("quota.db").display()),
            None,
        ),
        "postgres" => {
            let name = format!("synchub_quota_{}", uuid::Uuid::now_v7().simple());
            let admin = Database::connect(args.postgres_url.as_str()).await?;
            admin
                .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
                .await?;
            let base = args
                .postgres_url
                .rsplit_once('/')
                .map(|(b, _)| b)
                .unwrap_or(&args.postgres_url);
            (format!("{base}/{name}"), Some((admin, name)))
        }
        other => anyhow::bail!("--database must be sqlite or postgres, not {other}"),
    };
    {
        let settings = crate::config::Settings::from_layers(
            &[("DATABASE_URL".into(), url.clone())],
            &Default::default(),
        )?;
        let db = crate::store::connect(&settings).await?;
        crate::store::migrate(&db).await?;
    }
    let started = Instant::now();
    let children: Vec<_> = (0..args.processes)
        .map(|_| {
            Command::new(super::current_exe()?)
                .args([
                    "bench",
                    "quota-worker",
                    "--sim",
                    &sim.address,
                    "--database-url",
                    &url,
                ])
                .args([
                    "--seconds",
                    &args.seconds.to_string(),
                    "--tasks",
                    &args.tasks.to_string(),
                ])
                .args([
                    "--rate",
                    &args.rate.to_string(),
                    "--burst",
                    &args.burst.to_string(),
                ])
                .args(
                    args.redis_url
                        .iter()
                        .flat_map(|url| ["--redis-url", url.as_str()]),
                )
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .context("starting a quota worker")
        })
        .collect::<anyhow::Result<_>>()?;
    let mut made = 0u64;
    let (mut first_call, mut last_call) = (i64::MAX, i64::MIN);
    for child in children {
        let output = tokio::task::spawn_blocking(move || child.wait_with_output()).await??;
        let report: serde_json::Value =
            serde_json::from_slice(&output.stdout).context("a worker's report")?;
        made += report["ok"].as_u64().unwrap_or(0);
        first_call = first_call.min(report["started_ms"].as_i64().unwrap_or(i64::MAX));
        last_call = last_call.max(report["finished_ms"].as_i64().unwrap_or(i64::MIN));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let stats = sim.state.stats();
    // What the platform allows over the time the workers were actually calling.
    let window = (last_call - first_call).max(0) as f64 / 1000.0;
    let allowed = args.burst + args.rate * window;
    println!(
        "\nquota use: {} processes x {} tasks sharing one store allowed {}/s, burst {}, for {} s ({} buckets)\n",
        args.processes,
        args.tasks,
        args.rate,
        args.burst,
        args.seconds,
        if args.redis_url.is_some() {
            "redis"
        } else {
            args.database.as_str()
        }
    );
    println!("calling window:                      {window:.2} s");
    println!("allowed calls (burst + rate x window): {allowed:.0}");
    println!(
        "calls answered 200:                  {made} ({:.1}% of allowed)",
        100.0 * made as f64 / allowed
    );
    println!(
        "responses that were 429:             {} of {} ({:.2}%)",
        stats.throttled,
        stats.requests,
        100.0 * stats.throttled as f64 / stats.requests.max(1) as f64
    );
    println!("wall time:                           {elapsed:.1} s");
    if let Some((admin, name)) = cleanup {
        admin
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .await?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    sim.stop().await;
    Ok(())
}

/// One worker process: `tasks` loops listing orders through the shared bucket.
pub async fn worker(args: QuotaWorkerArgs) -> anyhow::Result<()> {
    crate::install_crypto_provider();
    let settings = crate::config::Settings::from_layers(
        &[("DATABASE_URL".into(), args.database_url.clone())],
        &Default::default(),
    )?;
    let db = crate::store::connect(&settings).await?;
    let registry = ConnectorRegistry::built_in()?;
    let mut manifest = (*registry.get("shopify").context("the shopify manifest")?).clone();
    for limit in &mut manifest.rate_limits {
        limit.rate = args.rate;
        limit.burst = args.burst;
    }
    let manifest = Arc::new(manifest);
    let http = crate::netpolicy::OutboundClient::new(
        crate::netpolicy::OutboundPolicy::allowing_private(),
        Duration::from_secs(10),
        Duration::from_secs(30),
    )?;
    let settings = json!({"shop_domain": "quota.myshopify.com", "base_url": format!("{}/shopify/{SHOP}", args.sim)});
    let credentials = json!({"access_token": "shpat_quota_benchmark"});
    let limiter = match &args.redis_url {
        Some(url) => RateLimiter::redis(url).await?,
        None => RateLimiter::new(db.clone()),
    };
    let ok = Arc::new(AtomicU64::new(0));
    let started_ms = chrono::Utc::now().timestamp_millis();
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let mut tasks = Vec::new();
    for _ in 0..args.tasks {
        let client = ConnectorClient::new(
            manifest.clone(),
            "production",
            settings.as_object().cloned().unwrap_or_default(),
            credentials.as_object().cloned().unwrap_or_default(),
            "con_quota",
            limiter.clone(),
            http.clone(),
        );
        let ok = ok.clone();
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                match client.list_page("list_orders", &Vars::new(), None).await {
                    Ok(_) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) if e.class == ErrorClass::RateLimited => {}
                    Err(e) => eprintln!("quota worker: {e}"),
                }
            }
        }));
    }
    for task in tasks {
        task.await?;
    }
    let finished_ms = chrono::Utc::now().timestamp_millis();
    println!(
        "{}",
        json!({ "ok": ok.load(Ordering::Relaxed), "started_ms": started_ms, "finished_ms": finished_ms })
    );
    Ok(())
}
