//! The run state machine: a run is claimed under a lease (one attempt at a time, one run
//! of a flow at a time, a dead worker's run taken over when its lease runs out), kept alive by a heartbeat, and ends an
//! attempt succeeded, retrying (persisted backoff) or dead (the dead letters, which count
//! toward disabling the flow). The sync engine runs the pages in between; statuses and the
//! one "due" predicate live on the run entity.

mod enqueue;
mod together;
mod writer;

use std::time::Duration;

use sea_orm::sea_query::{Alias, Expr, ExprTrait as _, Func, Query};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait,
    PaginatorTrait, QueryFilter, Set,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::connectors::client::{CallError, ErrorClass, NextPage};
use crate::error::{Error, Result};
use crate::ids::{FlowId, RunId};
use crate::runtime::backoff::backoff;
use crate::store::entities::{flow, run};

pub use enqueue::{WEBHOOK_PENDING, enqueue_run, enqueue_runs, enqueue_statements, queued_run};
pub use writer::RunWriter;

/// A flow is disabled after this many runs in a row end in the dead letters.
pub const DISABLE_AFTER_FAILURES: i32 = 5;

/// How long a claim on a run lasts, by default; the attempt's heartbeat renews it. A run
/// whose worker died is taken over after this.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(120);

/// Where a run is: the next page to read and the newest version seen so far.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Checkpoint {
    pub next: Option<NextPage>,
    pub max_version: Option<String>,
    /// Records of the current page sent to a platform that carries writes out later
    /// (Mabang's orders), not confirmed yet: a restart asks after them instead of sending
    /// them again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub awaiting: Vec<String>,
}

