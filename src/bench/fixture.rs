//! What the benchmarks and the demo set up: a scratch database (a SQLite file or a fresh
//! PostgreSQL database) and a tenant with connections and a flow, created through the real
//! REST API of an in-process server.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use sea_orm::{
    ActiveModelTrait, ConnectionTrait, Database, DatabaseConnection, EntityTrait, TransactionTrait,
};
use serde_json::{Value, json};

use crate::config::Settings;
use crate::connectors::ConnectorRegistry;
use crate::startup::{Application, Role};
use crate::store::entities::flow;

/// A database that exists for one benchmark run and is removed afterwards.
pub struct ScratchDatabase {
    pub url: String,
    dir: PathBuf,
    postgres: Option<(DatabaseConnection, String)>,
}

impl ScratchDatabase {
    /// `kind` is sqlite or postgres; `postgres_url` names the server and an existing database.
    pub async fn create(kind: &str, postgres_url: &str) -> anyhow::Result<Self> {
        let dir = scratch_dir("synchub-bench")?;
        match kind {
            "sqlite" => Ok(Self {
                url: format!("sqlite://{}?mode=rwc", dir.join("bench.db").display()),
                dir,
                postgres: None,
            }),
            "postgres" => {
                let name = format!("synchub_bench_{}", uuid::Uuid::now_v7().simple());
                let admin = Database::connect(postgres_url).await?;
                admin
                    .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
                    .await?;
                let base = postgres_url
                    .rsplit_once('/')
                    .map(|(b, _)| b)
                    .unwrap_or(postgres_url);
                Ok(Self {
                    url: format!("{base}/{name}"),
                    dir,
                    postgres: Some((admin, name)),
                })
            }
            other => anyhow::bail!("--database must be sqlite or postgres, not {other}"),
        }
    }

    /// A test's scratch databases: SQLite, and PostgreSQL when the suite is given one
    /// (`SYNCHUB_TEST_DATABASE_URL`, set by `.ci/run`).
    #[cfg(test)]
    pub async fn for_tests() -> anyhow::Result<Vec<Self>> {
        let mut all = vec![Self::create("sqlite", "").await?];
        if let Ok(url) = std::env::var("SYNCHUB_TEST_DATABASE_URL") {
            all.push(Self::create("postgres", &url).await?);
        }
        Ok(all)
    }

    /// A folder of this run's own, removed with the database: a server's data directory.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Settings for a process on this database; `env` adds SYNCHUB_* variables.
    pub fn settings(&self, env: &[(&str, &str)]) -> anyhow::Result<Settings> {
        let mut vars = vec![
            ("DATABASE_URL".to_string(), self.url.clone()),
            (
                "SYNCHUB_DATA_DIR".to_string(),
                self.dir.display().to_string(),
            ),
        ];
        vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Settings::from_layers(&vars, &Default::default())
    }

    /// A connection configured as the service configures its own, with migrations applied.
    pub async fn connect(&self) -> anyhow::Result<DatabaseConnection> {
        let db = crate::store::connect(&self.settings(&[])?).await?;
        crate::store::migrate(&db).await?;
        Ok(db)
    }

    /// The job layer's pool that skips the flush (`store::connect_relaxed`).
    pub async fn connect_relaxed(&self) -> anyhow::Result<DatabaseConnection> {
        crate::store::connect_relaxed(&self.settings(&[])?).await
    }

    pub async fn remove(self) -> anyhow::Result<()> {
        if let Some((admin, name)) = self.postgres {
            admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .await?;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        Ok(())
    }
}

/// Runs `test` on each scratch database (`ScratchDatabase::for_tests`), connected with
/// migrations applied, then closes and removes it.
#[cfg(test)]
pub async fn on_each_database<F, Fut>(test: F)
where
    F: Fn(DatabaseConnection, String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for database in ScratchDatabase::for_tests().await.unwrap() {
        let db = database.connect().await.unwrap();
        test(db.clone(), database.url.clone()).await;
        db.close().await.unwrap();
        database.remove().await.unwrap();
    }
}

/// The plan of `statement`: PostgreSQL's EXPLAIN, or SQLite's EXPLAIN QUERY PLAN (each
/// step's detail), one line each.
#[cfg(test)]
pub async fn explain(db: &DatabaseConnection, statement: &sea_orm::Statement) -> String {
    use sea_orm::ConnectionTrait;
    let backend = db.get_database_backend();
    let (prefix, column) = match backend {
        sea_orm::DatabaseBackend::Postgres => ("EXPLAIN", 0),
        _ => ("EXPLAIN QUERY PLAN", 3),
    };
    db.query_all_raw(sea_orm::Statement::from_sql_and_values(
        backend,
        format!("{prefix} {}", statement.sql),
        statement.values.clone().map(|v| v.0).unwrap_or_default(),
    ))
    .await
    .unwrap()
    .iter()
    .map(|row| row.try_get_by_index::<String>(column).unwrap())
    .collect::<Vec<_>>()
    .join("\n")
}

/// A running API server in this process, and a tenant token to call it with.
pub struct ApiSession {
    pub base: String,
    pub token: String,
    http: reqwest::Client,
    _server: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// What the store's connection verifies webhooks with (`bench latency` signs with it).
pub const WEBHOOK_SECRET: &str = "bench-shopify-webhook-secret";

const OPERATOR_TOKEN: &str = "shk_bench_operator_token_0123456789abcdef";

impl ApiSession {
    /// Starts the API (and, for `Role::All`, the scheduler and workers) on a free port and
    /// creates a tenant.
    pub async fn start(
        database: &ScratchDatabase,
        role: Role,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        Self::start_with(database, role, env, ConnectorRegistry::built_in()?).await
    }

