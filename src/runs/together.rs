//! Claims and ends of several runs in one transaction, a statement for all of them where one
//! run's would repeat, sent to the database in one trip with their BEGIN and COMMIT
//! (`store::FoldedWriter`): what `RunWriter` commits when requests arrive together, or
//! one alone. Each does what `claim_in` and `succeed` do for one run; a run's own statements
//! are only for what is rare (a failed attempt, a group of ends with one).
//!
//! Why one trip: at four worker slots a run's time was mostly its groups' trips to the
//! database, five for a claim group and four for an end group on PostgreSQL, each about
//! 0.2 ms beyond its statement (`bench jobs`, 6 Dec, ninth session: claim 1.57 ms and end
//! 1.40 ms a run, 1,064-1,088 runs/s). So every statement of a group is one whose text does
//! not depend on what an earlier one returned: which run of a flow to claim is chosen by
//! the claim statement itself, and the cursors move in a statement that reads the ended
//! runs' checkpoints.
//!
//! PostgreSQL reads each statement as of its start, also one that first waited for a lock
//! (READ COMMITTED): the flows' locks are a statement of their own before any that reads
//! runs or flows. An end whose locks and release were one statement missed a run that a
//! claim it waited for put back (test: `an_end_hands_out_the_run_a_claim_put_back_while_it_waited`),
//! and a claim that read its flow in the statement that took the lock handed out the flow
//! from before the sibling's end (`a_claim_that_waited_for_an_end_reads_the_flow_it_left`).

use std::collections::{HashMap, HashSet};

use sea_orm::sea_query::{Expr, ExprTrait, Func, Query};
use sea_orm::{
    ColumnTrait, DatabaseBackend, EntityTrait, FromQueryResult, IdenStatic, JoinType, QueryFilter,
    QuerySelect, QueryTrait, RelationDef,
};

use super::{
    Checkpoint, Claimed, RunReport, WAIT_FOR_SIBLING, claim_statement, defer_statement,
    lock_flows_statement, move_cursor, record_pickup, release_statement, report, run_lock_keys,
};
use crate::error::{Error, Result};
use crate::ids::{FlowId, RunId};
use crate::store::FoldedWriter;
use crate::store::entities::{flow, run};

/// One claim of a group.
pub(super) struct ClaimRequest<'a> {
    pub run_id: &'a RunId,
    pub lease: chrono::Duration,
    pub now: chrono::DateTime<chrono::Utc>,
}

