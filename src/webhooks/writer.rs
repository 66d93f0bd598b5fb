//! Group commit. Every verified webhook waits for a durable commit before its 2xx; one writer
//! task gathers whatever events are queued into one transaction, so a disk flush serves
//! hundreds of requests instead of one. (Refusals are tallied apart: `rejections`.)
//!
//! One batch commits at a time. Measured on PostgreSQL with two to four at once, the batches
//! shrank to a few events each and the CPU a request rose by half (12,000/s beside 16,000/s
//! in `bench webhooks`); SQLite has one writer anyway. The writer keeps a connection of its
//! own on either database (`store::connect_event_writer`). On SQLite a batch's flush to disk
//! runs after its commit, beside the next batch's (`EventStore::FlushAfterCommit`,
//! `store::AfterFlush`). On PostgreSQL a batch whose events fit one statement (about 1 MiB)
//! is that statement alone, its events' INSERT together with the read of the flows they
//! trigger, committed in the trip that sends it (one more when it queues runs); larger
//! batches, and every batch on SQLite, run their statements in one transaction (on SQLite
//! one that takes the write lock first).

use std::time::Duration;

use sea_orm::sea_query::{
    CommonTableExpression, PostgresQueryBuilder, SqliteQueryBuilder, WithClause,
};
use sea_orm::{
    ActiveValue, ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseConnection, EntityTrait,
    FromQueryResult, QueryFilter, QueryOrder, QueryTrait, Select, Statement, TryInsert,
};
use tokio::sync::{mpsc, oneshot};

use crate::ids::{ConnectionId, RunId};
use crate::runtime::RunsSignal;
use crate::store::EventStore;
use crate::store::entities::{flow, webhook_event};

const QUEUE_CAPACITY: usize = 16_384;

/// Rows per INSERT statement (SQLite allows 32,766 bound values; a row binds 9).
const MAX_ROWS_PER_STATEMENT: usize = 512;

struct Command(Box<webhook_event::ActiveModel>, Waiter);

type Waiter = oneshot::Sender<Result<(), String>>;

#[derive(Clone)]
pub struct EventWriter {
    tx: mpsc::Sender<Command>,
}

impl EventWriter {
    /// Starts the writer task; it ends when every handle is dropped and the queue is drained.
    pub fn start(
        store: EventStore,
        max_batch: usize,
        linger: Duration,
        runs: RunsSignal,
        clock: crate::clock::Clock,
    ) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        tokio::spawn(run(store, rx, max_batch, linger, runs, clock));
        Self { tx }
    }

    /// Resolves once the event is committed and on disk (or was a duplicate of one).
    pub async fn insert(&self, event: webhook_event::ActiveModel) -> Result<(), String> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Command(Box::new(event), done))
            .await
            .map_err(|_| "the event writer has stopped".to_string())?;
        wait.await
            .map_err(|_| "the event writer has stopped".to_string())?
    }
}

async fn run(
    store: EventStore,
    mut rx: mpsc::Receiver<Command>,
    max_batch: usize,
    linger: Duration,
    runs: RunsSignal,
    clock: crate::clock::Clock,
) {
    let (db, flusher) = match store {
        EventStore::Durable(db) => (db, None),
        EventStore::FlushAfterCommit { db, wal } => {
            (db, Some(crate::store::AfterFlush::start(wal)))
        }
    };
    let mut batch = Vec::with_capacity(max_batch);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        if !linger.is_zero() {
            tokio::time::sleep(linger).await;
        }
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(cmd) => batch.push(cmd),
                Err(_) => break,
            }
        }
        let committed = commit(&db, std::mem::take(&mut batch), clock.now()).await;
        match &flusher {
            // The next batch begins while this one's flush runs.
            Some(flusher) => {
                let runs = runs.clone();
                flusher.then(move |flushed| {
                    committed.answer(
                        flushed.map_err(|_| "the event could not be flushed to disk"),
                        &runs,
                    )
                });
            }
            None => committed.answer(Ok(()), &runs),
        }
    }
}

/// A batch's outcome, answered once it is durable.
struct Committed {
    outcomes: Vec<(Waiter, Result<(), String>)>,
    queued_runs: bool,
}

impl Committed {
    /// Answers each event; `durable` is whether the flush after the commit (if any) worked.
    /// A queued run wakes the dispatcher only now, with the event it was queued for on disk.
    fn answer(self, durable: Result<(), &str>, runs: &RunsSignal) {
        for (done, outcome) in self.outcomes {
            let _ = done.send(match durable {
                Ok(()) => outcome,
                Err(why) => Err(why.to_string()),
            });
        }
        if self.queued_runs && durable.is_ok() {
            runs.notify();
        }
    }
}

