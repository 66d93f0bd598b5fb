//! Rate limits shared by everything: one token bucket per (platform account, operation group)
//! in the database, so every worker task in every process spends the same budget. Each take
//! is one atomic statement (an upsert whose update only happens when a token is there), so
//! two processes can never both spend the last token. The platform's own answers correct the
//! bucket: a lower advertised rate, a call counter, a `Retry-After`.

use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection, Statement, Value};

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

#[derive(Clone)]
pub struct RateLimiter {
    db: DatabaseConnection,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl RateLimiter {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    fn backend(&self) -> DatabaseBackend {
        self.db.get_database_backend()
    }

    /// A statement with `$n` parameters, written as SQLite's `?n` where needed.
    fn statement(&self, sql: &str, values: Vec<Value>) -> Statement {
        let sql = match self.backend() {
            DatabaseBackend::Sqlite => sql.replace('$', "?"),
            _ => sql.to_string(),
        };
        Statement::from_sql_and_values(self.backend(), sql, values)
    }

    /// Takes one token from `key`, creating the bucket full on first use.
    pub async fn try_take(&self, key: &str, limit: Limit) -> Result<Take> {
        let now = now_ms();
        let least = if self.backend() == DatabaseBackend::Postgres {
            "LEAST"
        } else {
            "MIN"
        };
        let available = format!(
            "{least}(rate_buckets.burst, rate_buckets.tokens + (($2 - rate_buckets.refilled_at_ms) / 1000.0) * rate_buckets.rate)"
        );
        let sql = format!(
            "INSERT INTO rate_buckets (bucket_key, tokens, refilled_at_ms, rate, burst, blocked_until_ms) \
             VALUES ($1, $3 - 1, $2, $4, $3, 0) \
             ON CONFLICT (bucket_key) DO UPDATE SET tokens = {available} - 1, refilled_at_ms = $2 \
             WHERE {available} >= 1 AND rate_buckets.blocked_until_ms <= $2 \
             RETURNING tokens"
        );
        let values: Vec<Value> = vec![
            key.into(),
            now.into(),
            limit.burst.into(),
            limit.rate.into(),
        ];
        let granted = self.db.query_one_raw(self.statement(&sql, values)).await?;
        if granted.is_some() {
            return Ok(Take::Granted);
        }
        self.wait_time(key, now).await
    }

    async fn wait_time(&self, key: &str, now: i64) -> Result<Take> {
        let sql = "SELECT tokens, refilled_at_ms, rate, burst, blocked_until_ms FROM rate_buckets WHERE bucket_key = $1";
        let row = self
            .db
            .query_one_raw(self.statement(sql, vec![key.into()]))
            .await?;
        let Some(row) = row else {
            return Ok(Take::RetryAfter(Duration::from_millis(10)));
        };
        let tokens: f64 = row.try_get("", "tokens")?;
        let refilled_at: i64 = row.try_get("", "refilled_at_ms")?;
        let rate: f64 = row.try_get("", "rate")?;
        let burst: f64 = row.try_get("", "burst")?;
        let blocked_until: i64 = row.try_get("", "blocked_until_ms")?;
        let available = burst.min(tokens + ((now - refilled_at) as f64 / 1000.0) * rate);
        let refill_ms = if rate > 0.0 {
            ((1.0 - available).max(0.0) / rate * 1000.0).ceil() as i64
        } else {
            1000
        };
        let wait_ms = refill_ms.max(blocked_until - now).max(1);
        Ok(Take::RetryAfter(Duration::from_millis(wait_ms as u64)))
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
                Take::Granted => return Ok(Some(started.elapsed())),
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
        let now = now_ms();
        let least = if self.backend() == DatabaseBackend::Postgres {
            "LEAST"
        } else {
            "MIN"
        };
        let greatest = if self.backend() == DatabaseBackend::Postgres {
            "GREATEST"
        } else {
            "MAX"
        };
        if let Some(rate) = feedback.rate {
            let sql = "UPDATE rate_buckets SET rate = $2 WHERE bucket_key = $1";
            self.db
                .execute_raw(self.statement(sql, vec![key.into(), rate.into()]))
                .await?;
        }
        if let Some(remaining) = feedback.remaining {
            // Never more than the platform says is left; keep our own count if it is lower.
            let sql = format!(
                "UPDATE rate_buckets SET tokens = {least}(tokens + (($3 - refilled_at_ms) / 1000.0) * rate, burst, $2), refilled_at_ms = $3 WHERE bucket_key = $1"
            );
            self.db
                .execute_raw(self.statement(&sql, vec![key.into(), remaining.into(), now.into()]))
                .await?;
        }
        if let Some(pause) = feedback.retry_after {
            let until = now + pause.as_millis() as i64;
            let sql = format!(
                "UPDATE rate_buckets SET tokens = 0, refilled_at_ms = {greatest}($2, refilled_at_ms), blocked_until_ms = {greatest}(blocked_until_ms, $2) WHERE bucket_key = $1"
            );
            self.db
                .execute_raw(self.statement(&sql, vec![key.into(), until.into()]))
                .await?;
        }
        Ok(())
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
