//! Sending one request: the shared rate-limit bucket and concurrency slots, quick retries
//! of network errors and 5xx, and 429s waited out as the platform asks.

use std::time::Duration;

use serde_json::Value;

use super::ConnectorClient;
use super::errors::{CallError, ErrorClass, answer_text};
use crate::connectors::spec::{AuthSpec, OperationSpec};
use crate::connectors::{lingxing, mabang};
use crate::ratelimit::Feedback;

/// How many times one call waits out a 429 before giving the error to the run.
const MAX_THROTTLE_WAITS: u32 = 5;

/// Quick retries of one call after a network error, timeout or 5xx, before the run's own
/// persisted retry takes over. Safe: reads are idempotent and writes carry idempotency keys.
const QUICK_RETRIES: u32 = 2;

/// The longest a call waits for a rate-limit token before it gives up as rate limited.
const MAX_TOKEN_WAIT: Duration = Duration::from_secs(120);

/// How long a concurrency slot outlives a process that died holding it: longer than a
/// call's token wait, 429 waits and timeout together.
const SLOT_LEASE: Duration = Duration::from_secs(300);

impl ConnectorClient {
    /// A refusal inside a 200 answer that the scheme's platform words its own way
    /// (Lingxing's `code`); None for schemes without one.
    fn answer_refusal(&self, body: &Value) -> Option<Result<(), CallError>> {
        match &self.manifest.auth {
            Some(AuthSpec::Lingxing { .. }) => Some(lingxing::answer_data(body).map(|_| ())),
            Some(AuthSpec::Mabang { .. }) => Some(mabang::check_answer(body)),
            _ => None,
        }
    }

    /// Sends a request, retrying transient failures twice with a short backoff.
    pub(super) async fn send(
        &self,
        op: &OperationSpec,
        api_path: &str,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<(reqwest::header::HeaderMap, Value), CallError> {
        let mut tries = 0;
        loop {
            match self.send_once(op, api_path, &build).await {
                Err(e)
                    if tries < QUICK_RETRIES
                        && matches!(
                            e.class,
                            ErrorClass::ServerError | ErrorClass::Timeout | ErrorClass::Connect
                        ) =>
                {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(100 << (2 * tries))).await;
                }
                other => return other,
            }
        }
    }

    /// The connection's cap on requests in flight, if it has one.
    pub(super) fn concurrency_cap(&self) -> Option<u32> {
        self.setting("max_concurrent_requests")
            .and_then(|v| v.parse().ok())
            .or(self.manifest.concurrency)
            .filter(|cap| *cap > 0)
    }

