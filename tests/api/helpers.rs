//! Test harness: the real app on a random port, against a fresh SQLite file or a fresh
//! PostgreSQL database (when SYNCHUB_TEST_DATABASE_URL is set), driven over HTTP.

use std::path::PathBuf;

use serde_json::{Value, json};
use synchub::config::{Overrides, Settings};
use synchub::startup::Application;

pub const OPERATOR_TOKEN: &str = "shk_operator_token_for_tests_0123456789abcdef";

#[derive(Debug, Clone)]
pub enum Backend {
    Sqlite,
    Postgres(String),
}

impl Backend {
    /// The PostgreSQL server to test against. The twins that call this are compiled as
    /// ignored when no server was named at build time (build.rs); named then but gone now is
    /// a failure, not a silent pass.
    pub fn postgres() -> Self {
        match std::env::var("SYNCHUB_TEST_DATABASE_URL") {
            Ok(url) if !url.trim().is_empty() => Self::Postgres(url),
            _ => {
                panic!("SYNCHUB_TEST_DATABASE_URL was set when the tests were built but is not now")
            }
        }
    }
}

/// Runs one scenario on SQLite and, when configured, on PostgreSQL: two test functions.
#[macro_export]
macro_rules! on_both_backends {
    ($scenario:ident) => {
        mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$scenario($crate::helpers::Backend::Sqlite).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(
                not(synchub_postgres_tests),
                ignore = "SYNCHUB_TEST_DATABASE_URL is not set"
            )]
            async fn postgres() {
                super::$scenario($crate::helpers::Backend::postgres()).await;
            }
        }
    };
}

/// The Prometheus text the process at `base` (scheme, host and port) serves on /metrics.
pub async fn metrics_at(client: &reqwest::Client, base: &str) -> String {
    let response = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics");
    response.text().await.expect("metrics text")
}

/// Polls `probe` until it answers Ok, for what other tasks or processes finish on their own
/// time; fails the test with the last answer after `limit`.
pub async fn eventually<T, E, F, Fut>(what: &str, limit: std::time::Duration, mut probe: F) -> T
where
    E: std::fmt::Debug,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let deadline = std::time::Instant::now() + limit;
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(last) if std::time::Instant::now() > deadline => {
                panic!("{what}: not within {limit:?}; last seen: {last:?}")
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    }
}

/// A guarded client that may reach this machine's servers (the simulator), as the app's own
/// clients may with SYNCHUB_ALLOW_PRIVATE_TARGETS=true.
pub fn local_client() -> synchub::netpolicy::OutboundClient {
    synchub::netpolicy::OutboundClient::new(
        synchub::netpolicy::OutboundPolicy::allowing_private(),
        std::time::Duration::from_secs(10),
        std::time::Duration::from_secs(30),
    )
    .expect("outbound client")
}

/// A database that exists for one test and is dropped after it.
pub struct TestDatabase {
    pub url: String,
    pub data_dir: tempfile::TempDir,
    postgres: Option<(String, String)>,
}

impl TestDatabase {
    pub async fn create(backend: &Backend) -> Self {
        synchub::install_crypto_provider();
        let data_dir = tempfile::tempdir().expect("temp dir");
        match backend {
            Backend::Sqlite => Self {
                url: String::new(),
                data_dir,
                postgres: None,
            },
            Backend::Postgres(admin_url) => {
                let name = format!("synchub_t_{}", uuid::Uuid::now_v7().simple());
                let admin = sea_orm::Database::connect(admin_url.as_str())
                    .await
                    .expect("connect to PostgreSQL");
                sea_orm::ConnectionTrait::execute_unprepared(
                    &admin,
                    &format!("CREATE DATABASE \"{name}\""),
                )
                .await
                .expect("create test database");
                let _ = admin.close().await;
                let base = admin_url
                    .rsplit_once('/')
                    .map(|(base, _)| base)
                    .unwrap_or(admin_url);
                Self {
                    url: format!("{base}/{name}"),
                    data_dir,
                    postgres: Some((admin_url.clone(), name)),
                }
            }
        }
    }

    /// A connection pool of its own, as another process would have.
    pub async fn connect(&self) -> sea_orm::DatabaseConnection {
        let settings = Settings::from_layers(&self.env(), &Overrides::default()).expect("settings");
        let db = synchub::store::connect(&settings).await.expect("connect");
        synchub::store::migrate(&db).await.expect("migrate");
        db
    }

