//! Buckets and slots in Redis: a hash per bucket and a sorted set of leases per slot key,
//! each changed by one Lua script, which Redis runs atomically. Same arithmetic as the
//! database store, so either can serve a deployment.

use std::time::Duration;

use redis::Script;
use redis::aio::ConnectionManager;

use super::{Feedback, Limit, Slot, Take};
use crate::error::{Error, Result};

/// Grants a token (returns 0) or says how many milliseconds until one is there.
const TAKE: &str = r"
local b = redis.call('HMGET', KEYS[1], 'tokens', 'refilled_at', 'rate', 'burst', 'blocked_until')
local now = tonumber(ARGV[1])
local tokens, refilled, rate, burst, blocked
if not b[1] then
  burst = tonumber(ARGV[3]); tokens = burst; refilled = now; rate = tonumber(ARGV[2]); blocked = 0
else
  tokens = tonumber(b[1]); refilled = tonumber(b[2]); rate = tonumber(b[3])
  burst = tonumber(b[4]); blocked = tonumber(b[5])
end
local available = math.min(burst, tokens + ((now - refilled) / 1000.0) * rate)
local wait = 0
if blocked > now then
  wait = blocked - now
elseif available < 1 then
  wait = math.ceil((1 - available) / rate * 1000)
end
if wait > 0 then
  if not b[1] then
    redis.call('HSET', KEYS[1], 'tokens', tokens, 'refilled_at', refilled, 'rate', rate, 'burst', burst, 'blocked_until', blocked)
  end
  return math.max(wait, 1)
end
redis.call('HSET', KEYS[1], 'tokens', available - 1, 'refilled_at', now, 'rate', rate, 'burst', burst, 'blocked_until', blocked)
redis.call('PEXPIRE', KEYS[1], 86400000)
return 0
";

/// ARGV: now, rate or '', tokens left or '', blocked until or ''.
const FEEDBACK: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local now = tonumber(ARGV[1])
if ARGV[2] ~= '' then redis.call('HSET', KEYS[1], 'rate', ARGV[2]) end
if ARGV[3] ~= '' then
  local b = redis.call('HMGET', KEYS[1], 'tokens', 'refilled_at', 'rate', 'burst')
  local available = math.min(tonumber(b[4]), tonumber(b[1]) + ((now - tonumber(b[2])) / 1000.0) * tonumber(b[3]))
  redis.call('HSET', KEYS[1], 'tokens', math.min(available, tonumber(ARGV[3])), 'refilled_at', now)
end
if ARGV[4] ~= '' then
  local untl = tonumber(ARGV[4])
  local b = redis.call('HMGET', KEYS[1], 'refilled_at', 'blocked_until')
  redis.call('HSET', KEYS[1], 'tokens', 0, 'refilled_at', math.max(untl, tonumber(b[1])), 'blocked_until', math.max(untl, tonumber(b[2])))
end
return 1
";

/// ARGV: now, cap, lease until, holder. Returns the slot number, or -1 when all are held.
const ACQUIRE: &str = r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local held = redis.call('ZCARD', KEYS[1])
if held >= tonumber(ARGV[2]) then return -1 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
return held
";

#[derive(Clone)]
pub struct Buckets {
    connection: ConnectionManager,
}

fn redis_error(err: redis::RedisError) -> Error {
    Error::Internal(anyhow::Error::new(err).context("redis"))
}

fn bucket_key(key: &str) -> String {
    format!("synchub:bucket:{key}")
}

fn slots_key(key: &str) -> String {
    format!("synchub:slots:{key}")
}

impl Buckets {
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let client = redis::Client::open(url)?;
        Ok(Self {
            connection: client.get_connection_manager().await?,
        })
    }

    pub async fn try_take(&self, key: &str, limit: Limit, now: i64) -> Result<Take> {
        let mut connection = self.connection.clone();
        let wait: i64 = Script::new(TAKE)
            .key(bucket_key(key))
            .arg(now)
            .arg(limit.rate)
            .arg(limit.burst)
            .invoke_async(&mut connection)
            .await
            .map_err(redis_error)?;
        Ok(if wait <= 0 {
            Take::Granted
        } else {
            Take::RetryAfter(Duration::from_millis(wait as u64))
        })
    }

    pub async fn apply_feedback(&self, key: &str, feedback: Feedback, now: i64) -> Result<()> {
        let text = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
        let until = feedback
            .retry_after
            .map(|pause| (now + pause.as_millis() as i64).to_string())
            .unwrap_or_default();
        let mut connection = self.connection.clone();
        let _: i64 = Script::new(FEEDBACK)
            .key(bucket_key(key))
            .arg(now)
            .arg(text(feedback.rate))
            .arg(text(feedback.remaining))
            .arg(until)
            .invoke_async(&mut connection)
            .await
            .map_err(redis_error)?;
        Ok(())
    }

    pub async fn try_acquire(
        &self,
        key: &str,
        cap: u32,
        holder: &str,
        now: i64,
        until: i64,
    ) -> Result<Option<u32>> {
        let mut connection = self.connection.clone();
        let number: i64 = Script::new(ACQUIRE)
            .key(slots_key(key))
            .arg(now)
            .arg(cap.max(1))
            .arg(until)
            .arg(holder)
            .invoke_async(&mut connection)
            .await
            .map_err(redis_error)?;
        Ok(u32::try_from(number).ok())
    }

    pub async fn release(&self, slot: &Slot) -> Result<()> {
        let mut connection = self.connection.clone();
        let _: i64 = redis::cmd("ZREM")
            .arg(slots_key(&slot.key))
            .arg(&slot.holder)
            .query_async(&mut connection)
            .await
            .map_err(redis_error)?;
        Ok(())
    }
}
