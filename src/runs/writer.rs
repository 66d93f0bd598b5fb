//! Where a process's runs are claimed and ended. One task for claims and one for ends take
//! what arrived meanwhile and write it in one transaction, a statement for all where one
//! run's would repeat, sent in one trip (`runs::together`, `store::FoldedWriter`), answering
//! each caller only after that commit, so a claim or an end is as durable as alone.
//!
//! Why: on SQLite each claim and each end was a write transaction queueing for the database's
//! one write lock (and an end for its flush too): measured with four workers, a claim took
//! 2.8 ms and an end 2.6 ms, mostly waiting; now two writers of ours queue. On PostgreSQL a
//! run cost about ten round trips to the server (begin, lock, claim, read the flow, commit;
//! the same for the end), each a wake-up of a server process and of ours: 780 runs/s with 4
//! workers and 900 with 16 (6 Dec, this machine); grouped, and then each group in one trip,
//! 1,400-1,750 at 4 (6 Dec, ninth session). A group takes its flows' run locks in one order,
//! in one statement, before it writes a run, so two processes' groups cannot wait on each
//! other in a circle. Ends with a failure among them (rare, and a failure writes alerts) go
//! in a sea-orm transaction instead.

use tokio::sync::{mpsc, oneshot};

use super::together::{ClaimRequest, SuccessRequest, claim_group, succeed_group, succeed_in_group};
use super::{Claimed, RunReport, fail_in, lock_runs_of_flows};
use crate::connectors::client::CallError;
use crate::error::{Error, Result};
use crate::ids::RunId;
use crate::store::FoldedWriter;
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
        ends_in_transaction(db, std::slice::from_ref(self))
            .await?
            .pop()
            .ok_or_else(mismatch)
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

/// Claims and ends runs: `runs::claim`, `runs::succeed` and `runs::fail`, grouped.
#[derive(Clone)]
pub struct RunWriter {
    /// Where ends commit (flushed to disk).
    db: sea_orm::DatabaseConnection,
    /// Where claims commit (`store::connect_relaxed`, or `db`).
    relaxed: sea_orm::DatabaseConnection,
    /// The writer tasks' queues (inside a Tokio runtime); None: each request alone.
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
        let grouped = tokio::runtime::Handle::try_current()
            .is_ok()
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
    let mut folded = match FoldedWriter::new(&db) {
        Ok(folded) => Some(folded),
        Err(err) => {
            tracing::warn!(error = %err, "runs are written one by one");
            None
        }
    };
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let batch = std::mem::take(&mut batch);
        match folded.as_mut() {
            Some(folded) => commit(&db, folded, batch).await,
            None => each_alone_after(&db, batch).await,
        }
    }
}

/// Writes a batch: claims, or successes, in one trip (`runs::together`); ends with a failure
/// among them in a transaction; each alone if the group cannot be written.
async fn commit(db: &sea_orm::DatabaseConnection, folded: &mut FoldedWriter, batch: Vec<Request>) {
    metrics::histogram!("synchub_run_write_batch_size").record(batch.len() as f64);
    match together(db, folded, &batch).await {
        Ok(answers) => {
            for (request, answer) in batch.into_iter().zip(answers) {
                request.answer(answer);
            }
        }
        Err(err) => each_alone(db, batch, &err).await,
    }
}

/// Each request's answer, from one group; an error when the group as a whole could not be
/// written. A lone end with a failure is written as it would be alone, its error its own.
async fn together(
    db: &sea_orm::DatabaseConnection,
    folded: &mut FoldedWriter,
    batch: &[Request],
) -> Result<Vec<Result<Answer>>> {
    let claims = claims_of(batch);
    if claims.len() == batch.len() {
        return Ok(claim_group(folded, &claims)
            .await?
            .into_iter()
            .map(|claimed| Ok(Answer::Claimed(claimed.map(Box::new))))
            .collect());
    }
    let successes = successes_of(batch);
    if successes.len() == batch.len() {
        return Ok(succeed_group(folded, &successes)
            .await?
            .into_iter()
            .map(|report| report.map(Answer::Ended))
            .collect());
    }
    if let [alone] = batch {
        return Ok(vec![alone.run_alone(db).await]);
    }
    Ok(ends_in_transaction(db, batch)
        .await?
        .into_iter()
        .map(Ok)
        .collect())
}

/// One request that cannot be written must not fail the others: each alone.
async fn each_alone(db: &sea_orm::DatabaseConnection, batch: Vec<Request>, err: &Error) {
    tracing::warn!(error = %err, size = batch.len(), "writing runs together failed; writing each on its own");
    each_alone_after(db, batch).await;
}

async fn each_alone_after(db: &sea_orm::DatabaseConnection, batch: Vec<Request>) {
    for request in batch {
        let result = request.run_alone(db).await;
        request.answer(result);
    }
}

/// Ends, with a failure among them, in one sea-orm transaction.
async fn ends_in_transaction(
    db: &sea_orm::DatabaseConnection,
    batch: &[Request],
) -> Result<Vec<Answer>> {
    let txn = crate::store::begin_write(db).await?;
    let answers = ends_in(&txn, batch).await?;
    txn.commit().await?;
    Ok(answers)
}

fn claims_of(batch: &[Request]) -> Vec<ClaimRequest<'_>> {
    batch
        .iter()
        .filter_map(|request| match request {
            Request::Claim {
                run_id, lease, now, ..
            } => Some(ClaimRequest {
                run_id,
                lease: *lease,
                now: *now,
            }),
            Request::End { .. } => None,
        })
        .collect()
}

fn successes_of(batch: &[Request]) -> Vec<SuccessRequest<'_>> {
    batch
        .iter()
        .filter_map(|request| match request {
            Request::End {
                flow,
                run_id,
                outcome: Outcome::Succeeded,
                now,
                ..
            } => Some(SuccessRequest {
                flow,
                run_id,
                now: *now,
            }),
            _ => None,
        })
        .collect()
}

/// Ends of a batch (each writer has its own queue) in the caller's transaction: every flow's
/// lock first, in one order; then the successes in a statement for all, and each failure on
/// its own (rare, and it writes alerts). Answers in the batch's order.
async fn ends_in(txn: &sea_orm::DatabaseTransaction, batch: &[Request]) -> Result<Vec<Answer>> {
    lock_runs_of_flows(
        txn,
        batch.iter().filter_map(|request| match request {
            Request::End { flow, .. } => Some(&flow.id),
            Request::Claim { .. } => None,
        }),
    )
    .await?;
    let successes = successes_of(batch);
    let mut succeeded = succeed_in_group(txn, &successes).await?.into_iter();
    let mut answers = Vec::with_capacity(batch.len());
    for request in batch {
        let report = match request {
            Request::End {
                outcome: Outcome::Succeeded,
                ..
            } => succeeded.next().ok_or_else(mismatch)?,
            Request::End {
                flow,
                run_id,
                outcome: Outcome::Failed(failure),
                now,
                ..
            } => fail_in(txn, flow, run_id, failure, *now).await?,
            // Claims lock their flows before ends would lock theirs: not in one order.
            Request::Claim { .. } => return Err(mismatch()),
        };
        answers.push(Answer::Ended(report));
    }
    Ok(answers)
}

#[cfg(test)]
mod tests {
    use sea_orm::EntityTrait;

    use super::*;
    use crate::store::entities::run;

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
            let flow = crate::runs::test_flow(now);
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
