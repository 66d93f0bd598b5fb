//! A SQLite write transaction whose `BEGIN IMMEDIATE` travels with its first statements and
//! whose `COMMIT` with its last, so that it costs two trips to the connection's thread where
//! a sea-orm transaction costs one a statement, plus its BEGIN and its COMMIT.
//!
//! Why: sqlx runs each SQLite connection on a thread of its own, and every statement is a
//! trip there and back, two wake-ups of a sleeping thread (the fifth session of 6 Dec timed a
//! bare `BEGIN` at 139 us in the webhook writer). The job layer's claim and end groups were
//! four trips each, the larger part of a run's time at four worker slots.
//!
//! sqlx runs the statements of one string in turn on SQLite and binds each its share of the
//! values (the webhook writer relies on the same); sqlx 0.9 marks that deprecated for
//! `Query`, not for `Executor::fetch_many`, which is what is used here.

use futures_util::TryStreamExt;
use sea_orm::sqlx::pool::PoolConnection;
use sea_orm::sqlx::{Either, Executor, Sqlite};
use sea_orm::{DatabaseConnection, DbErr, QueryResult, Statement, Value, Values};

/// See the module. A connection dropped while its transaction is open is closed, not
/// returned to the pool: the next user of a pooled connection must not find one.
pub struct FoldedTransaction {
    conn: PoolConnection<Sqlite>,
    state: State,
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum State {
    NotBegun,
    Open,
    Ended,
}

impl FoldedTransaction {
    /// A connection of `db`'s pool; the transaction begins with the first trip. `db` must be
    /// SQLite.
    pub async fn acquire(db: &DatabaseConnection) -> Result<Self, DbErr> {
        if !super::is_sqlite(db) {
            return Err(DbErr::Custom(
                "a folded transaction is SQLite's alone".into(),
            ));
        }
        let conn = db
            .get_sqlite_connection_pool()
            .acquire()
            .await
            .map_err(|e| DbErr::Conn(sea_orm::RuntimeErr::SqlxError(e.into())))?;
        Ok(Self {
            conn,
            state: State::NotBegun,
        })
    }

    /// Runs `statements` in one trip, opening the transaction first if this is the first
    /// trip, and committing it after them if `commit`. The rows of each statement, in order.
    /// After an error the transaction is over (the connection is closed when dropped).
    pub async fn trip(
        &mut self,
        statements: Vec<Statement>,
        commit: bool,
    ) -> Result<Vec<Vec<QueryResult>>, DbErr> {
        if self.state == State::Ended {
            return Err(DbErr::Custom("the folded transaction has ended".into()));
        }
        let begin = self.state == State::NotBegun;
        let mut sql = Vec::with_capacity(statements.len() + 2);
        let mut values: Vec<Value> = Vec::new();
        if begin {
            sql.push("BEGIN IMMEDIATE".to_string());
        }
        let asked = statements.len();
        for statement in statements {
            sql.push(statement.sql);
            if let Some(Values(mut v)) = statement.values {
                values.append(&mut v);
            }
        }
        if commit {
            sql.push("COMMIT".to_string());
        }
        // Each statement in the string ends with a result (`Either::Left`), rows or not.
        let total = sql.len();
        let query = sea_orm::sqlx::query_with(
            sea_orm::sqlx::AssertSqlSafe(sql.join(";\n")),
            sea_query_sqlx::SqlxValues(Values(values)),
        );
        self.state = State::Open;
        let mut outcome: Vec<Vec<QueryResult>> = Vec::with_capacity(total);
        let mut current = Vec::new();
        let mut stream = (&mut *self.conn).fetch_many(query);
        let streamed: Result<(), sea_orm::sqlx::Error> = async {
            while let Some(item) = stream.try_next().await? {
                match item {
                    Either::Left(_) => outcome.push(std::mem::take(&mut current)),
                    Either::Right(row) => current.push(QueryResult::from(row)),
                }
            }
            Ok(())
        }
        .await;
        drop(stream);
        if let Err(err) = streamed {
            self.state = State::Ended;
            self.conn.close_on_drop();
            return Err(DbErr::Query(sea_orm::RuntimeErr::SqlxError(err.into())));
        }
        if outcome.len() != total {
            self.state = State::Ended;
            self.conn.close_on_drop();
            return Err(DbErr::Custom(format!(
                "{total} statements sent, {} answered",
                outcome.len()
            )));
        }
        if commit {
            self.state = State::Ended;
        }
        let skip = usize::from(begin);
        Ok(outcome.into_iter().skip(skip).take(asked).collect())
    }

