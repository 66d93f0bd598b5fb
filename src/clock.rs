//! Where every decision that depends on the time reads it: token and secret expiry, grace
//! periods, leases, backoff, schedules, deployment windows, alert windows. Production reads
//! the system clock; a test moves an [`Offset`] forward instead of sleeping. What is sent to
//! a platform or a chat service (signature timestamps, "orders since" windows) stays on the
//! wall clock, since the receiver checks it against its own; so do the shared rate-limit
//! buckets (several processes meet in them) and the stamps that only record when a row was
//! written (created, published, audited).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Utc};

#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>);

impl Clock {
    pub fn system() -> Self {
        Self(Arc::new(Utc::now))
    }

    /// A clock read from any function: a test's fixed or stepped time.
    pub fn from_fn(read: impl Fn() -> DateTime<Utc> + Send + Sync + 'static) -> Self {
        Self(Arc::new(read))
    }

    pub fn now(&self) -> DateTime<Utc> {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Clock({})", self.now())
    }
}

/// The system time moved by a shift that only grows: time still passes on its own, and a
/// test jumps over what it would otherwise wait for. Clones share the shift.
#[derive(Clone, Default, Debug)]
pub struct Offset(Arc<AtomicI64>);

impl Offset {
    pub fn advance(&self, by: chrono::Duration) {
        self.0
            .fetch_add(by.num_milliseconds().max(0), Ordering::SeqCst);
    }

    pub fn clock(&self) -> Clock {
        let shift = self.0.clone();
        Clock::from_fn(move || {
            Utc::now() + chrono::Duration::milliseconds(shift.load(Ordering::SeqCst))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offset_moves_every_clock_made_from_it() {
        let offset = Offset::default();
        let (a, b) = (offset.clock(), offset.clone().clock());
        let before = a.now();
        offset.advance(chrono::Duration::hours(2));
        assert!(a.now() - before >= chrono::Duration::hours(2));
        assert!(b.now() - before >= chrono::Duration::hours(2));
        offset.advance(chrono::Duration::hours(-5));
        assert!(
            a.now() - before >= chrono::Duration::hours(2),
            "never backwards"
        );
    }
}