/// Claims each run as `claim_in` would, answering in the requests' order: one trip for the
/// requests of each lease asked (almost always one), judged at their latest time, which
/// claims what each claim would have a moment later.
pub(super) async fn claim_group(
    db: &mut FoldedWriter,
    requests: &[ClaimRequest<'_>],
) -> Result<Vec<Option<Claimed>>> {
    let mut answers: Vec<Option<Claimed>> = requests.iter().map(|_| None).collect();
    let mut leases: Vec<chrono::Duration> = Vec::new();
    for request in requests {
        if !leases.contains(&request.lease) {
            leases.push(request.lease);
        }
    }
    for lease in leases {
        let asked: Vec<usize> = (0..requests.len())
            .filter(|&i| requests[i].lease == lease)
            .collect();
        let ids: Vec<RunId> = asked.iter().map(|&i| requests[i].run_id.clone()).collect();
        let now = asked
            .iter()
            .map(|&i| requests[i].now)
            .max()
            .unwrap_or_default();
        let mut claimed = claim_in_one_trip(db, ids, lease, now).await?;
        for i in asked {
            answers[i] = claimed.remove(requests[i].run_id);
        }
    }
    Ok(answers)
}

/// One trip: the flows' locks (PostgreSQL), the claim of the oldest due run of each flow
/// that has none running, the flows of the runs asked, and the put-back of each run asked
/// that is still due (left behind a running sibling, in the group or not), then the commit.
async fn claim_in_one_trip(
    db: &mut FoldedWriter,
    ids: Vec<RunId>,
    lease: chrono::Duration,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<HashMap<RunId, Claimed>> {
    let backend = db.backend();
    let locking = backend == DatabaseBackend::Postgres;
    let mut statements = Vec::with_capacity(4);
    if locking {
        statements.push(lock_flows_of_runs_statement(&ids));
    }
    statements.push(claim_oldest_statement(&ids, lease, now, backend));
    statements.push(flows_of_runs_statement(ids.clone(), backend));
    statements.push(put_back_statement(&ids, now, backend));

    let trip = db.transaction(statements).await?;
    let first = usize::from(locking);
    let flow_of = read_flows_of_runs(rows_of(&trip, first + 1))?;
    let mut claimed = HashMap::new();
    for row in rows_of(&trip, first) {
        let run = run::Model::from_query_result(row, "")?;
        let flow = flow_of
            .get(&run.id)
            .cloned()
            .ok_or(Error::NotFound("flow"))?;
        record_pickup(&run, now);
        claimed.insert(run.id.clone(), Claimed { run, flow });
    }
    Ok(claimed)
}

/// Puts back each of the runs `ids` that is still due after the claim: left behind a
/// running sibling, in the group or not.
fn put_back_statement(
    ids: &[RunId],
    now: chrono::DateTime<chrono::Utc>,
    backend: DatabaseBackend,
) -> sea_orm::Statement {
    let put_back = defer_statement(due_among(ids, now, backend), now, WAIT_FOR_SIBLING)
        .filter(run::Entity::due_by_key(now, backend))
        .into_query();
    backend.build(&put_back)
}

/// Claims the oldest due run of each flow among `ids` (ids grow with time) that has none
/// running, returning it: two runs of one flow in one claim statement would not see each
/// other running.
fn claim_oldest_statement(
    ids: &[RunId],
    lease: chrono::Duration,
    now: chrono::DateTime<chrono::Utc>,
    backend: DatabaseBackend,
) -> sea_orm::Statement {
    let oldest = Query::select()
        .expr(Func::min(Expr::col((DUE, run::Column::Id))))
        .from_subquery(due_runs_among(ids, now, backend), DUE)
        .group_by_col((DUE, run::Column::FlowId))
        .to_owned();
    let mut claim = claim_statement(run::Column::Id.in_subquery(oldest), lease, now, backend);
    if backend != DatabaseBackend::Postgres {
        // SQLite: without the list beside the subquery its planner scanned the runs table
        // (`bench jobs`: a claim 6.7 ms instead of 0.5).
        claim = claim.filter(run::Column::Id.is_in(ids.to_vec()));
    }
    let mut claim = claim.into_query();
    claim.returning_all();
    backend.build(&claim)
}

/// The runs `ids` that are due, as a condition on the runs table (the statement's own due
/// condition says it again, for a row another transaction changed meanwhile): SQLite's
/// planner takes an IN list by the primary key; PostgreSQL's gets the ids from
/// `due_runs_among`.
fn due_among(
    ids: &[RunId],
    now: chrono::DateTime<chrono::Utc>,
    backend: DatabaseBackend,
) -> sea_orm::sea_query::SimpleExpr {
    if backend != DatabaseBackend::Postgres {
        return run::Column::Id.is_in(ids.to_vec());
    }
    let ids_of = Query::select()
        .column((DUE, run::Column::Id))
        .from_subquery(due_runs_among(ids, now, backend), DUE)
        .to_owned();
    run::Column::Id.in_subquery(ids_of)
}

/// The due ones of the runs `ids`: their ids and flows. On PostgreSQL a primary-key probe
/// an id (a VALUES list joined LATERAL, as `sync::records` does for known versions): with
/// `runs.id IN (...) AND <due>`, and the runs table not analysed since a backlog grew,
/// the planner ANDed the primary key's bitmap with `ix_runs_status`'s for "queued", reading
/// every queued run's index entry (79,389 of them after 40,000 runs, 2.3 ms) to claim 16
/// (EXPLAIN ANALYZE, custom and generic plans alike): a claim group of 16 took 4.4 ms of the
/// server's time in `bench jobs`. Probed, 0.5 ms.
fn due_runs_among(
    ids: &[RunId],
    now: chrono::DateTime<chrono::Utc>,
    backend: DatabaseBackend,
) -> sea_orm::sea_query::SelectStatement {
    let due_runs = |select: &mut sea_orm::sea_query::SelectStatement| {
        select
            .column((run::Entity, run::Column::Id))
            .column((run::Entity, run::Column::FlowId))
            .from(run::Entity)
            .cond_where(run::Entity::due_by_key(now, backend))
            .to_owned()
    };
    if backend != DatabaseBackend::Postgres || ids.is_empty() {
        return due_runs(Query::select().and_where(run::Column::Id.is_in(ids.to_vec())));
    }
    // Inside the probe, "runs" is the probe's own table, as in any subquery over it.
    let probe = due_runs(
        Query::select()
            .and_where(Expr::col((run::Entity, run::Column::Id)).equals((ASKED, VALUES_COLUMN)))
            .limit(1),
    );
    Query::select()
        .column((PROBED, run::Column::Id))
        .column((PROBED, run::Column::FlowId))
        .from_values(ids.iter().map(|id| id.to_string()), ASKED)
        .join_lateral(JoinType::InnerJoin, probe, PROBED, Expr::cust("TRUE"))
        .to_owned()
}

/// Names in `due_runs_among` and the statements over it: the ids asked (a VALUES list,
/// whose one column PostgreSQL calls `column1`), a run probed, a due run.
const ASKED: &str = "asked";
const VALUES_COLUMN: &str = "column1";
const PROBED: &str = "probed";
const DUE: &str = "due";

/// PostgreSQL: the run locks of the flows of `ids`, in the one order every group takes them
/// (`run_lock_keys`): PostgreSQL evaluates a volatile output expression after ORDER BY
/// ("SELECT", Description, in its manual). A run's flow never changes, so reading it before
/// the lock is safe.
fn lock_flows_of_runs_statement(ids: &[RunId]) -> sea_orm::Statement {
    let placeholders = (1..=ids.len())
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ");
    sea_orm::Statement::from_sql_and_values(
        DatabaseBackend::Postgres,
        format!(
            r#"SELECT pg_advisory_xact_lock(hashtextextended('{}' || "flow_id", 0))::text FROM (SELECT DISTINCT "flow_id" FROM "runs" WHERE "id" IN ({placeholders})) AS "f" ORDER BY "flow_id" COLLATE "C""#,
            super::RUNS_OF
        ),
        ids.iter().map(|id| sea_orm::Value::from(id.to_string())),
    )
}

fn read_flows_of_runs(rows: &[sea_orm::QueryResult]) -> Result<HashMap<RunId, flow::Model>> {
    let mut flows = HashMap::new();
    for row in rows {
        let run: RunId = row.try_get("", ASKED_RUN)?;
        flows.insert(run, flow::Model::from_query_result(row, "")?);
    }
    Ok(flows)
}

/// The flow of each of the runs `ids` that exists, beside the run's id (`ASKED_RUN`).
fn flows_of_runs_statement(ids: Vec<RunId>, backend: DatabaseBackend) -> sea_orm::Statement {
    let runs_of_flow: RelationDef = run::Entity::belongs_to(flow::Entity)
        .from(run::Column::FlowId)
        .to(flow::Column::Id)
        .into();
    flow::Entity::find()
        .join_rev(JoinType::InnerJoin, runs_of_flow)
        .column_as(run::Column::Id, ASKED_RUN)
        .filter(run::Column::Id.is_in(ids))
        .build(backend)
}

/// The column that names, beside each flow, the run it was read for.
const ASKED_RUN: &str = "asked_run_id";

/// One successful end of a group.
pub(super) struct SuccessRequest<'a> {
    pub flow: &'a flow::Model,
    pub run_id: &'a RunId,
    pub now: chrono::DateTime<chrono::Utc>,
}

/// Ends each run as succeeded, as `succeed` would, at the group's latest time, in one trip:
/// the flows' locks (PostgreSQL), the ends, the hand-out of each flow's next run that was
/// waiting (which, on PostgreSQL, tells the other processes at commit), the cursors the
/// ended runs' checkpoints move, and the commit. Each request's own answer: a run that is
/// gone is `NotFound` while the others end.
pub(super) async fn succeed_group(
    db: &mut FoldedWriter,
    requests: &[SuccessRequest<'_>],
) -> Result<Vec<Result<RunReport>>> {
    if requests.is_empty() {
        return Ok(Vec::new());
    }
    let backend = db.backend();
    let now = requests.iter().map(|r| r.now).max().unwrap_or_default();
    let ids: Vec<RunId> = requests.iter().map(|r| r.run_id.clone()).collect();
    let flows: Vec<FlowId> = requests.iter().map(|r| r.flow.id.clone()).collect();
    let mut statements = Vec::with_capacity(4);
    let locking = backend == DatabaseBackend::Postgres;
    if locking {
        statements.extend(lock_flows_statement(&run_lock_keys(&flows)));
    }
    let first = statements.len();
    let mut ended = super::success_statement(ids.clone(), now).into_query();
    ended.returning_all();
    statements.push(backend.build(&ended));
    let mut released = release_statement(flows, ids.clone(), now).into_query();
    let mut returned = vec![Expr::col(run::Column::FlowId)];
    if locking {
        returned.push(Expr::cust(format!(
            "pg_notify('{}', '')::text",
            crate::runtime::RUNS_CHANNEL
        )));
    }
    released.returning(Query::returning().exprs(returned));
    statements.push(backend.build(&released));
    statements.push(move_cursors_statement(&ids, backend));

    let trip = db.transaction(statements).await?;
    let mut ended: HashMap<RunId, run::Model> = HashMap::with_capacity(requests.len());
    for row in rows_of(&trip, first) {
        let run = run::Model::from_query_result(row, "")?;
        ended.insert(run.id.clone(), run);
    }
    let mut released = HashSet::new();
    for row in rows_of(&trip, first + 1) {
        released.insert(row.try_get::<FlowId>("", run::Column::FlowId.as_str())?);
    }
    Ok(requests
        .iter()
        .map(|request| {
            let run = ended.get(request.run_id).ok_or(Error::NotFound("run"))?;
            Ok(RunReport {
                released_next: released.contains(&request.flow.id),
                ..report(run)
            })
        })
        .collect())
}

/// Moves each flow's cursor to the newest version its run among `ids` committed, as
/// `move_cursor` does, read from the runs' checkpoints (`Checkpoint::max_version`) after
/// their ends in the same transaction; a run without one leaves its flow's cursor.
fn move_cursors_statement(ids: &[RunId], backend: DatabaseBackend) -> sea_orm::Statement {
    let (placeholders, object, version): (Vec<String>, &str, &str) = match backend {
        DatabaseBackend::Postgres => (
            (1..=ids.len()).map(|n| format!("${n}")).collect(),
            "jsonb_build_object",
            r#""checkpoint" ->> 'max_version'"#,
        ),
        _ => (
            ids.iter().map(|_| "?".to_string()).collect(),
            "json_object",
            r#"json_extract("checkpoint", '$.max_version')"#,
        ),
    };
    sea_orm::Statement::from_sql_and_values(
        backend,
        format!(
            r#"UPDATE "flows" SET "cursor" = {object}('{}', "moved"."version"), "consecutive_failures" = 0 FROM (SELECT "flow_id", {version} AS "version" FROM "runs" WHERE "id" IN ({})) AS "moved" WHERE "flows"."id" = "moved"."flow_id" AND "moved"."version" IS NOT NULL"#,
            super::CURSOR_KEY,
            placeholders.join(", ")
        ),
        ids.iter().map(|id| sea_orm::Value::from(id.to_string())),
    )
}

/// The rows of a trip's `n`th statement.
fn rows_of(trip: &[Vec<sea_orm::QueryResult>], n: usize) -> &[sea_orm::QueryResult] {
    trip.get(n).map(Vec::as_slice).unwrap_or_default()
}

/// Ends each run as succeeded inside the caller's transaction, which holds the flows' locks
/// (`lock_runs_of_flows`): the path of a group of ends with a failure among them, and of
/// `succeed`. A run that is gone fails the group (the writer then ends each on its own, so
/// only that one fails).
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
    let released = super::release_waiting(txn, flows, ids, now).await?;
    requests
        .iter()
        .map(|request| {
            let run = ended.get(request.run_id).ok_or(Error::NotFound("run"))?;
            Ok(RunReport {
                released_next: released.contains(&request.flow.id),
                ..report(run)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use futures_util::future::join_all;
    use sea_orm::{ConnectionTrait, EntityTrait};

    use super::*;
    use crate::bench::fixture::{explain, on_each_database};
    use crate::runs::{RunWriter, defer, lock_runs_of_flows, queued_run, test_flow};

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

    /// A claim of each run, all for `lease` at `now`, as one group.
    async fn claim(
        db: &sea_orm::DatabaseConnection,
        ids: &[&RunId],
        lease: chrono::Duration,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<Option<Claimed>>> {
        let requests: Vec<ClaimRequest> = ids
            .iter()
            .map(|run_id| ClaimRequest { run_id, lease, now })
            .collect();
        claim_group(&mut FoldedWriter::new(db)?, &requests).await
    }

    fn claimed_ids(claimed: &[Option<Claimed>]) -> Vec<Option<RunId>> {
        claimed
            .iter()
            .map(|c| c.as_ref().map(|c| c.run.id.clone()))
            .collect()
    }

    /// A successful end of each run of its flow, at `now`, as one group.
    async fn end(
        db: &sea_orm::DatabaseConnection,
        ends: &[(&flow::Model, &RunId)],
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<Result<RunReport>>> {
        let requests: Vec<SuccessRequest> = ends
            .iter()
            .map(|&(flow, run_id)| SuccessRequest { flow, run_id, now })
            .collect();
        succeed_group(&mut FoldedWriter::new(db)?, &requests).await
    }

    /// A group claims one run a flow, the oldest: a second run of the same flow in the group
    /// is put back behind its sibling, an unknown run is nobody's; a later claim of a run
    /// behind a running sibling puts it back too. The group's ends hand out the run put
    /// back, move the cursor a checkpoint carries and leave the other; a run that is gone
    /// answers "not found" on its own while the others end.
    #[tokio::test]
    async fn a_group_claims_one_run_a_flow_and_its_ends_release_the_next() {
        on_each_database(|db, url| async move {
            let now = chrono::Utc::now();
            let lease = chrono::Duration::seconds(120);
            let (a, a_runs) = flow_with_runs(&db, 3, now).await;
            let (b, b_runs) = flow_with_runs(&db, 1, now).await;
            let unknown = RunId::generate();
            let asked = [&a_runs[1], &a_runs[0], &b_runs[0], &unknown];
            let claimed = claim(&db, &asked, lease, now).await.unwrap();
            assert_eq!(
                claimed_ids(&claimed),
                [None, Some(a_runs[0].clone()), Some(b_runs[0].clone()), None],
                "{url}"
            );
            assert_eq!(claimed[2].as_ref().unwrap().flow.id, b.id);
            let behind = row(&db, &a_runs[1]).await;
            assert_eq!(behind.status, run::RunStatus::Queued);
            assert!(
                behind.dispatched_at.is_some(),
                "{url}: put back behind its sibling"
            );
            assert_eq!(row(&db, &b_runs[0]).await.status, run::RunStatus::Running);
            let later = claim(&db, &[&a_runs[2]], lease, now).await.unwrap();
            assert!(later[0].is_none(), "{url}: a's first run is running");
            assert!(row(&db, &a_runs[2]).await.dispatched_at.is_some(), "{url}");

            run::Entity::update_many()
                .col_expr(
                    run::Column::Checkpoint,
                    Some(serde_json::json!({"max_version": "2026-12-06T10:00:00Z"})).into(),
                )
                .filter(run::Column::Id.eq(b_runs[0].clone()))
                .exec(&db)
                .await
                .unwrap();
            let gone = RunId::generate();
            let reports = end(&db, &[(&a, &a_runs[0]), (&b, &gone), (&b, &b_runs[0])], now)
                .await
                .unwrap();
            let a_report = reports[0].as_ref().unwrap();
            assert_eq!(a_report.status, run::RunStatus::Succeeded);
            assert!(a_report.released_next, "{url}: a's runs waited for it");
            assert!(
                matches!(reports[1], Err(Error::NotFound("run"))),
                "{url}: {:?}",
                reports[1]
            );
            assert!(
                !reports[2].as_ref().unwrap().released_next,
                "b had nothing waiting"
            );
            assert_eq!(row(&db, &b_runs[0]).await.status, run::RunStatus::Succeeded);
            for id in &a_runs[1..] {
                assert!(
                    row(&db, id).await.dispatched_at.is_none(),
                    "{url}: handed out again"
                );
            }
            let flow_of = |id: FlowId| {
                let db = db.clone();
                async move {
                    flow::Entity::find_by_id(id)
                        .one(&db)
                        .await
                        .unwrap()
                        .unwrap()
                }
            };
            assert_eq!(
                flow_of(b.id.clone()).await.cursor,
                Some(serde_json::json!({"updated_at_min": "2026-12-06T10:00:00Z"})),
                "{url}: the cursor moved with the end"
            );
            assert_eq!(
                flow_of(a.id.clone()).await.cursor,
                a.cursor,
                "{url}: a run without a version leaves its cursor"
            );
        })
        .await;
    }

    /// A claim group finds the runs it asks for by their primary key, with 20,000 queued runs
    /// in a table never analysed (a backlog that just grew) and as many runs asked as 16
    /// worker slots ask: no plan of the claim's or the put-back's reads the status index,
    /// which holds every queued run, on either database (SQLite's planner took that index
    /// for 16 ids while it took the key for 4).
    #[tokio::test]
    async fn a_claim_probes_its_runs_by_key_in_a_backlog_without_statistics() {
        on_each_database(|db, url| async move {
            let now = chrono::Utc::now();
            let (_, ids) = flow_with_runs(&db, 16, now).await;
            let backend = db.get_database_backend();
            let backlog = match backend {
                DatabaseBackend::Postgres => format!(
                    "INSERT INTO runs SELECT (jsonb_populate_record(r, jsonb_build_object(\
                     'id', 'run_' || lpad(to_hex(g), 32, '0'), 'dedupe_key', 'backlog-' || g))).* \
                     FROM runs r, generate_series(1, 20000) g WHERE r.id = '{}'",
                    ids[0]
                ),
                _ => format!(
                    "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 20000) \
                     INSERT INTO runs (id, tenant_id, flow_id, trigger, dedupe_key, status, created_at) \
                     SELECT printf('run_%032x', n), tenant_id, flow_id, trigger, 'backlog-' || n, \
                     status, created_at FROM runs, g WHERE runs.id = '{}'",
                    ids[0]
                ),
            };
            db.execute_unprepared(&backlog).await.unwrap();
            let primary_key = match backend {
                DatabaseBackend::Postgres => "runs_pkey",
                _ => "sqlite_autoindex_runs_1",
            };
            let lease = chrono::Duration::seconds(120);
            for statement in [
                claim_oldest_statement(&ids, lease, now, backend),
                put_back_statement(&ids, now, backend),
            ] {
                let explained = explain(&db, &statement).await;
                assert!(!explained.contains("ix_runs_status"), "{url}: {explained}");
                assert!(explained.contains(primary_key), "{url}: {explained}");
            }
            let claimed = claim(&db, &ids.iter().collect::<Vec<_>>(), lease, now)
                .await
                .unwrap();
            assert_eq!(
                claimed_ids(&claimed).iter().flatten().count(),
                1,
                "{url}: one run of the flow"
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
            claim(&db, &[&a_runs[0], &a_runs[1], &b_runs[0]], lease, now)
                .await
                .unwrap();

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
                tokio::spawn(async move { end(&db, &[(&b, &b_run), (&a, &a_run)], now).await })
            };
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            assert!(!ending.is_finished(), "{url}: the group waits for b's lock");
            assert_eq!(row(&db, &a_runs[0]).await.status, run::RunStatus::Running);
            holder.commit().await.unwrap();
            let reports = ending.await.unwrap().unwrap();
            let (b_report, a_report) = (reports[0].as_ref().unwrap(), reports[1].as_ref().unwrap());
            assert_eq!(b_report.status, run::RunStatus::Succeeded, "{url}");
            assert!(!b_report.released_next, "b had nothing waiting");
            assert!(
                a_report.released_next,
                "{url}: a's second run waited for it"
            );
            assert_eq!(row(&db, &a_runs[0]).await.status, run::RunStatus::Succeeded);
            assert!(row(&db, &a_runs[1]).await.dispatched_at.is_none());
        })
        .await;
    }

    /// A claim that puts a run back behind its running sibling, and that sibling's end,
    /// meet: the end group waits for the flow's lock while the claim holds it, and once the
    /// claim commits, the end hands out the run it put back. (On PostgreSQL a statement that
    /// waits for a lock still reads as of its start: an end whose locks and release were one
    /// statement missed the put-back, and the run waited out `WAIT_FOR_SIBLING`, 5 s, in
    /// `bench latency`'s tails.) The claim is held open where it has put the run back, as a
    /// claim group's transaction would be between its statements.
    #[tokio::test]
    async fn an_end_hands_out_the_run_a_claim_put_back_while_it_waited() {
        on_each_database(|db, url| async move {
            let now = chrono::Utc::now();
            let lease = chrono::Duration::seconds(120);
            let (a, a_runs) = flow_with_runs(&db, 2, now).await;
            claim(&db, &[&a_runs[0]], lease, now).await.unwrap();

            let claiming = crate::store::begin_write(&db).await.unwrap();
            lock_runs_of_flows(&claiming, [&a.id]).await.unwrap();
            defer(&claiming, &a_runs[1], now, WAIT_FOR_SIBLING)
                .await
                .unwrap();
            let ending = {
                let (db, a, run) = (db.clone(), a.clone(), a_runs[0].clone());
                tokio::spawn(async move { end(&db, &[(&a, &run)], now).await })
            };
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            assert!(!ending.is_finished(), "{url}: the end waits for the claim");
            claiming.commit().await.unwrap();
            let reports = ending.await.unwrap().unwrap();
            assert!(
                reports[0].as_ref().unwrap().released_next,
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
            claim(&db, &[&a_runs[0]], lease, now).await.unwrap();

            let moved = serde_json::json!({"updated_at_min": "2026-12-06T10:00:00Z"});
            let ending = crate::store::begin_write(&db).await.unwrap();
            lock_runs_of_flows(&ending, [&a.id]).await.unwrap();
            let requests = [SuccessRequest {
                flow: &a,
                run_id: &a_runs[0],
                now,
            }];
            succeed_in_group(&ending, &requests).await.unwrap();
            flow::Entity::update_many()
                .col_expr(flow::Column::Cursor, Some(moved.clone()).into())
                .filter(flow::Column::Id.eq(a.id.clone()))
                .exec(&ending)
                .await
                .unwrap();
            let claiming = {
                let (db, run) = (db.clone(), a_runs[1].clone());
                tokio::spawn(async move { claim(&db, &[&run], lease, now).await })
            };
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            assert!(
                !claiming.is_finished(),
                "{url}: the claim waits for the end"
            );
            ending.commit().await.unwrap();
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
            let lease = chrono::Duration::seconds(120);
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
                    let ids: Vec<&RunId> = runs.iter().collect();
                    claim(&db, &ids, lease, now).await.map(drop)
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
                    let ends: Vec<(&flow::Model, &RunId)> = flows.iter().rev().zip(&runs).collect();
                    end(&db, &ends, now).await.map(drop)
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
