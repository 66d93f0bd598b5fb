//! Storage: the connection to SQLite or PostgreSQL, migrations, and the entities.

mod checkpoint;
pub mod entities;
mod folded;
pub mod kept;
mod owned;
mod sqlite_busy;
mod wal_flush;

pub use checkpoint::{Checkpointed, checkpoint, spawn_checkpointer};
pub use folded::FoldedWriter;
pub use kept::KeptConnection;
pub use owned::{TenantOwned, find_owned};
pub use sqlite_busy::lock_waits as sqlite_lock_waits;
pub use wal_flush::{AfterFlush, WalFlush};

use std::time::Duration;

use anyhow::Context;
use migration::{Migrator, MigratorTrait};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseBackend, DatabaseConnection};

use crate::config::Settings;

/// Opens the configured database. SQLite runs in WAL with `synchronous=FULL`, so a commit
/// that returned has reached the disk: the webhook ack depends on it.
pub async fn connect(settings: &Settings) -> anyhow::Result<DatabaseConnection> {
    open(
        settings,
        settings.database.max_connections,
        Flush::EveryCommit,
    )
    .await
}

/// A small pool of its own for the shared rate limits and concurrency slots. Their rows are
/// token counts and leases, which a power cut may roll back by a moment without harm (a
/// lease runs out, a bucket refills), so their commits skip the flush to disk that a webhook's
/// ack needs: SQLite `synchronous=NORMAL` in WAL (safe against a crashed process, not a
/// power cut), PostgreSQL `synchronous_commit=off`. With the flush, two of them per call
/// bounded Lingxing's ten calls in flight at half their rate.
pub async fn connect_leases(settings: &Settings) -> anyhow::Result<DatabaseConnection> {
    open(
        settings,
        settings.database.max_connections.clamp(1, 4),
        Flush::Relaxed,
    )
    .await
}

/// A pool of its own for the job layer's bookkeeping: a run's claim and lease renewals, the
/// queue's pushes, fetches and acks, the dispatcher's marks. Each of these, lost to a power
/// cut, leaves the run due as before (the run is claimed and queued again), and the next
/// commit that does flush (a page, the run's end) carries them to disk with it, since
/// SQLite's WAL and PostgreSQL's log are flushed in order. Without the flush a run costs
/// one wait for the disk instead of four.
pub async fn connect_relaxed(settings: &Settings) -> anyhow::Result<DatabaseConnection> {
    open(
        settings,
        settings.database.max_connections.clamp(1, 8),
        Flush::Relaxed,
    )
    .await
}

/// The webhook group commit's own connection, kept for the writer alone on either database.
///
/// SQLite, where one writer at a time is all there is: its page cache stays valid from one
/// batch to the next (a pooled one found pages another connection had changed, dropped its
/// cache and read them again: 6 % of the ingest server's CPU in `pread`), and it is larger
/// than a pooled one's (`EVENT_WRITER_CACHE_KIB`). It commits without the flush, which the
/// writer does through `wal` before it answers (`wal_flush`).
///
/// PostgreSQL: one server process serves every batch, with its caches and the batch
/// statements sqlx prepared on it, instead of whichever of the pool's was free (`bench
/// webhooks`, fourteenth session: 9,488 webhooks/s beside 7,975 on the shared pool, eight
/// interleaved rounds), and a pool busy with API calls no longer holds webhooks back. The
/// writer takes the connection out of this pool for good (`KeptConnection`).
pub async fn connect_event_writer(settings: &Settings) -> anyhow::Result<EventStore> {
    if !settings.effective_database_url().starts_with("sqlite:") {
        // The writer takes its connection out of this pool for good (`KeptConnection`): an
        // idle one kept beside it would be a second server connection for nothing.
        let pool = Pool {
            max: 1,
            idle: 0,
            sqlite_cache_kib: SQLITE_DEFAULT_CACHE_KIB,
        };
        return Ok(EventStore::Durable(
            open_with(settings, pool, Flush::EveryCommit).await?,
        ));
    }
    let pool = Pool {
        max: 1,
        idle: 1,
        sqlite_cache_kib: EVENT_WRITER_CACHE_KIB,
    };
    let db = open_with(settings, pool, Flush::Relaxed).await?;
    let wal = WalFlush::of(&db).await?;
    Ok(EventStore::FlushAfterCommit { db, wal })
}

