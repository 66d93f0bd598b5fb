//! Builds the application: storage, vault, connectors, domain services and the HTTP server.
//! The server binds its own listener and reports the port, so tests can ask for port 0.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use metrics_exporter_prometheus::PrometheusHandle;
use sea_orm::DatabaseConnection;
use tokio_util::sync::CancellationToken;

use crate::api::AppState;
use crate::clock::Clock;
use crate::config::Settings;
use crate::connections::Connections;
use crate::connectors::ConnectorRegistry;
use crate::flows::Flows;
use crate::runtime::{RunsSignal, RuntimeOptions};
use crate::scheduler::Scheduler;
use crate::tenancy::{Bootstrap, bootstrap_operator_token};
use crate::vault::{MasterKey, Vault};
use crate::webhooks::IngestService;
use crate::{api, store};

/// Which parts a process runs: `serve` runs all; `api` and `worker` split them so that many
/// of each scale out over one PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    All,
    /// REST API and webhook ingress; no scheduler, no workers.
    Api,
    /// Scheduler and workers; HTTP only for /healthz, /readyz and /metrics.
    Worker,
}

pub struct Application {
    server: actix_web::dev::Server,
    /// Stops the background loops (scheduler) when the server stops.
    shutdown: CancellationToken,
    port: u16,
    pub bootstrap: Bootstrap,
    pub db: DatabaseConnection,
    /// Where the job queue lives: SQLite's file of its own (`store::connect_queue`), or `db`.
    pub queue_db: DatabaseConnection,
}

/// The master key from configuration, or (outside production) one kept in the data dir.
pub fn resolve_master_key(settings: &Settings) -> anyhow::Result<MasterKey> {
    if !settings.master_key.is_empty() {
        return MasterKey::from_base64(settings.master_key.expose()).context("SYNCHUB_MASTER_KEY");
    }
    if settings.is_production() {
        anyhow::bail!("SYNCHUB_MASTER_KEY must be set in production");
    }
    let (key, created) = MasterKey::load_or_create(&settings.data_dir)?;
    let path = settings.data_dir.join(crate::vault::master_key::KEY_FILE);
    if created {
        eprintln!(
            "\n  WARNING: generated a local master key at {}.\n  It encrypts every stored credential. Back it up; production must set SYNCHUB_MASTER_KEY.\n",
            path.display()
        );
    }
    tracing::warn!(key_id = key.id(), path = %path.display(), "using a locally generated master key; production must set SYNCHUB_MASTER_KEY");
    Ok(key)
}

