//! The apalis queue the dispatcher fills and the workers drain: apalis-sqlite, or
//! apalis-postgres on PostgreSQL, tuned for this workload.
//!
//! Stock apalis 1.0 is slow on a growing table (about 80 jobs/s on SQLite): finished jobs are
//! never deleted, and on SQLite two of its indexes mislead the planner (the ack query walks
//! `LIdx` over every job this worker ever locked). Our runs table keeps the real state, so the
//! queue only has to hold jobs in flight: finished jobs are pruned within seconds and the two
//! indexes are dropped.

use std::time::Duration;

use apalis::prelude::*;
use apalis_postgres::PostgresStorage;
use apalis_sqlite::SqliteStorage;
use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection, Statement};
use serde::{Deserialize, Serialize};

/// The one job type: ids only, versioned, so the payload can change without breaking a queue.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RunJob {
    pub v: u8,
    pub run_id: String,
}

pub const QUEUE: &str = "synchub.runs";
/// apalis also looks for work on every heartbeat; wake-ups and our own ticker do the rest.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// A worker is presumed dead after this many missed heartbeats; runs are guarded by their own
/// leases, so an early presumption only costs a skipped duplicate delivery.
const MISSED_HEARTBEATS: usize = 5;
/// Jobs fetched per query. apalis acks finished jobs and fetches again only once its buffer
/// is empty, and hands no freed slot a job until both return (on PostgreSQL with the
/// statement log on, an ack 2.8 ms and a fetch 2.5 ms). `bench jobs`, 4 slots, committing:
/// with 64, 1,370 and 1,395 runs/s on PostgreSQL, with 256 1,564 and 1,573 (SQLite 1,514
/// and 2,002 beside 2,207 and 2,248). The price: fetched jobs wait for this worker's slots
/// while another process's may idle, until the dispatcher hands their runs over again
/// (`REDISPATCH_AFTER`), as with any queue's prefetch; a dead worker's are re-enqueued by
/// apalis after `MISSED_HEARTBEATS`.
const FETCH_BATCH: usize = 256;

#[derive(Clone)]
pub enum Queue {
    Sqlite(SqliteStorage<RunJob>),
    Postgres(PostgresStorage<RunJob>),
}

impl Queue {
    /// Opens the queue on the application's pool, creating or upgrading apalis's tables.
    pub async fn open(db: &DatabaseConnection) -> anyhow::Result<Self> {
        Ok(match db.get_database_backend() {
            DatabaseBackend::Postgres => {
                let pool = db.get_postgres_connection_pool().clone();
                PostgresStorage::setup(&pool).await?;
                // The ack joins the acked ids to the jobs `WHERE lock_by = $worker`; with an
                // index on lock_by the planner (which guessed 136 such jobs) reads every
                // job this worker ever fetched, 13,500 rows and 7.8 ms an ack in `bench
                // jobs`, during which apalis hands out no job. Without one it looks each id
                // up by the primary key: 0.14 ms. Only the heartbeat's search for orphaned
                // jobs scans instead, once a second over jobs in flight (finished ones are
                // pruned). `unique_job_id` is a second unique index on `id` beside the primary
                // key (apalis's first migration; no query names it): every status change is
                // an update that writes an entry into each index, so it was one write a job
                // fetched and one acked for nothing. `bench jobs`, empty handler, 4 slots:
                // 7,408-8,887 jobs/s beside 6,885-7,829 (committing: within the noise).
                for index in [
                    "apalis.idx_apalis_jobs_lock_by",
                    "apalis.lidx",
                    "apalis.unique_job_id",
                ] {
                    db.execute_unprepared(&format!("DROP INDEX IF EXISTS {index}"))
                        .await?;
                }
                let config = apalis_postgres::Config::default()
                    .queue(QUEUE)
                    .batch_size(FETCH_BATCH)
                    .heartbeat_interval(HEARTBEAT)
                    .missed_heartbeats(MISSED_HEARTBEATS)
                    // As on SQLite below: a fetched job is already locked to this worker.
                    .lock_tasks(false);
                Self::Postgres(PostgresStorage::new(&pool).with_config(config))
            }
            _ => {
                let pool = db.get_sqlite_connection_pool().clone();
                // Only the migrations: `setup()` would also set `synchronous = OFF` on one
                // pooled connection, quietly weakening the durability the webhook ack needs.
                SqliteStorage::<()>::migrations()
                    .run(&pool)
                    .await
                    .map_err(|e| anyhow::anyhow!("apalis-sqlite migrations: {e}"))?;
                db.execute_unprepared("DROP INDEX IF EXISTS LIdx").await?;
                db.execute_unprepared("DROP INDEX IF EXISTS idx_jobs_status_run_at")
                    .await?;
                let config = apalis_sqlite::Config::default()
                    .queue(QUEUE)
                    .batch_size(FETCH_BATCH)
                    .heartbeat_interval(HEARTBEAT)
                    .missed_heartbeats(MISSED_HEARTBEATS)
                    // No write marking each fetched job running: a fetched job is already
                    // locked to this worker, and one orphaned by a dead worker is found
                    // either way. One statement fewer for each batch of acks: `bench jobs`
                    // at 4 slots 2,999-3,064 runs/s beside 2,838-3,081.
                    .lock_tasks(false);
                Self::Sqlite(SqliteStorage::new(&pool).with_config(config))
            }
        })
    }

