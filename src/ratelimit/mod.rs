//! Rate limits shared by everything: one token bucket per (platform account, operation group)
//! in the database, or in Redis when configured, so every worker task in every process
//! spends the same budget. Each take is one atomic step (an upsert whose update only happens
//! when a token is there, or a Lua script), so two processes can never both spend the last
//! token. The platform's own answers correct the bucket: a lower advertised rate, a call
//! counter, a `Retry-After`. Beside the buckets, a cap on the requests in flight per
//! connection: leased slots, so a dead process's slot frees itself. A slot freed in this
//! process wakes one of its waiters at once; waiters poll too, for slots other processes free.

mod database;
mod redis;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

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
}

#[derive(Clone)]
enum Store {
    Database(database::Buckets),
    Redis(redis::Buckets),
}

#[derive(Clone)]
pub struct RateLimiter {
    store: Store,
    /// Per slot key, the signal a release in this process gives its waiters.
    freed: Arc<Mutex<HashMap<String, Arc<Notify>>>>,
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
            freed: Arc::default(),
            polling: (Duration::from_millis(5), Duration::from_millis(200)),
        }
    }

    /// Polls for slots other processes free at `first`, backing off to `ceiling` (tests make
    /// it long to see that a release in this process needs no poll).
    pub fn with_polling(mut self, first: Duration, ceiling: Duration) -> Self {
        self.polling = (first, ceiling);
        self
    }

    fn freed(&self, key: &str) -> Arc<Notify> {
        let mut freed = self
            .freed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        freed.entry(key.to_string()).or_default().clone()
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

    /// One of `cap` slots of `key` for `lease`, or None when all are held.
    pub async fn try_acquire(&self, key: &str, cap: u32, lease: Duration) -> Result<Option<Slot>> {
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
        }))
    }

    /// Waits for a slot until `deadline` passes: woken by a release in this process, and
    /// polling (backing off to 200 ms) for releases elsewhere.
    pub async fn acquire(
        &self,
        key: &str,
        cap: u32,
        lease: Duration,
        deadline: Duration,
    ) -> Result<Option<Slot>> {
        let started = std::time::Instant::now();
        let freed = self.freed(key);
        let (mut pause, ceiling) = self.polling;
        loop {
            // Listen before trying, so a release between the try and the wait is not missed.
            let notified = freed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(slot) = self.try_acquire(key, cap, lease).await? {
                return Ok(Some(slot));
            }
            let left = deadline.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Ok(None);
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep(pause.min(left)) => {
                    pause = (pause * 2).min(ceiling);
                }
            }
        }
    }

    pub async fn release(&self, slot: Slot) -> Result<()> {
        let released = match &self.store {
            Store::Database(buckets) => buckets.release(&slot).await,
            Store::Redis(buckets) => buckets.release(&slot).await,
        };
        self.freed(&slot.key).notify_one();
        released
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