    /// Environment for a process using this database.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            (
                "SYNCHUB_DATA_DIR".to_string(),
                self.data_dir.path().display().to_string(),
            ),
            (
                "SYNCHUB_BOOTSTRAP_TOKEN".to_string(),
                OPERATOR_TOKEN.to_string(),
            ),
            (
                "SYNCHUB_ALLOW_PRIVATE_TARGETS".to_string(),
                "true".to_string(),
            ),
            ("SYNCHUB_LOG_JSON".to_string(), "false".to_string()),
            // Refusals are written at once in tests that read the counter.
            (
                "SYNCHUB_WEBHOOKS__REJECTION_FLUSH_MILLIS".to_string(),
                "100".to_string(),
            ),
        ];
        if !self.url.is_empty() {
            env.push(("DATABASE_URL".to_string(), self.url.clone()));
        }
        env
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some((admin_url, name)) = self.postgres.take() {
            // Drop runs inside the test's runtime: do the async work on a thread of its own.
            let _ = std::thread::spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                rt.block_on(async move {
                    if let Ok(admin) = sea_orm::Database::connect(admin_url.as_str()).await {
                        let _ = sea_orm::ConnectionTrait::execute_unprepared(
                            &admin,
                            &format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
                        )
                        .await;
                    }
                });
            })
            .join();
        }
    }
}

