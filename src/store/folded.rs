//! Write transactions that travel to the database in one trip: the BEGIN, the statements and
//! the COMMIT in one message, where a sea-orm transaction costs a trip a statement, plus its
//! BEGIN and its COMMIT. For the job layer's claim and end groups (`runs::together`).
//!
//! Why: every trip is a wake-up of a sleeping thread or server process and of ours, and on
//! this 2-core VM each cost more than most statements do. On SQLite sqlx runs each connection
//! on a thread of its own (the fifth session of 6 Dec timed a bare `BEGIN` at 139 us in the
//! webhook writer); on PostgreSQL a claim group was five trips and an end group four.
//!
//! SQLite: sqlx runs the statements of one string in turn and binds each its share of the
//! values (the webhook writer relies on the same); sqlx 0.9 marks that deprecated for
//! `Query`, not for `Executor::fetch_many`, which is what is used here.
//!
//! PostgreSQL: the extended protocol (bound parameters) takes one statement per round trip;
//! the simple protocol takes many in one message ("Multiple Statements in a Simple Query",
//! in the manual's protocol chapter), each read with a snapshot of its own under READ
//! COMMITTED, as if sent one by one. It takes no parameters, and it plans every statement
//! every time: with the values written into the text, a claim group of four spent more of
//! the server's time planning than executing (EXPLAIN: 0.38 ms against 0.25), and `bench
//! jobs` at 16 slots went from 1,603-1,988 runs/s to 1,187-1,393. So each statement is
//! prepared once on the writer's own connection (`PREPARE`, kept for as long as the
//! connection lives) and the trip sends `EXECUTE name(values)`, the values written by
//! sea-query's PostgreSQL quoting. Rows come back in text format, which sqlx decodes as it
//! does binary. Only for statements whose values are the job layer's own ids, times and
//! JSON. Behind a pooler in transaction mode (PgBouncer), where the next transaction may
//! run on another server connection, the first statement found gone turns preparing off.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};

use futures_util::TryStreamExt;
use sea_orm::sea_query::{PostgresQueryBuilder, QueryBuilder, inject_parameters};
use sea_orm::sqlx::{AssertSqlSafe, Either, Executor, SqlitePool};
use sea_orm::{DatabaseConnection, DbErr, QueryResult, Statement, Value, Values};

use super::kept::{KeptConnection, pool_error, query_error};

/// Statements prepared on one PostgreSQL connection at the most; past it a statement is sent
/// with its values in its text and planned each time. A group's statements differ only by
/// how many runs they name, so a process at 16 slots prepares a few dozen.
const MAX_PREPARED: usize = 256;

/// See the module. One transaction at a time; the caller's task owns it.
pub struct FoldedWriter {
    target: Target,
}

enum Target {
    Sqlite(SqlitePool),
    Postgres(PreparingConnection),
}

/// A PostgreSQL connection taken out of the pool for good, so that what it has prepared can
/// be used again; replaced after an error.
struct PreparingConnection {
    kept: KeptConnection,
    prepared: HashSet<String>,
    /// False once a prepared statement went missing: a pooler between us and the server
    /// (PgBouncer in transaction mode) hands each transaction to another server connection,
    /// and a statement prepared in one is unknown in the next.
    prepares: bool,
}

/// SQLSTATE `invalid_sql_statement_name`: EXECUTE of a name not prepared on the connection.
const PREPARED_STATEMENT_GONE: &str = "26000";

impl FoldedWriter {
    /// A writer on `db`'s pool (SQLite or PostgreSQL).
    pub fn new(db: &DatabaseConnection) -> Result<Self, DbErr> {
        let target = match db.get_database_backend() {
            sea_orm::DatabaseBackend::Sqlite => {
                Target::Sqlite(db.get_sqlite_connection_pool().clone())
            }
            sea_orm::DatabaseBackend::Postgres => Target::Postgres(PreparingConnection {
                kept: KeptConnection::new(db.get_postgres_connection_pool().clone()),
                prepared: HashSet::new(),
                prepares: true,
            }),
            other => {
                return Err(DbErr::Custom(format!("no folded transaction on {other:?}")));
            }
        };
        Ok(Self { target })
    }

    pub fn backend(&self) -> sea_orm::DatabaseBackend {
        match self.target {
            Target::Sqlite(_) => sea_orm::DatabaseBackend::Sqlite,
            Target::Postgres(_) => sea_orm::DatabaseBackend::Postgres,
        }
    }

