//! Webhook ingest benchmark. Starts `synchub serve` and a bare actix-web server as separate
//! processes, drives both with the same load generator (the built-in one, wrk, or each in
//! turn), and checks afterwards that every acknowledged webhook is in the database.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use anyhow::Context;
use sea_orm::{Database, EntityTrait, PaginatorTrait};

use super::fixture::{ScratchDatabase, Server, cpu_seconds, free_port, wait_until_up};
use super::loadgen::{self, Report, RequestFn};
use super::wrk::{self, WrkReport, WrkRequest};
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
    /// The load generator: the built-in one, wrk, or both (each target measured under each).
    #[arg(long, value_enum, default_value = "both")]
    load: Load,
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

/// A platform event id, unique to `run`, `stream` and `n`, led by a scattered prefix: the
/// platforms' ids come in no order the dedupe index could use, and ids that grew with each
/// request would write it in one place (Python's `sqlite3`, the same table, 64 rows a commit:
/// 30,344 rows/s with ordered ids, 10,458 with random ones; fourteenth session). The wrk
/// script makes its ids alike (`wrk::script_text`).
fn event_id(run: &str, stream: usize, n: u64) -> String {
    // SplitMix64's finaliser: consecutive inputs land far apart.
    let mut x = ((stream as u64) << 40) ^ n;
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    format!("{:08x}-{run}-{stream}-{n}", x as u32)
}

fn request_fn(path: String, run: &'static str) -> RequestFn {
    let body = order_body();
    let signature = sign::shopify(SECRET, &body);
    Arc::new(move |c, n| {
        let mut request = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-Shopify-Topic: orders/create\r\nX-Shopify-Hmac-Sha256: {signature}\r\nX-Shopify-Event-Id: {}\r\nContent-Length: {}\r\n\r\n",
            event_id(run, c, n),
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(&body);
        request
    })
}

/// The load generators `bench webhooks` can drive its targets with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Load {
    /// The built-in generator (raw sockets on tokio).
    Builtin,
    /// wrk, with a Lua script (must be on PATH).
    Wrk,
    /// Both, one after the other; wrk is left out with a note when it is not on PATH.
    Both,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Generator {
    Builtin,
    Wrk,
}

impl Generator {
    fn describe(self) -> &'static str {
        match self {
            Generator::Builtin => "built-in load generator (raw sockets, tokio)",
            Generator::Wrk => "wrk (C, Lua script)",
        }
    }
}

fn generators(load: Load) -> anyhow::Result<Vec<Generator>> {
    Ok(match load {
        Load::Builtin => vec![Generator::Builtin],
        Load::Wrk => {
            wrk::find()?;
            vec![Generator::Wrk]
        }
        Load::Both => match wrk::find() {
            Ok(_) => vec![Generator::Builtin, Generator::Wrk],
            Err(why) => {
                eprintln!("note: measuring with the built-in generator only: {why:#}");
                vec![Generator::Builtin]
            }
        },
    })
}