pub struct TestApp {
    pub address: String,
    /// The app's clock: `time.advance(..)` moves every time-dependent decision forward.
    pub time: synchub::clock::Offset,
    /// The app's own database handle, for tests that set up state the API does not expose.
    pub db: sea_orm::DatabaseConnection,
    /// Where the app's job queue lives (SQLite: a file of its own).
    pub queue_db: sea_orm::DatabaseConnection,
    pub client: reqwest::Client,
    pub database: TestDatabase,
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(backend, &[]).await
    }

    /// Starts the app with extra environment settings, e.g. trusted proxies.
    pub async fn spawn_with(backend: Backend, extra: &[(&str, &str)]) -> Self {
        // TEST_LOG=1 shows the app's log when a test needs explaining.
        if std::env::var_os("TEST_LOG").is_some() {
            synchub::telemetry::init_logging(false);
        }
        let database = TestDatabase::create(&backend).await;
        let mut env = database.env();
        env.push(("SYNCHUB_LISTEN".into(), "127.0.0.1:0".into()));
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let settings = Settings::from_layers(&env, &Overrides::default()).expect("settings");
        let time = synchub::clock::Offset::default();
        let app =
            Application::build_with_clock(settings, synchub::startup::Role::All, time.clock())
                .await
                .expect("app builds");
        let address = format!("http://127.0.0.1:{}", app.port());
        let db = app.db.clone();
        let queue_db = app.queue_db.clone();
        tokio::spawn(app.run_until_stopped());
        Self {
            address,
            time,
            db,
            queue_db,
            client: reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("client"),
            database,
        }
    }

    /// Moves the app's clock just past `at` (never back).
    pub fn advance_past(&self, at: chrono::DateTime<chrono::Utc>) {
        let ahead = at - self.time.clock().now();
        self.time
            .advance(ahead.max(chrono::Duration::zero()) + chrono::Duration::milliseconds(1));
    }

    /// Moves the clock past the retry time the API shows for run `id`.
    pub async fn advance_past_retry(&self, token: &str, id: &str) {
        let (_, shown) = self.get(&format!("/v1/runs/{id}"), token).await;
        let next: chrono::DateTime<chrono::Utc> = shown["next_attempt_at"]
            .as_str()
            .and_then(|at| at.parse().ok())
            .unwrap_or_else(|| panic!("run {id} has no retry time: {shown}"));
        self.advance_past(next);
    }

    /// The Prometheus text the app serves on /metrics.
    pub async fn metrics(&self) -> String {
        metrics_at(&self.client, &self.address).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .client
            .request(method, self.url(path))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, token, Some(body))
            .await
    }

    pub async fn put(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::PUT, path, token, Some(body))
            .await
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::PATCH, path, token, Some(body))
            .await
    }

    /// The app without its background loops (scheduler, workers, deployer, alerter,
    /// credential keeper), for tests that drive them themselves.
    pub async fn spawn_quiet(backend: Backend) -> Self {
        Self::spawn_with(
            backend,
            &[
                ("SYNCHUB_SCHEDULER__ENABLED", "false"),
                ("SYNCHUB_WORKERS__ENABLED", "false"),
                ("SYNCHUB_DEPLOYMENTS__ENABLED", "false"),
                ("SYNCHUB_ALERTS__ENABLED", "false"),
                ("SYNCHUB_CREDENTIALS__ENABLED", "false"),
            ],
        )
        .await
    }

    /// The app's settings, as its process read them.
    pub fn settings(&self) -> Settings {
        Settings::from_layers(&self.database.env(), &Overrides::default()).expect("settings")
    }

    /// The app's vault (the same master key).
    pub fn vault(&self) -> synchub::vault::Vault {
        synchub::vault::Vault::new(
            synchub::startup::resolve_master_key(&self.settings()).expect("master key"),
        )
    }

    /// A sync engine on the app's database, with the built-in connectors.
    pub fn engine(&self) -> synchub::sync::SyncEngine {
        self.engine_on(self.db.clone())
    }

    /// An engine on a pool of its own, with a rate limiter of its own: all a second worker
    /// process shares with this one is the database.
    pub async fn engine_of_another_process(&self) -> synchub::sync::SyncEngine {
        self.engine_on(self.database.connect().await)
    }

    fn engine_on(&self, db: sea_orm::DatabaseConnection) -> synchub::sync::SyncEngine {
        synchub::sync::SyncEngine::new(
            db,
            self.vault(),
            std::sync::Arc::new(
                synchub::connectors::ConnectorRegistry::built_in().expect("registry"),
            ),
            synchub::netpolicy::OutboundPolicy::allowing_private(),
        )
        .expect("engine")
        .with_clock(self.time.clock())
    }

    /// Executes every run that is due, again until none is, and asserts that nothing is left
    /// queued or running: a test that drives the engine by hand ends with no stray run.
    /// Returns how many attempts it made.
    pub async fn drain_runs(&self, engine: &synchub::sync::SyncEngine) -> usize {
        use sea_orm::{EntityTrait, QueryFilter};
        use synchub::store::entities::run;
        let mut attempts = 0;
        loop {
            let due = run::Entity::find()
                .filter(run::Entity::due(self.time.clock().now()))
                .all(&self.db)
                .await
                .expect("due runs");
            if due.is_empty() {
                break;
            }
            for row in due {
                engine.execute(&row.id).await.expect("run executes");
                attempts += 1;
            }
            assert!(attempts < 10_000, "the run queue does not drain");
        }
        let left = run::Entity::find()
            .filter(sea_orm::ColumnTrait::is_in(
                &run::Column::Status,
                [run::RunStatus::Queued, run::RunStatus::Running],
            ))
            .all(&self.db)
            .await
            .expect("runs");
        assert!(left.is_empty(), "runs left in the queue: {left:?}");
        attempts
    }

    /// A new tenant and a token for it with the given scopes; returns (tenant id, token).
    pub async fn tenant_with_token(&self, scopes: &[&str]) -> (String, String) {
        let (status, tenant) = self
            .post(
                "/v1/tenants",
                OPERATOR_TOKEN,
                json!({"name": "Acme", "timezone": "Asia/Shanghai"}),
            )
            .await;
        assert_eq!(status, 201, "{tenant}");
        let tenant_id = tenant["id"].as_str().expect("tenant id").to_string();
        let token = self.token_for(&tenant_id, scopes).await;
        (tenant_id, token)
    }

    pub async fn token_for(&self, tenant_id: &str, scopes: &[&str]) -> String {
        let (status, token) = self
            .post(
                &format!("/v1/tenants/{tenant_id}/tokens"),
                OPERATOR_TOKEN,
                json!({"name": "ci", "scopes": scopes}),
            )
            .await;
        assert_eq!(status, 201, "{token}");
        token["token"].as_str().expect("token").to_string()
    }

    /// Creates a connection and returns its JSON view.
    pub async fn connection(&self, token: &str, body: Value) -> Value {
        let (status, connection) = self.post("/v1/connections", token, body).await;
        assert_eq!(status, 201, "{connection}");
        connection
    }

    pub async fn events(&self, token: &str, connection_id: &str) -> Vec<Value> {
        let (status, page) = self
            .get(&format!("/v1/connections/{connection_id}/events"), token)
            .await;
        assert_eq!(status, 200, "{page}");
        page["data"].as_array().cloned().unwrap_or_default()
    }

    /// Every file of the embedded database (main file, WAL, shared memory), concatenated.
    pub fn sqlite_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        let dir: PathBuf = self.database.data_dir.path().to_path_buf();
        for entry in std::fs::read_dir(dir).expect("data dir").flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if name.starts_with("synchub.db") {
                bytes.extend(std::fs::read(entry.path()).unwrap_or_default());
            }
        }
        bytes
    }
}

