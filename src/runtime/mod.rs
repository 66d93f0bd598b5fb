//! Background execution. The runs table is the outbox: a run is committed with the change
//! that causes it (a tick, a manual request, a retry), and the dispatcher hands every run
//! that is due to the apalis queue (apalis-sqlite, or apalis-postgres on PostgreSQL). apalis
//! workers execute them through the sync engine, which claims each run with a lease, so a
//! job delivered twice runs once and a dead worker's run is taken over.

use std::time::Duration;

use apalis::prelude::*;
use apalis_postgres::PostgresStorage;
use apalis_sqlite::SqliteStorage;
use sea_orm::{
    ColumnTrait, Condition, DatabaseBackend, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::ids::RunId;
use crate::store::entities::run;
use crate::sync::SyncEngine;

/// The one job type: ids only, versioned, so the payload can change without breaking a queue.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RunJob {
    pub v: u8,
    pub run_id: String,
}

/// A run handed to the queue and not picked up within this is handed over again.
const REDISPATCH_AFTER: chrono::Duration = chrono::Duration::seconds(60);
const DISPATCH_BATCH: u64 = 500;

const QUEUE: &str = "synchub.runs";
/// apalis looks for work on every heartbeat as well as on its poll timer, and its interval
/// timer is not always re-armed (an idle worker then waited the default 30 s heartbeat for a
/// new run: seen in CI). A 1 s heartbeat bounds that wait.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// A worker is presumed dead after this many missed heartbeats; runs are guarded by their own
/// leases, so an early presumption only costs a skipped duplicate delivery.
const MISSED_HEARTBEATS: usize = 5;

#[derive(Clone)]
enum Queue {
    Sqlite(SqliteStorage<RunJob>),
    Postgres(PostgresStorage<RunJob>),
}

impl Queue {
    async fn open(db: &DatabaseConnection) -> anyhow::Result<Self> {
        Ok(match db.get_database_backend() {
            DatabaseBackend::Postgres => {
                let pool = db.get_postgres_connection_pool().clone();
                PostgresStorage::setup(&pool).await?;
                let config = apalis_postgres::Config::default()
                    .queue(QUEUE)
                    .heartbeat_interval(HEARTBEAT)
                    .missed_heartbeats(MISSED_HEARTBEATS);
                Self::Postgres(PostgresStorage::new(&pool).with_config(config))
            }
            _ => {
                let pool = db.get_sqlite_connection_pool().clone();
                SqliteStorage::setup(&pool).await?;
                let config = apalis_sqlite::Config::default()
                    .queue(QUEUE)
                    .heartbeat_interval(HEARTBEAT)
                    .missed_heartbeats(MISSED_HEARTBEATS);
                Self::Sqlite(SqliteStorage::new(&pool).with_config(config))
            }
        })
    }

    async fn push(&mut self, job: RunJob) -> anyhow::Result<()> {
        match self {
            Self::Sqlite(storage) => storage.push(job).await.map_err(|e| anyhow::anyhow!("{e}")),
            Self::Postgres(storage) => storage.push(job).await.map_err(|e| anyhow::anyhow!("{e}")),
        }
    }
}

/// Hands due runs to the queue: queued ones, retries whose time has come, and runs whose
/// worker's lease ran out. Returns how many it handed over.
async fn dispatch_due(db: &DatabaseConnection, queue: &mut Queue) -> anyhow::Result<usize> {
    let now = chrono::Utc::now();
    let due = Condition::any()
        .add(run::Column::Status.eq("queued"))
        .add(
            Condition::all()
                .add(run::Column::Status.eq("retrying"))
                .add(run::Column::NextAttemptAt.lte(now)),
        )
        .add(
            Condition::all()
                .add(run::Column::Status.eq("running"))
                .add(run::Column::LeaseUntil.lt(now)),
        );
    let not_handed = Condition::any()
        .add(run::Column::DispatchedAt.is_null())
        .add(run::Column::DispatchedAt.lt(now - REDISPATCH_AFTER));
    let rows = run::Entity::find()
        .filter(due)
        .filter(not_handed)
        .order_by_asc(run::Column::CreatedAt)
        .limit(DISPATCH_BATCH)
        .all(db)
        .await?;
    for row in &rows {
        queue
            .push(RunJob {
                v: 1,
                run_id: row.id.to_string(),
            })
            .await?;
        run::Entity::update_many()
            .col_expr(run::Column::DispatchedAt, Some(now).into())
            .filter(run::Column::Id.eq(row.id.clone()))
            .exec(db)
            .await?;
    }
    Ok(rows.len())
}

async fn execute(job: RunJob, engine: Data<SyncEngine>) -> Result<(), BoxDynError> {
    let Some(id) = RunId::parse(&job.run_id) else {
        tracing::warn!(run_id = %job.run_id, "dropping a job for a malformed run id");
        return Ok(());
    };
    // The engine records failures on the run itself (retry or dead letter), so the job
    // succeeds either way: apalis's own in-memory retries would bypass the persisted backoff.
    match engine.execute(&id).await {
        Ok(Some(report)) => {
            metrics::counter!("synchub_runs_total", "status" => report.status.clone()).increment(1);
            tracing::info!(run_id = %id, status = %report.status, read = report.records_read, written = report.records_written, "run attempt finished");
        }
        Ok(None) => tracing::debug!(run_id = %id, "run not claimable; skipped"),
        Err(err) => tracing::error!(run_id = %id, error = %err, "run could not be executed"),
    }
    Ok(())
}

/// Runs the dispatcher and `concurrency` apalis workers until cancelled.
pub async fn run(
    db: DatabaseConnection,
    engine: SyncEngine,
    concurrency: usize,
    tick: Duration,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let queue = Queue::open(&db).await?;
    let mut dispatcher_queue = queue.clone();
    let dispatcher_db = db.clone();
    let dispatcher_shutdown = shutdown.clone();
    tokio::spawn(async move {
        let mut timer = tokio::time::interval(tick);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = dispatcher_shutdown.cancelled() => return,
                _ = timer.tick() => {}
            }
            if let Err(err) = dispatch_due(&dispatcher_db, &mut dispatcher_queue).await {
                tracing::warn!(error = %err, "dispatching runs failed; retrying");
            }
        }
    });
    // A worker that stops on an error (a busy database, a lost connection) is started again:
    // the runs it held are taken over through their leases.
    loop {
        let name = format!("synchub-runs-{}", uuid::Uuid::now_v7().simple());
        let outcome = match queue.clone() {
            Queue::Sqlite(storage) => {
                let worker = WorkerBuilder::new(name)
                    .backend(storage.poll_with_interval(tick))
                    .data(engine.clone())
                    .concurrency(concurrency)
                    .build(execute);
                tokio::select! {
                    r = worker.run() => r.map_err(|e| anyhow::anyhow!("{e}")),
                    _ = shutdown.cancelled() => return Ok(()),
                }
            }
            Queue::Postgres(storage) => {
                let worker = WorkerBuilder::new(name)
                    .backend(storage.poll_with_interval(tick))
                    .data(engine.clone())
                    .concurrency(concurrency)
                    .build(execute);
                tokio::select! {
                    r = worker.run() => r.map_err(|e| anyhow::anyhow!("{e}")),
                    _ = shutdown.cancelled() => return Ok(()),
                }
            }
        };
        match outcome {
            Ok(()) => tracing::warn!("the run worker stopped; starting it again"),
            Err(err) => tracing::error!(error = %err, "the run worker failed; starting it again"),
        }
        metrics::counter!("synchub_worker_restarts_total").increment(1);
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}
