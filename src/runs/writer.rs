//! Where a process's runs are claimed and ended. On SQLite each claim and each end is a
//! write transaction that waits for the database's one write lock (and an end for its flush
//! to disk too), while every other worker's claims and ends queue for the same lock, each
//! trying again on its own: measured with four workers, a claim took 2.8 ms and an end
//! 2.6 ms, mostly waiting. Here one task for claims and one for ends take what arrived
//! meanwhile and run it in one transaction (one flush for all the ends), so only two writers
//! of ours queue for the lock; each caller hears only after that commit, so a claim or an end
//! is as durable as before. Alone in its turn, a request runs as it would without the task.
//! On PostgreSQL each commits on its own connection: the server runs them side by side and
//! flushes concurrent commits together, and one transaction taking several flows' run locks
//! could deadlock with another process's.

use tokio::sync::{mpsc, oneshot};

use super::{Claimed, RunReport, claim_in, fail_in, succeed_in};
use crate::connectors::client::CallError;
use crate::error::{Error, Result};
use crate::ids::RunId;
use crate::store::entities::flow;

/// Requests waiting for a writer; a worker slot holds at most one, so this is never reached
/// in practice and only bounds memory.
const QUEUE_CAPACITY: usize = 1_024;
/// Requests per transaction at the most.
const MAX_BATCH: usize = 256;

/// How an attempt ended.
enum Outcome {
    Succeeded,
    Failed(CallError),
}

enum Request {
    Claim {
        run_id: RunId,
        lease: chrono::Duration,
        now: chrono::DateTime<chrono::Utc>,
        done: oneshot::Sender<Result<Option<Claimed>>>,
    },
    End {
        flow: Box<flow::Model>,
        run_id: RunId,
        outcome: Outcome,
        now: chrono::DateTime<chrono::Utc>,
        done: oneshot::Sender<Result<RunReport>>,
    },
}

/// What a request produced, before it is handed to its caller.
enum Answer {
    Claimed(Option<Box<Claimed>>),
    Ended(RunReport),
}

impl Request {
    async fn run_in(&self, txn: &sea_orm::DatabaseTransaction) -> Result<Answer> {
        Ok(match self {
            Self::Claim {
                run_id, lease, now, ..
            } => Answer::Claimed(claim_in(txn, run_id, *lease, *now).await?.map(Box::new)),
            Self::End {
                flow,
                run_id,
                outcome: Outcome::Succeeded,
                now,
                ..
            } => Answer::Ended(succeed_in(txn, flow, run_id, *now).await?),
            Self::End {
                flow,
                run_id,
                outcome: Outcome::Failed(failure),
                now,
                ..
            } => Answer::Ended(fail_in(txn, flow, run_id, failure, *now).await?),
        })
    }

    /// In a transaction of its own: a claim as `runs::claim` makes it (one statement on
    /// SQLite when it claims), an end as `runs::succeed` and `runs::fail` do.
    async fn run_alone(&self, db: &sea_orm::DatabaseConnection) -> Result<Answer> {
        if let Self::Claim {
            run_id, lease, now, ..
        } = self
        {
            return Ok(Answer::Claimed(
                super::claim(db, run_id, *lease, *now).await?.map(Box::new),
            ));
        }
        let txn = crate::store::begin_write(db).await?;
        let answer = self.run_in(&txn).await?;
        txn.commit().await?;
        Ok(answer)
    }

    /// Hands the result to the caller, once the transaction that wrote it has committed.
    fn answer(self, result: Result<Answer>) {
        match self {
            Self::Claim { done, .. } => {
                let _ = done.send(result.and_then(Answer::claimed));
            }
            Self::End {
                run_id,
                outcome,
                done,
                ..
            } => {
                let result = result.and_then(Answer::ended);
                if let (Outcome::Failed(failure), Ok(report)) = (&outcome, &result) {
                    super::log_failure(&run_id, failure, report);
                }
                let _ = done.send(result);
            }
        }
    }
}

impl Answer {
    fn claimed(self) -> Result<Option<Claimed>> {
        match self {
            Self::Claimed(claimed) => Ok(claimed.map(|c| *c)),
            Self::Ended(_) => Err(mismatch()),
        }
    }

    fn ended(self) -> Result<RunReport> {
        match self {
            Self::Ended(report) => Ok(report),
            Self::Claimed(_) => Err(mismatch()),
        }
    }
}

fn mismatch() -> Error {
    Error::Internal(anyhow::anyhow!("a run request got another kind's answer"))
}

/// Claims and ends runs: `runs::claim`, `runs::succeed` and `runs::fail`, grouped on SQLite.
#[derive(Clone)]
pub struct RunWriter {
    /// Where ends commit (flushed to disk).
    db: sea_orm::DatabaseConnection,
    /// Where claims commit (`store::connect_relaxed`, or `db`).
    relaxed: sea_orm::DatabaseConnection,
    /// The writer tasks' queues (SQLite, inside a Tokio runtime); None: each request alone.
    grouped: Option<Queues>,
}

