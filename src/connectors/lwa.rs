//! Login with Amazon: SP-API calls carry an access token (`x-amz-access-token`) obtained by
//! exchanging the seller's refresh token; it lives an hour. Tokens are cached per process,
//! keyed by app and refresh token, and refreshed five minutes before they expire; one
//! exchange at a time per key, so a burst of calls does not stampede the token endpoint.
//! https://developer-docs.amazon.com/sp-api/docs/connecting-to-the-selling-partner-api

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use super::client::{CallError, ErrorClass, answer_text};
use crate::netpolicy::OutboundClient;

pub const DEFAULT_ENDPOINT: &str = "https://api.amazon.com/auth/o2/token";
/// Refresh this long before the token's stated expiry.
const REFRESH_MARGIN: chrono::Duration = chrono::Duration::seconds(300);

#[derive(Clone)]
struct Cached {
    token: String,
    refresh_at: chrono::DateTime<chrono::Utc>,
}

type Slot = Arc<Mutex<Option<Cached>>>;

/// The process's token cache. A process-wide cache, like a connection pool: every client of
/// the same seller and app shares one token.
static CACHE: LazyLock<std::sync::Mutex<HashMap<[u8; 32], Slot>>> =
    LazyLock::new(|| std::sync::Mutex::new(HashMap::new()));

pub struct Grant<'a> {
    pub endpoint: &'a str,
    pub client_id: &'a str,
    pub client_secret: &'a str,
    pub refresh_token: &'a str,
}

impl Grant<'_> {
    fn key(&self) -> [u8; 32] {
        let mut digest = Sha256::new();
        for part in [self.endpoint, self.client_id, self.refresh_token] {
            digest.update(part.as_bytes());
            digest.update([0u8]);
        }
        digest.finalize().into()
    }

    fn slot(&self) -> Slot {
        let mut cache = CACHE
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        cache.entry(self.key()).or_default().clone()
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: u64,
}

/// A valid access token for the grant: the cached one, or a fresh exchange.
pub async fn access_token(
    http: &OutboundClient,
    grant: &Grant<'_>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<String, CallError> {
    let slot = grant.slot();
    let mut cached = slot.lock().await;
    if let Some(token) = cached.as_ref().filter(|c| now < c.refresh_at) {
        return Ok(token.token.clone());
    }
    let context = |e: CallError| {
        CallError::new(e.class, format!("Login with Amazon: {}", e.message)).in_token_exchange()
    };
    let request = http.post(grant.endpoint).form(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", grant.refresh_token),
        ("client_id", grant.client_id),
        ("client_secret", grant.client_secret),
    ]);
    let response = http.send(request).await.map_err(|e| context(e.into()))?;
    let status = response.status();
    let text = answer_text(response).await.map_err(context)?;
    if !status.is_success() {
        // invalid_grant, invalid_client...: the seller must authorise again; never retried.
        let class = match status.as_u16() {
            400 | 401 | 403 => ErrorClass::Auth,
            429 => ErrorClass::RateLimited,
            500..=599 => ErrorClass::ServerError,
            _ => ErrorClass::ClientError,
        };
        let snippet: String = text.chars().take(300).collect();
        return Err(CallError::new(
            class,
            format!("Login with Amazon refused the refresh token: HTTP {status}: {snippet}"),
        )
        .in_token_exchange());
    }
    let answer: TokenAnswer = serde_json::from_str(&text).map_err(|e| {
        CallError::new(
            ErrorClass::SchemaMismatch,
            format!("Login with Amazon answer: {e}"),
        )
        .in_token_exchange()
    })?;
    // LWA says 3600; a year bounds whatever else an endpoint claims.
    let lifetime = chrono::Duration::seconds(answer.expires_in.min(365 * 86_400) as i64);
    *cached = Some(Cached {
        token: answer.access_token.clone(),
        refresh_at: now + (lifetime - REFRESH_MARGIN).max(chrono::Duration::zero()),
    });
    Ok(answer.access_token)
}

/// Drops the cached token, after the platform refused it, so the next call exchanges anew.
pub async fn forget(grant: &Grant<'_>) {
    *grant.slot().lock().await = None;
}
