//! Rate limits shared by everything: one token bucket per (platform account, operation group)
//! in the database, or in Redis when configured, so every worker task in every process
//! spends the same budget. Each take is one atomic step (an upsert whose update only happens
//! when a token is there, or a Lua script), so two processes can never both spend the last
//! token. The platform's own answers correct the bucket: a lower advertised rate, a call
//! counter, a `Retry-After`. Beside the buckets, a cap on the requests in flight per
//! connection: leased slots, so a dead process's slot frees itself. A slot freed in this
//! process goes straight to one of its waiters, without a round trip to the store, for as
//! long as it is young (`HAND_OVER_WITHIN`); waiters poll too, for slots other processes free.

mod database;
mod redis;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, oneshot};

use sea_orm::DatabaseConnection;

use crate::error::Result;

/// A bucket's shape: refill `rate` tokens per second up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    pub rate: f64,
    pub burst: f64,
}

/// The outcome of one attempt to take a token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Take {
    Granted,
    /// No token now; one will be there after this long.
    RetryAfter(Duration),
}

/// What a platform said about its limits in a response.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Feedback {
    /// Amazon `x-amzn-RateLimit-Limit`: the rate (requests per second) in force.
    pub rate: Option<f64>,
    /// Shopify `X-Shopify-Shop-Api-Call-Limit: used/capacity`: tokens left = capacity - used.
    pub remaining: Option<f64>,
    /// `Retry-After` (on a 429): nothing may be sent before it passes.
    pub retry_after: Option<Duration>,
}

impl Feedback {
    /// Reads the headers the built-in platforms send.
    pub fn from_headers(get: impl Fn(&str) -> Option<String>) -> Self {
        let rate = get("x-amzn-ratelimit-limit")
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|r| *r > 0.0);
        let remaining = get("x-shopify-shop-api-call-limit").and_then(|v| {
            let (used, capacity) = v.trim().split_once('/')?;
            Some((capacity.trim().parse::<f64>().ok()? - used.trim().parse::<f64>().ok()?).max(0.0))
        });
        let retry_after = get("retry-after")
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| Duration::from_secs_f64(s.min(3600.0)));
        Self {
            rate,
            remaining,
            retry_after,
        }
    }
}

/// A slot of a connection's concurrency cap, held while one request is in flight.
#[derive(Debug)]
pub struct Slot {
    key: String,
    number: u32,
    holder: String,
    /// When the store granted it, and for how long: a young slot changes hands in this
    /// process without the store.
    granted: std::time::Instant,
    lease: Duration,
}

/// How long after the store granted a slot it may still pass from one waiter of this
/// process to the next without going back: two round trips saved a request (on SQLite,
/// inside its one write lock). Bounded so a busy process gives its slots back to the others
/// every second; the lease the store holds is then at most this much shorter than asked.
const HAND_OVER_WITHIN: Duration = Duration::from_secs(1);

/// The most slots a key has, whatever cap is asked: far more requests in flight than any
/// platform allows one account.
pub const MOST_SLOTS: u32 = 1_000;

/// This process's waiters for one slot key.
#[derive(Default)]
struct Waiters {
    /// Woken by a release that went to the store.
    freed: Arc<Notify>,
    /// First come, first served: each with the lease it asks for.
    queue: std::collections::VecDeque<(Duration, oneshot::Sender<Slot>)>,
}

#[derive(Clone)]
enum Store {
    Database(database::Buckets),
    Redis(redis::Buckets),
}

#[derive(Clone)]
pub struct RateLimiter {
    store: Store,
    /// Per slot key, this process's waiters.
    waiters: Arc<Mutex<HashMap<String, Waiters>>>,
    /// A slot waiter's first pause and the longest it backs off to between polls.
    polling: (Duration, Duration),
}

