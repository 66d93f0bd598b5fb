//! SQLite's WAL checkpoints, off the commit path. Left to SQLite, the connection whose commit
//! takes the WAL past 1,000 pages copies them into the database file and flushes it before
//! that commit returns: under webhook load the group commit did so every twenty-odd batches,
//! 2.5 ms of flush and a quarter of the bytes it wrote, while every request in the batch
//! waited (strace of `bench webhooks`). Here a background task checkpoints instead, PASSIVE
//! (it never waits for a writer or a reader, and none waits for it), and the commit path's
//! own threshold stays only as a backstop for processes that run no checkpointer.

use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use tokio_util::sync::CancellationToken;

/// WAL pages at which a committing connection checkpoints by itself (SQLite's default is
/// 1,000): reached only when no checkpointer keeps up, as in a short CLI command.
pub const BACKSTOP_PAGES: u32 = 16_384;

/// How often the checkpointer copies the WAL into the database file.
pub const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

/// What one checkpoint found: frames in the WAL and frames now in the database file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpointed {
    pub wal_frames: i64,
    pub copied_frames: i64,
}

/// One PASSIVE checkpoint. None on PostgreSQL, which checkpoints by itself.
pub async fn checkpoint(db: &DatabaseConnection) -> Result<Option<Checkpointed>, sea_orm::DbErr> {
    if !super::is_sqlite(db) {
        return Ok(None);
    }
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "PRAGMA wal_checkpoint(PASSIVE)",
        ))
        .await?;
    // The pragma answers (busy, log, checkpointed); -1 for both counts outside WAL mode.
    Ok(row.map(|row| Checkpointed {
        wal_frames: row.try_get_by_index::<i64>(1).unwrap_or(-1),
        copied_frames: row.try_get_by_index::<i64>(2).unwrap_or(-1),
    }))
}

/// Checkpoints every [`CHECKPOINT_EVERY`] until `shutdown`; nothing on PostgreSQL.
pub fn spawn_checkpointer(db: DatabaseConnection, shutdown: CancellationToken) {
    if !super::is_sqlite(&db) {
        return;
    }
    tokio::spawn(async move {
        loop {
            if let Err(err) = checkpoint(&db).await {
                tracing::warn!(error = %err, "WAL checkpoint failed");
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(CHECKPOINT_EVERY) => {}
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use sea_orm::ConnectionTrait;

    /// Commits leave their pages in the WAL (no connection checkpoints below the backstop),
    /// and one call of the checkpointer copies all of them into the database file.
    #[tokio::test]
    async fn commits_leave_the_wal_to_the_checkpointer() {
        let (_dir, db) = super::super::scratch_sqlite().await;
        db.execute_unprepared("CREATE TABLE t (x BLOB)")
            .await
            .unwrap();
        // About 1,500 pages: past SQLite's own threshold of 1,000, below the backstop.
        for _ in 0..300 {
            db.execute_unprepared("INSERT INTO t VALUES (randomblob(20000))")
                .await
                .unwrap();
        }
        let done = super::checkpoint(&db).await.unwrap().unwrap();
        assert!(done.wal_frames > 1_000, "{done:?}");
        assert_eq!(done.copied_frames, done.wal_frames, "{done:?}");
    }
}
