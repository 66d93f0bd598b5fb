//! A PostgreSQL connection taken out of its pool for good, for a writer that sends one
//! statement or transaction after another (the webhook group commit, the job layer's
//! `FoldedWriter`).
//!
//! Why not the pool: sqlx checks every connection returned to a pool with a round trip of
//! its own (`Sync`, answered by `ReadyForQuery`; sqlx-core 0.9.1 `return_to_pool`, not
//! configurable), and the next acquire waits for it. The webhook writer returned its
//! connection after every batch: `strace` of its server process during `bench webhooks`
//! showed that check between every two batches, 225 in 3 s. Kept out of the pool, a
//! connection is checked by the writer's next statement; one that failed is dropped
//! (closing it, whatever transaction it was in) and the next use opens another.

use sea_orm::sqlx::{PgConnection, PgPool};
use sea_orm::{DbErr, QueryResult, Statement, Value, Values};

pub struct KeptConnection {
    pool: PgPool,
    conn: Option<PgConnection>,
}

impl KeptConnection {
    /// Takes connections from `pool` when it needs one. The pool should keep no idle
    /// connection of its own (`min_connections` 0) unless it serves others too: a
    /// connection taken out makes room for another in the pool.
    pub fn new(pool: PgPool) -> Self {
        Self { pool, conn: None }
    }

    /// Gives back a connection taken with `take`, after it answered as expected.
    pub fn put_back(&mut self, conn: PgConnection) {
        self.conn = Some(conn);
    }

    /// The kept connection, owned by the caller until `put_back`, and whether it was opened
    /// just now (nothing prepared on it). Dropped instead (after an error, maybe inside a
    /// transaction), it closes, and the next `take` opens another.
    pub async fn take(&mut self) -> Result<(PgConnection, bool), DbErr> {
        if let Some(conn) = self.conn.take() {
            return Ok((conn, false));
        }
        let conn = self.pool.acquire().await.map_err(pool_error)?.detach();
        Ok((conn, true))
    }
}

/// Runs `statement` (bound parameters, the extended protocol: sqlx prepares it once per
/// connection and text) and returns its rows.
pub async fn query_all(
    conn: &mut PgConnection,
    statement: Statement,
) -> Result<Vec<QueryResult>, DbErr> {
    use sea_orm::sqlx::Executor;
    let rows = conn
        .fetch_all(bound(statement))
        .await
        .map_err(query_error)?;
    Ok(rows.into_iter().map(QueryResult::from).collect())
}

/// Runs `statement` and returns how many rows it changed.
pub async fn execute(conn: &mut PgConnection, statement: Statement) -> Result<u64, DbErr> {
    use sea_orm::sqlx::Executor;
    let done = conn.execute(bound(statement)).await.map_err(query_error)?;
    Ok(done.rows_affected())
}

fn bound(
    statement: Statement,
) -> sea_orm::sqlx::query::Query<'static, sea_orm::sqlx::Postgres, sea_query_sqlx::SqlxValues> {
    let values: Vec<Value> = statement.values.map(|Values(v)| v).unwrap_or_default();
    sea_orm::sqlx::query_with(
        sea_orm::sqlx::AssertSqlSafe(statement.sql),
        sea_query_sqlx::SqlxValues(Values(values)),
    )
}

/// A connection that could not be had, as sea-orm reports one.
pub(super) fn pool_error(err: sea_orm::sqlx::Error) -> DbErr {
    DbErr::Conn(sea_orm::RuntimeErr::SqlxError(err.into()))
}

/// A statement that failed, as sea-orm reports one.
pub(super) fn query_error(err: sea_orm::sqlx::Error) -> DbErr {
    DbErr::Query(sea_orm::RuntimeErr::SqlxError(err.into()))
}
