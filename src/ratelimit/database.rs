//! Buckets and slots as rows: `rate_buckets` and `concurrency_slots`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection, Statement, Value};

use super::{Feedback, Limit, Slot, Take};
use crate::error::Result;

#[derive(Clone)]
pub struct Buckets {
    db: DatabaseConnection,
    /// The slot keys (with their caps) whose rows this process has made sure exist.
    slot_rows: Arc<Mutex<HashSet<(String, u32)>>>,
}

impl Buckets {
    pub fn new(db: DatabaseConnection) -> Self {
        Self {
            db,
            slot_rows: Arc::default(),
        }
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

    /// Takes a free or expired slot in one statement: every taker pays for each statement
    /// inside SQLite's one write lock, and trying slot after slot cost five and a half on
    /// average with one of ten free. PostgreSQL's takers skip a slot another one is taking.
    pub async fn try_acquire(
        &self,
        key: &str,
        cap: u32,
        holder: &str,
        now: i64,
        until: i64,
    ) -> Result<Option<u32>> {
        let cap = cap.max(1);
        self.ensure_slot_rows(key, cap).await?;
        let skip_locked = if self.backend() == DatabaseBackend::Postgres {
            "FOR UPDATE SKIP LOCKED"
        } else {
            ""
        };
        // From a random slot on, so takers in other processes do not all queue on the first.
        let start = u32::from_le_bytes(crate::random::bytes::<4>().unwrap_or_default()) % cap;
        let sql = format!(
            "UPDATE concurrency_slots SET holder = $2, lease_until_ms = $3 \
             WHERE slot_key = $1 AND lease_until_ms < $4 AND slot_no = ( \
               SELECT slot_no FROM concurrency_slots \
               WHERE slot_key = $1 AND slot_no < $5 AND lease_until_ms < $4 \
               ORDER BY (slot_no + $6) % $5 LIMIT 1 {skip_locked}) \
             RETURNING slot_no"
        );
        let values: Vec<Value> = vec![
            key.into(),
            holder.into(),
            until.into(),
            now.into(),
            (cap as i32).into(),
            (start as i32).into(),
        ];
        let taken = self.db.query_one_raw(self.statement(&sql, values)).await?;
        let Some(row) = taken else {
            return Ok(None);
        };
        let number: i32 = row.try_get("", "slot_no")?;
        Ok(Some(u32::try_from(number).unwrap_or_default()))
    }

    /// Makes the key's `cap` slot rows, free, once per process: taking one is then an update.
    async fn ensure_slot_rows(&self, key: &str, cap: u32) -> Result<()> {
        let known = (key.to_string(), cap);
        if self
            .slot_rows
            .lock()
            .is_ok_and(|rows| rows.contains(&known))
        {
            return Ok(());
        }
        let rows = (0..cap)
            .map(|n| format!("($1, {n}, '', 0)"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO concurrency_slots (slot_key, slot_no, holder, lease_until_ms) \
             VALUES {rows} ON CONFLICT (slot_key, slot_no) DO NOTHING"
        );
        self.db
            .execute_raw(self.statement(&sql, vec![key.into()]))
            .await?;
        if let Ok(mut rows) = self.slot_rows.lock() {
            rows.insert(known);
        }
        Ok(())
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
