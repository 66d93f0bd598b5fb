//! Trading a shop's refresh token for new tokens, for the marketplaces whose access tokens
//! expire within hours or days and whose refresh tokens are replaced at each trade. The
//! credential keeper (connections) calls these ahead of expiry and stores the answer.
//!
//! - Shopee v2: `POST /api/v2/auth/access_token/get`, signed like a public API (partner_id +
//!   path + timestamp), body `{refresh_token, partner_id, shop_id}`; the access token lives
//!   `expire_in` seconds (4 hours), the refresh token 30 days.
//!   https://open.shopee.com/developer-guide/ ("Authorization and Authentication")
//! - Shopify (expiring offline tokens): `POST https://{shop}/admin/oauth/access_token` with
//!   JSON {client_id, client_secret, grant_type: "refresh_token", refresh_token}; the answer
//!   holds a new access token (`expires_in`, 1 hour) and a new refresh token
//!   (`refresh_token_expires_in`, 90 days), which replaces the old one (Shopify honours the
//!   previous one until the new pair is in use).
//!   https://shopify.dev/docs/apps/build/authentication-authorization/access-tokens/offline-access-tokens
//!   (request shape: the Ruby SDK's `auth/refresh_token.rb`, the JS SDK's `refresh-token.ts`)
//! - TikTok Shop: `GET https://auth.tiktok-shops.com/api/v2/token/refresh` with app_key,
//!   app_secret, refresh_token and grant_type=refresh_token; `data` holds both tokens with
//!   their expiry as Unix timestamps.
//!   https://partner.tiktokshop.com/docv2 ("Authorization overview", refresh the access token)

use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use serde_json::Value;

use super::client::{CallError, ErrorClass, answer_text};
use crate::netpolicy::OutboundClient;
use crate::signing::marketplaces as signing;

pub const TIKTOK_DEFAULT_ENDPOINT: &str = "https://auth.tiktok-shops.com/api/v2/token/refresh";
pub const SHOPEE_PATH: &str = "/api/v2/auth/access_token/get";
/// Shopee states no expiry for refresh tokens in its answer; its guide gives 30 days.
const SHOPEE_REFRESH_TOKEN_LIFETIME: Duration = Duration::days(30);

/// New tokens and when they expire.
#[derive(Debug, Clone, PartialEq)]
pub struct RefreshedTokens {
    pub access_token: String,
    pub refresh_token: String,
    pub access_expires_at: DateTime<Utc>,
    pub refresh_expires_at: Option<DateTime<Utc>>,
}

pub struct ShopeeShop<'a> {
    pub base_url: &'a str,
    pub partner_id: &'a str,
    pub shop_id: &'a str,
    pub partner_key: &'a str,
    pub refresh_token: &'a str,
}

pub struct ShopifyApp<'a> {
    pub base_url: &'a str,
    pub client_id: &'a str,
    pub client_secret: &'a str,
    pub refresh_token: &'a str,
}

pub struct TiktokApp<'a> {
    pub endpoint: &'a str,
    pub app_key: &'a str,
    pub app_secret: &'a str,
    pub refresh_token: &'a str,
}

fn refused(platform: &str, detail: impl std::fmt::Display) -> CallError {
    CallError::new(
        ErrorClass::Auth,
        format!("{platform} refused the refresh token: {detail}"),
    )
    .in_token_exchange()
}

fn unreadable(platform: &str, error: impl std::fmt::Display) -> CallError {
    CallError::new(
        ErrorClass::SchemaMismatch,
        format!("{platform} token answer: {error}"),
    )
    .in_token_exchange()
}

/// Sends the request; network trouble, 429 and 5xx come back as their transient classes,
/// other HTTP failures as refusals.
pub async fn send(
    http: &OutboundClient,
    platform: &str,
    request: reqwest::RequestBuilder,
) -> Result<Value, CallError> {
    // The guard's errors carry no URL: TikTok's carries the app secret and refresh token.
    let context = |e: CallError| {
        CallError::new(e.class, format!("{platform} token endpoint: {}", e.message))
            .in_token_exchange()
    };
    let response = http.send(request).await.map_err(|e| context(e.into()))?;
    let status = response.status();
    let text = answer_text(response).await.map_err(context)?;
    let snippet: String = text.chars().take(300).collect();
    if !status.is_success() {
        let class = match status.as_u16() {
            // The platform's answer about the token itself.
            400 | 401 | 403 => return Err(refused(platform, format!("HTTP {status}: {snippet}"))),
            429 => ErrorClass::RateLimited,
            500..=599 => ErrorClass::ServerError,
            // A wrong endpoint (404, 405...) is ours to fix, not the seller's.
            _ => ErrorClass::Config,
        };
        return Err(CallError::new(
            class,
            format!("{platform} token endpoint: HTTP {status}: {snippet}"),
        )
        .in_token_exchange());
    }
    serde_json::from_str(&text).map_err(|e| unreadable(platform, e))
}

/// Shopee's token answer, to a refresh or (with `shop_id_list` for a main account) to a
/// code trade; errors come inside a 200 as `error` and `message`.
#[derive(Deserialize)]
pub struct ShopeeAnswer {
    #[serde(default)]
    pub error: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub access_token: String,
    #[serde(default)]
    pub refresh_token: String,
    #[serde(default)]
    pub expire_in: i64,
    #[serde(default)]
    pub shop_id_list: Vec<u64>,
}

