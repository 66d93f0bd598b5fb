//! The dispatcher: hands due runs to the queue (queued ones, retries whose time has come,
//! runs whose worker's lease ran out), oldest first, a batch per statement, as far as the
//! queue has room, and wakes the workers.

use std::time::{Duration, Instant};

use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, Condition, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    QueryTrait,
};
use tokio_util::sync::CancellationToken;

use super::queue::{Queue, RunJob};
use super::wakeup::{RunsSignal, WorkerWaker};
use crate::store::entities::run;
use crate::store::entities::run::REDISPATCH_AFTER;

const DISPATCH_BATCH: u64 = 500;
/// Jobs the queue may hold unfetched, across processes. The queue is a hand-off, not the
/// backlog: runs beyond this wait in the runs table, whose indexes are built for it. A full
/// backlog in apalis's table made every ack of apalis's (which joins its acked ids to that
/// table, and stops the worker fetching until it returns) scan it: 3.5 ms an ack at 20,000
/// queued runs on PostgreSQL. And a run that waits there longer than `REDISPATCH_AFTER` is
/// handed over a second time, a duplicate job for every run of a long backlog.
const QUEUE_DEPTH: u64 = 1_000;
/// While due runs wait for room in the queue, how soon to look again: at 3,000 runs a
/// second the workers take 60 jobs meanwhile, and a refill is half the queue.
const REFILL_CHECK: Duration = Duration::from_millis(20);
/// Finished jobs are deleted this long after they finished. Every ack reads them too (see
/// `QUEUE_DEPTH`): kept 10 s, at 1,500 runs a second they were most of the table, and an
/// ack took 2.6 ms on PostgreSQL; kept 1 s, 1.2 ms.
const PRUNE_AGE: Duration = Duration::from_secs(1);
/// How often to prune while the last prune found `BUSY_PRUNE` jobs or more, and otherwise.
/// A quiet queue has little to prune, and on SQLite each prune takes the queue file's write
/// lock: pruning it every half second, the slowest of 200 pick-ups on an idle queue took
/// 11-12 ms, every 2 s 5-8 ms (`bench jobs`, four runs each).
const PRUNE_EVERY_BUSY: Duration = Duration::from_millis(500);
const PRUNE_EVERY: Duration = Duration::from_secs(2);
const BUSY_PRUNE: u64 = 100;

pub(super) async fn run(
    db: DatabaseConnection,
    mut queue: Queue,
    signal: RunsSignal,
    waker: WorkerWaker,
    poll: Duration,
    clock: crate::clock::Clock,
    shutdown: CancellationToken,
) {
    let mut timer = tokio::time::interval(poll);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pruned_at = Instant::now();
    let mut last_pruned = 0;
    let mut known = Room::unknown();
    let mut waiting_for_room = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = timer.tick() => {}
            _ = signal.notified() => {}
            _ = tokio::time::sleep(REFILL_CHECK), if waiting_for_room => {}
        }
        waiting_for_room = false;
        // As long as each pass fills what room there was, more may be due: keep going.
        loop {
            match dispatch_due(&db, &mut queue, &mut known, clock.now()).await {
                Ok(Pass::QueueFull) => {
                    waiting_for_room = true;
                    break;
                }
                Ok(Pass::Handed { handed, room }) => {
                    if handed > 0 {
                        waker.wake();
                    }
                    if handed < room {
                        break;
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "dispatching runs failed; retrying");
                    break;
                }
            }
            if shutdown.is_cancelled() {
                return;
            }
        }
        let prune_every = if last_pruned >= BUSY_PRUNE {
            PRUNE_EVERY_BUSY
        } else {
            PRUNE_EVERY
        };
        if pruned_at.elapsed() >= prune_every {
            pruned_at = Instant::now();
            last_pruned = match queue.prune_finished(PRUNE_AGE).await {
                Ok(n) => {
                    if n > 0 {
                        tracing::debug!(jobs = n, "pruned finished jobs");
                    }
                    n
                }
                Err(err) => {
                    tracing::warn!(error = %err, "pruning finished jobs failed");
                    0
                }
            };
        }
    }
}

/// What a dispatcher's pass did.
#[derive(Debug, PartialEq)]
enum Pass {
    /// Handed `handed` runs over, where there was room for `room`.
    Handed { handed: usize, room: usize },
    /// The queue holds half its depth or more unfetched: nothing looked at.
    QueueFull,
}

/// What this dispatcher knows of the queue's unfetched jobs: at most `bound`, the count it
/// last read plus what it handed over since. Counting only once that could be half the
/// queue keeps the count off the path of a lone run on an idle queue (on SQLite it added
/// about a millisecond to the pick-up's p99); other processes' hand-overs are seen at the
/// next count.
struct Room {
    bound: u64,
}

impl Room {
    fn unknown() -> Self {
        Self { bound: QUEUE_DEPTH }
    }

    /// How many runs to hand over now; None while the queue holds half its depth or more.
    /// Refilled by halves: a pass reads every queued run's index entry, so it is not worth
    /// a handful of jobs.
    async fn available(&mut self, queue: &Queue) -> anyhow::Result<Option<u64>> {
        if self.bound > QUEUE_DEPTH / 2 {
            self.bound = queue.waiting().await?;
        }
        if self.bound > QUEUE_DEPTH / 2 {
            return Ok(None);
        }
        Ok(Some(DISPATCH_BATCH.min(QUEUE_DEPTH - self.bound)))
    }
}