/// Commits a batch; each event's outcome, and whether it queued a run.
async fn commit(
    db: &DatabaseConnection,
    batch: Vec<Command>,
    now: chrono::DateTime<chrono::Utc>,
) -> Committed {
    let mut batch: Vec<_> = batch
        .into_iter()
        .map(|Command(event, done)| (*event, done))
        .collect();
    // Batches of several processes (the `api` role scaled out) take the dedupe index's row
    // locks, and the pending runs', in one order: two holding the same platform's retries
    // cannot deadlock on PostgreSQL.
    batch.sort_by(|(a, _), (b, _)| dedupe_order(a).cmp(&dedupe_order(b)));
    let (events, waiters): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
    metrics::histogram!("synchub_webhook_commit_batch_size").record(events.len() as f64);
    match write(db, events.clone(), now).await {
        Ok(queued_runs) => Committed {
            outcomes: waiters.into_iter().map(|done| (done, Ok(()))).collect(),
            queued_runs,
        },
        Err(err) => {
            // One bad row must not fail its neighbours: retry each event on its own.
            tracing::warn!(error = %err, size = events.len(), "group commit failed; retrying events one by one");
            let mut queued_runs = false;
            let mut outcomes = Vec::with_capacity(waiters.len());
            for (event, done) in events.into_iter().zip(waiters) {
                let result = write(db, vec![event], now)
                    .await
                    .map(|queued| queued_runs |= queued)
                    .map_err(|e| e.to_string());
                if let Err(e) = &result {
                    tracing::error!(error = %e, "webhook event could not be stored");
                }
                outcomes.push((done, result));
            }
            Committed {
                outcomes,
                queued_runs,
            }
        }
    }
}

fn dedupe_order(event: &webhook_event::ActiveModel) -> (Option<&ConnectionId>, Option<&String>) {
    let connection = match &event.connection_id {
        ActiveValue::Set(id) => Some(id),
        _ => None,
    };
    let key = match &event.dedupe_key {
        ActiveValue::Set(key) => Some(key),
        _ => None,
    };
    (connection, key)
}