/// SQLite: a pool on a database file of the job queue's own beside the main one
/// (`synchub.queue.db` beside `synchub.db`), committing without the flush as
/// `connect_relaxed` does. apalis's fetches, locks and acks then take that file's write lock
/// and not the one the runs' claims and ends wait for: in `bench jobs` (4 slots) a claim
/// went from 0.62 to 0.43 ms and an end from 0.60 to 0.51. Nothing is lost with the file:
/// the runs table says what is due, and a run marked handed over whose job is gone is handed
/// over again after `REDISPATCH_AFTER`, as after a crash between the mark and the push.
/// None on PostgreSQL (the queue's `apalis` schema shares the database and the relaxed pool)
/// and for a database without a file.
pub async fn connect_queue(
    settings: &Settings,
    db: &DatabaseConnection,
) -> anyhow::Result<Option<DatabaseConnection>> {
    if !is_sqlite(db) {
        return Ok(None);
    }
    let Some(main) = sqlite_main_file(db).await? else {
        return Ok(None);
    };
    let mut queue = settings.clone();
    queue.database_url = format!("sqlite://{}?mode=rwc", queue_file(&main).display());
    let pool = open(
        &queue,
        settings.database.max_connections.clamp(1, 4),
        Flush::Relaxed,
    )
    .await?;
    Ok(Some(pool))
}

/// The job queue's file beside the main database's.
fn queue_file(main: &std::path::Path) -> std::path::PathBuf {
    main.with_extension("queue.db")
}

/// Where SQLite says the main database of `db` is; None for one in memory.
async fn sqlite_main_file(db: &DatabaseConnection) -> anyhow::Result<Option<std::path::PathBuf>> {
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT file FROM pragma_database_list WHERE name = 'main'",
        ))
        .await?
        .ok_or_else(|| anyhow::anyhow!("SQLite lists no main database"))?;
    let file: String = row.try_get_by_index(0)?;
    Ok((!file.is_empty()).then(|| std::path::PathBuf::from(file)))
}

/// Where the webhook group commit writes (`connect_event_writer`).
#[derive(Clone, Debug)]
pub enum EventStore {
    /// A connection whose commits are durable when they return.
    Durable(DatabaseConnection),
    /// A connection whose commits are durable only once `wal` has flushed after them.
    FlushAfterCommit {
        db: DatabaseConnection,
        wal: WalFlush,
    },
}

/// The event writer's page cache, in KiB. Not larger: while the database is under 1 GiB,
/// every commit whose B-tree balancing swapped two pages' numbers scans the whole cache
/// (the swap goes through the number of the page after the lock byte's, 262,145 at 4 KiB;
/// the cache's highest key jumps there, and the commit's truncation to the database's size
/// then visits every bucket and page: `pcache1TruncateUnsafe` in the bundled sqlite3.c).
/// Random event ids split the dedupe index's leaves all the time, so with 64 MiB that scan
/// was 11 % of the ingest server's CPU (perf, `bench webhooks`, scattered ids); at 16 MiB
/// 5 %. Interleaved, two rounds under both generators: 11,611-14,052 webhooks/s at 16 MiB
/// and 12,994-14,520 at 4 MiB beside 7,556-10,762 at 64 (run first in each round, which may
/// have cost it some). 16 MiB keeps more of a large index's inner pages than 4 would, for
/// the same rate here.
const EVENT_WRITER_CACHE_KIB: u32 = 16 * 1024;
/// A pooled connection's: SQLite's default.
const SQLITE_DEFAULT_CACHE_KIB: u32 = 2_000;

