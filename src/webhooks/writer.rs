//! Group commit. Every verified webhook waits for a durable commit before its 2xx; one writer
//! task gathers whatever events are queued into one transaction, so a disk flush serves
//! hundreds of requests instead of one. (Refusals are tallied apart: `rejections`.)
//!
//! One batch commits at a time. Measured on PostgreSQL with two to four at once, the batches
//! shrank to a few events each and the CPU a request rose by half (12,000/s beside 16,000/s
//! in `bench webhooks`); SQLite has one writer anyway. The writer keeps a connection of its
//! own on either database (`store::connect_event_writer`; on PostgreSQL kept out of its pool,
//! `store::KeptConnection`, so no batch waits for sqlx's check of a connection given back to
//! a pool). On SQLite a batch's flush to disk
//! runs after its commit, beside the next batch's (`EventStore::FlushAfterCommit`,
//! `store::AfterFlush`). On PostgreSQL a batch whose events fit one statement (about 1 MiB)
//! is that statement alone, its events' INSERT together with the read of the flows they
//! trigger, committed in the trip that sends it (one more when it queues runs); larger
//! batches, and every batch on SQLite, run their statements in one transaction (on SQLite
//! one that takes the write lock first). On PostgreSQL a batch of one statement is first a
//! plain INSERT, written again skipping duplicates only if it met one (`OnDuplicate`).

use std::time::Duration;

use sea_orm::sea_query::{
    CommonTableExpression, InsertStatement, OnConflict, PostgresQueryBuilder, SqliteQueryBuilder,
    WithClause,
};
use sea_orm::sqlx::PgConnection;
use sea_orm::{
    ActiveValue, ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseConnection, EntityTrait,
    FromQueryResult, QueryFilter, QueryOrder, QueryResult, QueryTrait, Select, Statement,
};
use tokio::sync::{mpsc, oneshot};