impl Application {
    /// Everything in one process: the API, webhook ingress, scheduler and workers.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        Self::build_role(settings, Role::All).await
    }

    pub async fn build_role(settings: Settings, role: Role) -> anyhow::Result<Self> {
        Self::build_with_clock(settings, role, Clock::system()).await
    }

    /// As `build_role`, with every time-dependent decision read from `clock`: tests move it
    /// forward instead of sleeping.
    pub async fn build_with_clock(
        settings: Settings,
        role: Role,
        clock: Clock,
    ) -> anyhow::Result<Self> {
        Self::assemble(settings, role, clock, ConnectorRegistry::built_in()?).await
    }

    /// As `build_role`, with connectors other than the built-in ones (the benchmarks lift
    /// their rate limits to measure synchub rather than a platform's quota).
    pub async fn build_with_registry(
        settings: Settings,
        role: Role,
        registry: ConnectorRegistry,
    ) -> anyhow::Result<Self> {
        Self::assemble(settings, role, Clock::system(), registry).await
    }

    async fn assemble(
        mut settings: Settings,
        role: Role,
        clock: Clock,
        registry: ConnectorRegistry,
    ) -> anyhow::Result<Self> {
        match role {
            Role::All => {}
            Role::Api => {
                settings.scheduler.enabled = false;
                settings.workers.enabled = false;
                settings.deployments.enabled = false;
                settings.alerts.enabled = false;
                settings.credentials.enabled = false;
            }
            Role::Worker => {
                settings.scheduler.enabled = true;
                settings.workers.enabled = true;
                settings.deployments.enabled = true;
                settings.alerts.enabled = true;
                settings.credentials.enabled = true;
            }
        }
        crate::install_crypto_provider();
        // Bound first: with port 0 (tests) the links and webhook URLs this process hands out
        // must name the port it really listens on.
        let listener = TcpListener::bind(settings.listen)
            .with_context(|| format!("listening on {}", settings.listen))?;
        if settings.public_url.trim().is_empty() {
            settings.public_url = format!("http://{}", listener.local_addr()?);
        }
        let settings = Arc::new(settings);
        let db = store::connect(&settings).await?;
        store::settle_schema(
            &db,
            role == Role::All || settings.database.migrate_at_start,
            Duration::from_secs(settings.database.schema_wait_seconds),
        )
        .await?;
        let vault = Vault::new(resolve_master_key(&settings)?);
        let given =
            (!settings.bootstrap_token.is_empty()).then(|| settings.bootstrap_token.expose());
        let bootstrap = bootstrap_operator_token(&db, given, !settings.is_production())
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))
            .context("creating the operator token")?;
        match &bootstrap {
            // Printed once, to the terminal, never to the log.
            Bootstrap::Generated(token) => {
                println!("\n  Operator token (shown once, keep it safe):\n\n    {token}\n")
            }
            Bootstrap::Withheld => tracing::warn!(
                "no operator token exists: set SYNCHUB_BOOTSTRAP_TOKEN before the first start, \
                 or run `synchub operator-token` where the database is reachable"
            ),
            Bootstrap::AlreadyInitialised | Bootstrap::CreatedFromConfig => {}
        }
        // The job queue's own schema (apalis's migrations, our index changes) is settled
        // here, in every role, before any loop or request runs. Run later, beside the other
        // loops, a pooled connection could load the schema between two of apalis's
        // migrations, prepare apalis's `RETURNING *` fetch against it, and have SQLite
        // re-prepare it with more columns than sqlx cached: sqlx's connection thread
        // panics and the database stays locked (seen once in CI). Opening the queue again
        // in the workers changes nothing.
        let queue_db = store::connect_queue(&settings, &db).await?;
        crate::runtime::Queue::open(queue_db.as_ref().unwrap_or(&db))
            .await
            .context("preparing the job queue's tables")?;
        let registry = Arc::new(registry);
        let versions = crate::connectors::versions::Versions::new(db.clone(), registry.clone());
        versions
            .register_built_ins()
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))
            .context("registering the built-in connector versions")?;
        // Whatever commits a run wakes this process's dispatcher.
        let runs = RunsSignal::new();
        let limiter = crate::ratelimit::RateLimiter::configured(&settings).await?;
        let relaxed = store::connect_relaxed(&settings).await?;
        let connections = Connections::new(db.clone(), vault.clone(), registry.clone(), &settings)?
            .with_limiter(limiter.clone())
            .with_clock(clock.clone());
        let connect = crate::connect::Connect::new(
            db.clone(),
            vault.clone(),
            registry.clone(),
            connections.clone(),
            crate::netpolicy::OutboundClient::new(
                settings.outbound_policy(),
                Duration::from_secs(5),
                Duration::from_secs(settings.connect.exchange_timeout_seconds),
            )?,
            clock.clone(),
            settings.effective_public_url(),
            settings.connect.clone(),
        );
        // A worker serves no webhooks: its writer never writes and takes no connection.
        let event_store = match role {
            Role::Worker => store::EventStore::Durable(db.clone()),
            Role::All | Role::Api => store::connect_event_writer(&settings).await?,
        };
        let ingest = IngestService::start(
            db.clone(),
            event_store,
            connections.clone(),
            &settings.webhooks,
            runs.clone(),
        );
        let flows =
            Flows::new(db.clone(), registry.clone(), runs.clone()).with_clock(clock.clone());
        let deployments =
            crate::deploy::Deployments::new(db.clone(), versions.clone()).with_clock(clock.clone());
        let outbound = settings.outbound_policy();
        let alert_channels =
            crate::alerts::AlertChannels::new(db.clone(), vault.clone(), outbound.clone())?
                .with_clock(clock.clone());
        let engine = crate::sync::SyncEngine::new(
            db.clone(),
            vault.clone(),
            registry.clone(),
            outbound.clone(),
        )?
        .with_limiter(limiter.clone())
        .with_relaxed_store(relaxed.clone())
        .with_lease(Duration::from_secs(settings.workers.lease_seconds))
        .with_slots(match settings.workers.per_version_slots {
            0 => crate::sync::VersionSlots::for_concurrency(settings.workers.concurrency),
            n => crate::sync::VersionSlots::new(n),
        })
        .with_clock(clock.clone())
        .with_runs_signal(runs.clone());
        let shutdown = CancellationToken::new();
        store::spawn_checkpointer(db.clone(), shutdown.clone());
        if let Some(queue_db) = &queue_db {
            store::spawn_checkpointer(queue_db.clone(), shutdown.clone());
        }
        if settings.scheduler.enabled {
            let interval = Duration::from_millis(settings.scheduler.tick_millis);
            tokio::spawn(
                Scheduler::new(db.clone())
                    .with_signal(runs.clone())
                    .with_clock(clock.clone())
                    .run(interval, shutdown.clone()),
            );
        }
        if settings.deployments.enabled {
            let deployer = crate::deploy::Deployer::new(db.clone(), connections.clone())
                .with_clock(clock.clone());
            let every = Duration::from_millis(settings.deployments.tick_millis);
            tokio::spawn(deployer.run(every, shutdown.clone()));
        }
        if settings.alerts.enabled {
            let alerter = crate::alerts::Alerter::new(
                db.clone(),
                alert_channels.clone(),
                limiter.clone(),
                settings.effective_public_url(),
            )
            .with_clock(clock.clone());
            let every = Duration::from_millis(settings.alerts.tick_millis);
            tokio::spawn(alerter.run(every, shutdown.clone()));
        }
        if settings.credentials.enabled {
            let policy = crate::connections::keeper::KeeperPolicy {
                refresh_ahead: chrono::Duration::minutes(
                    settings.credentials.refresh_ahead_minutes,
                ),
                warn_before: chrono::Duration::days(settings.credentials.expiry_warning_days),
            };
            let keeper = crate::connections::keeper::CredentialKeeper::new(
                db.clone(),
                vault.clone(),
                versions.clone(),
                limiter.clone(),
                policy,
                outbound.clone(),
            )?
            .with_clock(clock.clone())
            .with_reauthorization(std::sync::Arc::new(connect.clone()));
            let every = Duration::from_millis(settings.credentials.tick_millis);
            tokio::spawn(keeper.run(every, shutdown.clone()));
        }
        if settings.workers.enabled {
            let (db, shutdown) = (db.clone(), shutdown.clone());
            let options = RuntimeOptions {
                concurrency: settings.workers.concurrency,
                poll: Duration::from_millis(settings.workers.poll_millis),
                clock: clock.clone(),
                relaxed: Some(relaxed.clone()),
                queue: queue_db.clone(),
            };
            tokio::spawn(async move {
                if let Err(err) = crate::runtime::run(db, engine, runs, options, shutdown).await {
                    tracing::error!(error = %err, "the run workers stopped");
                }
            });
        }
        let metrics = crate::telemetry::metrics_handle()?;
        spawn_metrics_upkeep(metrics.clone());
        crate::telemetry::series::register(&crate::telemetry::series::KnownLabels {
            connectors: registry.names().collect(),
            channel_kinds: crate::alerts::ChannelKind::ALL.map(|k| k.as_str()).to_vec(),
            webhook_outcomes: &crate::webhooks::IngestService::OUTCOMES,
            delivery_outcomes: &crate::alerts::DELIVERY_OUTCOMES,
        });
        if settings.workers.enabled {
            tokio::spawn(crate::telemetry::gauges::run(
                db.clone(),
                clock.clone(),
                registry.names().map(str::to_string).collect(),
                Duration::from_secs(15),
                shutdown.clone(),
            ));
        }
        spawn_idempotency_pruning(db.clone(), clock.clone());
        // The processes that take webhooks keep their table to its window.
        if role != Role::Worker {
            crate::webhooks::retention::spawn(
                db.clone(),
                clock.clone(),
                chrono::Duration::days(i64::from(settings.webhooks.retention_days)),
                shutdown.clone(),
            );
        }

        let state = web::Data::new(AppState {
            db: db.clone(),
            settings: settings.clone(),
            vault: vault.clone(),
            registry,
            versions,
            connections,
            connect,
            deployments,
            alert_channels,
            flows,
            ingest,
            metrics,
            clock: clock.clone(),
        });
        let port = listener.local_addr()?.port();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .wrap(from_fn(api::idempotency::idempotency))
                .wrap(from_fn(api::middleware::observe))
                .configure(|cfg| match role {
                    Role::Worker => api::configure_ops(cfg),
                    _ => api::configure(cfg),
                })
                .default_service(match role {
                    Role::Worker => web::to(api::no_route),
                    _ => web::to(api::not_found),
                })
        })
        .listen(listener)?
        .shutdown_timeout(30)
        .run();
        tracing::info!(address = %settings.listen, port, database = %store::redact_url(&settings.effective_database_url()), "synchub is listening");
        Ok(Self {
            server,
            shutdown,
            port,
            bootstrap,
            queue_db: queue_db.unwrap_or_else(|| db.clone()),
            db,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        self.shutdown.cancel();
        result
    }
}

fn spawn_metrics_upkeep(handle: PrometheusHandle) {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                handle.run_upkeep();
            }
        });
    });
}

/// Forgets idempotency keys past their retention, hourly.
fn spawn_idempotency_pruning(db: DatabaseConnection, clock: Clock) {
    tokio::spawn(async move {
        loop {
            match crate::idempotency::prune(&db, clock.now()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(pruned = n, "expired idempotency keys removed"),
                Err(err) => tracing::warn!(error = %err, "pruning idempotency keys failed"),
            }
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    });
}
