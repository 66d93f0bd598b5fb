//! Event-driven wake-ups, so a new run is picked up in milliseconds rather than on the next
//! poll. Two hops: whatever commits a run (an API call, a scheduler tick, a webhook batch)
//! wakes the dispatcher through [`RunsSignal`]; the dispatcher wakes the workers after it hands
//! jobs to the queue. On PostgreSQL both hops also cross processes: a trigger on `runs`
//! notifies `synchub_runs`, and apalis notifies `apalis::job::insert` for each job.

use std::future::Future;
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
        Wakeups::new(rx)
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
///
/// Each wake-up is echoed once, [`ECHO_AFTER`] later. apalis 1.0 polls this stream on every
/// poll of the worker, also while a fetch is in flight: a wake-up for a job pushed after that
/// fetch read the queue is spent on it, the fetch comes back empty, and the worker parks
/// until its fallback tick. Traced on SQLite, every latency tail of 100-200 ms in `bench
/// latency` was that: a job pushed 0.2-0.8 ms into a fetch begun by the previous job's ack.
/// The echo arrives after the fetch that spent the wake-up and starts one that sees the job.
pub struct Wakeups {
    rx: Mutex<UnboundedReceiver<()>>,
    echo: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// Long enough for the fetch in flight at a wake-up to end (they take under a millisecond),
/// short enough that a job it missed waits for no more than this.
const ECHO_AFTER: Duration = Duration::from_millis(5);

impl Wakeups {
    fn new(rx: UnboundedReceiver<()>) -> Self {
        Self {
            rx: Mutex::new(rx),
            echo: None,
        }
    }
}

impl Stream for Wakeups {
    type Item = ();

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<()>> {
        let woken = {
            let Ok(mut rx) = self.rx.lock() else {
                return Poll::Ready(None);
            };
            match rx.poll_next_unpin(cx) {
                Poll::Ready(Some(())) => {
                    while let Poll::Ready(Some(())) = rx.poll_next_unpin(cx) {}
                    true
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => false,
            }
        };
        if woken {
            // Polled once now, so that its timer holds this task's waker.
            let mut echo = Box::pin(tokio::time::sleep(ECHO_AFTER));
            let _ = echo.as_mut().poll(cx);
            self.echo = Some(echo);
            return Poll::Ready(Some(()));
        }
        match self.echo.as_mut().map(|echo| echo.as_mut().poll(cx)) {
            Some(Poll::Ready(())) => {
                self.echo = None;
                Poll::Ready(Some(()))
            }
            _ => Poll::Pending,
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Poll, Wake, Waker};
    use std::time::Duration;

    use futures_util::Stream;

    use super::{ECHO_AFTER, WorkerWaker};

    /// Counts how often the worker's task would have been woken.
    #[derive(Default)]
    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A wake-up spent on a poll during a fetch is echoed: with no further poll of the
    /// stream and no further wake-up, the worker's task is woken once more, after
    /// ECHO_AFTER, and that poll yields; nothing more after it. (apalis polls the stream
    /// only when its task is woken, so an echo whose timer did not hold the task's waker
    /// would never come: the latency tails this was made for.)
    #[tokio::test(start_paused = true)]
    async fn a_spent_wake_up_is_echoed_once() {
        let waker = WorkerWaker::default();
        let mut wakeups = waker.subscribe();
        let counter = Arc::new(CountingWaker::default());
        let task = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&task);

        assert_eq!(
            std::pin::Pin::new(&mut wakeups).poll_next(&mut cx),
            Poll::Pending
        );
        waker.wake();
        waker.wake();
        assert_eq!(
            counter.0.load(Ordering::SeqCst),
            1,
            "the wake-up wakes the task"
        );
        assert_eq!(
            std::pin::Pin::new(&mut wakeups).poll_next(&mut cx),
            Poll::Ready(Some(())),
            "two wake-ups collapse into one"
        );

        tokio::time::advance(ECHO_AFTER - Duration::from_millis(1)).await;
        assert_eq!(counter.0.load(Ordering::SeqCst), 1, "not before its time");
        tokio::time::advance(Duration::from_millis(2)).await;
        assert_eq!(
            counter.0.load(Ordering::SeqCst),
            2,
            "the echo wakes the task"
        );
        assert_eq!(
            std::pin::Pin::new(&mut wakeups).poll_next(&mut cx),
            Poll::Ready(Some(()))
        );
        assert_eq!(
            std::pin::Pin::new(&mut wakeups).poll_next(&mut cx),
            Poll::Pending
        );
        tokio::time::advance(ECHO_AFTER * 10).await;
        assert_eq!(counter.0.load(Ordering::SeqCst), 2, "one echo a wake-up");
    }
}
