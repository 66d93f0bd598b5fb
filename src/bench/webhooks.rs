//! Webhook ingest benchmark. Starts `synchub serve` and a bare actix-web server as separate
//! processes, drives both with the same load generator, and checks afterwards that every
//! acknowledged webhook is in the database.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use anyhow::Context;
use sea_orm::{ConnectionTrait, Database, EntityTrait, PaginatorTrait};

use super::fixture::{Server, cpu_seconds, free_port, wait_until_up};
use super::loadgen::{self, Report, RequestFn};
use crate::store::entities::webhook_event;
use crate::webhooks::sign;

const BENCH_TOKEN: &str = "shk_benchmark_operator_token_0123456789abcdef";
const SECRET: &str = "benchmark-shopify-app-secret";

#[derive(Debug, Clone, clap::Args)]
pub struct WebhookBenchArgs {
    /// sqlite, postgres, or both.
    #[arg(long, default_value = "both")]
    database: String,
    /// PostgreSQL server on which a fresh database is created (and dropped afterwards).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    postgres_url: String,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Seconds of measured load per target (after a warm-up of a fifth of it).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

pub async fn bare_server(listen: &str) -> anyhow::Result<()> {
    HttpServer::new(|| {
        App::new().default_service(web::to(|body: web::Bytes| async move {
            HttpResponse::Ok().json(serde_json::json!({ "status": "ok", "bytes": body.len() }))
        }))
    })
    .bind(listen)?
    .run()
    .await?;
    Ok(())
}

/// A realistic Shopify orders/create body (about 1 KB).
fn order_body() -> Vec<u8> {
    serde_json::json!({
        "id": 820982911946154508u64, "email": "jon@example.com", "created_at": "2026-11-26T10:00:00-05:00",
        "currency": "USD", "total_price": "199.00", "financial_status": "paid", "name": "#9999",
        "line_items": [
            {"id": 866550311766439020u64, "sku": "IPOD-342-N", "title": "IPod Nano", "quantity": 1, "price": "199.00", "variant_id": 808950810},
            {"id": 141249953214522974u64, "sku": "CASE-12", "title": "Case", "quantity": 2, "price": "0.00", "variant_id": 457924702}
        ],
        "shipping_address": {"first_name": "Jon", "last_name": "Snow", "address1": "123 Amoebobacterium St", "city": "Ottawa", "province": "Ontario", "country": "Canada", "zip": "K2P0V6"},
        "customer": {"id": 115310627314723954u64, "email": "jon@example.com", "first_name": "Jon", "last_name": "Snow"}
    })
    .to_string()
    .into_bytes()
}

fn request_fn(path: String, run: &'static str) -> RequestFn {
    let body = order_body();
    let signature = sign::shopify(SECRET, &body);
    Arc::new(move |c, n| {
        let mut request = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-Shopify-Topic: orders/create\r\nX-Shopify-Hmac-Sha256: {signature}\r\nX-Shopify-Event-Id: {run}-{c}-{n}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(&body);
        request
    })
}

/// Warms up, then measures. Returns the measured report, how many requests were
/// acknowledged in all (warm-up included), to check against what is on disk, and the
/// server's (process `pid`) CPU microseconds per measured request.
async fn drive(
    addr: &str,
    path: String,
    args: &WebhookBenchArgs,
    pid: u32,
) -> anyhow::Result<(Report, u64, Option<f64>)> {
    let warmup = Duration::from_secs((args.seconds / 5).max(1));
    let warm = loadgen::run(
        addr,
        args.connections,
        warmup,
        request_fn(path.clone(), "warmup"),
    )
    .await?;
    let cpu_before = cpu_seconds(pid);
    let measured = loadgen::run(
        addr,
        args.connections,
        Duration::from_secs(args.seconds),
        request_fn(path, "measured"),
    )
    .await?;
    // The server's CPU per answered request: steadier than the rate on a machine whose cores
    // the load generator shares, so it shows what a change saved.
    let cpu_us = cpu_before
        .zip(cpu_seconds(pid))
        .map(|(before, after)| (after - before) * 1e6 / measured.ok.max(1) as f64);
    let acknowledged = warm.ok + measured.ok;
    Ok((measured, acknowledged, cpu_us))
}

/// Starts synchub on a fresh database, makes a tenant, token and Shopify connection, and
/// returns the server with the hook path.
async fn start_synchub(
    database_url: &str,
    data_dir: &std::path::Path,
    port: u16,
) -> anyhow::Result<(Server, String)> {
    let mut command = Command::new(super::current_exe()?);
    command
        .arg("serve")
        .env("SYNCHUB_LISTEN", format!("127.0.0.1:{port}"))
        .env("SYNCHUB_DATA_DIR", data_dir)
        .env("SYNCHUB_BOOTSTRAP_TOKEN", BENCH_TOKEN)
        .env("DATABASE_URL", database_url)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(data_dir.join("server.log"))?);
    let server = Server(command.spawn().context("starting synchub serve")?);
    let base = format!("http://127.0.0.1:{port}");
    wait_until_up(&format!("{base}/healthz")).await?;
    let client = reqwest::Client::new();
    let tenant: serde_json::Value = client
        .post(format!("{base}/v1/tenants"))
        .bearer_auth(BENCH_TOKEN)
        .json(&serde_json::json!({"name": "bench"}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let tenant_id = tenant["id"].as_str().context("tenant id")?;
    let token: serde_json::Value = client
        .post(format!("{base}/v1/tenants/{tenant_id}/tokens"))
        .bearer_auth(BENCH_TOKEN)
        .json(&serde_json::json!({"name": "bench", "scopes": ["write"]}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let token = token["token"].as_str().context("token")?;
    let connection: serde_json::Value = client
        .post(format!("{base}/v1/connections"))
        .bearer_auth(token)
        .json(&serde_json::json!({
            "name": "bench store", "connector": "shopify", "environment": "production",
            "settings": {"shop_domain": "bench.myshopify.com"},
            "credentials": {"access_token": "shpat_bench_0123456789abcdef"},
            "webhook_secret": SECRET,
        }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let id = connection["id"].as_str().context("connection id")?;
    Ok((server, format!("/v1/hooks/{id}")))
}

struct Row {
    target: String,
    report: Report,
    /// The server's CPU microseconds per request.
    cpu_us: Option<f64>,
    /// (acknowledged in all, events found on disk after SIGKILL)
    durability: Option<(u64, u64)>,
}

pub async fn run(args: WebhookBenchArgs) -> anyhow::Result<()> {
    if cfg!(debug_assertions) {
        eprintln!(
            "warning: this is a debug build; run `cargo run --release -- bench webhooks` for real figures"
        );
    }
    let mut rows = Vec::new();
    // (backend, rows a second durable storage takes alone, synchub's rate)
    let mut ceilings = Vec::new();

    let port = free_port()?;
    let bare = Server(
        Command::new(super::current_exe()?)
            .args([
                "bench",
                "bare-server",
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    wait_until_up(&format!("http://127.0.0.1:{port}/")).await?;
    let (report, _, cpu_us) = drive(
        &format!("127.0.0.1:{port}"),
        "/hook".into(),
        &args,
        bare.0.id(),
    )
    .await?;
    drop(bare);
    rows.push(Row {
        target: "bare actix-web handler".into(),
        report,
        cpu_us,
        durability: None,
    });

    let backends: Vec<&str> = match args.database.as_str() {
        "both" => vec!["sqlite", "postgres"],
        "sqlite" => vec!["sqlite"],
        "postgres" => vec!["postgres"],
        other => anyhow::bail!("--database must be sqlite, postgres or both, not {other}"),
    };
    for backend in backends {
        let dir = tempfile_dir()?;
        let (url, cleanup) = match backend {
            "sqlite" => (
                format!("sqlite://{}?mode=rwc", dir.join("synchub.db").display()),
                None,
            ),
            _ => {
                let name = format!("synchub_bench_{}", uuid::Uuid::now_v7().simple());
                let admin = Database::connect(args.postgres_url.as_str())
                    .await
                    .context("connecting to PostgreSQL")?;
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
        };
        let port = free_port()?;
        let (server, path) = start_synchub(&url, &dir, port).await?;
        let (report, acknowledged, cpu_us) =
            drive(&format!("127.0.0.1:{port}"), path, &args, server.0.id()).await?;
        drop(server); // SIGKILL: what was acknowledged must already be on disk.
        let db = Database::connect(url.as_str()).await?;
        let stored = webhook_event::Entity::find().count(&db).await?;
        db.close().await?;
        if let Some((admin, name)) = cleanup {
            admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .await?;
        }
        let _ = std::fs::remove_dir_all(&dir);
        rows.push(Row {
            target: format!("synchub on {backend}"),
            report,
            cpu_us,
            durability: Some((acknowledged, stored)),
        });
        ceilings.push((
            backend,
            storage_ceiling(backend, &args).await?,
            report_rate(&rows),
        ));
    }

    let bare_rate = rows[0].report.per_second();
    println!(
        "\nwebhook ingest, {} connections, {} s measured per target (Shopify orders/create, {} B body)\n",
        args.connections,
        args.seconds,
        order_body().len()
    );
    println!(
        "{:<26} {:>12} {:>9} {:>9} {:>9} {:>8} {:>10} {:>12}",
        "target", "requests/s", "p50 ms", "p99 ms", "max ms", "errors", "vs bare", "CPU µs/req"
    );
    for row in &rows {
        let r = &row.report;
        println!(
            "{:<26} {:>12.0} {:>9.2} {:>9.2} {:>9.2} {:>8} {:>9.1}% {:>12}",
            row.target,
            r.per_second(),
            r.p(0.5),
            r.p(0.99),
            r.latency_us.max() as f64 / 1000.0,
            r.failed,
            100.0 * r.per_second() / bare_rate,
            row.cpu_us.map_or("-".to_string(), |us| format!("{us:.0}"))
        );
    }
    println!(
        "\ndurable storage alone: the same rows, {STORAGE_BATCH} a transaction, one writer, no HTTP\n"
    );
    for (backend, ceiling, rate) in &ceilings {
        println!(
            "{backend:<10} {ceiling:>8.0} rows/s; synchub's ingest is {:.1}% of it",
            100.0 * rate / ceiling.max(1.0)
        );
    }
    let mut lost = false;
    for row in &rows {
        if let Some((acknowledged, stored)) = row.durability {
            // Every request carried a distinct event id, so stored < acknowledged means loss.
            let verdict = if stored >= acknowledged {
                "none lost"
            } else {
                "LOST EVENTS"
            };
            lost |= stored < acknowledged;
            println!(
                "{}: {acknowledged} acknowledged (warm-up included), {stored} on disk after SIGKILL: {verdict}",
                row.target
            );
        }
    }
    if lost {
        anyhow::bail!("acknowledged webhooks were missing after SIGKILL");
    }
    Ok(())
}

/// The rate of the last row measured.
fn report_rate(rows: &[Row]) -> f64 {
    rows.last().map_or(0.0, |row| row.report.per_second())
}

/// Rows a transaction in `storage_ceiling`: 64 connections have at most 64 webhooks in flight.
const STORAGE_BATCH: usize = 64;

/// What durable storage takes alone: the webhook table of a fresh database, written as the
/// group commit writes it (a multi-row INSERT that skips duplicates, committed with the
/// flush to disk: SQLite `synchronous=FULL`) by one writer in batches of 64, with the keys the
/// load generator sends and the same body, for the measured seconds. The ingest's rate beside
/// it says how much of what the disk allows the HTTP, verification and batching leave.
async fn storage_ceiling(backend: &str, args: &WebhookBenchArgs) -> anyhow::Result<f64> {
    use sea_orm::{Set, TransactionTrait};

    use crate::ids::{ConnectionId, EventId, TenantId};

    let database = super::fixture::ScratchDatabase::create(backend, &args.postgres_url).await?;
    let db = database.connect().await?;
    let (tenant, connection) = (TenantId::generate(), ConnectionId::generate());
    let body = order_body();
    let until = std::time::Instant::now() + Duration::from_secs(args.seconds);
    let started = std::time::Instant::now();
    let mut written = 0u64;
    let mut batch_number = 0u64;
    while std::time::Instant::now() < until {
        let now = chrono::Utc::now();
        let events = (0..STORAGE_BATCH).map(|c| {
            let key = format!("storage-{c}-{batch_number}");
            webhook_event::ActiveModel {
                id: Set(EventId::generate()),
                tenant_id: Set(tenant.clone()),
                connection_id: Set(connection.clone()),
                dedupe_key: Set(format!("id:{key}")),
                platform_event_id: Set(Some(key)),
                topic: Set(Some("orders/create".into())),
                content_type: Set(Some("application/json".into())),
                body: Set(body.clone()),
                received_at: Set(now),
            }
        });
        let txn = db.begin().await?;
        webhook_event::Entity::insert_many(events)
            .on_conflict_do_nothing_on([
                webhook_event::Column::ConnectionId,
                webhook_event::Column::DedupeKey,
            ])
            .exec_without_returning(&txn)
            .await?;
        txn.commit().await?;
        written += STORAGE_BATCH as u64;
        batch_number += 1;
    }
    let rate = written as f64 / started.elapsed().as_secs_f64();
    db.close().await?;
    database.remove().await?;
    Ok(rate)
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("synchub-bench-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