    /// Pushes jobs in one statement.
    pub async fn push_bulk(&mut self, jobs: Vec<RunJob>) -> anyhow::Result<()> {
        if jobs.is_empty() {
            return Ok(());
        }
        match self {
            Self::Sqlite(storage) => storage.push_bulk(jobs).await.map_err(|e| e.to_string()),
            Self::Postgres(storage) => storage.push_bulk(jobs).await.map_err(|e| e.to_string()),
        }
        .map_err(|e| anyhow::anyhow!("pushing jobs: {e}"))
    }
}

impl Queue {
    /// The pool the queue lives on.
    fn db(&self) -> DatabaseConnection {
        match self {
            Self::Sqlite(storage) => {
                sea_orm::SqlxSqliteConnector::from_sqlx_sqlite_pool(storage.pool().clone())
            }
            Self::Postgres(storage) => {
                sea_orm::SqlxPostgresConnector::from_sqlx_postgres_pool(storage.pool().clone())
            }
        }
    }

    /// `prune_finished` on the pool the queue lives on.
    pub async fn prune_finished(&self, age: Duration) -> anyhow::Result<u64> {
        prune_finished(&self.db(), age).await
    }

    /// Jobs no worker has fetched yet, in every process (the predicate is apalis's fetch's).
    pub async fn waiting(&self) -> anyhow::Result<u64> {
        let db = self.db();
        let backend = db.get_database_backend();
        let sql = match backend {
            DatabaseBackend::Postgres => {
                "SELECT count(*) AS n FROM apalis.jobs WHERE job_type = $1 \
                 AND (status = 'Pending' OR (status = 'Failed' AND attempts < max_attempts))"
            }
            _ => {
                "SELECT count(*) AS n FROM Jobs WHERE job_type = ? \
                 AND (status = 'Pending' OR (status = 'Failed' AND attempts < max_attempts))"
            }
        };
        let row = db
            .query_one_raw(Statement::from_sql_and_values(backend, sql, [QUEUE.into()]))
            .await?
            .ok_or_else(|| anyhow::anyhow!("a count returned no row"))?;
        let n: i64 = row.try_get("", "n")?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

/// Deletes finished jobs older than `age`. The runs table is the record of what happened; a
/// finished job is only dead weight in every queue query.
pub async fn prune_finished(db: &DatabaseConnection, age: Duration) -> anyhow::Result<u64> {
    let backend = db.get_database_backend();
    let seconds = i64::try_from(age.as_secs()).unwrap_or(i64::MAX);
    let sql = match backend {
        DatabaseBackend::Postgres => {
            "DELETE FROM apalis.jobs WHERE job_type = $1 \
             AND (status IN ('Done', 'Killed') OR (status = 'Failed' AND attempts >= max_attempts)) \
             AND done_at < now() - make_interval(secs => $2)"
        }
        // SQLite keeps done_at as integer seconds since the epoch.
        _ => {
            "DELETE FROM Jobs WHERE job_type = ? \
             AND (status IN ('Done', 'Killed') OR (status = 'Failed' AND attempts >= max_attempts)) \
             AND done_at < CAST(strftime('%s', 'now') AS INTEGER) - ?"
        }
    };
    let result = db
        .execute_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [QUEUE.into(), seconds.into()],
        ))
        .await?;
    Ok(result.rows_affected())
}

#[cfg(test)]
mod tests {
    use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};

    use super::Queue;
    use crate::bench::fixture::ScratchDatabase;

    /// apalis's indexes that lead its ack astray (see `Queue::open`) are gone once the queue
    /// is open, on each database; opening it again (a restart) is fine.
    #[tokio::test]
    async fn the_queue_opens_without_the_indexes_that_slow_its_ack() {
        for database in ScratchDatabase::for_tests().await.unwrap() {
            let db = database.connect().await.unwrap();
            Queue::open(&db).await.unwrap();
            Queue::open(&db).await.unwrap();
            let backend = db.get_database_backend();
            let sql = match backend {
                DatabaseBackend::Postgres => {
                    "SELECT count(*) AS n FROM pg_indexes WHERE schemaname = 'apalis' \
                     AND tablename = 'jobs' AND indexdef LIKE '%(lock_by)'"
                }
                _ => {
                    "SELECT count(*) AS n FROM sqlite_master WHERE type = 'index' \
                     AND name IN ('LIdx', 'idx_jobs_status_run_at')"
                }
            };
            let row = db
                .query_one_raw(Statement::from_string(backend, sql))
                .await
                .unwrap()
                .unwrap();
            let left: i64 = row.try_get("", "n").unwrap();
            assert_eq!(left, 0, "{}", database.url);
            db.close().await.unwrap();
            database.remove().await.unwrap();
        }
    }
}
