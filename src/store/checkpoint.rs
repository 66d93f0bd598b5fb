//! SQLite's WAL checkpoints, off the commit path. Left to SQLite, the connection whose commit
//! takes the WAL past 1,000 pages copies them into the database file and flushes it before
//! that commit returns: under webhook load the group commit did so every twenty-odd batches,
//! 2.5 ms of flush and a quarter of the bytes it wrote, while every request in the batch
//! waited (strace of `bench webhooks`). Here a background task checkpoints instead, PASSIVE
//! (it never waits for a writer or a reader, and none waits for it), and the commit path's
//! own threshold stays only as a backstop for processes that run no checkpointer.

use std::time::Duration;

use sea_orm::{DatabaseConnection, sqlx};
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

/// WAL frames past which the checkpointer restarts the log (RESTART instead of PASSIVE).
/// A PASSIVE checkpoint keeps up with the writer, but the log only starts again from its
/// first frame when a writer begins with every frame copied, which under steady load is
/// never: the WAL grew to the backstop, and the webhook writer's commit then checkpointed
/// it itself, its flush of the database file taking 37-54 ms once a second while every
/// request in flight waited (`perf trace`, and the WAL index header read during `bench
/// webhooks`). RESTART waits for the writer between two transactions, copies what is left
/// and lets the next transaction write from the start. Under load that is every checkpoint,
/// each a short wait: `bench webhooks` (SQLite, wrk) p99 17.8 ms at 1,024 frames, about 25 at
/// 4,096, 31-42 with PASSIVE alone, at the same rate.
pub const RESTART_PAST_FRAMES: i64 = 1_024;

/// How a checkpoint treats writers and readers (SQLite's `wal_checkpoint` modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Copies what it can; never waits, never makes anyone wait.
    Passive,
    /// Waits for the writer and the readers of old frames, copies every frame and makes the
    /// next writer start the log from the beginning.
    Restart,
}

/// One checkpoint. None on PostgreSQL, which checkpoints by itself. A RESTART one holds the
/// write lock while it waits for readers of the log; it gives up after
/// `sqlite_busy::SHORT_TIMEOUT` (SQLite then leaves the log as it is, or checkpoints
/// PASSIVE when even the write lock did not come), and the next tick tries again.
pub async fn checkpoint_with(
    db: &DatabaseConnection,
    mode: Mode,
) -> Result<Option<Checkpointed>, sea_orm::DbErr> {
    if !super::is_sqlite(db) {
        return Ok(None);
    }
    let pragma = match mode {
        Mode::Passive => "PRAGMA wal_checkpoint(PASSIVE)",
        Mode::Restart => "PRAGMA wal_checkpoint(RESTART)",
    };
    // The pragma answers (busy, log, checkpointed); -1 for both counts outside WAL mode.
    let row: (i64, i64, i64) =
        super::sqlite_busy::briefly_patient(db.get_sqlite_connection_pool(), |conn| {
            Box::pin(sqlx::query_as(pragma).fetch_one(conn))
        })
        .await
        .map_err(|err| sea_orm::DbErr::Query(sea_orm::RuntimeErr::SqlxError(err.into())))?;
    Ok(Some(Checkpointed {
        wal_frames: row.1,
        copied_frames: row.2,
    }))
}

/// One PASSIVE checkpoint. None on PostgreSQL.
pub async fn checkpoint(db: &DatabaseConnection) -> Result<Option<Checkpointed>, sea_orm::DbErr> {
    checkpoint_with(db, Mode::Passive).await
}

/// One step of a checkpointer's tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Checkpoint(Mode),
    /// Flushes the database file to disk, outside any SQLite lock.
    FlushDatabaseFile,
}