    /// Runs `statements` in a transaction of their own, in one trip, and commits them: the
    /// rows of each statement, in order. After an error nothing is kept, and the connection
    /// that was inside the transaction is closed, not reused.
    pub async fn transaction(
        &mut self,
        statements: Vec<Statement>,
    ) -> Result<Vec<Vec<QueryResult>>, DbErr> {
        match &mut self.target {
            Target::Sqlite(pool) => sqlite_transaction(pool, statements).await,
            Target::Postgres(kept) => kept.transaction(statements).await,
        }
    }
}

async fn sqlite_transaction(
    pool: &SqlitePool,
    statements: Vec<Statement>,
) -> Result<Vec<Vec<QueryResult>>, DbErr> {
    let mut conn = pool.acquire().await.map_err(pool_error)?;
    let asked = statements.len();
    let mut sql = Vec::with_capacity(asked + 2);
    let mut values: Vec<Value> = Vec::new();
    sql.push("BEGIN IMMEDIATE".to_string());
    for statement in statements {
        sql.push(statement.sql);
        if let Some(Values(mut v)) = statement.values {
            values.append(&mut v);
        }
    }
    sql.push("COMMIT".to_string());
    let total = sql.len();
    let query = sea_orm::sqlx::query_with(
        AssertSqlSafe(sql.join(";\n")),
        sea_query_sqlx::SqlxValues(Values(values)),
    );
    let answered = results((&mut *conn).fetch_many(query)).await;
    match answered {
        Ok(outcome) if outcome.len() == total => {
            Ok(outcome.into_iter().skip(1).take(asked).collect())
        }
        other => {
            // The transaction may still be open on it: never back to the pool.
            conn.close_on_drop();
            Err(unanswered(other, total))
        }
    }
}

/// The rows of each statement of a stream, in order: each statement ends with a result
/// (`Either::Left`), rows or not.
async fn results<R, Row, S>(mut stream: S) -> Result<Vec<Vec<QueryResult>>, sea_orm::sqlx::Error>
where
    S: futures_util::Stream<Item = Result<Either<R, Row>, sea_orm::sqlx::Error>> + Unpin,
    QueryResult: From<Row>,
{
    let mut outcome: Vec<Vec<QueryResult>> = Vec::new();
    let mut current = Vec::new();
    while let Some(item) = stream.try_next().await? {
        match item {
            Either::Left(_) => outcome.push(std::mem::take(&mut current)),
            Either::Right(row) => current.push(QueryResult::from(row)),
        }
    }
    Ok(outcome)
}

/// The error of a trip that failed or that answered fewer statements than it sent.
fn unanswered(outcome: Result<Vec<Vec<QueryResult>>, sea_orm::sqlx::Error>, total: usize) -> DbErr {
    match outcome {
        Err(err) => query_error(err),
        Ok(outcome) => DbErr::Custom(format!(
            "{total} statements sent, {} answered",
            outcome.len()
        )),
    }
}

/// What a statement of a PostgreSQL trip is there for.
#[derive(Clone, Copy, PartialEq)]
enum Part {
    /// BEGIN, PREPARE, COMMIT: no rows the caller asked for.
    Frame,
    /// One of the caller's statements.
    Asked,
}

