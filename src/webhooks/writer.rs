//! Group commit. Every verified webhook waits for a durable commit before its 2xx; one writer
//! task gathers whatever events are queued into one transaction, so a disk flush serves
//! hundreds of requests instead of one. Rejection counters ride along in the same commit.

use std::collections::HashMap;
use std::time::Duration;

use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, TransactionTrait};
use tokio::sync::{mpsc, oneshot};

use crate::ids::ConnectionId;
use crate::store::entities::{connection, webhook_event};

const QUEUE_CAPACITY: usize = 16_384;

enum Command {
    Insert(
        Box<webhook_event::ActiveModel>,
        oneshot::Sender<Result<(), String>>,
    ),
    Rejected(ConnectionId),
}

#[derive(Clone)]
pub struct EventWriter {
    tx: mpsc::Sender<Command>,
}

impl EventWriter {
    /// Starts the writer task; it ends when every handle is dropped and the queue is drained.
    pub fn start(db: DatabaseConnection, max_batch: usize, linger: Duration) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        tokio::spawn(run(db, rx, max_batch, linger));
        Self { tx }
    }

    /// Resolves once the event is committed (or was a duplicate of a committed one).
    pub async fn insert(&self, event: webhook_event::ActiveModel) -> Result<(), String> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Command::Insert(Box::new(event), done))
            .await
            .map_err(|_| "the event writer has stopped".to_string())?;
        wait.await
            .map_err(|_| "the event writer has stopped".to_string())?
    }

    /// Counts a refused webhook; best effort, never blocks the request.
    pub fn count_rejection(&self, id: &ConnectionId) {
        let _ = self.tx.try_send(Command::Rejected(id.clone()));
    }
}

async fn run(
    db: DatabaseConnection,
    mut rx: mpsc::Receiver<Command>,
    max_batch: usize,
    linger: Duration,
) {
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
        commit(&db, std::mem::take(&mut batch)).await;
    }
}

async fn commit(db: &DatabaseConnection, batch: Vec<Command>) {
    let mut events = Vec::new();
    let mut waiters = Vec::new();
    let mut rejections: HashMap<ConnectionId, i64> = HashMap::new();
    for cmd in batch {
        match cmd {
            Command::Insert(event, done) => {
                events.push(*event);
                waiters.push(done);
            }
            Command::Rejected(id) => *rejections.entry(id).or_default() += 1,
        }
    }
    metrics::histogram!("synchub_webhook_commit_batch_size").record(events.len() as f64);
    match write(db, events.clone(), &rejections).await {
        Ok(()) => {
            for done in waiters {
                let _ = done.send(Ok(()));
            }
        }
        Err(err) => {
            // One bad row must not fail its neighbours: retry each event on its own.
            tracing::warn!(error = %err, size = events.len(), "group commit failed; retrying events one by one");
            for (event, done) in events.into_iter().zip(waiters) {
                let result = write(db, vec![event], &HashMap::new())
                    .await
                    .map_err(|e| e.to_string());
                if let Err(e) = &result {
                    tracing::error!(error = %e, "webhook event could not be stored");
                }
                let _ = done.send(result);
            }
        }
    }
}

async fn write(
    db: &DatabaseConnection,
    events: Vec<webhook_event::ActiveModel>,
    rejections: &HashMap<ConnectionId, i64>,
) -> Result<(), sea_orm::DbErr> {
    let txn = db.begin().await?;
    if !events.is_empty() {
        webhook_event::Entity::insert_many(events)
            .on_conflict_do_nothing_on([
                webhook_event::Column::ConnectionId,
                webhook_event::Column::DedupeKey,
            ])
            .exec_without_returning(&txn)
            .await?;
    }
    for (id, count) in rejections {
        connection::Entity::update_many()
            .col_expr(
                connection::Column::RejectedWebhooks,
                Expr::col(connection::Column::RejectedWebhooks).add(*count),
            )
            .filter(connection::Column::Id.eq(id.clone()))
            .exec(&txn)
            .await?;
    }
    txn.commit().await
}