    /// Sends one request within the connection's cap on requests in flight and the
    /// operation's own (Lingxing's per-endpoint buckets).
    pub(super) async fn send_once(
        &self,
        op: &OperationSpec,
        api_path: &str,
        build: &impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<(reqwest::header::HeaderMap, Value), CallError> {
        let connection_slot = match self.concurrency_cap() {
            Some(cap) => Some(
                self.slot(&format!("{}:{}", self.manifest.name, self.account), cap)
                    .await?,
            ),
            None => None,
        };
        let operation_slot = match op.concurrency.filter(|cap| *cap > 0) {
            Some(cap) => {
                let key = format!("{}:{}:{}", self.manifest.name, self.account, op.path);
                match self.slot(&key, cap).await {
                    Ok(slot) => Some(slot),
                    Err(err) => {
                        self.release(connection_slot).await;
                        return Err(err);
                    }
                }
            }
            None => None,
        };
        let outcome = self.send_metered(op, api_path, build).await;
        self.release(operation_slot).await;
        self.release(connection_slot).await;
        outcome
    }

    /// One of `cap` slots of `key`, shared by every worker and process.
    async fn slot(&self, key: &str, cap: u32) -> Result<crate::ratelimit::Slot, CallError> {
        self.limiter
            .acquire(key, cap, SLOT_LEASE, MAX_TOKEN_WAIT)
            .await
            .map_err(|e| CallError::new(ErrorClass::Config, format!("rate limiter: {e}")))?
            .ok_or_else(|| {
                CallError::new(
                    ErrorClass::RateLimited,
                    "every slot for requests in flight stayed busy",
                )
            })
    }

    /// A release that fails leaves the slot to expire with its lease.
    async fn release(&self, slot: Option<crate::ratelimit::Slot>) {
        if let Some(slot) = slot
            && let Err(err) = self.limiter.release(slot).await
        {
            tracing::warn!(error = %err, "could not release a concurrency slot");
        }
    }

    /// Sends one request through the shared bucket, waiting out 429s as the platform asks.
    pub(super) async fn send_metered(
        &self,
        op: &OperationSpec,
        api_path: &str,
        build: &impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<(reqwest::header::HeaderMap, Value), CallError> {
        let bucket = op.group.as_deref().map(|g| self.bucket(g)).transpose()?;
        let mut throttled = 0;
        loop {
            if let Some((key, limit)) = &bucket {
                let waited = self
                    .limiter
                    .take(key, *limit, MAX_TOKEN_WAIT)
                    .await
                    .map_err(|e| {
                        CallError::new(ErrorClass::Config, format!("rate limiter: {e}"))
                    })?;
                if waited.is_none() {
                    return Err(CallError::new(
                        ErrorClass::RateLimited,
                        "the rate-limit budget stayed exhausted",
                    ));
                }
            }
            let mut request = build().build().map_err(|e| {
                CallError::new(ErrorClass::Config, format!("building the request: {e}"))
            })?;
            self.authenticate(&mut request, api_path, op.action.as_deref())
                .await?;
            // The guard's errors carry no URL: a signed query carries the access token.
            let response = self.http.execute(request).await?;
            let status = response.status();
            let headers = response.headers().clone();
            let feedback = Feedback::from_headers(|name| {
                headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            });
            let feedback = if status.as_u16() == 429 {
                Feedback {
                    retry_after: feedback.retry_after.or(Some(Duration::from_secs(1))),
                    ..feedback
                }
            } else {
                feedback
            };
            if feedback != Feedback::default()
                && let Some((key, _)) = &bucket
            {
                let _ = self.limiter.apply_feedback(key, feedback).await;
            }
            if status.as_u16() == 429 {
                throttled += 1;
                metrics::counter!("synchub_platform_throttled_total", "connector" => self.manifest.name.clone()).increment(1);
                if throttled > MAX_THROTTLE_WAITS {
                    return Err(CallError::new(
                        ErrorClass::RateLimited,
                        "the platform kept answering 429",
                    ));
                }
                if bucket.is_none() {
                    // No shared bucket to hold the pause: this call waits it out alone.
                    let pause = feedback.retry_after.unwrap_or(Duration::from_secs(1));
                    tokio::time::sleep(pause.min(MAX_TOKEN_WAIT)).await;
                }
                continue;
            }
            let text = answer_text(response).await?;
            if !status.is_success() {
                let class = match status.as_u16() {
                    401 => ErrorClass::Auth,
                    403 => ErrorClass::Forbidden,
                    404 => ErrorClass::NotFound,
                    500..=599 => ErrorClass::ServerError,
                    _ => ErrorClass::ClientError,
                };
                if matches!(class, ErrorClass::Auth | ErrorClass::Forbidden) {
                    self.credentials_refused().await;
                }
                let snippet: String = text.chars().take(300).collect();
                return Err(CallError::new(class, format!("HTTP {status}: {snippet}")));
            }
            let body = if text.trim().is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&text).map_err(|e| {
                    CallError::new(
                        ErrorClass::SchemaMismatch,
                        format!("the response is not JSON: {e}"),
                    )
                })?
            };
            if let Some(Err(refusal)) = self.answer_refusal(&body) {
                // Lingxing's bucket was full after all (another tool on the AppID): wait as
                // for a 429.
                if refusal.class == ErrorClass::RateLimited && throttled < MAX_THROTTLE_WAITS {
                    throttled += 1;
                    metrics::counter!("synchub_platform_throttled_total", "connector" => self.manifest.name.clone()).increment(1);
                    tokio::time::sleep(Duration::from_millis(250 << throttled.min(4))).await;
                    continue;
                }
                return Err(refusal);
            }
            if let Some(failure) = op.errors.iter().find_map(|e| e.failure(&body)) {
                let text: String = failure.to_string().chars().take(300).collect();
                return Err(CallError::new(
                    ErrorClass::ClientError,
                    format!("the platform reported an error: {text}"),
                ));
            }
            return Ok((headers, body));
        }
    }
}