/// What one generator measured against one target.
struct Measured {
    ok: u64,
    failed: u64,
    elapsed: Duration,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

impl Measured {
    fn per_second(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl From<Report> for Measured {
    fn from(report: Report) -> Self {
        Self {
            ok: report.ok,
            failed: report.failed,
            elapsed: report.elapsed,
            p50_ms: report.p(0.5),
            p99_ms: report.p(0.99),
            max_ms: report.latency_us.max() as f64 / 1000.0,
        }
    }
}

impl From<WrkReport> for Measured {
    fn from(report: WrkReport) -> Self {
        Self {
            ok: report.ok,
            failed: report.failed,
            elapsed: report.elapsed,
            p50_ms: report.p50_us / 1000.0,
            p99_ms: report.p99_us / 1000.0,
            max_ms: report.max_us / 1000.0,
        }
    }
}

/// One load of `duration`; `run` makes this load's event ids its own.
async fn load(
    generator: Generator,
    addr: &str,
    path: &str,
    connections: usize,
    duration: Duration,
    run: &'static str,
) -> anyhow::Result<Measured> {
    match generator {
        Generator::Builtin => {
            let request = request_fn(path.to_string(), run);
            Ok(loadgen::run(addr, connections, duration, request)
                .await?
                .into())
        }
        Generator::Wrk => {
            let body = order_body();
            let signature = sign::shopify(SECRET, &body);
            let request = WrkRequest {
                path,
                headers: &[
                    ("Content-Type", "application/json"),
                    ("X-Shopify-Topic", "orders/create"),
                    ("X-Shopify-Hmac-Sha256", &signature),
                ],
                unique_header: "X-Shopify-Event-Id",
                body: &body,
            };
            Ok(wrk::run(addr, connections, duration, run, &request)
                .await?
                .into())
        }
    }
}

/// Warms up, then measures. Returns the measured load, how many requests were acknowledged
/// in all (warm-up included), to check against what is on disk, and the server's (process
/// `pid`) CPU microseconds per measured request.
async fn drive(
    generator: Generator,
    addr: &str,
    path: &str,
    args: &WebhookBenchArgs,
    pid: u32,
) -> anyhow::Result<(Measured, u64, Option<f64>)> {
    let warmup = Duration::from_secs((args.seconds / 5).max(1));
    let warm = load(generator, addr, path, args.connections, warmup, "warmup").await?;
    let cpu_before = cpu_seconds(pid);
    let measured = load(
        generator,
        addr,
        path,
        args.connections,
        Duration::from_secs(args.seconds),
        "measured",
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
    generator: Generator,
    target: String,
    measured: Measured,
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
    let backends: Vec<&str> = match args.database.as_str() {
        "both" => vec!["sqlite", "postgres"],
        "sqlite" => vec!["sqlite"],
        "postgres" => vec!["postgres"],
        other => anyhow::bail!("--database must be sqlite, postgres or both, not {other}"),
    };
    let generators = generators(args.load)?;
    let mut rows = Vec::new();
    for &generator in &generators {
        rows.push(measure_bare(generator, &args).await?);
        for backend in &backends {
            rows.push(measure_synchub(generator, backend, &args).await?);
        }
    }
    let mut ceilings = Vec::new();
    for backend in &backends {
        ceilings.push((*backend, storage_ceiling(backend, &args).await?));
    }

    println!(
        "\nwebhook ingest, {} connections, {} s measured per target (Shopify orders/create, {} B body)",
        args.connections,
        args.seconds,
        order_body().len()
    );
    for &generator in &generators {
        let rows: Vec<&Row> = rows
            .iter()
            .filter(|row| row.generator == generator)
            .collect();
        let bare_rate = rows.first().map_or(0.0, |row| row.measured.per_second());
        println!("\n{}\n", generator.describe());
        println!(
            "{:<26} {:>12} {:>9} {:>9} {:>9} {:>8} {:>10} {:>12}",
            "target", "requests/s", "p50 ms", "p99 ms", "max ms", "errors", "vs bare", "CPU µs/req"
        );
        for row in rows {
            let m = &row.measured;
            println!(
                "{:<26} {:>12.0} {:>9.2} {:>9.2} {:>9.2} {:>8} {:>9.1}% {:>12}",
                row.target,
                m.per_second(),
                m.p50_ms,
                m.p99_ms,
                m.max_ms,
                m.failed,
                100.0 * m.per_second() / bare_rate.max(1e-9),
                row.cpu_us.map_or("-".to_string(), |us| format!("{us:.0}"))
            );
        }
    }
    println!(
        "\ndurable storage alone: the same rows, {STORAGE_BATCH} a transaction, one writer, no HTTP\n"
    );
    for (backend, ceiling) in &ceilings {
        let target = format!("synchub on {backend}");
        for row in rows.iter().filter(|row| row.target == target) {
            println!(
                "{backend:<10} {ceiling:>8.0} rows/s; synchub's ingest under {} is {:.1}% of it",
                row.generator.describe(),
                100.0 * row.measured.per_second() / ceiling.max(1.0)
            );
        }
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
                "{} ({}): {acknowledged} acknowledged (warm-up included), {stored} on disk after SIGKILL: {verdict}",
                row.target,
                row.generator.describe()
            );
        }
    }
    if lost {
        anyhow::bail!("acknowledged webhooks were missing after SIGKILL");
    }
    Ok(())
}

/// The bare actix-web handler, in a process of its own, under `generator`.
async fn measure_bare(generator: Generator, args: &WebhookBenchArgs) -> anyhow::Result<Row> {
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
    let (measured, _, cpu_us) = drive(
        generator,
        &format!("127.0.0.1:{port}"),
        "/hook",
        args,
        bare.0.id(),
    )
    .await?;
    Ok(Row {
        generator,
        target: "bare actix-web handler".into(),
        measured,
        cpu_us,
        durability: None,
    })
}

/// `synchub serve` on a fresh database under `generator`, killed with SIGKILL afterwards and
/// its acknowledged webhooks counted on disk.
async fn measure_synchub(
    generator: Generator,
    backend: &str,
    args: &WebhookBenchArgs,
) -> anyhow::Result<Row> {
    let database = ScratchDatabase::create(backend, &args.postgres_url).await?;
    let port = free_port()?;
    let (server, path) = start_synchub(&database.url, database.dir(), port).await?;
    let (measured, acknowledged, cpu_us) = drive(
        generator,
        &format!("127.0.0.1:{port}"),
        &path,
        args,
        server.0.id(),
    )
    .await?;
    drop(server); // SIGKILL: what was acknowledged must already be on disk.
    let db = Database::connect(database.url.as_str()).await?;
    let stored = webhook_event::Entity::find().count(&db).await?;
    db.close().await?;
    database.remove().await?;
    Ok(Row {
        generator,
        target: format!("synchub on {backend}"),
        measured,
        cpu_us,
        durability: Some((acknowledged, stored)),
    })
}

/// Rows a transaction in `storage_ceiling`: 64 connections have at most 64 webhooks in flight.
const STORAGE_BATCH: usize = 64;

/// What durable storage takes alone: the webhook table of a fresh database, written as the
/// group commit writes it when no duplicate comes (a multi-row INSERT committed with the flush
/// to disk: SQLite `synchronous=FULL` in a transaction, skipping duplicates; PostgreSQL one
/// plain statement on a kept connection) by one writer in batches of 64, with the keys the
/// load generator sends and the same body, for the measured seconds. The ingest's rate beside
/// it says how much of what the disk allows the HTTP, verification and batching leave.
async fn storage_ceiling(backend: &str, args: &WebhookBenchArgs) -> anyhow::Result<f64> {
    use sea_orm::{QueryTrait, Set, TransactionTrait};

    use crate::ids::{ConnectionId, EventId, TenantId};

    let database = super::fixture::ScratchDatabase::create(backend, &args.postgres_url).await?;
    let db = database.connect().await?;
    let mut kept = (db.get_database_backend() == sea_orm::DatabaseBackend::Postgres)
        .then(|| crate::store::KeptConnection::new(db.get_postgres_connection_pool().clone()));
    let (tenant, connection) = (TenantId::generate(), ConnectionId::generate());
    let body = order_body();
    let until = std::time::Instant::now() + Duration::from_secs(args.seconds);
    let started = std::time::Instant::now();
    let mut written = 0u64;
    let mut batch_number = 0u64;
    while std::time::Instant::now() < until {
        let now = chrono::Utc::now();
        let events = (0..STORAGE_BATCH).map(|c| {
            let key = event_id("storage", c, batch_number);
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
        let insert = webhook_event::Entity::insert_many(events);
        match kept.as_mut() {
            // As the group commit writes a batch of one statement: on its own, with nothing
            // between two batches (a transaction and the pool's check were three trips more),
            // a plain INSERT while no duplicate comes.
            Some(kept) => {
                let (mut conn, _) = kept.take().await?;
                let statement = db.get_database_backend().build(&insert.into_query());
                crate::store::kept::execute(&mut conn, statement).await?;
                kept.put_back(conn);
            }
            None => {
                let txn = db.begin().await?;
                insert
                    .on_conflict_do_nothing_on([
                        webhook_event::Column::ConnectionId,
                        webhook_event::Column::DedupeKey,
                    ])
                    .exec_without_returning(&txn)
                    .await?;
                txn.commit().await?;
            }
        }
        written += STORAGE_BATCH as u64;
        batch_number += 1;
    }
    let rate = written as f64 / started.elapsed().as_secs_f64();
    db.close().await?;
    database.remove().await?;
    Ok(rate)
}

#[cfg(test)]
mod tests {
    /// Each request's id is its own, and one connection's ids do not come in the order the
    /// dedupe index keeps them (what made wrk's ids kinder to SQLite than the platforms').
    #[test]
    fn event_ids_are_unique_and_come_in_no_order() {
        let ids: Vec<String> = (0..64)
            .flat_map(|c| (0..200).map(move |n| super::event_id("measured", c, n)))
            .collect();
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), ids.len());

        let one_connection: Vec<&String> = ids.iter().take(200).collect();
        let ascending = one_connection.windows(2).filter(|w| w[0] < w[1]).count();
        assert!(
            (50..150).contains(&ascending),
            "{ascending} of 199 steps go up: the ids follow the requests' order"
        );
    }
}