/// The steps of the next tick, from what the last checkpoint found. A RESTART makes writers
/// wait while it copies what is left and flushes the database file, so first a PASSIVE one
/// copies the bulk (with event ids in no order, a tick's frames are pages scattered over
/// the dedupe index, and copying them all under the RESTART held the webhook writer back
/// for tens of milliseconds), and then the file is flushed with no lock held: SQLite
/// flushes it after a checkpoint only when no commit came in while it copied
/// (`walCheckpoint`: the sync is under `mxSafeFrame==walIndexHdr(pWal)->mxFrame`), which
/// under steady load is never, so every page the PASSIVE ones copied was still dirty when
/// the RESTART flushed. strace of one such RESTART: 13 ms copying, 19 ms in the database
/// file's fsync. `bench webhooks` (SQLite, wrk), interleaved runs: p99 25 ms vs 32.
pub fn next_steps(last: Option<Checkpointed>) -> &'static [Step] {
    match last {
        Some(done) if done.wal_frames > RESTART_PAST_FRAMES => &[
            Step::Checkpoint(Mode::Passive),
            Step::FlushDatabaseFile,
            Step::Checkpoint(Mode::Restart),
        ],
        _ => &[Step::Checkpoint(Mode::Passive)],
    }
}

/// Checkpoints every [`CHECKPOINT_EVERY`] until `shutdown`; nothing on PostgreSQL.
pub fn spawn_checkpointer(db: DatabaseConnection, shutdown: CancellationToken) {
    if !super::is_sqlite(&db) {
        return;
    }
    tokio::spawn(async move {
        // None in memory, where there is nothing to flush.
        let file = match super::sqlite_main_file(&db).await {
            Ok(file) => file,
            Err(err) => {
                tracing::warn!(error = %err, "the database file to flush before a RESTART checkpoint is unknown");
                None
            }
        };
        let mut last = None;
        loop {
            for step in next_steps(last) {
                match step {
                    Step::Checkpoint(mode) => match checkpoint_with(&db, *mode).await {
                        Ok(done) => last = done,
                        Err(err) => tracing::warn!(error = %err, "WAL checkpoint failed"),
                    },
                    Step::FlushDatabaseFile => {
                        if let Some(file) = &file
                            && let Err(err) = super::wal_flush::flush_file(file.clone()).await
                        {
                            // The RESTART flushes it anyway, under its lock.
                            tracing::warn!(error = %err, "flushing the database file failed");
                        }
                    }
                }
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
    use sea_orm::{ConnectionTrait, TransactionTrait};

    use super::{
        Checkpointed, Mode, RESTART_PAST_FRAMES, Step, checkpoint, checkpoint_with, next_steps,
    };
    use crate::store::wal_flush::flush_file;

    /// About 1,500 pages: past SQLite's own threshold of 1,000 and past
    /// `RESTART_PAST_FRAMES`, below the backstop.
    async fn fill_the_wal(db: &sea_orm::DatabaseConnection) {
        db.execute_unprepared("CREATE TABLE IF NOT EXISTS t (x BLOB)")
            .await
            .unwrap();
        for _ in 0..300 {
            db.execute_unprepared("INSERT INTO t VALUES (randomblob(20000))")
                .await
                .unwrap();
        }
    }

    /// Commits leave their pages in the WAL (no connection checkpoints below the backstop),
    /// and one call of the checkpointer copies all of them into the database file.
    #[tokio::test]
    async fn commits_leave_the_wal_to_the_checkpointer() {
        let (_dir, db) = super::super::scratch_sqlite().await;
        fill_the_wal(&db).await;
        let done = checkpoint(&db).await.unwrap().unwrap();
        assert!(done.wal_frames > 1_000, "{done:?}");
        assert_eq!(done.copied_frames, done.wal_frames, "{done:?}");
    }

    #[test]
    fn a_long_wal_is_restarted_and_a_short_one_left_to_passive_checkpoints() {
        let found = |wal_frames| {
            Some(Checkpointed {
                wal_frames,
                copied_frames: wal_frames,
            })
        };
        assert_eq!(next_steps(None), [Step::Checkpoint(Mode::Passive)]);
        assert_eq!(
            next_steps(found(RESTART_PAST_FRAMES)),
            [Step::Checkpoint(Mode::Passive)]
        );
        assert_eq!(
            next_steps(found(RESTART_PAST_FRAMES + 1)),
            [
                Step::Checkpoint(Mode::Passive),
                Step::FlushDatabaseFile,
                Step::Checkpoint(Mode::Restart)
            ],
            "the bulk copied and flushed before writers are made to wait"
        );
    }

    /// The flush opens the file SQLite names as the main database; a missing one is an
    /// error the checkpointer logs (its RESTART then flushes under the lock, as before).
    #[tokio::test]
    async fn the_database_file_is_flushed_where_sqlite_says_it_is() {
        let (dir, db) = super::super::scratch_sqlite().await;
        fill_the_wal(&db).await;
        checkpoint(&db).await.unwrap().unwrap();
        let file = super::super::sqlite_main_file(&db).await.unwrap().unwrap();
        assert!(file.starts_with(dir.path()), "{}", file.display());
        flush_file(file).await.unwrap();
        assert!(flush_file(dir.path().join("gone.db")).await.is_err());
    }

    /// What a writer that is always busy does to the log: its next transaction began before
    /// the checkpoint copied the last frames, so it appends. A PASSIVE checkpoint run then
    /// leaves the log where it is; a RESTART one waits for the writer and the log starts
    /// again. (The frames a checkpoint reports are the log's length: small after a restart.)
    #[tokio::test]
    async fn a_restart_checkpoint_waits_for_the_writer_and_starts_the_log_again() {
        for mode in [Mode::Passive, Mode::Restart] {
            let (_dir, db) = super::super::scratch_sqlite().await;
            fill_the_wal(&db).await;
            let writer = db.begin().await.unwrap();
            writer
                .execute_unprepared("INSERT INTO t VALUES (randomblob(20000))")
                .await
                .unwrap();
            let done = match mode {
                Mode::Passive => {
                    let done = checkpoint_with(&db, mode).await;
                    writer.commit().await.unwrap();
                    done
                }
                Mode::Restart => {
                    let waits = super::super::sqlite_busy::lock_waits();
                    let checkpointer = tokio::spawn({
                        let db = db.clone();
                        async move { checkpoint_with(&db, mode).await }
                    });
                    // The writer lets go only once the checkpoint waits for it.
                    while super::super::sqlite_busy::lock_waits() == waits
                        && !checkpointer.is_finished()
                    {
                        tokio::task::yield_now().await;
                    }
                    writer.commit().await.unwrap();
                    checkpointer.await.unwrap()
                }
            };
            let done = done.unwrap().unwrap();
            db.execute_unprepared("INSERT INTO t VALUES (1)")
                .await
                .unwrap();
            let after = checkpoint(&db).await.unwrap().unwrap();
            match mode {
                Mode::Passive => assert!(after.wal_frames > 1_000, "{done:?} {after:?}"),
                Mode::Restart => {
                    assert_eq!(done.copied_frames, done.wal_frames, "{done:?}");
                    assert!(after.wal_frames < 10, "{done:?} {after:?}");
                }
            }
        }
    }

    /// A reader still on old frames of the log: the RESTART checkpoint would hold the write
    /// lock until it finished, so it gives up after a short wait instead of the 10 s busy
    /// timeout, and writers go on.
    #[tokio::test]
    async fn a_restart_gives_up_soon_while_a_reader_holds_old_frames() {
        let (_dir, db) = super::super::scratch_sqlite().await;
        fill_the_wal(&db).await;
        let reader = db.begin().await.unwrap();
        reader
            .execute_unprepared("SELECT count(*) FROM t")
            .await
            .unwrap();
        db.execute_unprepared("INSERT INTO t VALUES (randomblob(20000))")
            .await
            .unwrap();
        let started = std::time::Instant::now();
        let done = checkpoint_with(&db, Mode::Restart).await.unwrap().unwrap();
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert!(done.copied_frames < done.wal_frames, "{done:?}");
        db.execute_unprepared("INSERT INTO t VALUES (1)")
            .await
            .unwrap();
        reader.commit().await.unwrap();
    }
}
