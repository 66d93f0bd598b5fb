//! Claims and ends of several runs in one transaction, a statement for all of them where one
//! run's would repeat: what `RunWriter` commits when requests arrive together. Each does what
//! `claim_in` and `succeed` do for one run; a run's own statements are only for what is
//! rare (a run behind a sibling, a failed attempt, a cursor to move).

use std::collections::{HashMap, HashSet};

use sea_orm::sea_query::{CommonTableExpression, Expr, PostgresQueryBuilder, Query, WithClause};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, EntityTrait, FromQueryResult, IdenStatic,
    JoinType, QueryFilter, QueryOrder, QuerySelect, QueryTrait, RelationDef,
};

use super::{
    Checkpoint, Claimed, RUNS_OF, RunReport, WAIT_FOR_SIBLING, claim_in, claim_statement,
    defer_statement, lock_runs_of_flows, move_cursor, move_cursor_statement, notify_released,
    put_back_behind_sibling, record_pickup, release_statement, release_waiting, report,
};
use crate::error::{Error, Result};
use crate::ids::{FlowId, RunId};
use crate::store::FoldedTransaction;
use crate::store::entities::{flow, run};

/// One claim of a group.
pub(super) struct ClaimRequest<'a> {
    pub run_id: &'a RunId,
    pub lease: chrono::Duration,
    pub now: chrono::DateTime<chrono::Utc>,
}