pub async fn shopee(
    http: &OutboundClient,
    shop: &ShopeeShop<'_>,
    now: DateTime<Utc>,
) -> Result<RefreshedTokens, CallError> {
    let numeric = |name: &str, text: &str| {
        text.parse::<i64>().map_err(|_| {
            CallError::new(
                ErrorClass::Config,
                format!("setting {name} is not a number"),
            )
        })
    };
    // The request's own time (the platform checks it against its clock), whatever `now`
    // the caller dates the answer with.
    let timestamp = Utc::now().timestamp();
    // A public API: the signature leaves out the access token and the shop id.
    let sign = signing::shopee_v2(
        shop.partner_key,
        shop.partner_id,
        SHOPEE_PATH,
        timestamp,
        "",
        "",
    );
    let request = http
        .post(format!("{}{SHOPEE_PATH}", shop.base_url))
        .query(&[
            ("partner_id", shop.partner_id),
            ("timestamp", &timestamp.to_string()),
            ("sign", &sign),
        ])
        .json(&serde_json::json!({
            "refresh_token": shop.refresh_token,
            "partner_id": numeric("partner_id", shop.partner_id)?,
            "shop_id": numeric("shop_id", shop.shop_id)?,
        }));
    let answer: ShopeeAnswer = serde_json::from_value(send(http, "Shopee", request).await?)
        .map_err(|e| unreadable("Shopee", e))?;
    if !answer.error.is_empty() {
        return Err(refused(
            "Shopee",
            format!("{}: {}", answer.error, answer.message),
        ));
    }
    if answer.access_token.is_empty() || answer.refresh_token.is_empty() || answer.expire_in <= 0 {
        return Err(unreadable("Shopee", "no tokens in the answer"));
    }
    Ok(RefreshedTokens {
        access_token: answer.access_token,
        refresh_token: answer.refresh_token,
        access_expires_at: now + Duration::seconds(answer.expire_in),
        refresh_expires_at: Some(now + SHOPEE_REFRESH_TOKEN_LIFETIME),
    })
}

#[derive(Deserialize)]
struct TiktokAnswer {
    code: i64,
    #[serde(default)]
    message: String,
    data: Option<TiktokTokens>,
}

#[derive(Deserialize)]
struct TiktokTokens {
    access_token: String,
    access_token_expire_in: i64,
    refresh_token: String,
    refresh_token_expire_in: i64,
}

/// TikTok's `*_expire_in` are Unix timestamps in its docs' examples; a small number is read
/// as seconds from now, so an answer in either form lands on the right instant.
pub fn tiktok_instant(value: i64, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if value > 1_000_000_000 {
        DateTime::from_timestamp(value, 0)
    } else if value > 0 {
        Some(now + Duration::seconds(value))
    } else {
        None
    }
}

pub async fn tiktok(
    http: &OutboundClient,
    app: &TiktokApp<'_>,
    now: DateTime<Utc>,
) -> Result<RefreshedTokens, CallError> {
    let request = http.get(app.endpoint).query(&[
        ("app_key", app.app_key),
        ("app_secret", app.app_secret),
        ("refresh_token", app.refresh_token),
        ("grant_type", "refresh_token"),
    ]);
    let answer: TiktokAnswer = serde_json::from_value(send(http, "TikTok Shop", request).await?)
        .map_err(|e| unreadable("TikTok Shop", e))?;
    if answer.code != 0 {
        return Err(refused(
            "TikTok Shop",
            format!("code {}: {}", answer.code, answer.message),
        ));
    }
    let tokens = answer
        .data
        .ok_or_else(|| unreadable("TikTok Shop", "no data in the answer"))?;
    let access_expires_at = tiktok_instant(tokens.access_token_expire_in, now)
        .ok_or_else(|| unreadable("TikTok Shop", "access_token_expire_in"))?;
    Ok(RefreshedTokens {
        access_token: tokens.access_token,
        refresh_token: tokens.refresh_token,
        access_expires_at,
        refresh_expires_at: tiktok_instant(tokens.refresh_token_expire_in, now),
    })
}

#[derive(Deserialize)]
struct ShopifyAnswer {
    access_token: String,
    expires_in: i64,
    refresh_token: String,
    refresh_token_expires_in: Option<i64>,
}

pub async fn shopify(
    http: &OutboundClient,
    app: &ShopifyApp<'_>,
    now: DateTime<Utc>,
) -> Result<RefreshedTokens, CallError> {
    let request = http
        .post(format!("{}/admin/oauth/access_token", app.base_url))
        .json(&serde_json::json!({
            "client_id": app.client_id,
            "client_secret": app.client_secret,
            "grant_type": "refresh_token",
            "refresh_token": app.refresh_token,
        }));
    let answer: ShopifyAnswer = serde_json::from_value(send(http, "Shopify", request).await?)
        .map_err(|e| unreadable("Shopify", e))?;
    if answer.access_token.is_empty() || answer.refresh_token.is_empty() || answer.expires_in <= 0 {
        return Err(unreadable("Shopify", "no tokens in the answer"));
    }
    Ok(RefreshedTokens {
        access_token: answer.access_token,
        refresh_token: answer.refresh_token,
        access_expires_at: now + Duration::seconds(answer.expires_in),
        refresh_expires_at: answer
            .refresh_token_expires_in
            .filter(|s| *s > 0)
            .map(|s| now + Duration::seconds(s)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiktok_expiries_read_as_timestamps_or_seconds() {
        let now: DateTime<Utc> = "2026-11-28T00:00:00Z".parse().unwrap();
        // The docs' example answer carries a Unix timestamp.
        assert_eq!(
            tiktok_instant(1_660_556_783, now),
            DateTime::from_timestamp(1_660_556_783, 0)
        );
        assert_eq!(tiktok_instant(604_800, now), Some(now + Duration::days(7)));
        assert_eq!(tiktok_instant(0, now), None);
    }
}
