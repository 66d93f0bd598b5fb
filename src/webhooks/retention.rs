//! Received events are kept for `webhooks.retention_days` and then deleted, so the table and
//! its dedupe index hold the window a platform retries in and what ops looks back on, not
//! every webhook ever received (at 1,000 a second that is 86 million rows a day, and the
//! ingest's index inserts slow as the index outgrows memory). An event's age is read from
//! its id, which leads with its creation time (UUIDv7): the deletes walk the primary key,
//! and the ingest keeps no index on `received_at` just for them.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::error::Result;
use crate::ids::EventId;
use crate::store::entities::webhook_event;

/// Events one statement deletes: each is a short write of its own, so on SQLite the webhook
/// writer waits for at most one of them, not for the whole day's worth.
pub const DELETE_BATCH: u64 = 1_000;

/// How often, by the injected clock, old events are looked for.
pub const PRUNE_EVERY: chrono::Duration = chrono::Duration::minutes(10);

/// How often the task reads the clock (a test's clock jumps; the real one does not).
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// Deletes the events received before `cutoff`, oldest first, [`DELETE_BATCH`] a statement;
/// how many it deleted. Events arriving meanwhile are newer than any cutoff and untouched;
/// two processes pruning at once only share the work.
pub async fn delete_events_before(db: &DatabaseConnection, cutoff: DateTime<Utc>) -> Result<u64> {
    use webhook_event::{Column, Entity};
    let floor = EventId::floor_at(cutoff);
    let mut deleted = 0;
    loop {
        // The last id of the next batch: a range on the key, not a list of a thousand ids.
        let last: Option<EventId> = Entity::find()
            .select_only()
            .column(Column::Id)
            .filter(Column::Id.lt(floor.clone()))
            .order_by_asc(Column::Id)
            .offset(DELETE_BATCH - 1)
            .limit(1)
            .into_tuple()
            .one(db)
            .await?;
        let batch = match &last {
            Some(last) => Entity::delete_many().filter(Column::Id.lte(last.clone())),
            None => Entity::delete_many().filter(Column::Id.lt(floor.clone())),
        };
        deleted += batch.exec(db).await?.rows_affected;
        if last.is_none() {
            return Ok(deleted);
        }
    }
}

/// Deletes events older than `keep` at start and every [`PRUNE_EVERY`] until `shutdown`.
pub fn spawn(
    db: DatabaseConnection,
    clock: Clock,
    keep: chrono::Duration,
    shutdown: CancellationToken,
) {
    tokio::spawn(async move {
        let mut due = clock.now();
        loop {
            let now = clock.now();
            if now >= due {
                match delete_events_before(&db, now - keep).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(deleted = n, "webhook events past retention deleted"),
                    Err(err) => tracing::warn!(error = %err, "deleting old webhook events failed"),
                }
                due = now + PRUNE_EVERY;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(LOOK_EVERY) => {}
            }
        }
    });
}