/// The apps the simulated platforms know in tests: a Shopee partner, a TikTok Shop app and a
/// Login with Amazon client with the grant its sellers gave.
pub fn sim_apps() -> synchub::sim::signed::AppRegistration {
    let mut apps = synchub::sim::signed::AppRegistration::default();
    apps.shopee
        .insert("2001887".into(), "shopee-partner-key".into());
    apps.tiktok
        .insert("6abcdefgh12".into(), "tiktok-app-secret".into());
    apps.lwa.insert(
        "amzn1.application-oa2-client.sim".into(),
        synchub::sim::signed::LwaClient {
            client_secret: "lwa-client-secret".into(),
            refresh_token: "Atzr|seller-grant".into(),
        },
    );
    apps
}

pub fn shopify_connection(name: &str, webhook_secret: &str) -> Value {
    json!({
        "name": name,
        "connector": "shopify",
        "environment": "production",
        "settings": {"shop_domain": "acme-us.myshopify.com"},
        "credentials": {"access_token": "shpat_live_0123456789abcdef0123"},
        "webhook_secret": webhook_secret,
    })
}

pub fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// A tenant with a write token on a server started as its own process (the real binary).
pub struct RemoteTenant {
    pub base: String,
    pub client: reqwest::Client,
    pub token: String,
}

impl RemoteTenant {
    pub async fn create(port: u16) -> Self {
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let send = |path: String, body: Value| {
            client
                .post(format!("{base}{path}"))
                .bearer_auth(OPERATOR_TOKEN)
                .json(&body)
                .send()
        };
        let tenant: Value = send("/v1/tenants".into(), json!({"name": "Acme"}))
            .await
            .expect("tenant")
            .json()
            .await
            .expect("json");
        let token: Value = send(
            format!("/v1/tenants/{}/tokens", tenant["id"].as_str().expect("id")),
            json!({"name": "ci", "scopes": ["write"]}),
        )
        .await
        .expect("token")
        .json()
        .await
        .expect("json");
        let token = token["token"].as_str().expect("token").to_string();
        Self {
            base,
            client,
            token,
        }
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .expect("sent");
        response.json().await.expect("json")
    }

    pub async fn get(&self, path: &str) -> Value {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("sent");
        response.json().await.expect("json")
    }

    /// A Shopify store and an ERP on the simulator, an orders flow between them, and a run
    /// queued for it; returns the run's path.
    pub async fn queue_orders_run(&self, sim: &synchub::sim::Simulator) -> String {
        let shop = self
            .post("/v1/connections", json!({
                "name": "US", "connector": "shopify", "environment": "production",
                "settings": {"shop_domain": "acme.myshopify.com", "base_url": format!("{}/shopify/acme", sim.address)},
                "credentials": {"access_token": "shpat_simulated_0123456789"},
            }))
            .await;
        let erp = self
            .post("/v1/connections", json!({
                "name": "ERP", "connector": "generic-rest-erp", "environment": "production",
                "settings": {"base_url": format!("{}/erp/acme", sim.address)}, "credentials": {"api_key": "k"},
            }))
            .await;
        let flow = self.post("/v1/flows", json!({"name": "orders", "stream": "orders", "source": shop["id"], "destination": erp["id"]})).await;
        let run = self
            .post(
                &format!("/v1/flows/{}/run", flow["id"].as_str().expect("flow id")),
                json!({}),
            )
            .await;
        format!("/v1/runs/{}", run["id"].as_str().expect("run id"))
    }
}
