//! The apalis queue the dispatcher fills and the workers drain: apalis-sqlite, or
//! apalis-postgres on PostgreSQL, tuned for this workload.
//!
//! Stock apalis 1.0 is slow on a growing table (about 80 jobs/s on SQLite): finished jobs are
//! never deleted, and on SQLite two of its indexes mislead the planner (the ack query walks
//! `LIdx` over every job this worker ever locked). Our runs table keeps the real state, so the
//! queue only hands jobs over: apalis neither marks a job running nor acks it, a job a worker
//! has taken is pruned within seconds, and the indexes that served the acks are dropped.

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
/// Jobs fetched per query. apalis fetches again only once its buffer is empty, and no slot
/// that frees meanwhile gets a job until the fetch returns (2.5 ms on PostgreSQL with the
/// statement log on). `bench jobs`, 4 slots, committing: with 64, 1,370 and 1,395 runs/s on
/// PostgreSQL, with 256 1,564 and 1,573 (SQLite 1,514 and 2,002 beside 2,207 and 2,248).
/// The price: fetched jobs wait for this worker's slots while another process's may idle,
/// until the dispatcher hands their runs over again (`REDISPATCH_AFTER`), as with any
/// queue's prefetch.
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
                Self::Postgres(PostgresStorage::new(&pool).with_config(postgres_config()))
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
                Self::Sqlite(SqliteStorage::new(&pool).with_config(sqlite_config()))
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

/// The queue on PostgreSQL: it only hands jobs over.
fn postgres_config() -> apalis_postgres::Config {
    apalis_postgres::Config::default()
        .queue(QUEUE)
        .batch_size(FETCH_BATCH)
        .heartbeat_interval(HEARTBEAT)
        .missed_heartbeats(MISSED_HEARTBEATS)
        // As on SQLite (`sqlite_config`): no mark, no ack.
        .lock_tasks(false)
        .persist_results(false)
}

/// The queue on SQLite: it only hands jobs over.
fn sqlite_config() -> apalis_sqlite::Config {
    apalis_sqlite::Config::default()
        .queue(QUEUE)
        .batch_size(FETCH_BATCH)
        .heartbeat_interval(HEARTBEAT)
        .missed_heartbeats(MISSED_HEARTBEATS)
        // No write marking each fetched job running: a fetched job is already locked to
        // this worker. One statement fewer for each batch of acks: `bench jobs` at 4 slots
        // 2,999-3,064 runs/s beside 2,838-3,081.
        .lock_tasks(false)
        // No ack either: the run's own end is its record, and a job is pruned once taken
        // (`prune_taken`). apalis fetches nothing while an ack is in flight; on
        // PostgreSQL an ack cost 1.2 ms (2.8 with the statement log on), one for every 32
        // runs. Without: `bench jobs` at 4 slots, empty handler, 9,155-10,434 jobs/s beside
        // 7,604-9,906 (committing: 1,404-1,753 runs/s beside 1,069-1,645, noisy).
        .persist_results(false)
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

    /// `prune_taken` on the pool the queue lives on.
    pub async fn prune_taken(&self, age: Duration) -> anyhow::Result<u64> {
        prune_taken(&self.db(), age).await
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

/// Deletes the jobs a worker took (fetched) more than `age` ago, and finished ones (a queue
/// from before jobs were left unacked). The runs table is the record of what happened and
/// what is due: a run whose job is gone with a dead worker's buffer is handed over again
/// after `REDISPATCH_AFTER`, one that started is taken over when its lease runs out.
pub async fn prune_taken(db: &DatabaseConnection, age: Duration) -> anyhow::Result<u64> {
    let backend = db.get_database_backend();
    let seconds = i64::try_from(age.as_secs()).unwrap_or(i64::MAX);
    let sql = match backend {
        DatabaseBackend::Postgres => {
            "DELETE FROM apalis.jobs WHERE job_type = $1 AND ( \
             (status IN ('Queued', 'Running') AND lock_at < now() - make_interval(secs => $2)) \
             OR ((status IN ('Done', 'Killed') OR (status = 'Failed' AND attempts >= max_attempts)) \
             AND done_at < now() - make_interval(secs => $2)))"
        }
        // SQLite keeps lock_at and done_at as integer seconds since the epoch.
        _ => {
            "DELETE FROM Jobs WHERE job_type = ?1 AND ( \
             (status IN ('Queued', 'Running') AND lock_at < CAST(strftime('%s', 'now') AS INTEGER) - ?2) \
             OR ((status IN ('Done', 'Killed') OR (status = 'Failed' AND attempts >= max_attempts)) \
             AND done_at < CAST(strftime('%s', 'now') AS INTEGER) - ?2))"
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

    use super::{Queue, RunJob, postgres_config, sqlite_config};
    use crate::bench::fixture::{ScratchDatabase, on_each_database};

    /// The queue only hands jobs over: apalis neither marks a job running nor acks it (each
    /// a write, and no job is fetched while an ack is in flight), on either database.
    #[test]
    fn the_queue_neither_marks_nor_acks_jobs() {
        let (postgres, sqlite) = (postgres_config(), sqlite_config());
        assert!(!postgres.lock_tasks && !postgres.persist_results);
        assert!(!sqlite.lock_tasks && !sqlite.persist_results);
    }

    /// A job a worker took (apalis's fetch marks it `Queued` and locked) leaves the queue
    /// once older than the age asked, without an ack; one taken a moment ago and one still
    /// waiting stay.
    #[tokio::test]
    async fn jobs_the_workers_took_are_pruned_without_an_ack() {
        on_each_database(|db, url| async move {
            let mut queue = Queue::open(&db).await.unwrap();
            let jobs = (0..3)
                .map(|i| RunJob {
                    v: 1,
                    run_id: format!("run_{i}"),
                })
                .collect();
            queue.push_bulk(jobs).await.unwrap();
            // Each statement takes one waiting job as apalis's fetch does (less `lock_by`).
            let (long_ago, just_now) = match db.get_database_backend() {
                DatabaseBackend::Postgres => (
                    "UPDATE apalis.jobs SET status = 'Queued', \
                     lock_at = now() - interval '120 seconds' \
                     WHERE id = (SELECT min(id) FROM apalis.jobs WHERE status = 'Pending')",
                    "UPDATE apalis.jobs SET status = 'Queued', lock_at = now() \
                     WHERE id = (SELECT min(id) FROM apalis.jobs WHERE status = 'Pending')",
                ),
                _ => (
                    "UPDATE Jobs SET status = 'Queued', \
                     lock_at = strftime('%s', 'now') - 120 \
                     WHERE id = (SELECT min(id) FROM Jobs WHERE status = 'Pending')",
                    "UPDATE Jobs SET status = 'Queued', \
                     lock_at = strftime('%s', 'now') \
                     WHERE id = (SELECT min(id) FROM Jobs WHERE status = 'Pending')",
                ),
            };
            for sql in [long_ago, just_now] {
                let taken = db.execute_unprepared(sql).await.unwrap();
                assert_eq!(taken.rows_affected(), 1, "{url}: {sql}");
            }
            let pruned = queue
                .prune_taken(std::time::Duration::from_secs(60))
                .await
                .unwrap();
            assert_eq!(pruned, 1, "{url}");
            assert_eq!(queue.waiting().await.unwrap(), 1, "{url}");
        })
        .await;
    }

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