impl PreparingConnection {
    async fn transaction(
        &mut self,
        statements: Vec<Statement>,
    ) -> Result<Vec<Vec<QueryResult>>, DbErr> {
        let (mut conn, opened) = self.kept.take().await?;
        if opened {
            self.prepared.clear();
        }
        let mut sql: Vec<String> = Vec::with_capacity(statements.len() * 2 + 2);
        let mut parts: Vec<Part> = Vec::with_capacity(sql.capacity());
        let mut preparing: Vec<String> = Vec::new();
        sql.push("BEGIN".into());
        parts.push(Part::Frame);
        for statement in statements {
            let values = statement.values.map(|Values(v)| v).unwrap_or_default();
            let name = prepared_name(&statement.sql);
            let known = self.prepared.contains(&name) || preparing.contains(&name);
            if !self.prepares || (!known && self.prepared.len() + preparing.len() >= MAX_PREPARED) {
                sql.push(inject_parameters(
                    &statement.sql,
                    &values,
                    &PostgresQueryBuilder,
                ));
                parts.push(Part::Asked);
                continue;
            }
            if !known {
                sql.push(format!("PREPARE {name} AS {}", statement.sql));
                parts.push(Part::Frame);
                preparing.push(name.clone());
            }
            sql.push(execute(&name, &values));
            parts.push(Part::Asked);
        }
        sql.push("COMMIT".into());
        parts.push(Part::Frame);

        let answered =
            results((&mut conn).fetch_many(sea_orm::sqlx::raw_sql(AssertSqlSafe(sql.join(";\n")))))
                .await;
        match answered {
            Ok(outcome) if outcome.len() == parts.len() => {
                self.kept.put_back(conn);
                self.prepared.extend(preparing);
                Ok(outcome
                    .into_iter()
                    .zip(parts)
                    .filter(|(_, part)| *part == Part::Asked)
                    .map(|(rows, _)| rows)
                    .collect())
            }
            // The connection (maybe inside the failed transaction) is dropped, which closes
            // it; the next trip takes another and prepares again.
            other => {
                if let Err(sea_orm::sqlx::Error::Database(err)) = &other
                    && err.code().as_deref() == Some(PREPARED_STATEMENT_GONE)
                {
                    tracing::warn!(error = %err, "a statement prepared on this connection was gone: the job layer's statements are sent unprepared from now on");
                    self.prepares = false;
                }
                Err(unanswered(other, parts.len()))
            }
        }
    }
}

/// The name a statement is prepared under: its text's hash, so a statement that differs
/// only in its values is prepared once.
fn prepared_name(sql: &str) -> String {
    let mut hasher = DefaultHasher::new();
    sql.hash(&mut hasher);
    format!("synchub_folded_{:016x}", hasher.finish())
}

/// `EXECUTE name(values)`, each value written as PostgreSQL reads a constant.
fn execute(name: &str, values: &[Value]) -> String {
    if values.is_empty() {
        return format!("EXECUTE {name}");
    }
    let args: Vec<String> = values
        .iter()
        .map(|value| PostgresQueryBuilder.value_to_string(value))
        .collect();
    format!("EXECUTE {name}({})", args.join(", "))
}

#[cfg(test)]
mod tests {
    use sea_orm::ConnectionTrait;

    use super::*;
    use crate::bench::fixture::on_each_database;

    /// `sql` with `?` placeholders, numbered for PostgreSQL.
    fn statement(db: &DatabaseConnection, sql: &str, values: Vec<Value>) -> Statement {
        let backend = db.get_database_backend();
        let mut numbered = String::new();
        for (n, part) in sql.split('?').enumerate() {
            if n > 0 {
                if backend == sea_orm::DatabaseBackend::Postgres {
                    numbered.push_str(&format!("${n}"));
                } else {
                    numbered.push('?');
                }
            }
            numbered.push_str(part);
        }
        Statement::from_sql_and_values(backend, numbered, values)
    }

    async fn count(db: &DatabaseConnection) -> i64 {
        db.query_one_raw(statement(db, "SELECT count(*) AS n FROM t", vec![]))
            .await
            .unwrap()
            .unwrap()
            .try_get("", "n")
            .unwrap()
    }

