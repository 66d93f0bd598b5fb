//! The dispatcher: hands every due run to the queue (queued ones, retries whose time has
//! come, runs whose worker's lease ran out), a batch per statement, and wakes the workers.

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
/// Finished jobs are deleted this long after they finished, checked this often.
const PRUNE_AGE: Duration = Duration::from_secs(10);
const PRUNE_EVERY: Duration = Duration::from_secs(2);

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
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = timer.tick() => {}
            _ = signal.notified() => {}
        }
        // A full batch means more are waiting: keep going without waiting for a wake-up.
        loop {
            match dispatch_due(&db, &mut queue, clock.now()).await {
                Ok(0) => break,
                Ok(n) => {
                    waker.wake();
                    if n < DISPATCH_BATCH as usize {
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
        if pruned_at.elapsed() >= PRUNE_EVERY {
            pruned_at = Instant::now();
            match queue.prune_finished(PRUNE_AGE).await {
                Ok(n) if n > 0 => tracing::debug!(jobs = n, "pruned finished jobs"),
                Ok(_) => {}
                Err(err) => tracing::warn!(error = %err, "pruning finished jobs failed"),
            }
        }
    }
}

/// Hands due runs to the queue and marks them handed over. Returns how many.
async fn dispatch_due(
    db: &DatabaseConnection,
    queue: &mut Queue,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<usize> {
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
        .limit(DISPATCH_BATCH)
        .into_query();
    let marked = run::Entity::update_many()
        .col_expr(run::Column::DispatchedAt, Expr::value(Some(now)))
        .filter(run::Column::Id.in_subquery(pick))
        .filter(not_handed)
        .exec_with_returning(db)
        .await?;
    if marked.is_empty() {
        return Ok(0);
    }
    let count = marked.len();
    let jobs = marked
        .into_iter()
        .map(|row| RunJob {
            v: 1,
            run_id: row.id.to_string(),
        })
        .collect();
    queue.push_bulk(jobs).await?;
    Ok(count)
}
