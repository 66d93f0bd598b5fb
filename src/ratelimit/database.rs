//! Buckets and slots as rows: `rate_buckets` and `concurrency_slots`.

use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection, Statement, Value};

use super::{Feedback, Limit, Slot, Take};
use crate::error::Result;

#[derive(Clone)]
pub struct Buckets {
    db: DatabaseConnection,
}

impl Buckets {
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
    pub async fn try_take(&self, key: &str, limit: Limit, now: i64) -> Result<Take> {
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

    /// Applies what the platform said: a changed rate, the tokens it says are left, a pause.
    pub async fn apply_feedback(&self, key: &str, feedback: Feedback, now: i64) -> Result<()> {
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

    /// Tries the slots from a random one: the first free or expired one is taken, in one
    /// statement each (the key's primary key serialises takers of the same slot).
    pub async fn try_acquire(
        &self,
        key: &str,
        cap: u32,
        holder: &str,
        now: i64,
        until: i64,
    ) -> Result<Option<u32>> {
        let cap = cap.max(1);
        let start = u32::from_le_bytes(crate::random::bytes::<4>().unwrap_or_default()) % cap;
        let sql = "INSERT INTO concurrency_slots (slot_key, slot_no, holder, lease_until_ms) \
                   VALUES ($1, $2, $3, $4) \
                   ON CONFLICT (slot_key, slot_no) DO UPDATE SET holder = $3, lease_until_ms = $4 \
                   WHERE concurrency_slots.lease_until_ms < $5 \
                   RETURNING slot_no";
        for i in 0..cap {
            let number = (start + i) % cap;
            let values: Vec<Value> = vec![
                key.into(),
                (number as i32).into(),
                holder.into(),
                until.into(),
                now.into(),
            ];
            if self
                .db
                .query_one_raw(self.statement(sql, values))
                .await?
                .is_some()
            {
                return Ok(Some(number));
            }
        }
        Ok(None)
    }

    pub async fn release(&self, slot: &Slot) -> Result<()> {
        let sql = "UPDATE concurrency_slots SET lease_until_ms = 0 \
                   WHERE slot_key = $1 AND slot_no = $2 AND holder = $3";
        let values: Vec<Value> = vec![
            slot.key.as_str().into(),
            (slot.number as i32).into(),
            slot.holder.as_str().into(),
        ];
        self.db.execute_raw(self.statement(sql, values)).await?;
        Ok(())
    }
}
