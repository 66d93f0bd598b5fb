//! Where the ends of a process's runs commit. On SQLite every end is a write transaction
//! that waits for the database's one write lock and then for its own flush to disk, while
//! the other workers' claims and ends queue behind it: measured with four workers, an end
//! took 2 ms, mostly waiting. Here one task takes the ends that arrived meanwhile and
//! commits them in one transaction, one flush for all; each caller hears only after that
//! commit, so an end is as durable as before. On PostgreSQL each end commits on its own
//! connection: the server already flushes concurrent commits together, and one transaction
//! taking several flows' run locks could deadlock with another process's.

use tokio::sync::{mpsc, oneshot};

use super::{RunReport, fail_in, log_failure, succeed_in};
use crate::connectors::client::CallError;
use crate::error::{Error, Result};
use crate::ids::RunId;
use crate::store::entities::flow;

/// Ends waiting for the writer; a worker slot holds at most one, so this is never reached in
/// practice and only bounds memory.
const QUEUE_CAPACITY: usize = 1_024;
/// Ends per transaction at the most.
const MAX_BATCH: usize = 256;

/// How an attempt ended.
enum Outcome {
    Succeeded,
    Failed(CallError),
}

struct End {
    flow: flow::Model,
    run_id: RunId,
    outcome: Outcome,
    now: chrono::DateTime<chrono::Utc>,
    done: oneshot::Sender<Result<RunReport>>,
}

/// Ends runs: `runs::succeed` and `runs::fail`, grouped on SQLite.
#[derive(Clone)]
pub struct RunEnds {
    db: sea_orm::DatabaseConnection,
    /// The writer task's queue (SQLite, inside a Tokio runtime); None: each end alone.
    grouped: Option<mpsc::Sender<End>>,
}

impl RunEnds {
    pub fn new(db: sea_orm::DatabaseConnection) -> Self {
        let grouped = (crate::store::is_sqlite(&db)
            && tokio::runtime::Handle::try_current().is_ok())
        .then(|| {
            let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
            tokio::spawn(write(db.clone(), rx));
            tx
        });
        Self { db, grouped }
    }