/// Claims each run as `claim_in` would, answering in the requests' order. One statement
/// claims the first run asked of each flow, under the locks of all the group's flows taken
/// in one order (two processes' groups cannot wait on each other); a second run of a flow in
/// the same group goes through `claim_in` after it, and finds its sibling running.
pub(super) async fn claim_in_group(
    txn: &sea_orm::DatabaseTransaction,
    requests: &[ClaimRequest<'_>],
) -> Result<Vec<Option<Claimed>>> {
    let ids: Vec<RunId> = requests.iter().map(|r| r.run_id.clone()).collect();
    let flow_of = flows_of_runs_locked(txn, ids).await?;
    let FirstClaims {
        lease,
        now,
        at_once,
    } = first_claims(requests, &flow_of);
    let mut claimed: HashMap<RunId, run::Model> = if at_once.is_empty() {
        HashMap::new()
    } else {
        claim_statement(at_once.clone(), lease, now)
            .exec_with_returning(txn)
            .await?
            .into_iter()
            .map(|run| (run.id.clone(), run))
            .collect()
    };
    let flow_of = fresh_flows_of_claimed(txn, flow_of, &claimed).await?;

    let at_once: HashSet<RunId> = at_once.into_iter().collect();
    let mut answers = Vec::with_capacity(requests.len());
    for request in requests {
        let answer = if let Some(run) = claimed.remove(request.run_id) {
            Some(with_its_flow(run, &flow_of, request.now)?)
        } else if at_once.contains(request.run_id) {
            put_back_behind_sibling(txn, request.run_id, request.now).await?;
            None
        } else if flow_of.contains_key(request.run_id) {
            claim_in(txn, request.run_id, request.lease, request.now).await?
        } else {
            // Unknown: nobody's to claim.
            None
        };
        answers.push(answer);
    }
    Ok(answers)
}

/// On PostgreSQL, the claimed runs' flows read again, now that their locks are held: the
/// statement that took the locks read the flows as of its start, and one that waited for a
/// sibling's end would hand out the flow from before that end (its cursor not yet moved,
/// so the run would read again what the sibling synced). Test:
/// `a_claim_that_waited_for_an_end_reads_the_flow_it_left`. SQLite's write lock is taken
/// before anything is read.
async fn fresh_flows_of_claimed(
    txn: &sea_orm::DatabaseTransaction,
    mut flow_of: HashMap<RunId, flow::Model>,
    claimed: &HashMap<RunId, run::Model>,
) -> Result<HashMap<RunId, flow::Model>> {
    if txn.get_database_backend() != DatabaseBackend::Postgres || claimed.is_empty() {
        return Ok(flow_of);
    }
    let ids: HashSet<FlowId> = claimed.values().map(|run| run.flow_id.clone()).collect();
    let fresh: HashMap<FlowId, flow::Model> = flow::Entity::find()
        .filter(flow::Column::Id.is_in(ids))
        .all(txn)
        .await?
        .into_iter()
        .map(|flow| (flow.id.clone(), flow))
        .collect();
    for run in claimed.values() {
        if let Some(flow) = fresh.get(&run.flow_id) {
            flow_of.insert(run.id.clone(), flow.clone());
        }
    }
    Ok(flow_of)
}

/// A run a group claimed, with its flow as the group read it.
fn with_its_flow(
    run: run::Model,
    flow_of: &HashMap<RunId, flow::Model>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Claimed> {
    let flow = flow_of
        .get(&run.id)
        .cloned()
        .ok_or(Error::NotFound("flow"))?;
    record_pickup(&run, now);
    Ok(Claimed { run, flow })
}

/// The runs of a claim group that one statement claims: the first asked of each flow, among
/// those asking for the group's lease (the first request's), judged at the group's latest
/// time, which claims what each claim would have a moment later.
struct FirstClaims {
    lease: chrono::Duration,
    now: chrono::DateTime<chrono::Utc>,
    at_once: Vec<RunId>,
}

fn first_claims(
    requests: &[ClaimRequest<'_>],
    flow_of: &HashMap<RunId, flow::Model>,
) -> FirstClaims {
    let lease = requests.first().map(|r| r.lease).unwrap_or_default();
    let now = requests.iter().map(|r| r.now).max().unwrap_or_default();
    let mut flows_seen = HashSet::new();
    let at_once = requests
        .iter()
        .filter(|r| r.lease == lease)
        .filter_map(|r| {
            let flow = flow_of.get(r.run_id)?;
            flows_seen.insert(&flow.id).then(|| r.run_id.clone())
        })
        .collect();
    FirstClaims {
        lease,
        now,
        at_once,
    }
}

/// The flow of each run (those that exist), read with the flows' locks taken (PostgreSQL) in
/// the same statement and in the order `lock_runs_of_flows` takes them: PostgreSQL evaluates
/// a volatile output expression after ORDER BY ("SELECT", Description, in its manual). The
/// flows come in this round trip so that SQLite's claim needs none of its own to read them;
/// PostgreSQL reads the claimed runs' flows again after the claim (`fresh_flows_of_claimed`).
async fn flows_of_runs_locked(
    txn: &sea_orm::DatabaseTransaction,
    ids: Vec<RunId>,
) -> Result<HashMap<RunId, flow::Model>> {
    let statement = flows_of_runs_statement(ids, txn.get_database_backend());
    read_flows_of_runs(&txn.query_all_raw(statement).await?)
}

fn read_flows_of_runs(rows: &[sea_orm::QueryResult]) -> Result<HashMap<RunId, flow::Model>> {
    let mut flows = HashMap::new();
    for row in rows {
        let run: RunId = row.try_get("", ASKED_RUN)?;
        flows.insert(run, flow::Model::from_query_result(row, "")?);
    }
    Ok(flows)
}

fn flows_of_runs_statement(ids: Vec<RunId>, backend: DatabaseBackend) -> sea_orm::Statement {
    let runs_of_flow: RelationDef = run::Entity::belongs_to(flow::Entity)
        .from(run::Column::FlowId)
        .to(flow::Column::Id)
        .into();
    let mut select = flow::Entity::find()
        .join_rev(JoinType::InnerJoin, runs_of_flow)
        .column_as(run::Column::Id, ASKED_RUN)
        .filter(run::Column::Id.is_in(ids));
    if backend == DatabaseBackend::Postgres {
        select = select
            .expr(Expr::cust(format!(
                r#"pg_advisory_xact_lock(hashtextextended('{RUNS_OF}' || "runs"."flow_id", 0))::text"#
            )))
            .order_by(
                Expr::cust(r#""runs"."flow_id" COLLATE "C""#),
                sea_orm::Order::Asc,
            );
    }
    select.build(backend)
}

/// The column that names, beside each flow, the run it was read for.
const ASKED_RUN: &str = "asked_run_id";

/// One successful end of a group.
pub(super) struct SuccessRequest<'a> {
    pub flow: &'a flow::Model,
    pub run_id: &'a RunId,
    pub now: chrono::DateTime<chrono::Utc>,
}

/// Ends each run as succeeded, as `succeed` would, at the group's latest time: one statement
/// ends them all and one hands out each flow's next run that was waiting; a run that is gone
/// fails the group (the writer then ends each on its own, so only that one fails). The
/// caller holds the flows' locks (`lock_runs_of_flows`), taken before any run is written.
pub(super) async fn succeed_in_group(
    txn: &sea_orm::DatabaseTransaction,
    requests: &[SuccessRequest<'_>],
) -> Result<Vec<RunReport>> {
    if requests.is_empty() {
        return Ok(Vec::new());
    }
    let now = requests.iter().map(|r| r.now).max().unwrap_or_default();
    let ids: Vec<RunId> = requests.iter().map(|r| r.run_id.clone()).collect();
    let ended: HashMap<RunId, run::Model> = super::success_statement(ids.clone(), now)
        .exec_with_returning(txn)
        .await?
        .into_iter()
        .map(|run| (run.id.clone(), run))
        .collect();
    if ended.len() != requests.len() {
        return Err(Error::NotFound("run"));
    }
    for run in ended.values() {
        if let Some(version) = Checkpoint::of(run).max_version {
            move_cursor(txn, &run.flow_id, version).await?;
        }
    }
    let flows: Vec<FlowId> = requests.iter().map(|r| r.flow.id.clone()).collect();
    let released = release_waiting(txn, flows, ids, now).await?;
    success_reports(requests, ended, &released)
}

/// Each request's report, from the runs its group ended and the flows whose next run it
/// handed out.
fn success_reports(
    requests: &[SuccessRequest<'_>],
    mut ended: HashMap<RunId, run::Model>,
    released: &HashSet<FlowId>,
) -> Result<Vec<RunReport>> {
    requests
        .iter()
        .map(|request| {
            let run = ended.remove(request.run_id).ok_or(Error::NotFound("run"))?;
            Ok(RunReport {
                released_next: released.contains(&request.flow.id),
                ..report(&run)
            })
        })
        .collect()
}

/// Ends each run as succeeded, taking its flow's lock first, as `lock_runs_of_flows` and then
/// `succeed_in_group` would. On PostgreSQL the ends and the hand-out are one statement, where
/// `succeed_in_group` takes two; the locks come in a statement before it, never inside it: a
/// statement reads the runs as of its start, so one that first waited for a lock held by a
/// claim would not see the run that claim put back, and that run would wait out
/// `WAIT_FOR_SIBLING` (test: `an_end_hands_out_the_run_a_claim_put_back_while_it_waited`).
/// A cursor to move costs its own statement, as there.
pub(super) async fn lock_and_succeed_in_group(
    txn: &sea_orm::DatabaseTransaction,
    requests: &[SuccessRequest<'_>],
) -> Result<Vec<RunReport>> {
    lock_runs_of_flows(txn, requests.iter().map(|r| &r.flow.id)).await?;
    if txn.get_database_backend() != DatabaseBackend::Postgres || requests.is_empty() {
        return succeed_in_group(txn, requests).await;
    }
    let now = requests.iter().map(|r| r.now).max().unwrap_or_default();
    let ids: Vec<RunId> = requests.iter().map(|r| r.run_id.clone()).collect();
    let flows: Vec<FlowId> = requests.iter().map(|r| r.flow.id.clone()).collect();
    let mut ended = super::success_statement(ids.clone(), now).into_query();
    ended.returning_all();
    let mut released = release_statement(flows, ids, now).into_query();
    released.returning_col(run::Column::FlowId);
    let cte = |name: &'static str, query: sea_orm::sea_query::SubQueryStatement| {
        CommonTableExpression::new()
            .query(query)
            .table_name(name)
            .to_owned()
    };
    let with = WithClause::new()
        .cte(cte("ended", ended.into()))
        .cte(cte("released", released.into()))
        .to_owned();
    let (sql, values) = Query::select()
        .expr(Expr::cust(r#""ended".*"#))
        .expr_as(
            Expr::cust(
                r#"EXISTS (SELECT 1 FROM "released" WHERE "released"."flow_id" = "ended"."flow_id")"#,
            ),
            RELEASED_NEXT,
        )
        .from("ended")
        .to_owned()
        .with(with)
        .build(PostgresQueryBuilder);
    let rows = txn
        .query_all_raw(sea_orm::Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            sql,
            values,
        ))
        .await?;
    let mut ended: HashMap<RunId, (run::Model, bool)> = HashMap::with_capacity(rows.len());
    for row in rows {
        let run = run::Model::from_query_result(&row, "")?;
        let released_next: bool = row.try_get("", RELEASED_NEXT)?;
        ended.insert(run.id.clone(), (run, released_next));
    }
    if ended.len() != requests.len() {
        return Err(Error::NotFound("run"));
    }
    if ended.values().any(|(_, released)| *released) {
        notify_released(txn).await?;
    }
    for (run, _) in ended.values() {
        if let Some(version) = Checkpoint::of(run).max_version {
            move_cursor(txn, &run.flow_id, version).await?;
        }
    }
    requests
        .iter()
        .map(|request| {
            let (run, released_next) =
                ended.remove(request.run_id).ok_or(Error::NotFound("run"))?;
            Ok(RunReport {
                released_next,
                ..report(&run)
            })
        })
        .collect()
}

/// The column that says, beside each ended run, whether its flow's next run was handed out.
const RELEASED_NEXT: &str = "released_next";

/// The rows of a trip's `n`th statement.
fn rows_of(trip: &[Vec<sea_orm::QueryResult>], n: usize) -> &[sea_orm::QueryResult] {
    trip.get(n).map(Vec::as_slice).unwrap_or_default()
}

/// SQLite: `claim_in_group` in two trips to the connection's thread
/// (`store::FoldedTransaction`) instead of four: the transaction's begin and the flows' read,
/// then the claim, the put-back of the runs it left behind a running sibling, and the commit.
/// None, with nothing written, for a group with a second run of a flow or another lease,
/// which `claim_in_group` takes.
pub(super) async fn claim_in_two_trips(
    db: &sea_orm::DatabaseConnection,
    requests: &[ClaimRequest<'_>],
) -> Result<Option<Vec<Option<Claimed>>>> {
    let backend = db.get_database_backend();
    let mut txn = FoldedTransaction::acquire(db).await?;
    let ids: Vec<RunId> = requests.iter().map(|r| r.run_id.clone()).collect();
    let read = txn
        .trip(vec![flows_of_runs_statement(ids, backend)], false)
        .await?;
    let flow_of = read_flows_of_runs(rows_of(&read, 0))?;
    let FirstClaims {
        lease,
        now,
        at_once,
    } = first_claims(requests, &flow_of);
    if requests
        .iter()
        .any(|r| flow_of.contains_key(r.run_id) && !at_once.contains(r.run_id))
    {
        txn.rollback().await?;
        return Ok(None);
    }
    if at_once.is_empty() {
        txn.commit().await?;
        return Ok(Some(requests.iter().map(|_| None).collect()));
    }
    let mut claim = claim_statement(at_once.clone(), lease, now).into_query();
    claim.returning_all();
    // After the claim, a run of `at_once` still due is one it left behind a running sibling
    // (a claimed run's lease has just begun): what `put_back_behind_sibling` finds one by one.
    let put_back = defer_statement(at_once, now, WAIT_FOR_SIBLING)
        .filter(run::Entity::due(now))
        .into_query();
    let written = txn
        .trip(vec![backend.build(&claim), backend.build(&put_back)], true)
        .await?;
    let mut claimed: HashMap<RunId, run::Model> = HashMap::new();
    for row in rows_of(&written, 0) {
        let run = run::Model::from_query_result(row, "")?;
        claimed.insert(run.id.clone(), run);
    }
    let mut answers = Vec::with_capacity(requests.len());
    for request in requests {
        answers.push(match claimed.remove(request.run_id) {
            Some(run) => Some(with_its_flow(run, &flow_of, request.now)?),
            None => None,
        });
    }
    Ok(Some(answers))
}

/// SQLite: `lock_and_succeed_in_group` in two trips to the connection's thread
/// (`store::FoldedTransaction`) instead of four: the transaction's begin, the ends and the
/// hand-out of the runs waiting behind them; then the cursors to move, and the commit.
pub(super) async fn succeed_in_two_trips(
    db: &sea_orm::DatabaseConnection,
    requests: &[SuccessRequest<'_>],
) -> Result<Vec<RunReport>> {
    let backend = db.get_database_backend();
    let now = requests.iter().map(|r| r.now).max().unwrap_or_default();
    let ids: Vec<RunId> = requests.iter().map(|r| r.run_id.clone()).collect();
    let flows: Vec<FlowId> = requests.iter().map(|r| r.flow.id.clone()).collect();
    let mut ended = super::success_statement(ids.clone(), now).into_query();
    ended.returning_all();
    let mut released = release_statement(flows, ids, now).into_query();
    released.returning_col(run::Column::FlowId);
    let mut txn = FoldedTransaction::acquire(db).await?;
    let written = txn
        .trip(vec![backend.build(&ended), backend.build(&released)], false)
        .await?;
    let mut ended: HashMap<RunId, run::Model> = HashMap::with_capacity(requests.len());
    for row in rows_of(&written, 0) {
        let run = run::Model::from_query_result(row, "")?;
        ended.insert(run.id.clone(), run);
    }
    if ended.len() != requests.len() {
        txn.rollback().await?;
        return Err(Error::NotFound("run"));
    }
    let mut released = HashSet::new();
    for row in rows_of(&written, 1) {
        released.insert(row.try_get::<FlowId>("", run::Column::FlowId.as_str())?);
    }
    let cursors: Vec<sea_orm::Statement> = ended
        .values()
        .filter_map(|run| {
            let version = Checkpoint::of(run).max_version?;
            Some(backend.build(&move_cursor_statement(&run.flow_id, version).into_query()))
        })
        .collect();
    txn.trip(cursors, true).await?;
    success_reports(requests, ended, &released)
}

#[cfg(test)]
mod tests {
    use futures_util::future::join_all;
    use sea_orm::EntityTrait;

    use super::*;
    use crate::bench::fixture::on_each_database;
    use crate::runs::{RunWriter, lock_runs_of_flows, queued_run, test_flow};

    async fn flow_with_runs(
        db: &sea_orm::DatabaseConnection,
        runs: usize,
        now: chrono::DateTime<chrono::Utc>,
    ) -> (flow::Model, Vec<RunId>) {
        let flow = test_flow(now);
        flow::Entity::insert(flow::ActiveModel::from(flow.clone()))
            .exec(db)
            .await
            .unwrap();
        let mut ids = Vec::new();
        for _ in 0..runs {
            let id = RunId::generate();
            let row = queued_run(&flow, id.clone(), "manual", id.to_string(), None, now);
            run::Entity::insert(row).exec(db).await.unwrap();
            ids.push(id);
        }
        (flow, ids)
    }

    async fn row(db: &sea_orm::DatabaseConnection, id: &RunId) -> run::Model {
        run::Entity::find_by_id(id.clone())
            .one(db)
            .await
            .unwrap()
            .unwrap()
    }

    /// A group claims one run a flow: a second run of the same flow in the group is put back
    /// behind its sibling, an unknown run is nobody's; the group's ends release that second
    /// run, and an end of a run that is gone fails the group (the writer then ends each alone).
    #[tokio::test]
    async fn a_group_claims_one_run_a_flow_and_its_ends_release_the_next() {
        on_each_database(|db, url| async move {
            let now = chrono::Utc::now();
            let lease = chrono::Duration::seconds(120);
            let (a, a_runs) = flow_with_runs(&db, 2, now).await;
            let (b, b_runs) = flow_with_runs(&db, 1, now).await;
            let unknown = RunId::generate();
            let asked = [&a_runs[0], &a_runs[1], &b_runs[0], &unknown];
            let claimed = claim_committed(&db, &asked, lease, now).await.unwrap();
            let claimed_ids: Vec<Option<RunId>> = claimed
                .iter()
                .map(|c| c.as_ref().map(|c| c.run.id.clone()))
                .collect();
            assert_eq!(
                claimed_ids,
                [Some(a_runs[0].clone()), None, Some(b_runs[0].clone()), None],
                "{}",
                url
            );
            let behind = row(&db, &a_runs[1]).await;
            assert_eq!(behind.status, run::RunStatus::Queued);
            assert!(
                behind.dispatched_at.is_some(),
                "put back behind its sibling"
            );
            assert_eq!(row(&db, &b_runs[0]).await.status, run::RunStatus::Running);

            let txn = crate::store::begin_write(&db).await.unwrap();
            let gone = RunId::generate();
            let with_gone = success_requests(&[(&a, &a_runs[0]), (&b, &gone)], now);
            assert!(matches!(
                succeed_in_group(&txn, &with_gone).await,
                Err(Error::NotFound("run"))
            ));
            txn.rollback().await.unwrap();

            let txn = crate::store::begin_write(&db).await.unwrap();
            lock_runs_of_flows(&txn, [&a.id, &b.id]).await.unwrap();
            let ends = success_requests(&[(&a, &a_runs[0]), (&b, &b_runs[0])], now);
            let reports = succeed_in_group(&txn, &ends).await.unwrap();
            txn.commit().await.unwrap();
            assert_eq!(reports[0].status, run::RunStatus::Succeeded);
            assert!(reports[0].released_next, "a's second run waited for it");
            assert!(!reports[1].released_next, "b had nothing waiting");
            assert_eq!(row(&db, &b_runs[0]).await.status, run::RunStatus::Succeeded);
            assert!(
                row(&db, &a_runs[1]).await.dispatched_at.is_none(),
                "handed out again"
            );
        })
        .await;
    }

    /// Two processes' writers (two here, on one database) claim the same runs of many flows
    /// at once, asked in opposite orders, and then end runs of the same flows in opposite
    /// orders: every request answers, and each run is claimed once.
    #[tokio::test]
    async fn two_writers_on_the_same_flows_answer_every_request() {
        on_each_database(|db, url| async move {
            let now = chrono::Utc::now();
            let lease = chrono::Duration::seconds(120);
            let mut flows = Vec::new();
            let mut runs = Vec::new();
            for _ in 0..12 {
                let (flow, ids) = flow_with_runs(&db, 3, now).await;
                flows.push(flow);
                runs.push(ids);
            }
            let first = RunWriter::new(db.clone(), db.clone());
            let second = RunWriter::new(db.clone(), db.clone());
            let claims: Vec<&RunId> = runs.iter().map(|ids| &ids[0]).collect();
            let reversed: Vec<&RunId> = claims.iter().rev().copied().collect();
            let (a, b) = tokio::join!(
                join_all(claims.iter().map(|id| first.claim(id, lease, now))),
                join_all(reversed.iter().map(|id| second.claim(id, lease, now))),
            );
            let mut claimed = 0;
            for answer in a.into_iter().chain(b) {
                if answer.expect("no claim fails, none deadlocks").is_some() {
                    claimed += 1;
                }
            }
            assert_eq!(claimed, claims.len(), "each run claimed once: {}", url);

            // Two more runs of each flow, running as if claimed by two other processes.
            let others: Vec<RunId> = runs.iter().flat_map(|ids| ids[1..].to_vec()).collect();
            run::Entity::update_many()
                .col_expr(run::Column::Status, run::RunStatus::Running.into())
                .col_expr(run::Column::LeaseUntil, Some(now + lease).into())
                .filter(run::Column::Id.is_in(others))
                .exec(&db)
                .await
                .unwrap();
            let ends = |n: usize| {
                flows
                    .iter()
                    .zip(&runs)
                    .map(move |(flow, ids)| (flow, &ids[n]))
            };
            let reversed: Vec<_> = ends(2).rev().collect();
            let (a, b) = tokio::join!(
                join_all(ends(1).map(|(flow, id)| first.succeed(flow, id, now))),
                join_all(
                    reversed
                        .iter()
                        .map(|(flow, id)| second.succeed(flow, id, now))
                ),
            );
            for report in a.into_iter().chain(b) {
                assert_eq!(
                    report.expect("no end fails, none deadlocks").status,
                    run::RunStatus::Succeeded
                );
            }
        })
        .await;
    }

    /// A claim of each run, all for `lease` at `now`.
    fn claim_requests<'a>(
        ids: &[&'a RunId],
        lease: chrono::Duration,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Vec<ClaimRequest<'a>> {
        ids.iter()
            .map(|run_id| ClaimRequest { run_id, lease, now })
            .collect()
    }

    /// Claims `ids` as one group in a transaction of its own.
    async fn claim_committed(
        db: &sea_orm::DatabaseConnection,
        ids: &[&RunId],
        lease: chrono::Duration,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<Option<Claimed>>> {
        let txn = crate::store::begin_write(db).await?;
        let claimed = claim_in_group(&txn, &claim_requests(ids, lease, now)).await?;
        txn.commit().await?;
        Ok(claimed)
    }

    /// Ends each run of its flow as one group, its flows' locks first, in a transaction of
    /// its own.
    async fn end_committed(
        db: &sea_orm::DatabaseConnection,
        ends: &[(&flow::Model, &RunId)],
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<RunReport>> {
        let txn = crate::store::begin_write(db).await?;
        let reports = lock_and_succeed_in_group(&txn, &success_requests(ends, now)).await?;
        txn.commit().await?;
        Ok(reports)
    }

    /// A successful end of each run of its flow, at `now`.
    fn success_requests<'a>(
        ends: &[(&'a flow::Model, &'a RunId)],
        now: chrono::DateTime<chrono::Utc>,
    ) -> Vec<SuccessRequest<'a>> {
        ends.iter()
            .map(|&(flow, run_id)| SuccessRequest { flow, run_id, now })
            .collect()
    }

    /// SQLite's groups in two trips do what the groups in a sea-orm transaction do: a run
    /// behind a running sibling is put back, the others claimed, an unknown run is nobody's; a
    /// group with two runs of one flow is left to `claim_in_group`, nothing written; ends hand
    /// out the run put back and move the cursor a checkpoint carries; a group with a run that
    /// is gone writes nothing. (SQLite alone: PostgreSQL's groups take the flows' locks.)
    #[tokio::test]
    async fn sqlite_groups_in_two_trips_claim_put_back_and_end_as_in_a_transaction() {
        let (_dir, db) = crate::store::scratch_sqlite().await;
        crate::store::migrate(&db).await.unwrap();
        let now = chrono::Utc::now();
        let lease = chrono::Duration::seconds(120);
        let (a, a_runs) = flow_with_runs(&db, 2, now).await;
        let (b, b_runs) = flow_with_runs(&db, 1, now).await;
        let two_of_a = claim_requests(&[&a_runs[0], &a_runs[1]], lease, now);
        assert!(
            claim_in_two_trips(&db, &two_of_a).await.unwrap().is_none(),
            "two runs of one flow: left to claim_in_group"
        );
        assert_eq!(row(&db, &a_runs[0]).await.status, run::RunStatus::Queued);
        assert!(row(&db, &a_runs[1]).await.dispatched_at.is_none());

        let unknown = RunId::generate();
        let requests = claim_requests(&[&a_runs[0], &b_runs[0], &unknown], lease, now);
        let claimed = claim_in_two_trips(&db, &requests).await.unwrap().unwrap();
        let claimed_ids: Vec<Option<RunId>> = claimed
            .iter()
            .map(|c| c.as_ref().map(|c| c.run.id.clone()))
            .collect();
        assert_eq!(
            claimed_ids,
            [Some(a_runs[0].clone()), Some(b_runs[0].clone()), None]
        );
        assert_eq!(claimed[1].as_ref().unwrap().flow.id, b.id);

        // a's second run, asked while the first runs, is put back behind it.
        let behind = claim_requests(&[&a_runs[1]], lease, now);
        assert_eq!(
            claim_in_two_trips(&db, &behind).await.unwrap().unwrap()[0]
                .as_ref()
                .map(|c| c.run.id.clone()),
            None
        );
        let put_back = row(&db, &a_runs[1]).await;
        assert_eq!(put_back.status, run::RunStatus::Queued);
        assert!(
            put_back.dispatched_at.is_some(),
            "put back behind its sibling"
        );

        let gone = RunId::generate();
        let with_gone = success_requests(&[(&a, &a_runs[0]), (&b, &gone)], now);
        assert!(matches!(
            succeed_in_two_trips(&db, &with_gone).await,
            Err(Error::NotFound("run"))
        ));
        assert_eq!(
            row(&db, &a_runs[0]).await.status,
            run::RunStatus::Running,
            "a group with a gone run writes nothing"
        );

        run::Entity::update_many()
            .col_expr(
                run::Column::Checkpoint,
                Some(serde_json::json!({"max_version": "2026-12-06T10:00:00Z"})).into(),
            )
            .filter(run::Column::Id.eq(b_runs[0].clone()))
            .exec(&db)
            .await
            .unwrap();
        let ends = success_requests(&[(&a, &a_runs[0]), (&b, &b_runs[0])], now);
        let reports = succeed_in_two_trips(&db, &ends).await.unwrap();
        assert_eq!(reports[0].status, run::RunStatus::Succeeded);
        assert!(reports[0].released_next, "a's second run waited for it");
        assert!(!reports[1].released_next, "b had nothing waiting");
        assert!(
            row(&db, &a_runs[1]).await.dispatched_at.is_none(),
            "handed out again"
        );
        let b_now = flow::Entity::find_by_id(b.id.clone())
            .one(&db)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            b_now.cursor,
            Some(serde_json::json!({"updated_at_min": "2026-12-06T10:00:00Z"})),
            "the cursor moved with the end"
        );
        assert_eq!(row(&db, &b_runs[0]).await.status, run::RunStatus::Succeeded);
    }

    /// An end group takes its flows' locks before it writes a run: while another transaction
    /// holds one of them, the group waits, and then ends its runs and hands out the run that
    /// waited behind one of them.
    #[tokio::test]
    async fn an_end_group_waits_for_its_flows_locks() {
        on_each_database(|db, url| async move {
            let now = chrono::Utc::now();
            let lease = chrono::Duration::seconds(120);
            let (a, a_runs) = flow_with_runs(&db, 2, now).await;
            let (b, b_runs) = flow_with_runs(&db, 1, now).await;
            let asked = [&a_runs[0], &a_runs[1], &b_runs[0]];
            claim_committed(&db, &asked, lease, now).await.unwrap();

            let holder = crate::store::begin_write(&db).await.unwrap();
            lock_runs_of_flows(&holder, [&b.id]).await.unwrap();
            let ending = {
                let (db, a, b, a_run, b_run) = (
                    db.clone(),
                    a.clone(),
                    b.clone(),
                    a_runs[0].clone(),
                    b_runs[0].clone(),
                );
                tokio::spawn(
                    async move { end_committed(&db, &[(&b, &b_run), (&a, &a_run)], now).await },
                )
            };
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            assert!(!ending.is_finished(), "{url}: the group waits for b's lock");
            assert_eq!(row(&db, &a_runs[0]).await.status, run::RunStatus::Running);
            holder.commit().await.unwrap();
            let reports = ending.await.unwrap().unwrap();
            assert_eq!(reports[0].status, run::RunStatus::Succeeded, "{url}");
            assert!(!reports[0].released_next, "b had nothing waiting");
            assert!(
                reports[1].released_next,
                "{url}: a's second run waited for it"
            );
            assert_eq!(row(&db, &a_runs[0]).await.status, run::RunStatus::Succeeded);
            assert!(row(&db, &a_runs[1]).await.dispatched_at.is_none());

            let txn = crate::store::begin_write(&db).await.unwrap();
            let gone = RunId::generate();
            let with_gone = [SuccessRequest {
                flow: &a,
                run_id: &gone,
                now,
            }];
            assert!(matches!(
                lock_and_succeed_in_group(&txn, &with_gone).await,
                Err(Error::NotFound("run"))
            ));
            txn.rollback().await.unwrap();
        })
        .await;
    }

    /// A claim that puts a run back behind its running sibling, and that sibling's end,
    /// meet: the end group waits for the flow's lock while the claim holds it, and once the
    /// claim commits, the end hands out the run it put back. (On PostgreSQL a statement that
    /// waits for a lock still reads as of its start: an end whose locks and release were one
    /// statement missed the put-back, and the run waited out `WAIT_FOR_SIBLING`, 5 s, in
    /// `bench latency`'s tails.)
    #[tokio::test]
    async fn an_end_hands_out_the_run_a_claim_put_back_while_it_waited() {
        on_each_database(|db, url| async move {
            let now = chrono::Utc::now();
            let lease = chrono::Duration::seconds(120);
            let (a, a_runs) = flow_with_runs(&db, 2, now).await;
            claim_committed(&db, &[&a_runs[0]], lease, now)
                .await
                .unwrap();

            let claim = crate::store::begin_write(&db).await.unwrap();
            let claimed = claim_in_group(&claim, &claim_requests(&[&a_runs[1]], lease, now))
                .await
                .unwrap();
            assert!(claimed[0].is_none(), "{url}: its sibling is running");
            let ending = {
                let (db, a, run) = (db.clone(), a.clone(), a_runs[0].clone());
                tokio::spawn(async move { end_committed(&db, &[(&a, &run)], now).await })
            };
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            assert!(!ending.is_finished(), "{url}: the end waits for the claim");
            claim.commit().await.unwrap();
            let reports = ending.await.unwrap().unwrap();
            assert!(
                reports[0].released_next,
                "{url}: the run put back is handed out"
            );
            assert!(row(&db, &a_runs[1]).await.dispatched_at.is_none(), "{url}");
        })
        .await;
    }

    /// A claim that waits for its flow's lock while the sibling's end holds it (the end
    /// moving the flow's cursor) claims the run once the end commits, with the flow as that
    /// end left it: a run that started from the cursor before would read again what its
    /// sibling synced.
    #[tokio::test]
    async fn a_claim_that_waited_for_an_end_reads_the_flow_it_left() {
        on_each_database(|db, url| async move {
            let now = chrono::Utc::now();
            let lease = chrono::Duration::seconds(120);
            let (a, a_runs) = flow_with_runs(&db, 2, now).await;
            claim_committed(&db, &[&a_runs[0]], lease, now)
                .await
                .unwrap();

            let moved = serde_json::json!({"updated_at_min": "2026-12-06T10:00:00Z"});
            let end = crate::store::begin_write(&db).await.unwrap();
            lock_runs_of_flows(&end, [&a.id]).await.unwrap();
            succeed_in_group(&end, &success_requests(&[(&a, &a_runs[0])], now))
                .await
                .unwrap();
            flow::Entity::update_many()
                .col_expr(flow::Column::Cursor, Some(moved.clone()).into())
                .filter(flow::Column::Id.eq(a.id.clone()))
                .exec(&end)
                .await
                .unwrap();
            let claiming = {
                let (db, run) = (db.clone(), a_runs[1].clone());
                tokio::spawn(async move { claim_committed(&db, &[&run], lease, now).await })
            };
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            assert!(
                !claiming.is_finished(),
                "{url}: the claim waits for the end"
            );
            end.commit().await.unwrap();
            let claimed = claiming.await.unwrap().unwrap();
            let claimed = claimed[0].as_ref().expect("claimed once its sibling ended");
            assert_eq!(claimed.flow.cursor, Some(moved), "{url}");
        })
        .await;
    }

    /// The groups' flow locks are taken in one order however they are asked: by runs whose
    /// ids sort the other way from their flows' (a claim), by flows in either order (ends).
    /// A third transaction holds a flow in the middle meanwhile, so that all are part-way
    /// through their locks when it lets go; taken in the order asked, two would each hold a
    /// lock the other waits for, and PostgreSQL would abort one as deadlocked.
    #[tokio::test]
    async fn group_locks_are_taken_in_one_order() {
        on_each_database(|db, url| async move {
            let now = chrono::Utc::now();
            let mut flows = Vec::new();
            for _ in 0..12 {
                flows.push(flow_with_runs(&db, 0, now).await.0);
            }
            let mut runs = Vec::new();
            for flow in flows.iter().rev() {
                let id = RunId::generate();
                let row = queued_run(flow, id.clone(), "manual", id.to_string(), None, now);
                run::Entity::insert(row).exec(&db).await.unwrap();
                runs.push(id);
            }
            let holder = crate::store::begin_write(&db).await.unwrap();
            lock_runs_of_flows(&holder, [&flows[6].id]).await.unwrap();
            let by_runs = {
                let (db, runs) = (db.clone(), runs.clone());
                tokio::spawn(async move {
                    let txn = crate::store::begin_write(&db).await?;
                    flows_of_runs_locked(&txn, runs).await?;
                    txn.commit().await?;
                    Ok::<_, Error>(())
                })
            };
            let by_flows = |reverse: bool| {
                let db = db.clone();
                let mut ids: Vec<FlowId> = flows.iter().map(|f| f.id.clone()).collect();
                if reverse {
                    ids.reverse();
                }
                tokio::spawn(async move {
                    let txn = crate::store::begin_write(&db).await?;
                    lock_runs_of_flows(&txn, &ids).await?;
                    txn.commit().await?;
                    Ok::<_, Error>(())
                })
            };
            let (forwards, backwards) = (by_flows(false), by_flows(true));
            // Ends of the runs, their flows asked in reverse: the locks of the one statement.
            let by_ends = {
                let (db, flows, runs) = (db.clone(), flows.clone(), runs.clone());
                tokio::spawn(async move {
                    let requests: Vec<SuccessRequest> = flows
                        .iter()
                        .rev()
                        .zip(&runs)
                        .map(|(flow, run_id)| SuccessRequest { flow, run_id, now })
                        .collect();
                    let txn = crate::store::begin_write(&db).await?;
                    lock_and_succeed_in_group(&txn, &requests).await?;
                    txn.commit().await?;
                    Ok::<_, Error>(())
                })
            };
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            holder.commit().await.unwrap();
            for (what, task) in [
                ("by runs", by_runs),
                ("by flows", forwards),
                ("by flows reversed", backwards),
                ("by ends", by_ends),
            ] {
                task.await
                    .unwrap()
                    .unwrap_or_else(|e| panic!("{what}: {e} ({})", url));
            }
        })
        .await;
    }
}