#[derive(Clone)]
struct Queues {
    claims: mpsc::Sender<Request>,
    ends: mpsc::Sender<Request>,
}

impl RunWriter {
    /// `relaxed` is where claims commit; ends commit on `db`.
    pub fn new(db: sea_orm::DatabaseConnection, relaxed: sea_orm::DatabaseConnection) -> Self {
        let grouped = (crate::store::is_sqlite(&db)
            && tokio::runtime::Handle::try_current().is_ok())
        .then(|| Queues {
            claims: start(relaxed.clone()),
            ends: start(db.clone()),
        });
        Self {
            db,
            relaxed,
            grouped,
        }
    }

    /// Claims the run for one attempt if it is due (`runs::claim`).
    pub async fn claim(
        &self,
        run_id: &RunId,
        lease: chrono::Duration,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<Claimed>> {
        let Some(grouped) = &self.grouped else {
            return super::claim(&self.relaxed, run_id, lease, now).await;
        };
        let (done, answer) = oneshot::channel();
        let request = Request::Claim {
            run_id: run_id.clone(),
            lease,
            now,
            done,
        };
        grouped.claims.send(request).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
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
            return match &outcome {
                Outcome::Succeeded => super::succeed(&self.db, flow, run_id, now).await,
                Outcome::Failed(failure) => super::fail(&self.db, flow, run_id, failure, now).await,
            };
        };
        let (done, answer) = oneshot::channel();
        let request = Request::End {
            flow: Box::new(flow.clone()),
            run_id: run_id.clone(),
            outcome,
            now,
            done,
        };
        grouped.ends.send(request).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn stopped() -> Error {
    Error::Unavailable("the writer of runs has stopped".into())
}

/// Starts a writer on `db`; it stops when every `RunWriter` is dropped.
fn start(db: sea_orm::DatabaseConnection) -> mpsc::Sender<Request> {
    let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
    tokio::spawn(write(db, rx));
    tx
}

/// The writer: whatever requests are queued when it looks, in one transaction.
async fn write(db: sea_orm::DatabaseConnection, mut queue: mpsc::Receiver<Request>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        commit(&db, std::mem::take(&mut batch)).await;
    }
}

async fn commit(db: &sea_orm::DatabaseConnection, batch: Vec<Request>) {
    metrics::histogram!("synchub_run_write_batch_size").record(batch.len() as f64);
    if batch.len() > 1 {
        match together(db, &batch).await {
            Ok(answers) => {
                for (request, answer) in batch.into_iter().zip(answers) {
                    request.answer(Ok(answer));
                }
                return;
            }
            // One request that cannot be written must not fail the others: each alone.
            Err(err) => {
                tracing::warn!(error = %err, size = batch.len(), "writing runs together failed; writing each on its own")
            }
        }
    }
    for request in batch {
        let result = request.run_alone(db).await;
        request.answer(result);
    }
}

async fn together(db: &sea_orm::DatabaseConnection, batch: &[Request]) -> Result<Vec<Answer>> {
    let txn = crate::store::begin_write(db).await?;
    let mut answers = Vec::with_capacity(batch.len());
    for request in batch {
        answers.push(request.run_in(&txn).await?);
    }
    txn.commit().await?;
    Ok(answers)
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

    /// Claims queued together commit together, and so do ends; an end that cannot be
    /// written (its run is gone) fails on its own while the others still end. The runtime has
    /// one thread, so every request below is queued before a writer first looks.
    #[tokio::test]
    async fn runs_claimed_and_ended_together_and_a_bad_end_fails_alone() {
        let (_dir, db) = crate::store::scratch_sqlite().await;
        crate::store::migrate(&db).await.unwrap();
        let now = chrono::Utc::now();
        let lease = chrono::Duration::seconds(120);
        let mut ids = Vec::new();
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
            ids.push(id);
        }
        let writer = RunWriter::new(db.clone(), db.clone());
        let unknown = RunId::generate();
        let (first, second, third, none) = tokio::join!(
            writer.claim(&ids[0], lease, now),
            writer.claim(&ids[1], lease, now),
            writer.claim(&ids[2], lease, now),
            writer.claim(&unknown, lease, now),
        );
        assert!(
            none.unwrap().is_none(),
            "an unknown run is nobody's to claim"
        );
        let claimed: Vec<Claimed> = [first, second, third]
            .into_iter()
            .map(|c| c.unwrap().expect("a queued run is claimed"))
            .collect();
        let gone = RunId::generate();
        let failure = CallError::new(
            crate::connectors::client::ErrorClass::ServerError,
            "the ERP answered 500".to_string(),
        );
        let (first, second, third, bad) = tokio::join!(
            writer.succeed(&claimed[0].flow, &claimed[0].run.id, now),
            writer.fail(&claimed[1].flow, &claimed[1].run.id, &failure, now),
            writer.succeed(&claimed[2].flow, &claimed[2].run.id, now),
            writer.succeed(&claimed[0].flow, &gone, now),
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
