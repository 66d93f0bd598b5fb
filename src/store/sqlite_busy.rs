//! How a SQLite connection waits for another connection's write lock.
//!
//! SQLite's own handler (what `busy_timeout` installs) sleeps 1, 2, 5, 10, 15, 20, 25, 25,
//! 25, 50, 50 and then 100 ms between tries (sqlite3.c, `sqliteDefaultBusyCallback`), while
//! the write transactions here hold the lock for a fraction of a millisecond. Traced during
//! `bench jobs` (strace, 5 s of runs that claim and end): 962 such sleeps of 5.6 ms on
//! average, against 676 flushes to disk; the workers spent more time asleep than writing.
//! This handler tries again after 20 us, doubling to 100 us, and gives up after the same
//! 10 s as before, when the caller gets SQLite's "database is locked". A waiter that sleeps
//! longer leaves the lock idle after its holder lets go: with pauses up to 1 ms the same
//! bench drained 1,190-1,250 runs/s, with 100 us 1,350-1,370. Polling that often costs a
//! waiter a few per cent of a core while a long transaction holds the lock.

use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::future::BoxFuture;
use sea_orm::sqlx;
use sea_orm::sqlx::pool::PoolConnectionMetadata;
use sea_orm::sqlx::sqlite::SqliteConnection;

/// How long a connection waits for the write lock before it gives up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

const FIRST_PAUSE_MICROS: u64 = 20;
const LONGEST_PAUSE_MICROS: u64 = 100;

/// The pause before try `tries + 1`.
const fn pause_micros(tries: u32) -> u64 {
    let doubled = FIRST_PAUSE_MICROS << if tries < 10 { tries } else { 10 };
    if doubled < LONGEST_PAUSE_MICROS {
        doubled
    } else {
        LONGEST_PAUSE_MICROS
    }
}

/// The number of tries whose pauses add up to `timeout`.
const fn tries_within(timeout: Duration) -> u32 {
    let budget = timeout.as_micros() as u64;
    let mut paused = 0;
    let mut tries = 0;
    while paused < budget {
        paused += pause_micros(tries);
        tries += 1;
    }
    tries
}

const GIVE_UP_AFTER: u32 = tries_within(BUSY_TIMEOUT);

/// How long a call made with [`briefly_patient`] waits for a lock before it gives up.
pub const SHORT_TIMEOUT: Duration = Duration::from_millis(20);

const GIVE_UP_SOON_AFTER: u32 = tries_within(SHORT_TIMEOUT);

/// Times any connection of this process found the lock taken and waited: a count that
/// climbs with writers contending (the series `synchub_sqlite_lock_waits_total`).
static LOCK_WAITS: AtomicU64 = AtomicU64::new(0);

pub fn lock_waits() -> u64 {
    LOCK_WAITS.load(Ordering::Relaxed)
}

/// Called by SQLite on the connection's own thread (sqlx runs each connection on one), never
/// on the async runtime's, so a short blocking sleep is what it should do. Nonzero: try again.
extern "C" fn wait_briefly(_: *mut c_void, tries: c_int) -> c_int {
    pause_or_give_up(tries, GIVE_UP_AFTER)
}

fn pause_or_give_up(tries: c_int, give_up_after: u32) -> c_int {
    let tries = u32::try_from(tries).unwrap_or(0);
    if tries >= give_up_after {
        return 0;
    }
    LOCK_WAITS.fetch_add(1, Ordering::Relaxed);
    std::thread::sleep(Duration::from_micros(pause_micros(tries)));
    1
}

/// `wait_briefly`, giving up after [`SHORT_TIMEOUT`].
extern "C" fn wait_a_little(_: *mut c_void, tries: c_int) -> c_int {
    pause_or_give_up(tries, GIVE_UP_SOON_AFTER)
}

type Handler = extern "C" fn(*mut c_void, c_int) -> c_int;

async fn set_handler(conn: &mut SqliteConnection, handler: Handler) -> Result<(), sqlx::Error> {
    let mut handle = conn.lock_handle().await?;
    let raw = handle.as_raw_handle();
    // SAFETY: the handle is locked out of the connection's worker thread for as long as
    // `handle` lives, so no other call uses it meanwhile; the handlers are plain functions
    // that keep no state behind the (null) argument and cannot unwind.
    let code = unsafe {
        libsqlite3_sys::sqlite3_busy_handler(raw.as_ptr(), Some(handler), std::ptr::null_mut())
    };
    if code != libsqlite3_sys::SQLITE_OK {
        return Err(sqlx::Error::Configuration(
            format!("installing the SQLite busy handler failed with code {code}").into(),
        ));
    }
    Ok(())
}

/// Runs `call` on a connection of `pool` that waits at most [`SHORT_TIMEOUT`] for a lock, for
/// a statement that may hold the write lock while it waits for others (a RESTART checkpoint
/// waits for readers that way): better it gives up than every writer waits the full
/// [`BUSY_TIMEOUT`] behind it. The connection gets its usual patience back afterwards, or is
/// closed instead of going back to the pool. Await it to the end: dropped midway, it would
/// return the connection to the pool with the short patience.
pub async fn briefly_patient<T>(
    pool: &sqlx::SqlitePool,
    call: impl for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T, sqlx::Error>>,
) -> Result<T, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    set_handler(&mut conn, wait_a_little).await?;
    let outcome = call(&mut conn).await;
    if set_handler(&mut conn, wait_briefly).await.is_err() {
        conn.close_on_drop();
    }
    outcome
}

/// Installs the handler on a new pooled connection (the pool's `after_connect`). It replaces
/// the `busy_timeout` that sqlx set when it opened the connection.
pub fn install<'c>(
    conn: &'c mut SqliteConnection,
    _: PoolConnectionMetadata,
) -> BoxFuture<'c, Result<(), sqlx::Error>> {
    Box::pin(set_handler(conn, wait_briefly))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_start_short_and_stop_at_a_tenth_of_a_millisecond() {
        let pauses: Vec<u64> = (0..6).map(pause_micros).collect();
        assert_eq!(pauses, [20, 40, 80, 100, 100, 100]);
        assert_eq!(pause_micros(u32::MAX), 100);
    }

    #[test]
    fn gives_up_after_the_busy_timeout_and_not_before() {
        let total = |tries: u32| -> u64 { (0..tries).map(pause_micros).sum::<u64>() };
        for (timeout, tries) in [
            (BUSY_TIMEOUT, GIVE_UP_AFTER),
            (SHORT_TIMEOUT, GIVE_UP_SOON_AFTER),
        ] {
            let budget = timeout.as_micros() as u64;
            assert!(total(tries) >= budget);
            assert!(total(tries - 1) < budget);
        }
    }
}