    /// Ends the run as succeeded (`runs::succeed`).
    pub async fn succeed(
        &self,
        flow: &flow::Model,
        run_id: &RunId,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<RunReport> {
        self.end(flow, run_id, Outcome::Succeeded, now).await
    }

    /// Records a failed attempt (`runs::fail`).
    pub async fn fail(
        &self,
        flow: &flow::Model,
        run_id: &RunId,
        failure: &CallError,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<RunReport> {
        self.end(flow, run_id, Outcome::Failed(failure.clone()), now)
            .await
    }

    async fn end(
        &self,
        flow: &flow::Model,
        run_id: &RunId,
        outcome: Outcome,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<RunReport> {
        let Some(grouped) = &self.grouped else {
            return alone(&self.db, flow, run_id, &outcome, now).await;
        };
        let (done, answer) = oneshot::channel();
        let end = End {
            flow: flow.clone(),
            run_id: run_id.clone(),
            outcome,
            now,
            done,
        };
        grouped.send(end).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn stopped() -> Error {
    Error::Unavailable("the writer of run ends has stopped".into())
}

/// The writer: whatever ends are queued when it looks, in one transaction. It stops when
/// every `RunEnds` is dropped.
async fn write(db: sea_orm::DatabaseConnection, mut queue: mpsc::Receiver<End>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        commit(&db, std::mem::take(&mut batch)).await;
    }
}

async fn commit(db: &sea_orm::DatabaseConnection, batch: Vec<End>) {
    metrics::histogram!("synchub_run_end_batch_size").record(batch.len() as f64);
    if batch.len() > 1 {
        match together(db, &batch).await {
            Ok(reports) => {
                for (end, report) in batch.into_iter().zip(reports) {
                    if let Outcome::Failed(failure) = &end.outcome {
                        log_failure(&end.run_id, failure, &report);
                    }
                    let _ = end.done.send(Ok(report));
                }
                return;
            }
            // One end that cannot be written must not fail the others: each alone.
            Err(err) => {
                tracing::warn!(error = %err, size = batch.len(), "ending runs together failed; ending each on its own")
            }
        }
    }
    for end in batch {
        let result = alone(db, &end.flow, &end.run_id, &end.outcome, end.now).await;
        let _ = end.done.send(result);
    }
}

async fn together(db: &sea_orm::DatabaseConnection, batch: &[End]) -> Result<Vec<RunReport>> {
    let txn = crate::store::begin_write(db).await?;
    let mut reports = Vec::with_capacity(batch.len());
    for end in batch {
        reports.push(match &end.outcome {
            Outcome::Succeeded => succeed_in(&txn, &end.flow, &end.run_id, end.now).await?,
            Outcome::Failed(failure) => {
                fail_in(&txn, &end.flow, &end.run_id, failure, end.now).await?
            }
        });
    }
    txn.commit().await?;
    Ok(reports)
}

async fn alone(
    db: &sea_orm::DatabaseConnection,
    flow: &flow::Model,
    run_id: &RunId,
    outcome: &Outcome,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<RunReport> {
    match outcome {
        Outcome::Succeeded => super::succeed(db, flow, run_id, now).await,
        Outcome::Failed(failure) => super::fail(db, flow, run_id, failure, now).await,
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::EntityTrait;

    use super::*;
    use crate::ids::{ConnectionId, FlowId, TenantId};
    use crate::store::entities::run;

    fn a_flow(now: chrono::DateTime<chrono::Utc>) -> flow::Model {
        flow::Model {
            id: FlowId::generate(),
            tenant_id: TenantId::generate(),
            name: "orders".into(),
            stream: "orders".into(),
            source_connection_id: ConnectionId::generate(),
            destination_connection_id: ConnectionId::generate(),
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

    /// Ends queued together commit together, and one that cannot be written (its run is
    /// gone) fails on its own while the others still end. The runtime has one thread, so
    /// every end below is queued before the writer first looks.
    #[tokio::test]
    async fn a_bad_end_in_a_group_fails_alone() {
        let (_dir, db) = crate::store::scratch_sqlite().await;
        crate::store::migrate(&db).await.unwrap();
        let now = chrono::Utc::now();
        let lease = chrono::Duration::seconds(120);
        let mut claimed = Vec::new();
        for _ in 0..3 {
            let flow = a_flow(now);
            flow::Entity::insert(flow::ActiveModel::from(flow.clone()))
                .exec(&db)
                .await
                .unwrap();
            let id = RunId::generate();
            let row =
                crate::runs::queued_run(&flow, id.clone(), "manual", id.to_string(), None, now);
            run::Entity::insert(row).exec(&db).await.unwrap();
            claimed.push(
                crate::runs::claim(&db, &id, lease, now)
                    .await
                    .unwrap()
                    .unwrap(),
            );
        }
        let ends = RunEnds::new(db.clone());
        let gone = RunId::generate();
        let failure = CallError::new(
            crate::connectors::client::ErrorClass::ServerError,
            "the ERP answered 500".to_string(),
        );
        let (first, second, third, bad) = tokio::join!(
            ends.succeed(&claimed[0].flow, &claimed[0].run.id, now),
            ends.fail(&claimed[1].flow, &claimed[1].run.id, &failure, now),
            ends.succeed(&claimed[2].flow, &claimed[2].run.id, now),
            ends.succeed(&claimed[0].flow, &gone, now),
        );
        assert_eq!(first.unwrap().status, run::RunStatus::Succeeded);
        assert_eq!(second.unwrap().status, run::RunStatus::Retrying);
        assert_eq!(third.unwrap().status, run::RunStatus::Succeeded);
        assert!(matches!(bad, Err(Error::NotFound("run"))), "{bad:?}");
        for (c, status) in claimed.iter().zip([
            run::RunStatus::Succeeded,
            run::RunStatus::Retrying,
            run::RunStatus::Succeeded,
        ]) {
            let row = run::Entity::find_by_id(c.run.id.clone())
                .one(&db)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(row.status, status, "committed, not only answered");
        }
    }
}
