//! How a run comes to be: a queued row, committed in the transaction of what caused it (a
//! schedule tick, a request, a webhook, a replay), deduplicated per flow by its key.

use sea_orm::{ConnectionTrait, EntityTrait, QueryTrait, Set};

use crate::error::Result;
use crate::ids::RunId;
use crate::store::entities::{flow, run};

/// The dedupe key of the webhook-triggered run that has not started yet; a claim renames it
/// when it starts the run, so the next webhook queues a new one.
pub const WEBHOOK_PENDING: &str = "webhook:pending";

/// A new queued run of `flow`, not yet inserted.
pub fn queued_run(
    flow: &flow::Model,
    id: RunId,
    trigger: &str,
    dedupe_key: String,
    scheduled_for: Option<chrono::DateTime<chrono::Utc>>,
    now: chrono::DateTime<chrono::Utc>,
) -> run::ActiveModel {
    run::ActiveModel {
        id: Set(id),
        tenant_id: Set(flow.tenant_id.clone()),
        flow_id: Set(flow.id.clone()),
        trigger: Set(trigger.to_string()),
        dedupe_key: Set(dedupe_key),
        scheduled_for: Set(scheduled_for),
        status: Set(run::RunStatus::Queued),
        attempts: Set(0),
        records_read: Set(0),
        records_written: Set(0),
        error_class: Set(None),
        error_message: Set(None),
        connector_version: Set(None),
        next_attempt_at: Set(None),
        checkpoint: Set(None),
        dispatched_at: Set(None),
        lease_until: Set(None),
        created_at: Set(now),
        started_at: Set(None),
        finished_at: Set(None),
    }
}

/// Inserts queued runs in one statement, skipping any whose flow has a run with the same
/// dedupe key already. Returns how many were new.
pub async fn enqueue_runs<C: ConnectionTrait>(db: &C, runs: Vec<run::ActiveModel>) -> Result<u64> {
    let mut new = 0;
    for statement in enqueue_statements(runs, db.get_database_backend()) {
        new += db.execute_raw(statement).await?.rows_affected();
    }
    Ok(new)
}

/// The statements of `enqueue_runs`, for a caller that runs them itself; each one's count of
/// changed rows is how many of its runs were new.
pub fn enqueue_statements(
    runs: Vec<run::ActiveModel>,
    backend: sea_orm::DatabaseBackend,
) -> Vec<sea_orm::Statement> {
    // About 300 bytes a row as sent.
    crate::store::statement_chunks(runs, backend, 500, |_| 300)
        .into_iter()
        .map(|chunk| {
            let insert = run::Entity::insert_many(chunk)
                .on_conflict_do_nothing_on([run::Column::FlowId, run::Column::DedupeKey])
                .into_query();
            backend.build(&insert)
        })
        .collect()
}

/// Inserts a queued run unless the flow has one with this dedupe key already (a tick another
/// scheduler enqueued, a webhook burst already waiting). Returns the run if it was new.
pub async fn enqueue_run<C: ConnectionTrait>(
    db: &C,
    flow: &flow::Model,
    id: RunId,
    trigger: &str,
    dedupe_key: String,
    scheduled_for: Option<chrono::DateTime<chrono::Utc>>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<run::Model>> {
    let model = queued_run(flow, id.clone(), trigger, dedupe_key, scheduled_for, now);
    if enqueue_runs(db, vec![model]).await? > 0 {
        Ok(run::Entity::find_by_id(id).one(db).await?)
    } else {
        Ok(None)
    }
}