#[derive(Clone, Copy, PartialEq)]
enum Flush {
    EveryCommit,
    Relaxed,
}

async fn open(
    settings: &Settings,
    max_connections: u32,
    flush: Flush,
) -> anyhow::Result<DatabaseConnection> {
    let pool = Pool {
        max: max_connections,
        idle: 1,
        sqlite_cache_kib: SQLITE_DEFAULT_CACHE_KIB,
    };
    open_with(settings, pool, flush).await
}

/// A pool's size: at most `max` connections, `idle` kept open when unused; SQLite's page
/// cache a connection.
struct Pool {
    max: u32,
    idle: u32,
    sqlite_cache_kib: u32,
}

async fn open_with(
    settings: &Settings,
    pool: Pool,
    flush: Flush,
) -> anyhow::Result<DatabaseConnection> {
    let Pool {
        max: max_connections,
        idle,
        sqlite_cache_kib,
    } = pool;
    let url = settings.effective_database_url();
    if url.starts_with("sqlite:") && settings.database_url.trim().is_empty() {
        std::fs::create_dir_all(&settings.data_dir).with_context(|| {
            format!(
                "creating the data directory {}",
                settings.data_dir.display()
            )
        })?;
    }
    let mut options = ConnectOptions::new(url.clone());
    options
        .max_connections(max_connections)
        .min_connections(idle)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(10))
        // sqlx pings a pooled connection on every acquire: a round trip before each statement
        // or transaction (a thread hop on SQLite), measured as a fifth of a run's claim and
        // end on PostgreSQL. A connection idle this long is still checked first, which is
        // when one goes stale (a restarted server, a proxy's idle cut).
        .test_before_acquire_if_idle_for(Duration::from_secs(30))
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(move |opts| {
            opts.journal_mode(SqliteJournalMode::Wal)
                .synchronous(match flush {
                    Flush::EveryCommit => SqliteSynchronous::Full,
                    Flush::Relaxed => SqliteSynchronous::Normal,
                })
                // Replaced by `sqlite_busy`'s finer handler once connected; this one holds
                // only while the connection is being opened.
                .busy_timeout(sqlite_busy::BUSY_TIMEOUT)
                .foreign_keys(true)
                // A multi-row insert under a foreign key keeps a statement journal; on disk
                // it cost the webhook group commit 8 % of its CPU in writes (profiled). It
                // only ever undoes one statement, so memory is where it belongs.
                .pragma("temp_store", "memory")
                // Checkpoints are `checkpoint`'s background task's; this is its backstop.
                .pragma("wal_autocheckpoint", checkpoint::BACKSTOP_PAGES.to_string())
                .pragma("cache_size", format!("-{sqlite_cache_kib}"))
        })
        .map_sqlx_sqlite_pool_opts(|pool| pool.after_connect(sqlite_busy::install))
        .map_sqlx_postgres_opts(move |opts| match flush {
            Flush::EveryCommit => opts,
            Flush::Relaxed => opts.options([("synchronous_commit", "off")]),
        });
    let db = Database::connect(options)
        .await
        .with_context(|| format!("connecting to the database ({})", redact_url(&url)))?;
    Ok(db)
}

/// PostgreSQL: bytes per INSERT statement, so one message stays bounded. It was 12 KiB while
/// sqlx 0.9.0 left Nagle's algorithm on (sqlx#4335): the tail of a larger message waited for
/// the server's delayed ACK, 40 ms and more (at 60 KiB a page of records took 140 ms).
/// sqlx 0.9.1 sets TCP_NODELAY again; with 1 MiB a page of 250 orders is one statement
/// instead of thirty, and `bench throughput` on PostgreSQL went from about 12,000 to
/// 16,000 orders a second.
pub const MAX_POSTGRES_STATEMENT_BYTES: usize = 1024 * 1024;