/// Hands due runs to the queue, as many as it has room for, and marks them handed over.
async fn dispatch_due(
    db: &DatabaseConnection,
    queue: &mut Queue,
    known: &mut Room,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<Pass> {
    let Some(room) = known.available(queue).await? else {
        return Ok(Pass::QueueFull);
    };
    let due = run::Entity::due(now);
    let not_handed = Condition::any()
        .add(run::Column::DispatchedAt.is_null())
        .add(run::Column::DispatchedAt.lt(now - REDISPATCH_AFTER));
    // One statement picks and marks the batch, and re-checks "not handed over" on each row,
    // so two dispatchers never both push a run. A crash before the push leaves runs marked
    // but not queued: the redispatch window hands them over again.
    let pick = run::Entity::find()
        .select_only()
        .column(run::Column::Id)
        .filter(due)
        .filter(not_handed.clone())
        .order_by_asc(run::Column::CreatedAt)
        .limit(room)
        .into_query();
    let marked = run::Entity::update_many()
        .col_expr(run::Column::DispatchedAt, Expr::value(Some(now)))
        .filter(run::Column::Id.in_subquery(pick))
        .filter(not_handed)
        .exec_with_returning(db)
        .await?;
    let handed = marked.len();
    known.bound += handed as u64;
    let room = usize::try_from(room).unwrap_or(usize::MAX);
    if marked.is_empty() {
        return Ok(Pass::Handed { handed, room });
    }
    let jobs = marked
        .into_iter()
        .map(|row| RunJob {
            v: 1,
            run_id: row.id.to_string(),
        })
        .collect();
    queue.push_bulk(jobs).await?;
    Ok(Pass::Handed { handed, room })
}

#[cfg(test)]
mod tests {
    use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter};

    use super::*;
    use crate::bench::fixture::on_each_database;
    use crate::ids::RunId;
    use crate::runs::{enqueue_runs, queued_run, test_flow};
    use crate::store::entities::flow;

    async fn handed_over(db: &DatabaseConnection) -> u64 {
        run::Entity::find()
            .filter(run::Column::DispatchedAt.is_not_null())
            .count(db)
            .await
            .unwrap()
    }

    /// A backlog larger than the queue's depth waits in the runs table, not handed over
    /// (so not handed over twice if it waits long), until the workers have fetched enough
    /// jobs to make room; then the next pass hands over the rest.
    #[tokio::test]
    async fn a_backlog_waits_in_the_runs_table_until_the_queue_has_room() {
        on_each_database(|db, url| async move {
            let now = chrono::Utc::now();
            let flow = test_flow(now);
            flow::Entity::insert(flow::ActiveModel::from(flow.clone()))
                .exec(&db)
                .await
                .unwrap();
            let backlog = QUEUE_DEPTH as usize + 300;
            let rows = (0..backlog)
                .map(|i| queued_run(&flow, RunId::generate(), "manual", i.to_string(), None, now))
                .collect();
            enqueue_runs(&db, rows).await.unwrap();
            let mut queue = Queue::open(&db).await.unwrap();
            let mut known = Room::unknown();

            let mut passes = Vec::new();
            loop {
                let pass = dispatch_due(&db, &mut queue, &mut known, now)
                    .await
                    .unwrap();
                let full = pass == Pass::QueueFull;
                passes.push(pass);
                if full || passes.len() > 10 {
                    break;
                }
            }
            let batch = DISPATCH_BATCH as usize;
            assert_eq!(
                passes,
                [
                    Pass::Handed {
                        handed: batch,
                        room: batch
                    },
                    Pass::Handed {
                        handed: batch,
                        room: batch
                    },
                    Pass::QueueFull,
                ],
                "{url}"
            );
            assert_eq!(queue.waiting().await.unwrap(), QUEUE_DEPTH, "{url}");
            assert_eq!(handed_over(&db).await, QUEUE_DEPTH, "{url}");

            // Workers take 600 jobs and finish them.
            let take = match db.get_database_backend() {
                sea_orm::DatabaseBackend::Postgres => {
                    "UPDATE apalis.jobs SET status = 'Done' WHERE id IN \
                     (SELECT id FROM apalis.jobs WHERE status = 'Pending' LIMIT 600)"
                }
                _ => {
                    "UPDATE Jobs SET status = 'Done' WHERE id IN \
                     (SELECT id FROM Jobs WHERE status = 'Pending' LIMIT 600)"
                }
            };
            db.execute_unprepared(take).await.unwrap();
            assert_eq!(
                dispatch_due(&db, &mut queue, &mut known, now)
                    .await
                    .unwrap(),
                Pass::Handed {
                    handed: 300,
                    room: batch
                },
                "{url}"
            );
            assert_eq!(handed_over(&db).await, backlog as u64, "{url}");
            assert_eq!(
                queue.waiting().await.unwrap(),
                QUEUE_DEPTH - 600 + 300,
                "{url}"
            );
        })
        .await;
    }
}