impl Checkpoint {
    /// The checkpoint stored on a run; none yet (or unreadable) is the start.
    pub fn of(run: &run::Model) -> Self {
        run.checkpoint
            .clone()
            .and_then(|c| serde_json::from_value(c).ok())
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunReport {
    /// Succeeded, retrying or dead.
    pub status: run::RunStatus,
    pub records_read: i64,
    pub records_written: i64,
    pub error_class: Option<String>,
    pub next_attempt_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The flow's next run was waiting for this one and is due now.
    #[serde(skip)]
    pub released_next: bool,
}

/// A claimed run and its flow.
pub struct Claimed {
    pub run: run::Model,
    pub flow: flow::Model,
}

/// Claims the run for one attempt if it is due (queued, a retry whose time has come, or a
/// dead worker's run whose lease ran out): marks it running under a lease, counts the
/// attempt, and stamps its start. None when it is not this worker's to execute; job delivery
/// is at-least-once, so a second delivery of the same run finds nothing to claim.
pub async fn claim(
    db: &DatabaseConnection,
    run_id: &RunId,
    lease: chrono::Duration,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<Claimed>> {
    // SQLite: the claim alone is one statement, so it commits on its own and holds the
    // database's one write lock for that statement only, where a transaction around it held
    // it for four round trips to the connection's thread. Every worker's claim and end queue
    // for that lock: measured with four workers, a claim took 2.8 ms, mostly waiting.
    if crate::store::is_sqlite(db)
        && let Some(run) = claim_statement(
            run::Column::Id.eq(run_id.clone()),
            lease,
            now,
            db.get_database_backend(),
        )
        .exec_with_returning(db)
        .await?
        .into_iter()
        .next()
    {
        // Read outside the write lock: the lease keeps the run this worker's.
        return with_flow(db, run, now).await.map(Some);
    }
    // Not claimed at once (or PostgreSQL): claim again under the flow's lock, and put the run
    // back if a sibling holds the flow, so that the sibling's end cannot slip in between and
    // miss it (`release_next`).
    let txn = crate::store::begin_write(db).await?;
    let claimed = claim_in(&txn, run_id, lease, now).await?;
    txn.commit().await?;
    Ok(claimed)
}

/// `claim` inside the caller's write transaction (which commits it).
async fn claim_in(
    txn: &sea_orm::DatabaseTransaction,
    run_id: &RunId,
    lease: chrono::Duration,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<Claimed>> {
    // One run of a flow at a time: two would read from the same cursor and write the same
    // records twice. SQLite's write transaction already excludes other claims; on
    // PostgreSQL the flow's run lock does, until this transaction ends.
    lock_runs_of_run(txn, run_id).await?;
    let claimed = claim_statement(
        run::Column::Id.eq(run_id.clone()),
        lease,
        now,
        txn.get_database_backend(),
    )
    .exec_with_returning(txn)
    .await?;
    let Some(claimed) = claimed.into_iter().next() else {
        put_back_behind_sibling(txn, run_id, now).await?;
        return Ok(None);
    };
    // The flow is read before the commit: one connection taken from the pool, not two.
    with_flow(txn, claimed, now).await.map(Some)
}

/// Nothing claimed: finished, running, not due yet, unknown (a second delivery; nothing to
/// do), or due behind a running sibling: then put back, to be handed out again when that one
/// ends (`release_next`), or after a while.
async fn put_back_behind_sibling(
    txn: &sea_orm::DatabaseTransaction,
    run_id: &RunId,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<()> {
    let behind_sibling = run::Entity::find()
        .filter(run::Column::Id.eq(run_id.clone()))
        .filter(run::Entity::due(now))
        .count(txn)
        .await?
        > 0;
    if behind_sibling {
        defer(txn, run_id, now, WAIT_FOR_SIBLING).await?;
    }
    Ok(())
}

/// One statement claims the runs `which` picks that are due and have no sibling of their
/// flow running under a live lease: the claim is on every job's path, and each statement is
/// a round trip inside the write lock (SQLite) or the flow's lock (PostgreSQL). Two runs of
/// one flow in one statement would not see each other: callers pick at most one run a flow.
fn claim_statement(
    which: impl Into<sea_orm::sea_query::SimpleExpr>,
    lease: chrono::Duration,
    now: chrono::DateTime<chrono::Utc>,
    backend: sea_orm::DatabaseBackend,
) -> sea_orm::UpdateMany<run::Entity> {
    run::Entity::update_many()
        .col_expr(run::Column::Status, run::RunStatus::Running.into())
        .col_expr(run::Column::LeaseUntil, Some(now + lease).into())
        // No longer waiting in the queue: if this worker dies, the dispatcher hands the
        // run over as soon as the lease runs out.
        .col_expr(
            run::Column::DispatchedAt,
            Option::<chrono::DateTime<chrono::Utc>>::None.into(),
        )
        .col_expr(
            run::Column::Attempts,
            Expr::col(run::Column::Attempts).add(1),
        )
        .col_expr(
            run::Column::StartedAt,
            Func::coalesce([Expr::col(run::Column::StartedAt), Expr::val(now)]).into(),
        )
        // A started webhook run no longer absorbs new webhooks: they queue the next run.
        .col_expr(
            run::Column::DedupeKey,
            Expr::case(
                Expr::col(run::Column::DedupeKey).eq(WEBHOOK_PENDING),
                // `webhook:` and the run's id, each row its own.
                Expr::cust(r#"'webhook:' || "runs"."id""#),
            )
            .finally(Expr::col(run::Column::DedupeKey))
            .into(),
        )
        .filter(which.into())
        .filter(run::Entity::due_by_key(now, backend))
        .filter(Expr::not_exists(running_sibling(now)))
}

/// The claimed run with its flow.
async fn with_flow(
    db: &impl ConnectionTrait,
    claimed: run::Model,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Claimed> {
    let flow = flow::Entity::find_by_id(claimed.flow_id.clone())
        .one(db)
        .await?
        .ok_or(Error::NotFound("flow"))?;
    record_pickup(&claimed, now);
    Ok(Claimed { run: claimed, flow })
}

fn record_pickup(claimed: &run::Model, now: chrono::DateTime<chrono::Utc>) {
    // Due since it was made, or since its retry time; a dead worker's run is counted from its
    // last due time too (the claim leaves the retry time as it was).
    let due_since = claimed.next_attempt_at.unwrap_or(claimed.created_at);
    metrics::histogram!("synchub_run_pickup_delay_seconds")
        .record(((now - due_since).num_milliseconds().clamp(0, i64::MAX) as f64) / 1000.0);
}

/// Another run of the outer run's flow, running under a live lease.
fn running_sibling(now: chrono::DateTime<chrono::Utc>) -> sea_orm::sea_query::SelectStatement {
    let sibling = Alias::new("sibling");
    Query::select()
        .expr(Expr::val(1))
        .from_as(run::Entity, sibling.clone())
        .and_where(
            Expr::col((sibling.clone(), run::Column::FlowId))
                .equals((run::Entity, run::Column::FlowId)),
        )
        .and_where(
            Expr::col((sibling.clone(), run::Column::Id))
                .ne(Expr::col((run::Entity, run::Column::Id))),
        )
        .and_where(Expr::col((sibling.clone(), run::Column::Status)).eq(run::RunStatus::Running))
        .and_where(Expr::col((sibling, run::Column::LeaseUntil)).gte(now))
        .to_owned()
}

/// What a flow's run lock is keyed by, before the flow's id.
const RUNS_OF: &str = "synchub:runs-of:";

/// PostgreSQL: takes the lock on starting and ending runs of one flow, held until the
/// transaction ends. An advisory lock, not the flow's row: the scheduler claims flow rows
/// with SKIP LOCKED, and a row held by a claim made it pass a due flow over (seen in CI).
/// SQLite's write transaction is the lock already.
async fn lock_runs_of(txn: &sea_orm::DatabaseTransaction, flow: &FlowId) -> Result<()> {
    lock_runs_of_flows(txn, [flow]).await
}

/// The advisory-lock keys of `flows`' runs, once each and in the one order every group takes
/// them (`lock_runs_of_flows`).
fn run_lock_keys<'a>(flows: impl IntoIterator<Item = &'a FlowId>) -> Vec<String> {
    let mut keys: Vec<String> = flows
        .into_iter()
        .map(|flow| format!("{RUNS_OF}{flow}"))
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// `lock_runs_of` for several flows in one statement, always in the flows' order: two
/// transactions that each take several never wait on each other in a circle.
async fn lock_runs_of_flows<'a>(
    txn: &sea_orm::DatabaseTransaction,
    flows: impl IntoIterator<Item = &'a FlowId>,
) -> Result<()> {
    if txn.get_database_backend() != sea_orm::DatabaseBackend::Postgres {
        return Ok(());
    }
    if let Some(statement) = lock_flows_statement(&run_lock_keys(flows)) {
        txn.query_one_raw(statement).await?;
    }
    Ok(())
}

/// PostgreSQL: the statement that takes the run locks `keys` (`run_lock_keys`) in their
/// order; None for none.
fn lock_flows_statement(keys: &[String]) -> Option<sea_orm::Statement> {
    if keys.is_empty() {
        return None;
    }
    // A VALUES list is scanned in the order written, so the locks are taken in that order.
    let rows = (1..=keys.len())
        .map(|n| format!("(${n})"))
        .collect::<Vec<_>>()
        .join(", ");
    Some(sea_orm::Statement::from_sql_and_values(
        sea_orm::DatabaseBackend::Postgres,
        format!(
            "SELECT count(pg_advisory_xact_lock(hashtextextended(k, 0))) FROM (VALUES {rows}) AS keys(k)"
        ),
        keys.iter().map(|key| sea_orm::Value::from(key.clone())),
    ))
}

/// `lock_runs_of` for the flow of a run, read in the same statement that takes the lock.
async fn lock_runs_of_run(txn: &sea_orm::DatabaseTransaction, run_id: &RunId) -> Result<()> {
    if txn.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
        txn.query_one_raw(sea_orm::Statement::from_sql_and_values(
            sea_orm::DatabaseBackend::Postgres,
            format!(
                "SELECT pg_advisory_xact_lock(hashtextextended('{RUNS_OF}' || flow_id, 0))::text \
                 FROM runs WHERE id = $1"
            ),
            [run_id.to_string().into()],
        ))
        .await?;
    }
    Ok(())
}

/// How long a run whose flow is busy waits before it is handed out again, should the running
/// one's end not release it sooner.
const WAIT_FOR_SIBLING: chrono::Duration = chrono::Duration::seconds(5);

/// How long ago a put-back may have been for `release_next` to still find it: the clocks of
/// two processes may differ a little.
const RELEASE_SLACK: chrono::Duration = chrono::Duration::seconds(2);

/// The flow's next due run, put back by `claim` while this one ran, is handed out at once:
/// true when there was one (the caller wakes its dispatcher; PostgreSQL's other processes
/// hear it at commit).
async fn release_next(
    txn: &sea_orm::DatabaseTransaction,
    flow: &flow::Model,
    run_id: &RunId,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<bool> {
    // On PostgreSQL, after a claim that is putting the next run back, never beside it: the
    // claim holds the flow's run lock until it commits, and a release read before its
    // put-back would leave that run waiting out `WAIT_FOR_SIBLING`.
    lock_runs_of(txn, &flow.id).await?;
    let released = release_waiting(txn, vec![flow.id.clone()], vec![run_id.clone()], now).await?;
    Ok(!released.is_empty())
}

/// `release_next` for the flows of runs ending together, their locks held: the flows whose
/// next run was handed out.
async fn release_waiting(
    txn: &sea_orm::DatabaseTransaction,
    flows: Vec<FlowId>,
    ended: Vec<RunId>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<std::collections::HashSet<FlowId>> {
    let released: std::collections::HashSet<FlowId> = release_statement(flows, ended, now)
        .exec_with_returning(txn)
        .await?
        .into_iter()
        .map(|run| run.flow_id)
        .collect();
    if !released.is_empty() && txn.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
        notify_released(txn).await?;
    }
    Ok(released)
}

/// Tells PostgreSQL's other processes, at commit, that runs were handed out (SQLite's are
/// this one).
async fn notify_released(txn: &sea_orm::DatabaseTransaction) -> Result<()> {
    txn.execute_unprepared(&format!(
        "SELECT pg_notify('{}', '')",
        crate::runtime::RUNS_CHANNEL
    ))
    .await?;
    Ok(())
}

/// Hands out the due runs of `flows` that `claim` put back, but for `ended` (those ending).
fn release_statement(
    flows: Vec<FlowId>,
    ended: Vec<RunId>,
    now: chrono::DateTime<chrono::Utc>,
) -> sea_orm::UpdateMany<run::Entity> {
    run::Entity::update_many()
        .col_expr(
            run::Column::DispatchedAt,
            Option::<chrono::DateTime<chrono::Utc>>::None.into(),
        )
        .filter(run::Column::FlowId.is_in(flows))
        .filter(run::Column::Id.is_not_in(ended))
        .filter(run::Column::Status.ne(run::RunStatus::Running))
        .filter(run::Entity::due(now))
        // Only a run `claim` put back (`defer` with `WAIT_FOR_SIBLING`); one still waiting
        // in the queue is on its way already, and releasing it would push it twice.
        .filter(
            run::Column::DispatchedAt
                .lte(now - run::REDISPATCH_AFTER + WAIT_FOR_SIBLING + RELEASE_SLACK),
        )
}

/// Puts a due run back without claiming it (its version's worker slots are all in use): it
/// is handed to the queue again after `wait`, and no attempt is counted.
pub async fn defer(
    db: &impl sea_orm::ConnectionTrait,
    run_id: &RunId,
    now: chrono::DateTime<chrono::Utc>,
    wait: chrono::Duration,
) -> Result<()> {
    defer_statement(run::Column::Id.eq(run_id.clone()), now, wait)
        .exec(db)
        .await?;
    Ok(())
}

/// `defer` of the runs `which` picks, in one statement.
fn defer_statement(
    which: impl Into<sea_orm::sea_query::SimpleExpr>,
    now: chrono::DateTime<chrono::Utc>,
    wait: chrono::Duration,
) -> sea_orm::UpdateMany<run::Entity> {
    run::Entity::update_many()
        .col_expr(
            run::Column::DispatchedAt,
            Some(now - run::REDISPATCH_AFTER + wait).into(),
        )
        .filter(which.into())
}

/// Renews the run's lease every third of its length until aborted: the attempt's heartbeat.
pub fn keep_lease(
    db: DatabaseConnection,
    run_id: RunId,
    lease: chrono::Duration,
    clock: crate::clock::Clock,
) -> tokio::task::JoinHandle<()> {
    let every = lease.to_std().unwrap_or(DEFAULT_LEASE) / 3;
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let renewed = run::Entity::update_many()
                .col_expr(run::Column::LeaseUntil, Some(clock.now() + lease).into())
                .filter(run::Column::Id.eq(run_id.clone()))
                .filter(run::Column::Status.eq(run::RunStatus::Running))
                .exec(&db)
                .await;
            if let Err(err) = renewed {
                tracing::warn!(run_id = %run_id, error = %err, "could not renew the run's lease");
            }
        }
    })
}

/// Ends the run as succeeded; the flow's cursor moves to the newest version the run
/// committed, in the same transaction.
pub async fn succeed(
    db: &DatabaseConnection,
    flow: &flow::Model,
    run_id: &RunId,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<RunReport> {
    let txn = crate::store::begin_write(db).await?;
    // A group of one; the flow's lock first, as a group takes it.
    lock_runs_of(&txn, &flow.id).await?;
    let report =
        together::succeed_in_group(&txn, &[together::SuccessRequest { flow, run_id, now }])
            .await?
            .pop()
            .ok_or(Error::NotFound("run"))?;
    txn.commit().await?;
    Ok(report)
}

/// Ends the runs as succeeded, read back in the same statement: the checkpoint each returns
/// holds the newest version its run committed.
fn success_statement(
    run_ids: Vec<RunId>,
    now: chrono::DateTime<chrono::Utc>,
) -> sea_orm::UpdateMany<run::Entity> {
    run::Entity::update_many()
        .col_expr(run::Column::Status, run::RunStatus::Succeeded.into())
        .col_expr(run::Column::FinishedAt, Some(now).into())
        .col_expr(run::Column::ErrorClass, Option::<String>::None.into())
        .col_expr(run::Column::ErrorMessage, Option::<String>::None.into())
        .col_expr(
            run::Column::NextAttemptAt,
            Option::<chrono::DateTime<chrono::Utc>>::None.into(),
        )
        .col_expr(
            run::Column::LeaseUntil,
            Option::<chrono::DateTime<chrono::Utc>>::None.into(),
        )
        .filter(run::Column::Id.is_in(run_ids))
}

/// The cursor moves only with the records it covers, all committed by the run's end.
async fn move_cursor(
    txn: &sea_orm::DatabaseTransaction,
    flow: &FlowId,
    version: String,
) -> Result<()> {
    move_cursor_statement(flow, version).exec(txn).await?;
    Ok(())
}

/// The key of a flow's cursor: the newest version its runs committed, which the next run
/// asks the source for changes from (`sync::engine`).
pub(crate) const CURSOR_KEY: &str = "updated_at_min";

fn move_cursor_statement(flow: &FlowId, version: String) -> sea_orm::UpdateMany<flow::Entity> {
    flow::Entity::update_many()
        .col_expr(
            flow::Column::Cursor,
            Some(json!({ CURSOR_KEY: version })).into(),
        )
        .col_expr(flow::Column::ConsecutiveFailures, 0.into())
        .filter(flow::Column::Id.eq(flow.clone()))
}

/// Records a failed attempt: a transient failure with attempts left is rescheduled in
/// storage after a backoff (retrying); anything else ends the run in the dead letters and
/// counts toward disabling its flow. Either way an alert event says so, in the same
/// transaction.
pub async fn fail(
    db: &DatabaseConnection,
    flow: &flow::Model,
    run_id: &RunId,
    failure: &CallError,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<RunReport> {
    let txn = crate::store::begin_write(db).await?;
    // The flow's lock before the run's row, as a claim takes them: the other way round, a
    // claim taking over this run (its lease run out) and this end would wait on each other.
    lock_runs_of(&txn, &flow.id).await?;
    let report = fail_in(&txn, flow, run_id, failure, now).await?;
    txn.commit().await?;
    log_failure(run_id, failure, &report);
    Ok(report)
}

/// `fail` inside the caller's transaction (which commits it, then calls `log_failure`).
async fn fail_in(
    txn: &sea_orm::DatabaseTransaction,
    flow: &flow::Model,
    run_id: &RunId,
    failure: &CallError,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<RunReport> {
    let run = run::Entity::find_by_id(run_id.clone())
        .one(txn)
        .await?
        .ok_or(Error::NotFound("run"))?;
    let retry = failure.class.is_transient() && run.attempts < flow.max_attempts;
    let mut active: run::ActiveModel = run.clone().into();
    active.lease_until = Set(None);
    active.dispatched_at = Set(None);
    active.error_class = Set(Some(failure.class.as_str().to_string()));
    active.error_message = Set(Some(failure.message.chars().take(2000).collect()));
    if retry {
        let delay = backoff(
            Ord::max(run.attempts, 1) as u32,
            Duration::from_secs(Ord::max(flow.retry_base_seconds, 1) as u64),
            Duration::from_secs(Ord::max(flow.retry_cap_seconds, 1) as u64),
        );
        active.status = Set(run::RunStatus::Retrying);
        active.next_attempt_at = Set(Some(
            now + chrono::Duration::from_std(delay).unwrap_or_default(),
        ));
        let kind = match failure.class {
            ErrorClass::RateLimited => "rate_limited",
            _ => "platform_errors",
        };
        crate::alerts::events::emit(
            txn,
            crate::alerts::events::Event {
                at: now,
                tenant: &flow.tenant_id,
                kind,
                severity: crate::alerts::message::Severity::Warning,
                group_key: flow.id.to_string(),
                connection_id: Some(flow.source_connection_id.to_string()),
                flow_id: Some(flow.id.to_string()),
                message: format!(
                    "attempt {} of a run of {} failed ({}): {}",
                    run.attempts,
                    flow.name,
                    failure.class.as_str(),
                    failure.message
                ),
                details: json!({"run_id": run_id.to_string(), "error_class": failure.class.as_str()}),
            },
        )
        .await?;
    } else {
        active.status = Set(run::RunStatus::Dead);
        active.finished_at = Set(Some(now));
        active.next_attempt_at = Set(None);
        let failures = flow.consecutive_failures + 1;
        let mut flow_update: flow::ActiveModel = flow.clone().into();
        flow_update.consecutive_failures = Set(failures);
        if failures >= DISABLE_AFTER_FAILURES {
            flow_update.enabled = Set(false);
            flow_update.next_run_at = Set(None);
            flow_update.disabled_reason = Set(Some(format!(
                "disabled after {failures} failed runs in a row; last error ({}): {}",
                failure.class.as_str(),
                failure.message.chars().take(300).collect::<String>()
            )));
        }
        let disabled = failures >= DISABLE_AFTER_FAILURES;
        flow_update.update(txn).await?;
        let (kind, severity, message) = if disabled {
            (
                "flow_disabled",
                crate::alerts::message::Severity::Critical,
                format!(
                    "flow {} was disabled after {failures} failed runs in a row",
                    flow.name
                ),
            )
        } else {
            (
                "run_failed",
                crate::alerts::message::Severity::Warning,
                format!(
                    "a run of {} failed after {} attempt(s)",
                    flow.name, run.attempts
                ),
            )
        };
        crate::alerts::events::emit(
            txn,
            crate::alerts::events::Event {
                at: now,
                tenant: &flow.tenant_id,
                kind,
                severity,
                group_key: flow.id.to_string(),
                connection_id: Some(flow.source_connection_id.to_string()),
                flow_id: Some(flow.id.to_string()),
                message: format!("{message} ({}): {}", failure.class.as_str(), failure.message),
                details: json!({"run_id": run_id.to_string(), "error_class": failure.class.as_str()}),
            },
        )
        .await?;
    }
    if failure.token_exchange {
        // Login with Amazon would not trade the refresh token: every call of the flow
        // fails until the seller authorises again (refused) or the endpoint answers.
        let refused = matches!(failure.class, ErrorClass::Auth | ErrorClass::Forbidden);
        crate::alerts::events::emit(
            txn,
            crate::alerts::events::Event {
                at: now,
                tenant: &flow.tenant_id,
                kind: "credential_refresh_failed",
                severity: if refused {
                    crate::alerts::message::Severity::Critical
                } else {
                    crate::alerts::message::Severity::Warning
                },
                group_key: format!("{}:refresh", flow.id),
                connection_id: None,
                flow_id: Some(flow.id.to_string()),
                message: format!(
                    "a run of {} could not get an access token ({}): {}",
                    flow.name,
                    failure.class.as_str(),
                    failure.message
                ),
                details: json!({"run_id": run_id.to_string(), "error_class": failure.class.as_str()}),
            },
        )
        .await?;
    }
    let run = active.update(txn).await?;
    let released = release_next(txn, flow, run_id, now).await?;
    Ok(RunReport {
        released_next: released,
        ..report(&run)
    })
}

fn log_failure(run_id: &RunId, failure: &CallError, report: &RunReport) {
    tracing::warn!(run_id = %run_id, class = failure.class.as_str(), status = %report.status, "run attempt failed");
}

fn report(run: &run::Model) -> RunReport {
    RunReport {
        status: run.status,
        records_read: run.records_read,
        records_written: run.records_written,
        error_class: run.error_class.clone(),
        next_attempt_at: run.next_attempt_at,
        released_next: false,
    }
}

/// A flow that is in no database yet, for tests to insert.
#[cfg(test)]
pub(crate) fn test_flow(now: chrono::DateTime<chrono::Utc>) -> flow::Model {
    flow::Model {
        id: FlowId::generate(),
        tenant_id: crate::ids::TenantId::generate(),
        name: "orders".into(),
        stream: "orders".into(),
        source_connection_id: crate::ids::ConnectionId::generate(),
        destination_connection_id: crate::ids::ConnectionId::generate(),
        schedule: None,
        timezone: "UTC".into(),
        on_webhook: false,
        enabled: true,
        catch_up: false,
        max_attempts: 3,
        retry_base_seconds: 1,
        retry_cap_seconds: 60,
        cursor: None,
        next_run_at: None,
        consecutive_failures: 0,
        disabled_reason: None,
        created_at: now,
        updated_at: now,
    }
}