/// Splits rows into multi-row INSERT statements: at most `max_rows` each and, on
/// PostgreSQL, about [`MAX_POSTGRES_STATEMENT_BYTES`] by the `size` estimate.
pub fn statement_chunks<T>(
    rows: Vec<T>,
    backend: DatabaseBackend,
    max_rows: usize,
    size: impl Fn(&T) -> usize,
) -> Vec<Vec<T>> {
    let max_bytes = match backend {
        DatabaseBackend::Postgres => MAX_POSTGRES_STATEMENT_BYTES,
        _ => usize::MAX,
    };
    let mut chunks = Vec::new();
    let mut current = Vec::new();
    let mut bytes = 0usize;
    for row in rows {
        // Sizes matter only where there is a byte cap.
        let row_size = if max_bytes == usize::MAX {
            0
        } else {
            size(&row)
        };
        if !current.is_empty() && (current.len() >= max_rows || bytes + row_size > max_bytes) {
            chunks.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += row_size;
        current.push(row);
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}

pub async fn migrate(db: &DatabaseConnection) -> anyhow::Result<()> {
    Migrator::up(db, None).await.context("applying migrations")
}

/// How the database's schema stands against this binary's migrations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schema {
    Current,
    /// This many of the binary's migrations are not applied yet.
    Behind(usize),
    /// Migrations the database holds that this binary does not know: a newer synchub
    /// migrated it.
    Ahead(Vec<String>),
}

pub async fn schema(db: &DatabaseConnection) -> anyhow::Result<Schema> {
    let applied = migration::applied_versions(db)
        .await
        .context("reading the applied migrations")?;
    let known: Vec<String> = Migrator::migrations()
        .iter()
        .map(|m| m.name().to_string())
        .collect();
    let unknown: Vec<String> = applied
        .iter()
        .filter(|v| !known.contains(v))
        .cloned()
        .collect();
    if !unknown.is_empty() {
        return Ok(Schema::Ahead(unknown));
    }
    let behind = known.iter().filter(|k| !applied.contains(k)).count();
    Ok(if behind == 0 {
        Schema::Current
    } else {
        Schema::Behind(behind)
    })
}

/// Brings the schema to this binary's: applies what is pending when `migrate`, else waits
/// up to `wait` for `synchub migrate` to. A schema newer than the binary is refused at once
/// either way: running on it could write rows a newer version reads wrongly.
pub async fn settle_schema(
    db: &DatabaseConnection,
    migrate: bool,
    wait: Duration,
) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    loop {
        match schema(db).await? {
            Schema::Current => return Ok(()),
            Schema::Ahead(unknown) => anyhow::bail!(
                "the database holds migrations this synchub does not know ({}): a newer \
                 version migrated it; run that version",
                unknown.join(", ")
            ),
            Schema::Behind(_) if migrate => return self::migrate(db).await,
            Schema::Behind(pending) if started.elapsed() >= wait => anyhow::bail!(
                "{pending} migration(s) still pending after {} s: run `synchub migrate` \
                 (this process leaves migrating to it: database.migrate_at_start = false)",
                wait.as_secs()
            ),
            Schema::Behind(pending) => {
                tracing::warn!(pending, "waiting for `synchub migrate` to apply the schema");
                tokio::time::sleep(Duration::from_secs(2).min(wait)).await;
            }
        }
    }
}

/// Ready means: the database answers and no migration is pending.
pub async fn readiness(db: &DatabaseConnection) -> Result<(), String> {
    db.execute_unprepared("SELECT 1")
        .await
        .map_err(|e| format!("database unreachable: {e}"))?;
    let pending = Migrator::get_pending_migrations(db)
        .await
        .map_err(|e| format!("cannot read migrations: {e}"))?;
    if pending.is_empty() {
        Ok(())
    } else {
        Err(format!("{} migration(s) pending", pending.len()))
    }
}