    /// As `start`, with these connectors instead of the built-in ones.
    pub async fn start_with(
        database: &ScratchDatabase,
        role: Role,
        env: &[(&str, &str)],
        registry: ConnectorRegistry,
    ) -> anyhow::Result<Self> {
        let mut vars = vec![
            ("SYNCHUB_LISTEN", "127.0.0.1:0"),
            ("SYNCHUB_BOOTSTRAP_TOKEN", OPERATOR_TOKEN),
            // The simulator listens on loopback.
            ("SYNCHUB_ALLOW_PRIVATE_TARGETS", "true"),
        ];
        vars.extend_from_slice(env);
        let app =
            Application::build_with_registry(database.settings(&vars)?, role, registry).await?;
        let base = format!("http://127.0.0.1:{}", app.port());
        let server = tokio::spawn(app.run_until_stopped());
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?;
        let mut session = Self {
            base,
            token: OPERATOR_TOKEN.into(),
            http,
            _server: server,
        };
        let tenant = session
            .post(
                "/v1/tenants",
                json!({"name": "Bench Trading Co.", "timezone": "Asia/Shanghai"}),
            )
            .await?;
        let tenant_id = tenant["id"].as_str().context("tenant id")?.to_string();
        let token = session
            .post(
                &format!("/v1/tenants/{tenant_id}/tokens"),
                json!({"name": "bench", "scopes": ["read", "write", "deploy", "admin"]}),
            )
            .await?;
        session.token = token["token"].as_str().context("tenant token")?.to_string();
        Ok(session)
    }

    pub async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        anyhow::ensure!(status.is_success(), "POST {path}: {status} {body}");
        Ok(body)
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        anyhow::ensure!(status.is_success(), "GET {path}: {status} {body}");
        Ok(body)
    }

    /// A simulated Shopify store and a simulated ERP, and an orders flow between them.
    /// Returns the flow's id.
    pub async fn orders_flow(&self, sim: &str, store: &str, flow: Value) -> anyhow::Result<String> {
        let shop = self
            .post(
                "/v1/connections",
                json!({
                    "name": format!("Shopify {store}"), "connector": "shopify", "environment": "production",
                    "settings": {"shop_domain": format!("{store}.myshopify.com"), "base_url": format!("{sim}/shopify/{store}")},
                    "credentials": {"access_token": "shpat_simulated_0123456789"},
                    "webhook_secret": WEBHOOK_SECRET,
                }),
            )
            .await?;
        let erp = self
            .post(
                "/v1/connections",
                json!({
                    "name": format!("ERP {store}"), "connector": "generic-rest-erp", "environment": "production",
                    "settings": {"base_url": format!("{sim}/erp/{store}")},
                    "credentials": {"api_key": "erp-key-1"},
                }),
            )
            .await?;
        let mut body = json!({"name": format!("orders from {store}"), "stream": "orders", "source": shop["id"], "destination": erp["id"]});
        if let (Some(body), Some(extra)) = (body.as_object_mut(), flow.as_object()) {
            body.extend(extra.clone());
        }
        let flow = self.post("/v1/flows", body).await?;
        Ok(flow["id"].as_str().context("flow id")?.to_string())
    }
}

/// The built-in registry with every rate limit of these connectors lifted: the benchmarks
/// measure synchub, not a platform's quota.
/// Copies of a flow made by `vary` (given each number and a copy of `template`; None
/// leaves that one out), inserted 1,000 rows a transaction: 1,000 rows of 21 columns stay
/// under SQLite's 32,766 bound values. The rows inserted.
pub async fn copy_flow(
    db: &DatabaseConnection,
    template: &flow::Model,
    numbers: std::ops::Range<usize>,
    vary: impl Fn(usize, flow::Model) -> Option<flow::Model>,
) -> anyhow::Result<Vec<flow::Model>> {
    let mut inserted = Vec::with_capacity(numbers.len());
    for chunk in numbers.collect::<Vec<_>>().chunks(1_000) {
        let rows: Vec<flow::Model> = chunk
            .iter()
            .filter_map(|&i| vary(i, template.clone()))
            .collect();
        let txn = db.begin().await?;
        // Every column set: new rows.
        flow::Entity::insert_many(
            rows.iter()
                .map(|row| flow::ActiveModel::from(row.clone()).reset_all()),
        )
        .exec_without_returning(&txn)
        .await?;
        txn.commit().await?;
        inserted.extend(rows);
    }
    Ok(inserted)
}

pub fn unlimited(names: &[&str]) -> anyhow::Result<ConnectorRegistry> {
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

/// A child process, killed when dropped.
pub struct Server(pub std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A new folder under the system's temporary one, named `{prefix}-{uuid}`; the caller
/// removes it.
pub fn scratch_dir(prefix: &str) -> std::io::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub async fn wait_until_up(url: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        if client.get(url).send().await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("{url} did not come up")
}

/// CPU time a process has used (user and system), on Linux. /proc counts it in USER_HZ
/// ticks, which the kernel fixes at 100 a second whatever its own tick rate.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; the fields after its closing parenthesis do not.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<u64>().ok();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    Some((ticks(11)? + ticks(12)?) as f64 / 100.0)
}

/// The value at quantile `p` (0 to 1) of sorted samples, nearest rank; 0 when empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64) * p).ceil() as usize;
    sorted[rank.saturating_sub(1).min(sorted.len() - 1)]
}