use crate::ids::{ConnectionId, RunId};
use crate::runtime::RunsSignal;
use crate::store::entities::{flow, webhook_event};
use crate::store::{EventStore, KeptConnection, kept};

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
    let (mut sink, flusher) = match store {
        EventStore::Durable(db) => (Sink::new(db), None),
        EventStore::FlushAfterCommit { db, wal } => {
            (Sink::Pool(db), Some(crate::store::AfterFlush::start(wal)))
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
        let committed = commit(&mut sink, std::mem::take(&mut batch), clock.now()).await;
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

/// Where the batches go.
enum Sink {
    /// A pool of the writer's own (SQLite), or the shared pool of a process that ingests no
    /// webhooks; each batch a transaction that takes the write lock first.
    Pool(DatabaseConnection),
    /// PostgreSQL: a connection out of the writer's pool for good, so that no batch waits for
    /// the check sqlx makes of a connection given back to a pool (a round trip of its own
    /// after every batch; `store::kept`).
    Kept {
        conn: KeptConnection,
        /// Batches still to be written skipping duplicates from the start, counted down
        /// after one met a duplicate (`OnDuplicate`).
        wary_batches: u32,
    },
}

/// Batches written skipping duplicates from the start after one met a duplicate: a platform
/// that retries a burst (after an outage of ours, say) sends many, and each batch of plain
/// INSERTs would then fail once before it is written. About a second at full load.
const WARY_BATCHES_AFTER_A_DUPLICATE: u32 = 256;

/// How a batch's INSERT meets an event already stored.
#[derive(Clone, Copy, Debug, PartialEq)]
enum OnDuplicate {
    /// ON CONFLICT DO NOTHING: the duplicate is skipped. PostgreSQL then probes the dedupe
    /// index for every row before it inserts it and again as it inserts it: 18 % of the
    /// writer backend's CPU in `perf` of `bench webhooks`.
    Skip,
    /// A plain INSERT, which checks the dedupe index once, as it inserts: a duplicate fails
    /// the statement, stores nothing, and the batch is written again skipping duplicates.
    /// Only for a batch that is one statement on its own (autocommitted, so the failure
    /// leaves no transaction behind and the connection stays usable).
    Fail,
}

impl Sink {
    fn new(db: DatabaseConnection) -> Self {
        match db.get_database_backend() {
            DatabaseBackend::Postgres => Self::Kept {
                conn: KeptConnection::new(db.get_postgres_connection_pool().clone()),
                wary_batches: 0,
            },
            _ => Self::Pool(db),
        }
    }

    fn backend(&self) -> DatabaseBackend {
        match self {
            Self::Pool(db) => db.get_database_backend(),
            Self::Kept { .. } => DatabaseBackend::Postgres,
        }
    }

    /// How the next batch is first written. On SQLite a plain INSERT would gain nothing: it
    /// checks the unique index once either way.
    fn first_try(&mut self) -> OnDuplicate {
        match self {
            Self::Kept { wary_batches, .. } if *wary_batches > 0 => {
                *wary_batches -= 1;
                OnDuplicate::Skip
            }
            Self::Kept { .. } => OnDuplicate::Fail,
            Self::Pool(_) => OnDuplicate::Skip,
        }
    }

    fn met_a_duplicate(&mut self) {
        if let Self::Kept { wary_batches, .. } = self {
            *wary_batches = WARY_BATCHES_AFTER_A_DUPLICATE;
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
    sink: &mut Sink,
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
    match write(sink, &events, now).await {
        Ok(queued_runs) => Committed {
            outcomes: waiters.into_iter().map(|done| (done, Ok(()))).collect(),
            queued_runs,
        },
        Err(err) => {
            // One bad row must not fail its neighbours: retry each event on its own.
            tracing::warn!(error = %err, size = events.len(), "group commit failed; retrying events one by one");
            let mut queued_runs = false;
            let mut outcomes = Vec::with_capacity(waiters.len());
            for (event, done) in events.iter().zip(waiters) {
                let result = write(sink, std::slice::from_ref(event), now)
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

/// Stores the events (each once, a duplicate skipped) and queues the runs they trigger;
/// whether a run was queued. Each try builds its statements from a copy of the events.
async fn write(
    sink: &mut Sink,
    events: &[webhook_event::ActiveModel],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<bool, sea_orm::DbErr> {
    if sink.first_try() == OnDuplicate::Fail {
        match write_as(sink, events.to_vec(), now, OnDuplicate::Fail).await {
            Err(err) if is_duplicate(&err) => sink.met_a_duplicate(),
            outcome => return outcome,
        }
    }
    write_as(sink, events.to_vec(), now, OnDuplicate::Skip).await
}

fn is_duplicate(err: &sea_orm::DbErr) -> bool {
    matches!(
        err.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}

async fn write_as(
    sink: &mut Sink,
    events: Vec<webhook_event::ActiveModel>,
    now: chrono::DateTime<chrono::Utc>,
    on_duplicate: OnDuplicate,
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
    let backend = sink.backend();
    let chunks = statement_chunks(events, backend);
    let on_duplicate = match chunks.len() {
        1 => on_duplicate,
        _ => OnDuplicate::Skip,
    };
    let mut inserts: Vec<_> = chunks
        .into_iter()
        .map(|chunk| {
            let mut insert = webhook_event::Entity::insert_many(chunk).into_query();
            if on_duplicate == OnDuplicate::Skip {
                insert.on_conflict(
                    OnConflict::columns([
                        webhook_event::Column::ConnectionId,
                        webhook_event::Column::DedupeKey,
                    ])
                    .do_nothing()
                    .to_owned(),
                );
            }
            insert
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
        last: insert_then_select(last, triggered, backend),
        inserts: inserts
            .into_iter()
            .map(|insert| backend.build(&insert))
            .collect(),
        backend,
        now,
    };
    match sink {
        // A batch whose events fit one statement sends it alone: it commits as it runs,
        // flush included, in the trip that sends it, so a batch that queues no run is one
        // trip instead of three (BEGIN and COMMIT were trips of their own). The events may
        // then be on disk before their runs are; nobody has been answered yet, so a crash
        // between the two makes the platform send the webhook again, and the duplicate,
        // stored once, queues the runs. Events in several statements (large bodies) stay in
        // one transaction: one flush for all of them rather than one each.
        Sink::Kept { conn: kept, .. } => {
            let (mut conn, _) = kept.take().await?;
            let in_transaction = !batch.inserts.is_empty();
            let stored = async {
                if in_transaction {
                    kept::execute(&mut conn, Statement::from_string(backend, "BEGIN")).await?;
                }
                let queued_runs = batch.store(&mut conn).await?;
                if in_transaction {
                    kept::execute(&mut conn, Statement::from_string(backend, "COMMIT")).await?;
                }
                Ok(queued_runs)
            }
            .await;
            // After an error the connection is dropped, and closed with whatever transaction
            // it was in; the next batch opens another. A duplicate that failed a batch of
            // one statement left none: that connection is kept.
            let kept_usable = match &stored {
                Ok(_) => true,
                Err(err) => on_duplicate == OnDuplicate::Fail && is_duplicate(err),
            };
            if kept_usable {
                kept.put_back(conn);
            }
            stored
        }
        // The events and their runs in one transaction that takes the write lock first.
        Sink::Pool(db) => {
            let txn = crate::store::begin_write(db).await?;
            let queued_runs = batch.store(&mut OnSeaOrm(&txn)).await?;
            txn.commit().await?;
            Ok(queued_runs)
        }
    }
}

/// A batch's statements, ready to run: the events' INSERTs (the flows that trigger read in
/// the last one's trip); the runs they queue are built once the flows are read.
struct Batch {
    inserts: Vec<Statement>,
    last: Statement,
    backend: DatabaseBackend,
    now: chrono::DateTime<chrono::Utc>,
}

impl Batch {
    /// Stores the events and queues their runs; whether a run was queued.
    async fn store(self, on: &mut impl RunsStatements) -> Result<bool, sea_orm::DbErr> {
        for insert in self.inserts {
            on.execute(insert).await?;
        }
        let flows = on
            .query(self.last)
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
        let mut queued = 0;
        for statement in crate::runs::enqueue_statements(runs, self.backend) {
            queued += on.execute(statement).await?;
        }
        Ok(queued > 0)
    }
}

/// What a batch's statements run on: a sea-orm transaction, or the kept connection.
trait RunsStatements {
    /// How many rows the statement changed.
    async fn execute(&mut self, statement: Statement) -> Result<u64, sea_orm::DbErr>;
    async fn query(&mut self, statement: Statement) -> Result<Vec<QueryResult>, sea_orm::DbErr>;
}

struct OnSeaOrm<'a, C>(&'a C);

impl<C: ConnectionTrait> RunsStatements for OnSeaOrm<'_, C> {
    async fn execute(&mut self, statement: Statement) -> Result<u64, sea_orm::DbErr> {
        Ok(self.0.execute_raw(statement).await?.rows_affected())
    }

    async fn query(&mut self, statement: Statement) -> Result<Vec<QueryResult>, sea_orm::DbErr> {
        self.0.query_all_raw(statement).await
    }
}

impl RunsStatements for PgConnection {
    async fn execute(&mut self, statement: Statement) -> Result<u64, sea_orm::DbErr> {
        kept::execute(self, statement).await
    }

    async fn query(&mut self, statement: Statement) -> Result<Vec<QueryResult>, sea_orm::DbErr> {
        kept::query_all(self, statement).await
    }
}

/// One statement that runs `insert` and then answers `select`, so both take one round trip
/// to the database: a data-modifying WITH on PostgreSQL (run to completion whether or not
/// the query reads it), two statements in one string on SQLite (which sqlx runs in turn,
/// binding each its share of the values).
fn insert_then_select(
    insert: InsertStatement,
    select: Select<flow::Entity>,
    backend: DatabaseBackend,
) -> Statement {
    match backend {
        DatabaseBackend::Postgres => {
            let stored = CommonTableExpression::new()
                .query(insert)
                .table_name("stored")
                .to_owned();
            let (sql, values) = select
                .into_query()
                .with(WithClause::new().cte(stored).to_owned())
                .build(PostgresQueryBuilder);
            Statement::from_sql_and_values(backend, sql, values)
        }
        _ => {
            let (insert_sql, mut values) = insert.build(SqliteQueryBuilder);
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
    use std::sync::atomic::Ordering;

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
            let mut sink = Sink::new(db.clone());
            assert!(
                write(&mut sink, &batch, now).await.unwrap(),
                "{url}: a run is queued"
            );
            assert!(
                !write(&mut sink, &[stored(source, "id:3")], now)
                    .await
                    .unwrap(),
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
                write(&mut Sink::new(db.clone()), &[again()], now)
                    .await
                    .unwrap(),
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

    /// PostgreSQL: a batch that queues no run costs one round trip, and nothing happens
    /// between two batches (sqlx checks a connection given back to its pool with a round
    /// trip of its own, which every batch waited for). Counted at a proxy in front of the
    /// server: each Sync message the writer sends is a wait for the server's answer.
    #[tokio::test]
    async fn a_postgres_batch_is_one_round_trip() {
        crate::bench::fixture::on_each_database(|db, url| async move {
            if db.get_database_backend() != DatabaseBackend::Postgres {
                return;
            }
            let proxy = SyncCounter::start(&url).await;
            let options = sea_orm::ConnectOptions::new(proxy.url.clone())
                .max_connections(1)
                .min_connections(0)
                .to_owned();
            let mut sink = Sink::new(sea_orm::Database::connect(options).await.unwrap());
            let now = chrono::Utc::now();
            let flow = webhook_flow(&db, now).await;
            // No flow reads this connection's webhooks: its batches queue no run.
            let quiet = ConnectionId::generate();
            let event = |key: String| delivery(&flow, &quiet, &key, now);
            // The first batch of a shape also prepares its statement.
            write(&mut sink, &[event("id:first".into())], now)
                .await
                .unwrap();
            proxy.syncs.store(0, Ordering::SeqCst);
            for n in 0..5 {
                let queued = write(&mut sink, &[event(format!("id:{n}"))], now).await;
                assert_eq!(queued.ok(), Some(false), "{url}");
            }
            assert_eq!(proxy.syncs.load(Ordering::SeqCst), 5, "{url}");
            assert_eq!(webhook_event::Entity::find().count(&db).await.unwrap(), 6);
        })
        .await;
    }

    /// PostgreSQL writes a batch as a plain INSERT first; one that meets a stored event
    /// fails, stores nothing, and is written again skipping the duplicate: every event is
    /// answered, stored once, and the next batches skip duplicates from the start for a while.
    /// SQLite always skips them (a plain INSERT would check its index no less).
    #[tokio::test]
    async fn a_batch_that_meets_a_duplicate_is_written_again_skipping_it() {
        crate::bench::fixture::on_each_database(|db, url| async move {
            let mut sink = Sink::new(db.clone());
            let now = chrono::Utc::now();
            let flow = webhook_flow(&db, now).await;
            let event = |key: &str| delivery(&flow, &flow.source_connection_id, key, now);
            if db.get_database_backend() != DatabaseBackend::Postgres {
                assert_eq!(sink.first_try(), OnDuplicate::Skip, "{url}");
                return;
            }
            write(&mut sink, &[event("id:1"), event("id:2")], now)
                .await
                .unwrap();
            assert!(
                matches!(
                    sink,
                    Sink::Kept {
                        wary_batches: 0,
                        ..
                    }
                ),
                "{url}: no duplicate yet"
            );

            let again = vec![event("id:2"), event("id:3")];
            assert!(write(&mut sink, &again, now).await.is_ok(), "{url}");
            let keys: Vec<String> = webhook_event::Entity::find()
                .order_by_asc(webhook_event::Column::DedupeKey)
                .all(&db)
                .await
                .unwrap()
                .into_iter()
                .map(|stored| stored.dedupe_key)
                .collect();
            assert_eq!(keys, ["id:1", "id:2", "id:3"], "{url}: each once");

            for _ in 0..WARY_BATCHES_AFTER_A_DUPLICATE {
                assert_eq!(sink.first_try(), OnDuplicate::Skip, "{url}");
            }
            assert_eq!(sink.first_try(), OnDuplicate::Fail, "{url}: plain again");
            write(&mut sink, &[event("id:4")], now).await.unwrap();
            assert_eq!(webhook_event::Entity::find().count(&db).await.unwrap(), 4);
        })
        .await;
    }

    /// PostgreSQL: a batch too large for one statement is one transaction on the kept
    /// connection. When its second statement fails, the first one's events are not kept
    /// either, and the connection (inside the failed transaction) is not used again: the
    /// next batch is stored.
    #[tokio::test]
    async fn a_batch_of_several_statements_is_stored_whole_or_not_at_all() {
        crate::bench::fixture::on_each_database(|db, url| async move {
            if db.get_database_backend() != DatabaseBackend::Postgres {
                return;
            }
            let mut sink = Sink::new(db.clone());
            let now = chrono::Utc::now();
            let flow = webhook_flow(&db, now).await;
            let large = |key: &str| webhook_event::ActiveModel {
                body: Set(vec![b'x'; 400 * 1024]),
                ..delivery(&flow, &flow.source_connection_id, key, now)
            };
            let chunks = |batch: &Vec<webhook_event::ActiveModel>| {
                statement_chunks(batch.clone(), DatabaseBackend::Postgres).len()
            };
            let mut failing = vec![large("id:1"), large("id:2"), large("id:3")];
            // A NUL in a text column, which PostgreSQL refuses: the last statement fails.
            failing[2].topic = Set(Some("orders\0create".into()));
            assert_eq!(chunks(&failing), 2, "{url}: the batch needs two statements");
            assert!(write(&mut sink, &failing, now).await.is_err(), "{url}");
            assert_eq!(
                webhook_event::Entity::find().count(&db).await.unwrap(),
                0,
                "{url}: nothing of the failed batch is stored"
            );

            let batch = vec![large("id:1"), large("id:2"), large("id:3")];
            assert!(write(&mut sink, &batch, now).await.unwrap(), "{url}: a run");
            assert_eq!(webhook_event::Entity::find().count(&db).await.unwrap(), 3);
        })
        .await;
    }

    /// A TCP proxy to the PostgreSQL server of `url` that counts the client's Sync messages
    /// (the protocol's "answer now"); its URL asks for no TLS, so the messages can be read.
    struct SyncCounter {
        url: String,
        syncs: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    }

    impl SyncCounter {
        async fn start(url: &str) -> Self {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut proxied = url::Url::parse(url).unwrap();
            let upstream = format!(
                "{}:{}",
                proxied.host_str().unwrap(),
                proxied.port().unwrap_or(5432)
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            proxied.set_host(Some("127.0.0.1")).unwrap();
            proxied.set_port(Some(port)).unwrap();
            proxied.query_pairs_mut().append_pair("sslmode", "disable");
            let syncs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let counted = syncs.clone();
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    let server = tokio::net::TcpStream::connect(&upstream).await.unwrap();
                    let (mut from_client, mut to_client) = client.into_split();
                    let (mut from_server, mut to_server) = server.into_split();
                    tokio::spawn(async move {
                        tokio::io::copy(&mut from_server, &mut to_client).await.ok();
                    });
                    let counted = counted.clone();
                    tokio::spawn(async move {
                        let mut messages = FrontendMessages::default();
                        let mut buffer = vec![0u8; 64 * 1024];
                        while let Ok(n) = from_client.read(&mut buffer).await {
                            if n == 0 {
                                break;
                            }
                            // Counted before it is passed on, so before it can be answered.
                            let syncs = messages.read(&buffer[..n]);
                            counted.fetch_add(syncs, Ordering::SeqCst);
                            if to_server.write_all(&buffer[..n]).await.is_err() {
                                break;
                            }
                        }
                    });
                }
            });
            Self {
                url: proxied.to_string(),
                syncs,
            }
        }
    }

    /// The client's side of the PostgreSQL protocol as bytes arrive: a startup message
    /// (length first), then messages of a type byte and a length that counts itself.
    #[derive(Default)]
    struct FrontendMessages {
        pending: Vec<u8>,
        started: bool,
    }

    impl FrontendMessages {
        /// Takes the next bytes; how many Sync messages they completed.
        fn read(&mut self, bytes: &[u8]) -> usize {
            self.pending.extend_from_slice(bytes);
            let mut syncs = 0;
            loop {
                let header = usize::from(self.started);
                let Some(length) = self.pending.get(header..header + 4) else {
                    break;
                };
                let length = u32::from_be_bytes([length[0], length[1], length[2], length[3]]);
                let total = header + length as usize;
                if self.pending.len() < total {
                    break;
                }
                if self.started && self.pending[0] == b'S' {
                    syncs += 1;
                }
                self.started = true;
                self.pending.drain(..total);
            }
            syncs
        }
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