pub fn is_sqlite(db: &DatabaseConnection) -> bool {
    db.get_database_backend() == DatabaseBackend::Sqlite
}

/// Hides the password of a database URL before it reaches a log line or an error.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..scheme_end + 3], user, &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Starts a transaction that will write. On SQLite it is `BEGIN IMMEDIATE`: it takes the
/// write lock up front (waiting out the busy timeout), where a deferred transaction that
/// reads first would fail at its first write if another writer had committed meanwhile.
pub async fn begin_write(
    db: &DatabaseConnection,
) -> Result<sea_orm::DatabaseTransaction, sea_orm::DbErr> {
    use sea_orm::{SqliteTransactionMode, TransactionOptions, TransactionTrait};
    db.begin_with_options(TransactionOptions {
        sqlite_transaction_mode: is_sqlite(db).then_some(SqliteTransactionMode::Immediate),
        ..Default::default()
    })
    .await
}

/// A SQLite database in a temporary folder, opened as the service opens its own (the folder
/// goes with the returned guard).
#[cfg(test)]
pub(crate) async fn scratch_sqlite() -> (tempfile::TempDir, DatabaseConnection) {
    let dir = tempfile::tempdir().unwrap();
    let vars = [(
        "DATABASE_URL".to_string(),
        format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display()),
    )];
    let settings = crate::config::Settings::from_layers(&vars, &Default::default()).unwrap();
    let db = connect(&settings).await.unwrap();
    (dir, db)
}

#[cfg(test)]
mod tests {
    use sea_orm::ConnectionTrait;

    /// SQLite's job queue has a file of its own beside the main database (whose write lock
    /// the runs' claims and ends then do not share with apalis), made when the queue opens;
    /// the main database holds none of apalis's tables. PostgreSQL's queue shares the
    /// database.
    #[tokio::test]
    async fn the_job_queue_has_a_sqlite_file_of_its_own() {
        for database in crate::bench::fixture::ScratchDatabase::for_tests()
            .await
            .unwrap()
        {
            let db = database.connect().await.unwrap();
            let queue = super::connect_queue(&database.settings(&[]).unwrap(), &db)
                .await
                .unwrap();
            if !super::is_sqlite(&db) {
                assert!(queue.is_none(), "PostgreSQL's queue shares the database");
                database.remove().await.unwrap();
                continue;
            }
            let queue = queue.expect("a pool on a file of its own");
            crate::runtime::Queue::open(&queue).await.unwrap();
            let main = super::sqlite_main_file(&db).await.unwrap().unwrap();
            let file = super::sqlite_main_file(&queue).await.unwrap().unwrap();
            assert_eq!(file, main.with_file_name("bench.queue.db"));
            let tables = |db: sea_orm::DatabaseConnection| async move {
                db.query_one_raw(sea_orm::Statement::from_string(
                    sea_orm::DatabaseBackend::Sqlite,
                    "SELECT count(*) AS n FROM sqlite_master WHERE type = 'table' AND name = 'Jobs'",
                ))
                .await
                .unwrap()
                .unwrap()
                .try_get::<i64>("", "n")
                .unwrap()
            };
            assert_eq!(tables(queue.clone()).await, 1);
            assert_eq!(
                tables(db.clone()).await,
                0,
                "none of apalis's tables in the main file"
            );
            queue.close().await.unwrap();
            db.close().await.unwrap();
            database.remove().await.unwrap();
        }
    }