    /// Commits what the trips before wrote.
    pub async fn commit(mut self) -> Result<(), DbErr> {
        self.trip(Vec::new(), true).await.map(drop)
    }

    /// Undoes what the trips before wrote.
    pub async fn rollback(mut self) -> Result<(), DbErr> {
        if self.state != State::Open {
            self.state = State::Ended;
            return Ok(());
        }
        let result = (&mut *self.conn).execute("ROLLBACK").await;
        self.state = State::Ended;
        if result.is_err() {
            self.conn.close_on_drop();
        }
        result
            .map(drop)
            .map_err(|e| DbErr::Query(sea_orm::RuntimeErr::SqlxError(e.into())))
    }
}

impl Drop for FoldedTransaction {
    fn drop(&mut self) {
        if self.state == State::Open {
            self.conn.close_on_drop();
        }
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::{ConnectionTrait, DatabaseBackend};

    use super::*;

    fn statement(sql: &str, values: Vec<Value>) -> Statement {
        Statement::from_sql_and_values(DatabaseBackend::Sqlite, sql, values)
    }

    async fn count(db: &DatabaseConnection) -> i64 {
        db.query_one_raw(statement("SELECT count(*) AS n FROM t", vec![]))
            .await
            .unwrap()
            .unwrap()
            .try_get("", "n")
            .unwrap()
    }

    /// Two trips: the first opens the transaction with its statements, the second commits
    /// with its own; each statement's rows come back apart, with their values bound in turn.
    /// Until the commit, another connection sees nothing.
    #[tokio::test]
    async fn statements_travel_with_the_begin_and_the_commit() {
        let (_dir, db) = crate::store::scratch_sqlite().await;
        db.execute_unprepared("CREATE TABLE t (x INTEGER)")
            .await
            .unwrap();
        let mut txn = FoldedTransaction::acquire(&db).await.unwrap();
        let first = txn
            .trip(
                vec![
                    statement("INSERT INTO t VALUES (?), (?)", vec![1.into(), 2.into()]),
                    statement("SELECT x FROM t WHERE x > ? ORDER BY x", vec![0.into()]),
                ],
                false,
            )
            .await
            .unwrap();
        assert_eq!(first.len(), 2);
        assert!(first[0].is_empty());
        assert_eq!(first[1].len(), 2);
        assert_eq!(count(&db).await, 0, "not committed yet");
        let second = txn
            .trip(
                vec![statement(
                    "UPDATE t SET x = x + ? WHERE x = ? RETURNING x",
                    vec![10.into(), 2.into()],
                )],
                true,
            )
            .await
            .unwrap();
        let x: i32 = second[0][0].try_get("", "x").unwrap();
        assert_eq!(x, 12);
        assert_eq!(count(&db).await, 2, "committed");
    }

    /// A statement that fails ends the transaction: nothing it or the trips before wrote is
    /// kept, and the connection, still inside the transaction, never goes back to the pool
    /// (the pool's next user would write into it, and hold SQLite's write lock).
    #[tokio::test]
    async fn a_failed_trip_keeps_nothing_and_its_connection_is_not_reused() {
        let (_dir, db) = crate::store::scratch_sqlite().await;
        db.execute_unprepared("CREATE TABLE t (x INTEGER NOT NULL)")
            .await
            .unwrap();
        let mut txn = FoldedTransaction::acquire(&db).await.unwrap();
        txn.trip(vec![statement("INSERT INTO t VALUES (1)", vec![])], false)
            .await
            .unwrap();
        let failed = txn
            .trip(vec![statement("INSERT INTO t VALUES (NULL)", vec![])], true)
            .await;
        assert!(failed.is_err());
        drop(txn);
        // Were the open transaction back in the pool, this write would wait for its lock
        // (or land in it) and the count below would see 1 or hang.
        db.execute_unprepared("INSERT INTO t VALUES (2)")
            .await
            .unwrap();
        assert_eq!(count(&db).await, 1, "only the write after the failure");

        let mut txn = FoldedTransaction::acquire(&db).await.unwrap();
        txn.trip(vec![statement("INSERT INTO t VALUES (3)", vec![])], false)
            .await
            .unwrap();
        txn.rollback().await.unwrap();
        assert_eq!(count(&db).await, 1, "rolled back");
    }
}