async fn write(
    db: &DatabaseConnection,
    events: Vec<webhook_event::ActiveModel>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<bool, sea_orm::DbErr> {
    let sources: Vec<ConnectionId> = {
        let mut ids: Vec<ConnectionId> = events
            .iter()
            .filter_map(|e| match &e.connection_id {
                ActiveValue::Set(id) => Some(id.clone()),
                _ => None,
            })
            .collect();
        ids.sort();
        ids.dedup();
        ids
    };
    let backend = db.get_database_backend();
    let mut inserts: Vec<_> = statement_chunks(events, backend)
        .into_iter()
        .map(|chunk| {
            webhook_event::Entity::insert_many(chunk).on_conflict_do_nothing_on([
                webhook_event::Column::ConnectionId,
                webhook_event::Column::DedupeKey,
            ])
        })
        .collect();
    let Some(last) = inserts.pop() else {
        return Ok(false);
    };
    // A verified webhook triggers an incremental run of each flow that asks for it, and a
    // burst coalesces into the one run still waiting. The flows are read in the round trip of
    // the last INSERT. Every statement is built here, before any write lock is taken.
    let triggered = flow::Entity::find()
        .filter(flow::Column::SourceConnectionId.is_in(sources))
        .filter(flow::Column::OnWebhook.eq(true))
        .filter(flow::Column::Enabled.eq(true))
        .order_by_asc(flow::Column::Id);
    let batch = Batch {
        inserts,
        last,
        triggered,
        now,
    };
    match backend {
        // A batch whose events fit one statement sends it alone: it commits as it runs,
        // flush included, in the trip that sends it, so a batch that queues no run is one
        // trip instead of three (BEGIN and COMMIT were trips of their own). The events may
        // then be on disk before their runs are; nobody has been answered yet, so a crash
        // between the two makes the platform send the webhook again, and the duplicate,
        // stored once, queues the runs. Events in several statements (large bodies) stay in
        // one transaction: one flush for all of them rather than one each.
        DatabaseBackend::Postgres if batch.inserts.is_empty() => batch.store(db).await,
        // The events and their runs in one transaction that takes the write lock first.
        _ => {
            let txn = crate::store::begin_write(db).await?;
            let queued_runs = batch.store(&txn).await?;
            txn.commit().await?;
            Ok(queued_runs)
        }
    }
}

/// A batch's statements, ready to run: the events' INSERTs (the flows that trigger read in
/// the last one's trip) and the runs they queue.
struct Batch {
    inserts: Vec<TryInsert<webhook_event::ActiveModel>>,
    last: TryInsert<webhook_event::ActiveModel>,
    triggered: Select<flow::Entity>,
    now: chrono::DateTime<chrono::Utc>,
}

impl Batch {
    /// Stores the events and queues their runs; whether a run was queued.
    async fn store<C: ConnectionTrait>(self, conn: &C) -> Result<bool, sea_orm::DbErr> {
        let backend = conn.get_database_backend();
        for insert in self.inserts {
            insert.exec_without_returning(conn).await?;
        }
        let flows = conn
            .query_all_raw(insert_then_select(self.last, self.triggered, backend))
            .await?
            .iter()
            .map(|row| flow::Model::from_query_result(row, ""))
            .collect::<Result<Vec<_>, _>>()?;
        let runs: Vec<_> = flows
            .iter()
            .map(|flow| {
                crate::runs::queued_run(
                    flow,
                    RunId::generate(),
                    "webhook",
                    crate::runs::WEBHOOK_PENDING.to_string(),
                    None,
                    self.now,
                )
            })
            .collect();
        // In the flows' order, one statement: batches of several processes lock alike.
        Ok(crate::runs::enqueue_runs(conn, runs)
            .await
            .map_err(|e| sea_orm::DbErr::Custom(e.to_string()))?
            > 0)
    }
}

/// One statement that runs `insert` and then answers `select`, so both take one round trip
/// to the database: a data-modifying WITH on PostgreSQL (run to completion whether or not
/// the query reads it), two statements in one string on SQLite (which sqlx runs in turn,
/// binding each its share of the values).
fn insert_then_select(
    insert: TryInsert<webhook_event::ActiveModel>,
    select: Select<flow::Entity>,
    backend: DatabaseBackend,
) -> Statement {
    match backend {
        DatabaseBackend::Postgres => {
            let stored = CommonTableExpression::new()
                .query(insert.into_query())
                .table_name("stored")
                .to_owned();
            let (sql, values) = select
                .into_query()
                .with(WithClause::new().cte(stored).to_owned())
                .build(PostgresQueryBuilder);
            Statement::from_sql_and_values(backend, sql, values)
        }
        _ => {
            let (insert_sql, mut values) = insert.into_query().build(SqliteQueryBuilder);
            let (select_sql, select_values) = select.into_query().build(SqliteQueryBuilder);
            values.0.extend(select_values.0);
            Statement::from_sql_and_values(backend, format!("{insert_sql}; {select_sql}"), values)
        }
    }
}

/// Splits a batch into INSERT statements small enough for the backend.
fn statement_chunks(
    events: Vec<webhook_event::ActiveModel>,
    backend: DatabaseBackend,
) -> Vec<Vec<webhook_event::ActiveModel>> {
    crate::store::statement_chunks(
        events,
        backend,
        MAX_ROWS_PER_STATEMENT,
        |event| match &event.body {
            ActiveValue::Set(body) => body.len() + 256,
            _ => 256,
        },
    )
}

#[cfg(test)]
mod tests {
    use sea_orm::{PaginatorTrait, Set};

    use super::*;

    fn event(body_len: usize) -> webhook_event::ActiveModel {
        webhook_event::ActiveModel {
            body: Set(vec![0; body_len]),
            ..Default::default()
        }
    }

    /// A flow that runs on webhooks, stored.
    async fn webhook_flow(
        db: &DatabaseConnection,
        now: chrono::DateTime<chrono::Utc>,
    ) -> flow::Model {
        let flow = flow::Model {
            on_webhook: true,
            ..crate::runs::test_flow(now)
        };
        flow::Entity::insert(flow::ActiveModel::from(flow.clone()))
            .exec(db)
            .await
            .unwrap();
        flow
    }

    /// A delivery to `connection` of the platform's event `key`, for `flow`'s tenant.
    fn delivery(
        flow: &flow::Model,
        connection: &ConnectionId,
        key: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> webhook_event::ActiveModel {
        webhook_event::ActiveModel {
            id: Set(crate::ids::EventId::generate()),
            tenant_id: Set(flow.tenant_id.clone()),
            connection_id: Set(connection.clone()),
            dedupe_key: Set(key.to_string()),
            platform_event_id: Set(None),
            topic: Set(None),
            content_type: Set(None),
            body: Set(b"{}".to_vec()),
            received_at: Set(now),
        }
    }

    /// On a store that flushes after the commit, an event is answered with the flush's
    /// outcome: committed but not on disk is not stored, whatever the commit said.
    #[tokio::test]
    async fn an_event_is_acknowledged_only_once_its_wal_is_flushed() {
        use crate::store::WalFlush;
        let (dir, db) = crate::store::scratch_sqlite().await;
        crate::store::migrate(&db).await.unwrap();
        let writer = |wal: WalFlush| {
            EventWriter::start(
                EventStore::FlushAfterCommit {
                    db: db.clone(),
                    wal,
                },
                64,
                Duration::ZERO,
                RunsSignal::new(),
                crate::clock::Clock::system(),
            )
        };
        let stored = |key: &str| webhook_event::ActiveModel {
            id: Set(crate::ids::EventId::generate()),
            tenant_id: Set(crate::ids::TenantId::generate()),
            connection_id: Set(ConnectionId::generate()),
            dedupe_key: Set(key.to_string()),
            platform_event_id: Set(None),
            topic: Set(None),
            content_type: Set(None),
            body: Set(b"{}".to_vec()),
            received_at: Set(chrono::Utc::now()),
        };

        let flushed = writer(WalFlush::of(&db).await.unwrap());
        assert_eq!(flushed.insert(stored("id:1")).await, Ok(()));

        let unflushable = writer(WalFlush::at(dir.path().join("elsewhere-wal")));
        let answer = unflushable.insert(stored("id:2")).await;
        assert!(answer.is_err(), "{answer:?}");
        // The commit itself went through; only the answer depends on the flush.
        assert_eq!(webhook_event::Entity::find().count(&db).await.unwrap(), 2);
    }

    /// The batch's INSERT and the read of the flows it triggers share a statement: on each
    /// database both happen (events stored once, a run queued for the flow that runs on
    /// webhooks), and a later batch coalesces into the run still waiting.
    #[tokio::test]
    async fn a_batch_stores_its_events_and_queues_the_runs_it_triggers() {
        use crate::store::entities::run;
        crate::bench::fixture::on_each_database(|db, url| async move {
            let now = chrono::Utc::now();
            let flow = webhook_flow(&db, now).await;
            let stored =
                |connection: &ConnectionId, key: &str| delivery(&flow, connection, key, now);
            let source = &flow.source_connection_id;
            let other = ConnectionId::generate();
            let batch = vec![
                stored(source, "id:1"),
                stored(source, "id:2"),
                stored(source, "id:1"),
                stored(&other, "id:1"),
            ];
            assert!(
                write(&db, batch, now).await.unwrap(),
                "{url}: a run is queued"
            );
            assert!(
                !write(&db, vec![stored(source, "id:3")], now).await.unwrap(),
                "{url}: the next webhook joins the run still waiting"
            );
            assert_eq!(
                webhook_event::Entity::find().count(&db).await.unwrap(),
                4,
                "{url}: each event once"
            );
            let runs = run::Entity::find().all(&db).await.unwrap();
            assert_eq!(runs.len(), 1, "{url}");
            assert_eq!(runs[0].flow_id, flow.id);
            assert_eq!(runs[0].dedupe_key, crate::runs::WEBHOOK_PENDING);
        })
        .await;
    }

    /// On PostgreSQL a batch's events commit before the runs they queue. Should the process
    /// die between the two, nobody was answered: the platform sends the webhook again, and
    /// the duplicate, not stored a second time, still queues the run.
    #[tokio::test]
    async fn a_webhook_sent_again_queues_the_run_its_first_delivery_did_not() {
        use crate::store::entities::run;
        crate::bench::fixture::on_each_database(|db, url| async move {
            let now = chrono::Utc::now();
            let flow = webhook_flow(&db, now).await;
            let again = || delivery(&flow, &flow.source_connection_id, "id:1", now);
            // The first delivery's events committed; its runs did not.
            webhook_event::Entity::insert(again())
                .exec_without_returning(&db)
                .await
                .unwrap();

            assert!(
                write(&db, vec![again()], now).await.unwrap(),
                "{url}: the delivery again queues the run"
            );
            assert_eq!(
                webhook_event::Entity::find().count(&db).await.unwrap(),
                1,
                "{url}: the event once"
            );
            assert_eq!(run::Entity::find().count(&db).await.unwrap(), 1, "{url}");
        })
        .await;
    }

    #[test]
    fn postgres_statements_stay_small_and_sqlite_ones_large() {
        let sizes = |chunks: Vec<Vec<webhook_event::ActiveModel>>| {
            chunks.iter().map(Vec::len).collect::<Vec<_>>()
        };
        let batch = || (0..40).map(|_| event(100_000)).collect::<Vec<_>>();
        assert_eq!(
            sizes(statement_chunks(batch(), DatabaseBackend::Postgres)),
            [10, 10, 10, 10]
        );
        assert_eq!(
            sizes(statement_chunks(batch(), DatabaseBackend::Sqlite)),
            [40]
        );
        assert_eq!(
            sizes(statement_chunks(
                vec![event(1 << 20)],
                DatabaseBackend::Postgres
            )),
            [1],
            "a large event still goes"
        );
        assert_eq!(
            sizes(statement_chunks(
                (0..600).map(|_| event(1)).collect(),
                DatabaseBackend::Sqlite
            )),
            [512, 88]
        );
    }
}