    /// A writer that finds the write lock taken tries again within a tenth of a millisecond, through
    /// synchub's busy handler: SQLite's own would try about seven times in 50 ms and count
    /// nothing here.
    #[tokio::test]
    async fn a_sqlite_writer_waiting_for_the_lock_tries_again_often() {
        let (_dir, db) = super::scratch_sqlite().await;
        db.execute_unprepared("CREATE TABLE t (x INTEGER)")
            .await
            .unwrap();
        let holder = super::begin_write(&db).await.unwrap();
        holder
            .execute_unprepared("INSERT INTO t VALUES (1)")
            .await
            .unwrap();
        let before = super::sqlite_lock_waits();
        let other = db.clone();
        let waiter =
            tokio::spawn(async move { other.execute_unprepared("INSERT INTO t VALUES (2)").await });
        // SQLite's lock is real, outside the injected clock: the holder keeps it 50 ms.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        holder.commit().await.unwrap();
        waiter.await.unwrap().unwrap();
        let waits = super::sqlite_lock_waits() - before;
        assert!(waits >= 50, "only {waits} tries in 50 ms");
    }

    /// The group commit's own SQLite connection keeps a cache that holds the dedupe index,
    /// and flushes its database's WAL.
    #[tokio::test]
    async fn the_event_writer_has_a_large_cache_of_its_own_on_sqlite() {
        use sea_orm::{ConnectionTrait, Statement};
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let settings = crate::config::Settings::from_layers(
            &[("DATABASE_URL".to_string(), url)],
            &Default::default(),
        )
        .unwrap();
        let cache = |db: sea_orm::DatabaseConnection| async move {
            let row = db
                .query_one_raw(Statement::from_string(
                    db.get_database_backend(),
                    "PRAGMA cache_size",
                ))
                .await
                .unwrap()
                .unwrap();
            row.try_get_by_index::<i64>(0).unwrap()
        };
        let super::EventStore::FlushAfterCommit { db, wal } =
            super::connect_event_writer(&settings).await.unwrap()
        else {
            panic!("SQLite's writer flushes after its commits");
        };
        assert_eq!(
            wal,
            super::WalFlush::at(dir.path().join("t.db-wal")),
            "the flush is of this database's WAL"
        );
        assert!(wal.flush().await.is_ok());
        assert_eq!(cache(db).await, -(super::EVENT_WRITER_CACHE_KIB as i64));
        let pooled = super::connect(&settings).await.unwrap();
        assert_eq!(cache(pooled).await, -2_000);
    }

    /// On PostgreSQL the group commit's connection is its own: it commits at once while
    /// every connection of the shared pool is held by a transaction (API calls, runs).
    #[tokio::test]
    async fn the_event_writer_commits_while_the_shared_pool_is_busy_on_postgres() {
        use sea_orm::TransactionTrait;
        let Ok(url) = std::env::var("SYNCHUB_TEST_DATABASE_URL") else {
            return; // PostgreSQL only.
        };
        let database = crate::bench::fixture::ScratchDatabase::create("postgres", &url)
            .await
            .unwrap();
        let settings = database
            .settings(&[("SYNCHUB_DATABASE__MAX_CONNECTIONS", "2")])
            .unwrap();
        let pool = super::connect(&settings).await.unwrap();
        let held = [pool.begin().await.unwrap(), pool.begin().await.unwrap()];

        let super::EventStore::Durable(writer) =
            super::connect_event_writer(&settings).await.unwrap()
        else {
            panic!("PostgreSQL's commits are durable when they return");
        };
        assert_eq!(
            writer
                .get_postgres_connection_pool()
                .options()
                .get_max_connections(),
            1
        );
        let committed = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            let txn = super::begin_write(&writer).await?;
            txn.execute_unprepared("CREATE TABLE probe (x INTEGER)")
                .await?;
            txn.execute_unprepared("INSERT INTO probe VALUES (1)")
                .await?;
            txn.commit().await
        })
        .await;
        assert!(matches!(committed, Ok(Ok(()))), "{committed:?}");
        drop(held);
        database.remove().await.unwrap();
    }

    #[test]
    fn database_passwords_do_not_reach_logs() {
        assert_eq!(
            super::redact_url("postgres://app:s3cret@db:5432/x"),
            "postgres://app:***@db:5432/x"
        );
        assert_eq!(
            super::redact_url("sqlite://./data/x.db"),
            "sqlite://./data/x.db"
        );
    }
}
