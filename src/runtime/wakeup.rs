//! Event-driven wake-ups, so a new run is picked up in milliseconds rather than on the next
//! poll. Two hops: whatever commits a run (an API call, a scheduler tick, a webhook batch)
//! wakes the dispatcher through [`RunsSignal`]; the dispatcher wakes the workers after it hands
//! jobs to the queue. On PostgreSQL both hops also cross processes: a trigger on `runs`
//! notifies `synchub_runs`, and apalis notifies `apalis::job::insert` for each job.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};
use futures_util::{Stream, StreamExt};
use sea_orm::{DatabaseBackend, DatabaseConnection};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The PostgreSQL channel a trigger on `runs` notifies after each committed insert.
pub const RUNS_CHANNEL: &str = "synchub_runs";

/// "A run was committed": wakes this process's dispatcher. Signal after the commit, never
/// inside the transaction, or the dispatcher may look before the run is visible. A signal
/// sent while the dispatcher is busy is kept, so none is lost.
#[derive(Clone, Default)]
pub struct RunsSignal(Arc<Notify>);

impl RunsSignal {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn notify(&self) {
        self.0.notify_one();
    }

    pub async fn notified(&self) {
        self.0.notified().await;
    }

    /// On PostgreSQL, turns `synchub_runs` notifications from every process into signals.
    /// Reconnects after a lost connection; the dispatcher's own tick covers the gap.
    pub fn listen_to_database(&self, db: &DatabaseConnection, shutdown: CancellationToken) {
        if db.get_database_backend() != DatabaseBackend::Postgres {
            return;
        }
        let pool = db.get_postgres_connection_pool().clone();
        let signal = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    result = forward_notifications(&pool, &signal) => if let Err(err) = result {
                        tracing::warn!(error = %err, "listening for new runs failed; reconnecting");
                    },
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        });
    }
}

async fn forward_notifications(
    pool: &sea_orm::sqlx::PgPool,
    signal: &RunsSignal,
) -> Result<(), sea_orm::sqlx::Error> {
    let mut listener = apalis_postgres::PgListener::connect_with(pool).await?;
    listener.listen(RUNS_CHANNEL).await?;
    loop {
        listener.recv().await?;
        signal.notify();
    }
}

/// The dispatcher's side of the worker wake-up: one sender per worker incarnation, replaced
/// when a worker is started again.
#[derive(Clone, Default)]
pub struct WorkerWaker(Arc<Mutex<Option<UnboundedSender<()>>>>);

impl WorkerWaker {
    /// A fresh wake-up stream for a worker being started; the previous one stops receiving.
    pub fn subscribe(&self) -> Wakeups {
        let (tx, rx) = unbounded();
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(tx);
        }
        Wakeups(Arc::new(Mutex::new(rx)))
    }

    pub fn wake(&self) {
        if let Ok(slot) = self.0.lock()
            && let Some(tx) = slot.as_ref()
        {
            let _ = tx.unbounded_send(());
        }
    }
}

/// Wake-ups for one worker. Several pending ones collapse into one poll of the queue.
/// (apalis wants a `Sync` stream; the receiver sits behind a mutex for that.)
pub struct Wakeups(Arc<Mutex<UnboundedReceiver<()>>>);

impl Stream for Wakeups {
    type Item = ();

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<()>> {
        let Ok(mut rx) = self.0.lock() else {
            return Poll::Ready(None);
        };
        match rx.poll_next_unpin(cx) {
            Poll::Ready(Some(())) => {
                while let Poll::Ready(Some(())) = rx.poll_next_unpin(cx) {}
                Poll::Ready(Some(()))
            }
            other => other,
        }
    }
}

/// A plain interval as a stream: the fallback poll for wake-ups that cannot reach this
/// process (SQLite shared by two processes) and for retries whose time has come. It re-arms
/// itself on every poll (apalis's own interval strategy sometimes did not).
pub struct Ticker(tokio::time::Interval);

impl Ticker {
    pub fn new(period: Duration) -> Self {
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self(interval)
    }
}

impl Stream for Ticker {
    type Item = ();

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<()>> {
        self.0.poll_tick(cx).map(|_| Some(()))
    }
}