/// Time this process's calls spent waiting for rate-limit tokens, in milliseconds.
static WAITED_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How long this process's calls have waited for tokens so far (benchmarks report it).
pub fn total_wait() -> Duration {
    Duration::from_millis(WAITED_MS.load(std::sync::atomic::Ordering::Relaxed))
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl RateLimiter {
    /// Buckets and slots in the database (the default).
    pub fn new(db: DatabaseConnection) -> Self {
        Self::on(Store::Database(database::Buckets::new(db)))
    }

    /// Where the settings keep the buckets and slots: Redis when `rate_limits.redis_url`
    /// names one, else the database, on a pool of their own whose commits skip the flush.
    pub async fn configured(settings: &crate::config::Settings) -> anyhow::Result<Self> {
        use anyhow::Context;
        match settings.rate_limits.redis_url.expose() {
            "" => Ok(Self::new(crate::store::connect_leases(settings).await?)),
            url => Self::redis(url)
                .await
                .context("connecting to rate_limits.redis_url"),
        }
    }

    /// Buckets and slots in Redis (`rate_limits.redis_url`).
    pub async fn redis(url: &str) -> anyhow::Result<Self> {
        Ok(Self::on(Store::Redis(redis::Buckets::connect(url).await?)))
    }

    fn on(store: Store) -> Self {
        Self {
            store,
            waiters: Arc::default(),
            polling: (Duration::from_millis(5), Duration::from_millis(200)),
        }
    }

    /// Polls for slots other processes free at `first`, backing off to `ceiling` (tests make
    /// it long to see that a release in this process needs no poll).
    pub fn with_polling(mut self, first: Duration, ceiling: Duration) -> Self {
        self.polling = (first, ceiling);
        self
    }

    fn waiters(&self) -> std::sync::MutexGuard<'_, HashMap<String, Waiters>> {
        self.waiters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues a waiter for a slot of `key` handed over in this process; and the signal a
    /// release to the store gives.
    fn wait_here(&self, key: &str, lease: Duration) -> (HandOver, Arc<Notify>) {
        let (sender, receiver) = oneshot::channel();
        let mut waiters = self.waiters();
        let entry = waiters.entry(key.to_string()).or_default();
        entry.queue.retain(|(_, waiter)| !waiter.is_closed());
        entry.queue.push_back((lease, sender));
        (
            HandOver {
                receiver,
                open: true,
                limiter: self.clone(),
            },
            entry.freed.clone(),
        )
    }

    /// Gives a young slot to the first waiter of this process that wants no longer a lease;
    /// the slot back when there is none.
    fn hand_over(&self, slot: Slot) -> Option<Slot> {
        if slot.granted.elapsed() >= HAND_OVER_WITHIN {
            return Some(slot);
        }
        let mut waiters = self.waiters();
        let Some(entry) = waiters.get_mut(&slot.key) else {
            return Some(slot);
        };
        let mut passed_over = Vec::new();
        let mut unsent = Some(slot);
        while let Some(slot) = unsent.take() {
            let Some((lease, waiter)) = entry.queue.pop_front() else {
                unsent = Some(slot);
                break;
            };
            if lease > slot.lease {
                passed_over.push((lease, waiter));
                unsent = Some(slot);
                continue;
            }
            // Refused by a waiter that is gone (it got a slot from the store, or gave up).
            unsent = waiter.send(slot).err();
        }
        for waiter in passed_over.into_iter().rev() {
            entry.queue.push_front(waiter);
        }
        unsent
    }

    /// Takes one token from `key`, creating the bucket full on first use.
    pub async fn try_take(&self, key: &str, limit: Limit) -> Result<Take> {
        match &self.store {
            Store::Database(buckets) => buckets.try_take(key, limit, now_ms()).await,
            Store::Redis(buckets) => buckets.try_take(key, limit, now_ms()).await,
        }
    }

    /// Waits until a token is granted or `deadline` passes; returns the time spent waiting.
    pub async fn take(
        &self,
        key: &str,
        limit: Limit,
        deadline: Duration,
    ) -> Result<Option<Duration>> {
        let started = std::time::Instant::now();
        loop {
            match self.try_take(key, limit).await? {
                Take::Granted => {
                    let waited = started.elapsed();
                    WAITED_MS.fetch_add(
                        waited.as_millis() as u64,
                        std::sync::atomic::Ordering::Relaxed,
                    );
                    metrics::counter!("synchub_rate_limit_wait_milliseconds_total")
                        .increment(waited.as_millis() as u64);
                    return Ok(Some(waited));
                }
                Take::RetryAfter(wait) => {
                    if started.elapsed() + wait > deadline {
                        return Ok(None);
                    }
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// Applies what the platform said: a changed rate, the tokens it says are left, a pause.
    pub async fn apply_feedback(&self, key: &str, feedback: Feedback) -> Result<()> {
        match &self.store {
            Store::Database(buckets) => buckets.apply_feedback(key, feedback, now_ms()).await,
            Store::Redis(buckets) => buckets.apply_feedback(key, feedback, now_ms()).await,
        }
    }

    /// One of `cap` slots of `key` for `lease`, or None when all are held. A cap is at most
    /// `MOST_SLOTS`: a tenant's setting must not make the store write a row per slot
    /// without end.
    pub async fn try_acquire(&self, key: &str, cap: u32, lease: Duration) -> Result<Option<Slot>> {
        let cap = cap.clamp(1, MOST_SLOTS);
        let holder = uuid::Uuid::now_v7().simple().to_string();
        let now = now_ms();
        let until = now + lease.as_millis() as i64;
        let number = match &self.store {
            Store::Database(buckets) => buckets.try_acquire(key, cap, &holder, now, until).await?,
            Store::Redis(buckets) => buckets.try_acquire(key, cap, &holder, now, until).await?,
        };
        Ok(number.map(|number| Slot {
            key: key.to_string(),
            number,
            holder,
            granted: std::time::Instant::now(),
            lease,
        }))
    }

    /// Waits for a slot until `deadline` passes: handed one released in this process, woken
    /// by a release to the store, and polling (backing off to 200 ms) for releases elsewhere.
    pub async fn acquire(
        &self,
        key: &str,
        cap: u32,
        lease: Duration,
        deadline: Duration,
    ) -> Result<Option<Slot>> {
        let started = std::time::Instant::now();
        // Queued before the first try, so a release between the try and the wait is not missed.
        let (mut handed, freed) = self.wait_here(key, lease);
        let (mut pause, ceiling) = self.polling;
        loop {
            let notified = freed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(slot) = handed.take() {
                return Ok(Some(slot));
            }
            if let Some(slot) = self.try_acquire(key, cap, lease).await? {
                // Dropping `handed` passes on a slot that arrived meanwhile.
                return Ok(Some(slot));
            }
            let left = deadline.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Ok(None);
            }
            tokio::select! {
                slot = &mut handed.receiver, if handed.open => match slot {
                    Ok(slot) => return Ok(Some(slot)),
                    // Its sender is gone: polls and wake-ups only, from now on.
                    Err(_) => handed.open = false,
                },
                _ = &mut notified => {}
                _ = tokio::time::sleep(pause.min(left)) => {
                    pause = (pause * 2).min(ceiling);
                }
            }
        }
    }

    pub async fn release(&self, slot: Slot) -> Result<()> {
        match self.hand_over(slot) {
            None => {
                metrics::counter!("synchub_concurrency_slots_handed_over_total").increment(1);
                Ok(())
            }
            Some(slot) => self.release_to_store(slot).await,
        }
    }

    async fn release_to_store(&self, slot: Slot) -> Result<()> {
        let released = match &self.store {
            Store::Database(buckets) => buckets.release(&slot).await,
            Store::Redis(buckets) => buckets.release(&slot).await,
        };
        if let Some(entry) = self.waiters().get(&slot.key) {
            entry.freed.notify_one();
        }
        released
    }
}

/// A waiter's end of a hand-over. A slot that arrives after its waiter is done (it got one
/// from the store, gave up, or was cancelled) is passed on when this is dropped, never lost
/// with it: a lost slot would stay held in the store until its lease ran out.
struct HandOver {
    receiver: oneshot::Receiver<Slot>,
    /// Until the receiver has completed: a completed one may not be polled again.
    open: bool,
    limiter: RateLimiter,
}

impl HandOver {
    fn take(&mut self) -> Option<Slot> {
        if !self.open {
            return None;
        }
        let slot = self.receiver.try_recv().ok();
        self.open = slot.is_none();
        slot
    }
}

impl Drop for HandOver {
    fn drop(&mut self) {
        if !self.open {
            return;
        }
        self.receiver.close();
        let Ok(slot) = self.receiver.try_recv() else {
            return;
        };
        let Some(slot) = self.limiter.hand_over(slot) else {
            return;
        };
        let limiter = self.limiter.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(err) = limiter.release_to_store(slot).await {
                    tracing::warn!(error = %err, "could not release a concurrency slot");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A limiter whose store is never reached: hand-overs happen in this process only.
    async fn limiter() -> RateLimiter {
        let db = sea_orm::Database::connect("sqlite::memory:").await.unwrap();
        RateLimiter::new(db)
    }

    fn slot(key: &str, holder: &str, age: Duration) -> Slot {
        Slot {
            key: key.into(),
            number: 0,
            holder: holder.into(),
            granted: std::time::Instant::now() - age,
            lease: Duration::from_secs(300),
        }
    }

    #[tokio::test]
    async fn a_young_slot_goes_to_the_first_waiter_here() {
        let limiter = limiter().await;
        let (mut first, _) = limiter.wait_here("k", Duration::from_secs(300));
        let (mut second, _) = limiter.wait_here("k", Duration::from_secs(300));
        assert!(limiter.hand_over(slot("k", "h1", Duration::ZERO)).is_none());
        assert_eq!(first.take().map(|s| s.holder), Some("h1".to_string()));
        assert!(second.take().is_none(), "one slot, one waiter");
        // Another key's waiters are not this key's.
        assert!(
            limiter
                .hand_over(slot("other", "h2", Duration::ZERO))
                .is_some()
        );
    }

    #[tokio::test]
    async fn an_old_slot_goes_back_to_the_store() {
        let limiter = limiter().await;
        let (mut waiter, _) = limiter.wait_here("k", Duration::from_secs(300));
        let back = limiter.hand_over(slot("k", "h1", HAND_OVER_WITHIN));
        assert!(
            back.is_some(),
            "held a second: the other processes get their turn"
        );
        assert!(waiter.take().is_none());
    }

    #[tokio::test]
    async fn a_waiter_for_a_longer_lease_is_passed_over_and_stays_queued() {
        let limiter = limiter().await;
        let (mut long, _) = limiter.wait_here("k", Duration::from_secs(900));
        let (mut short, _) = limiter.wait_here("k", Duration::from_secs(60));
        assert!(limiter.hand_over(slot("k", "h1", Duration::ZERO)).is_none());
        assert!(long.take().is_none());
        assert_eq!(short.take().map(|s| s.holder), Some("h1".to_string()));
        let mut longer = slot("k", "h2", Duration::ZERO);
        longer.lease = Duration::from_secs(900);
        assert!(limiter.hand_over(longer).is_none());
        assert_eq!(long.take().map(|s| s.holder), Some("h2".to_string()));
    }

    #[tokio::test]
    async fn a_slot_handed_to_a_waiter_that_is_done_passes_on() {
        let limiter = limiter().await;
        let (first, _) = limiter.wait_here("k", Duration::from_secs(300));
        let (mut second, _) = limiter.wait_here("k", Duration::from_secs(300));
        assert!(limiter.hand_over(slot("k", "h1", Duration::ZERO)).is_none());
        // The first waiter got a slot from the store meanwhile and drops its end.
        drop(first);
        assert_eq!(second.take().map(|s| s.holder), Some("h1".to_string()));
        // A waiter that left before any release is skipped.
        let (gone, _) = limiter.wait_here("k", Duration::from_secs(300));
        let (mut last, _) = limiter.wait_here("k", Duration::from_secs(300));
        drop(gone);
        assert!(limiter.hand_over(slot("k", "h2", Duration::ZERO)).is_none());
        assert_eq!(last.take().map(|s| s.holder), Some("h2".to_string()));
    }

    #[test]
    fn platform_headers_are_understood() {
        let headers = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let amazon = Feedback::from_headers(headers(&[("x-amzn-ratelimit-limit", "0.0167")]));
        assert_eq!(amazon.rate, Some(0.0167));
        let shopify =
            Feedback::from_headers(headers(&[("x-shopify-shop-api-call-limit", "32/40")]));
        assert_eq!(shopify.remaining, Some(8.0));
        let throttled = Feedback::from_headers(headers(&[("retry-after", "2.0")]));
        assert_eq!(throttled.retry_after, Some(Duration::from_secs(2)));
        let garbage = Feedback::from_headers(headers(&[
            ("retry-after", "soon"),
            ("x-shopify-shop-api-call-limit", "x/y"),
        ]));
        assert_eq!(garbage, Feedback::default());
    }
}
