//! A SQLite commit made durable after the fact, so that the next transaction need not wait
//! for the disk. With `synchronous=FULL` SQLite flushes the WAL inside COMMIT, holding the
//! one write lock there is: the webhook group commit's next batch waited for the previous
//! batch's flush. Its connection now commits with `synchronous=NORMAL` (the frames are
//! written, not flushed) and [`WalFlush::flush`] then flushes the WAL file before the batch
//! is acknowledged, while the next batch already runs. One flush covers every commit that
//! returned before it began, as PostgreSQL's group commit does.
//!
//! It holds what FULL holds: a committed transaction is its frames in the WAL, and they are
//! on disk once a flush that began after COMMIT returned has finished. SQLite syncs the WAL
//! header whenever it restarts the log, at any level but OFF (`sqlite3WalFrames`, "an
//! out-of-order write following a WAL restart could result in database corruption"), and
//! flushes the database file after each checkpoint, so a restart cannot strand frames.

use std::path::PathBuf;

use sea_orm::DatabaseConnection;

#[derive(Clone, Debug, PartialEq)]
pub struct WalFlush {
    wal: PathBuf,
}

impl WalFlush {
    /// The WAL of the main database of `db` (a SQLite connection in WAL mode), where SQLite
    /// itself says the database file is.
    pub async fn of(db: &DatabaseConnection) -> anyhow::Result<Self> {
        let file = super::sqlite_main_file(db).await?.ok_or_else(|| {
            anyhow::anyhow!("an in-memory or temporary SQLite database has no WAL to flush")
        })?;
        Ok(Self::at(PathBuf::from(format!("{}-wal", file.display()))))
    }

    /// A flush of the WAL file at `wal`.
    pub fn at(wal: PathBuf) -> Self {
        Self { wal }
    }

    /// Flushes everything written to the WAL so far. The file is opened for each flush: a
    /// descriptor kept open would outlive a WAL that SQLite deleted and made anew.
    pub async fn flush(&self) -> std::io::Result<()> {
        flush_file(self.wal.clone()).await
    }
}

/// Flushes what was written to the file at `path` (through any descriptor) to disk, off the
/// runtime's threads.
pub(super) async fn flush_file(path: PathBuf) -> std::io::Result<()> {
    tokio::task::spawn_blocking(move || std::fs::File::open(&path)?.sync_all())
        .await
        .map_err(std::io::Error::other)?
}

/// An answer waiting for the flush after its commit: called with the flush's outcome.
type Pending = Box<dyn FnOnce(Result<(), &std::io::Error>) + Send>;

/// Answers callers once their commit is on disk: a task flushes the WAL for whatever
/// commits were handed to it meanwhile (those arriving during a flush share the next one)
/// and then calls their answers, while the writer that handed them on commits its next
/// transaction. The webhook group commit uses it on SQLite.
#[derive(Clone)]
pub struct AfterFlush {
    pending: tokio::sync::mpsc::UnboundedSender<Pending>,
}

impl AfterFlush {
    /// Starts the flushing task (inside a Tokio runtime); it ends with its last handle.
    pub fn start(wal: WalFlush) -> Self {
        // Unbounded: what waits here is bounded by the writer's own queue.
        let (pending, mut handed) = tokio::sync::mpsc::unbounded_channel::<Pending>();
        tokio::spawn(async move {
            let mut ready = Vec::new();
            while handed.recv_many(&mut ready, usize::MAX).await > 0 {
                let flushed = wal.flush().await;
                if let Err(err) = &flushed {
                    tracing::error!(error = %err, wal = %wal.wal.display(), "flushing the WAL after a commit failed");
                }
                for answer in ready.drain(..) {
                    answer(flushed.as_ref().map(|_| ()));
                }
            }
        });
        Self { pending }
    }

    /// Calls `answer` once a flush begun after this call has ended, with its outcome; at
    /// once with an error if the flushing task has stopped.
    pub fn then(&self, answer: impl FnOnce(Result<(), &std::io::Error>) + Send + 'static) {
        if let Err(tokio::sync::mpsc::error::SendError(answer)) =
            self.pending.send(Box::new(answer))
        {
            answer(Err(&std::io::Error::other("the WAL flush has stopped")));
        }
    }
}
