//! Background execution. The runs table is the outbox: a run is committed with the change
//! that causes it (a tick, a manual request, a retry), and the dispatcher hands every run
//! that is due to the apalis queue (apalis-sqlite, or apalis-postgres on PostgreSQL). apalis
//! workers execute them through a [`RunExecutor`] (the sync engine implements it; the runtime
//! does not know it), which claims each run with
//! a lease, so a job delivered twice runs once and a dead worker's run is taken over.

pub mod backoff;
mod dispatch;
mod queue;
mod wakeup;

use std::future::Future;
use std::time::Duration;

use apalis::prelude::*;
use sea_orm::DatabaseConnection;
use tokio_util::sync::CancellationToken;

pub use queue::{QUEUE, Queue, RunJob, prune_finished};
pub use wakeup::{RUNS_CHANNEL, RunsSignal};

pub use crate::clock::Clock;

/// Runs `tick` every `every` until `shutdown`; a failed tick is logged and the loop goes on.
pub async fn repeat<F, Fut, T>(
    what: &'static str,
    every: std::time::Duration,
    shutdown: tokio_util::sync::CancellationToken,
    tick: F,
) where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = crate::error::Result<T>>,
{
    loop {
        if let Err(err) = tick().await {
            tracing::warn!(error = %err, "{what} tick failed");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

use crate::ids::RunId;
use wakeup::{Ticker, WorkerWaker};

/// Executes one delivery of a run. Implementations record the outcome on the run itself, so
/// a delivery never fails in apalis's eyes: apalis's in-memory retries would bypass the
/// persisted backoff.
pub trait RunExecutor: Clone + Send + Sync + 'static {
    fn execute(&self, run: RunId) -> impl Future<Output = ()> + Send;
}

async fn execute<E: RunExecutor>(job: RunJob, executor: Data<E>) -> Result<(), BoxDynError> {
    match RunId::parse(&job.run_id) {
        Some(id) => executor.execute(id).await,
        None => tracing::warn!(run_id = %job.run_id, "dropping a job for a malformed run id"),
    }
    Ok(())
}

/// How the runtime runs: worker slots and the fallback poll.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    pub concurrency: usize,
    /// The dispatcher and the workers also look for work this often, whatever the wake-ups.
    pub poll: Duration,
    /// What "due" is judged by.
    pub clock: Clock,
    /// Where the queue and the dispatcher's marks commit without waiting for the disk
    /// (`store::connect_relaxed`); None: the runs' own pool.
    pub relaxed: Option<DatabaseConnection>,
    /// Where the queue lives when not there: SQLite's file of its own
    /// (`store::connect_queue`).
    pub queue: Option<DatabaseConnection>,
}

/// Runs the dispatcher and an apalis worker with `concurrency` slots until cancelled.
pub async fn run<E: RunExecutor>(
    db: DatabaseConnection,
    executor: E,
    signal: RunsSignal,
    options: RuntimeOptions,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let relaxed = options.relaxed.clone().unwrap_or_else(|| db.clone());
    let queue_db = options.queue.clone().unwrap_or_else(|| relaxed.clone());
    let queue = Queue::open(&queue_db).await?;
    let waker = WorkerWaker::default();
    signal.listen_to_database(&db, shutdown.clone());
    tokio::spawn(dispatch::run(
        relaxed,
        queue.clone(),
        signal,
        waker.clone(),
        options.poll,
        options.clock.clone(),
        shutdown.clone(),
    ));
    // A worker that stops on an error (a busy database, a lost connection) is started again:
    // the runs it held are taken over through their leases.
    loop {
        let name = format!("synchub-runs-{}", uuid::Uuid::now_v7().simple());
        let strategy = Strategy::new()
            .stream(waker.subscribe())
            .stream(Ticker::new(options.poll));
        let outcome = match queue.clone() {
            Queue::Sqlite(storage) => {
                let worker = WorkerBuilder::new(name)
                    .backend(storage.poll_with_strategy(strategy))
                    .data(executor.clone())
                    .concurrency(options.concurrency)
                    .build(execute::<E>);
                tokio::select! {
                    r = worker.run() => r.map_err(|e| anyhow::anyhow!("{e}")),
                    _ = shutdown.cancelled() => return Ok(()),
                }
            }
            Queue::Postgres(storage) => {
                // Jobs pushed by other processes' dispatchers arrive by LISTEN/NOTIFY.
                let pubsub = apalis_postgres::Pubsub::new(storage.pool().clone(), QUEUE.into());
                let worker = WorkerBuilder::new(name)
                    .backend(storage.poll_with_strategy(strategy.stream(pubsub)))
                    .data(executor.clone())
                    .concurrency(options.concurrency)
                    .build(execute::<E>);
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