    /// The statements of a transaction commit together, and each one's rows come back
    /// apart, its values in turn: a quote, a backslash, a time and a NULL come back as they
    /// went in (on PostgreSQL written into an EXECUTE). The same statements again, with
    /// other values, run as prepared the first time.
    #[tokio::test]
    async fn statements_commit_together_and_their_values_come_back() {
        on_each_database(|db, url| async move {
            db.execute_unprepared(
                "CREATE TABLE t (x INTEGER, s TEXT, at TIMESTAMP WITH TIME ZONE)",
            )
            .await
            .unwrap();
            let at = chrono::DateTime::parse_from_rfc3339("2026-12-06T21:59:58.123456Z")
                .unwrap()
                .to_utc();
            let hostile = "it's a \\ test'; DROP TABLE t; --";
            let mut writer = FoldedWriter::new(&db).unwrap();
            for round in 0..2 {
                let base = round * 10;
                let rows = writer
                    .transaction(vec![
                        statement(
                            &db,
                            "INSERT INTO t (x, s, at) VALUES (?, ?, ?), (?, ?, ?)",
                            vec![
                                (base + 1).into(),
                                hostile.into(),
                                at.into(),
                                (base + 2).into(),
                                Option::<String>::None.into(),
                                at.into(),
                            ],
                        ),
                        statement(
                            &db,
                            "UPDATE t SET x = x + ? WHERE x = ? RETURNING x, s, at",
                            vec![100.into(), (base + 1).into()],
                        ),
                        statement(&db, "SELECT s FROM t WHERE x = ?", vec![(base + 2).into()]),
                    ])
                    .await
                    .unwrap();
                assert_eq!(rows.len(), 3, "{url}");
                assert!(rows[0].is_empty());
                let x: i32 = rows[1][0].try_get("", "x").unwrap();
                assert_eq!(x, base + 101, "{url}");
                let s: Option<String> = rows[1][0].try_get("", "s").unwrap();
                assert_eq!(s.as_deref(), Some(hostile), "{url}");
                let back: chrono::DateTime<chrono::Utc> = rows[1][0].try_get("", "at").unwrap();
                assert_eq!(back, at, "{url}");
                let none: Option<String> = rows[2][0].try_get("", "s").unwrap();
                assert_eq!(none, None);
            }
            assert_eq!(count(&db).await, 4, "{url}: committed");
            if let Target::Postgres(kept) = &writer.target {
                assert_eq!(kept.prepared.len(), 3, "prepared once each");
            }
        })
        .await;
    }

    /// A statement that fails undoes the whole transaction, and the connection that was
    /// inside it is never used again (the pool's next user would write into it, and on SQLite
    /// hold the write lock). On PostgreSQL the writer's next transaction takes a new
    /// connection and prepares its statements there again.
    #[tokio::test]
    async fn a_failed_transaction_keeps_nothing_and_its_connection_is_not_reused() {
        on_each_database(|db, url| async move {
            db.execute_unprepared("CREATE TABLE t (x INTEGER NOT NULL)")
                .await
                .unwrap();
            let mut writer = FoldedWriter::new(&db).unwrap();
            let insert =
                |x: Option<i32>| statement(&db, "INSERT INTO t VALUES (?)", vec![x.into()]);
            writer.transaction(vec![insert(Some(1))]).await.unwrap();
            let failed = writer
                .transaction(vec![insert(Some(2)), insert(None), insert(Some(3))])
                .await;
            assert!(failed.is_err(), "{url}");
            // Were the open transaction back in the pool, this write would wait for its lock
            // (or land in it) and the count below would see more or hang.
            db.execute_unprepared("INSERT INTO t VALUES (4)")
                .await
                .unwrap();
            assert_eq!(
                count(&db).await,
                2,
                "{url}: only the writes around the failure"
            );
            writer.transaction(vec![insert(Some(5))]).await.unwrap();
            assert_eq!(count(&db).await, 3, "{url}: the writer goes on");
        })
        .await;
    }

    /// PostgreSQL: when a statement the writer prepared is gone from its connection (as
    /// behind a pooler in transaction mode), that transaction fails and writes nothing, and
    /// the writer sends its statements unprepared from then on.
    #[tokio::test]
    async fn a_writer_whose_prepared_statements_vanish_goes_on_without_them() {
        on_each_database(|db, url| async move {
            if db.get_database_backend() != sea_orm::DatabaseBackend::Postgres {
                return;
            }
            db.execute_unprepared("CREATE TABLE t (x INTEGER NOT NULL)")
                .await
                .unwrap();
            let mut writer = FoldedWriter::new(&db).unwrap();
            let insert = |x: i32| statement(&db, "INSERT INTO t VALUES (?)", vec![x.into()]);
            writer.transaction(vec![insert(1)]).await.unwrap();
            let Target::Postgres(kept) = &mut writer.target else {
                unreachable!("a PostgreSQL writer");
            };
            let (mut conn, _) = kept.kept.take().await.unwrap();
            conn.execute("DEALLOCATE ALL").await.unwrap();
            kept.kept.put_back(conn);
            assert!(writer.transaction(vec![insert(2)]).await.is_err(), "{url}");
            writer.transaction(vec![insert(3)]).await.unwrap();
            writer.transaction(vec![insert(4)]).await.unwrap();
            assert_eq!(count(&db).await, 3, "{url}");
            let Target::Postgres(kept) = &writer.target else {
                unreachable!("a PostgreSQL writer");
            };
            assert!(!kept.prepares && kept.prepared.is_empty(), "{url}");
        })
        .await;
    }
}
