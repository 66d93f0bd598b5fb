//! Simulated marketplaces whose API calls are signed or need an exchanged token, verifying
//! them exactly as the platforms document:
//! - Amazon SP-API: Login with Amazon (`POST /amazon/auth/o2/token`, refresh-token grant) and
//!   `GET /amazon/orders/v0/orders` with `x-amz-access-token`, paged by `NextToken`;
//! - Shopee v2: `GET /shopee/api/v2/order/get_order_list`, signed in the query, paged by
//!   `cursor`;
//! - TikTok Shop 202309: `POST /tiktok/order/202309/orders/search`, signed in the query with
//!   `x-tts-access-token`, paged by `page_token`;
//!
//! with the calls their connectors make after that: Amazon getOrderItems and the Listings
//! Items quantity patch, Shopee get_order_detail, search_item and update_stock, TikTok
//! product search and inventory update.
//!
//! Apps are registered with the simulator first (`PUT /_sim/apps`), as a seller's app is
//! registered with the platform: the simulator must know the secret to check a signature.

mod amazon;
mod shopee;
mod tiktok;

use std::collections::HashMap;

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use serde_json::json;

pub use amazon::*;
pub use shopee::*;
pub use tiktok::*;

use super::{SimState, catalogue};

/// How far a signed timestamp may be from the simulator's clock (Shopee: 5 minutes).
pub(super) const TIMESTAMP_TOLERANCE: i64 = 300;

#[derive(Default)]
pub struct Apps {
    /// Shopee partner id -> partner key.
    shopee: HashMap<String, String>,
    /// TikTok app key -> app secret.
    tiktok: HashMap<String, String>,
    /// LWA client id -> (client secret, refresh token the seller granted).
    lwa: HashMap<String, (String, String)>,
    /// Issued LWA access tokens and when they expire.
    lwa_tokens: HashMap<String, DateTime<Utc>>,
    /// Lifetime of issued LWA tokens (Amazon: 3,600 s).
    pub lwa_lifetime_seconds: i64,
    pub lwa_exchanges: u64,
}

/// `PUT /_sim/apps`: registers apps and their secrets.
#[derive(Debug, Deserialize, Default)]
pub struct AppRegistration {
    #[serde(default)]
    pub shopee: HashMap<String, String>,
    #[serde(default)]
    pub tiktok: HashMap<String, String>,
    /// client id -> {"client_secret", "refresh_token"}
    #[serde(default)]
    pub lwa: HashMap<String, LwaClient>,
    pub lwa_lifetime_seconds: Option<i64>,
    /// Lingxing AppID -> AppSecret.
    #[serde(default)]
    pub lingxing: HashMap<String, String>,
    /// Mabang app key -> developer secret.
    #[serde(default)]
    pub mabang: HashMap<String, String>,
    /// The apps the consent pages know (Shopify, Amazon, TikTok services).
    #[serde(flatten)]
    pub consent: crate::sim::consent::ConsentApps,
}

#[derive(Debug, Deserialize)]
pub struct LwaClient {
    pub client_secret: String,
    pub refresh_token: String,
}

impl Apps {
    pub(crate) fn shopee_key(&self, partner_id: &str) -> Option<String> {
        self.shopee.get(partner_id).cloned()
    }

    pub fn register(&mut self, registration: AppRegistration) {
        self.shopee.extend(registration.shopee);
        self.tiktok.extend(registration.tiktok);
        for (id, client) in registration.lwa {
            self.lwa
                .insert(id, (client.client_secret, client.refresh_token));
        }
        if let Some(seconds) = registration.lwa_lifetime_seconds {
            self.lwa_lifetime_seconds = seconds;
        }
    }
}

/// The account's orders: (platform id, last update), oldest first, the same for a name.
pub(super) fn orders(account: &str, count: usize) -> Vec<(String, DateTime<Utc>)> {
    let salt = account
        .bytes()
        .fold(11u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    let start = Utc::now() - Duration::minutes(count as i64 + 1);
    (0..count)
        .map(|i| {
            let n = salt.wrapping_add(i as u64) % 10_000_000;
            (
                format!("{:03}-{:07}-{:07}", 100 + i % 900, n, i),
                start + Duration::minutes(i as i64),
            )
        })
        .collect()
}

/// One page from an offset token: the orders and the next offset, if any.
pub(super) fn page<T: Clone>(all: &[T], offset: usize, size: usize) -> (Vec<T>, Option<usize>) {
    let end = (offset + size).min(all.len());
    let items = all.get(offset..end).map(<[T]>::to_vec).unwrap_or_default();
    (items, (end < all.len()).then_some(end))
}

pub(super) fn query_pairs(req: &HttpRequest) -> Vec<(String, String)> {
    url::form_urlencoded::parse(req.query_string().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

pub(super) fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

pub(super) fn fresh(timestamp: Option<&str>) -> bool {
    timestamp
        .and_then(|t| t.parse::<i64>().ok())
        .is_some_and(|t| (Utc::now().timestamp() - t).abs() <= TIMESTAMP_TOLERANCE)
}

pub async fn put_apps(
    state: web::Data<SimState>,
    body: web::Json<AppRegistration>,
) -> HttpResponse {
    match state.apps.lock() {
        Ok(mut apps) => {
            apps.register(body.into_inner());
            HttpResponse::NoContent().finish()
        }
        Err(_) => HttpResponse::InternalServerError().finish(),
    }
}

#[derive(Deserialize)]
pub struct TokenForm {
    grant_type: String,
    refresh_token: Option<String>,
    code: Option<String>,
    redirect_uri: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// Login with Amazon token endpoint: the refresh-token grant, and the authorization-code
/// grant of a seller's consent (`consent::lwa_code_grant`).
pub async fn lwa_token(state: web::Data<SimState>, form: web::Form<TokenForm>) -> HttpResponse {
    if let Some(response) = crate::sim::inject(&state).await {
        return response;
    }
    if form.grant_type == "authorization_code" {
        crate::sim::consent::lwa_hold(&state).await;
    }
    let consent_grant = match form.grant_type.as_str() {
        "authorization_code" => None,
        _ => form.refresh_token.as_deref(),
    }
    .is_some_and(|refresh| {
        state
            .consents
            .lock()
            .is_ok_and(|c| c.lwa_granted(form.client_id.as_deref().unwrap_or_default(), refresh))
    });
    let Ok(mut apps) = state.apps.lock() else {
        return HttpResponse::InternalServerError().finish();
    };
    if form.grant_type != "refresh_token" && form.grant_type != "authorization_code" {
        return HttpResponse::BadRequest().json(json!({"error": "unsupported_grant_type", "error_description": "grant_type must be refresh_token or authorization_code"}));
    }
    let client = form
        .client_id
        .as_deref()
        .and_then(|id| apps.lwa.get(id))
        .cloned();
    let Some((secret, granted)) = client else {
        return HttpResponse::Unauthorized().json(
            json!({"error": "invalid_client", "error_description": "Client authentication failed"}),
        );
    };
    if form.client_secret.as_deref() != Some(secret.as_str()) {
        return HttpResponse::Unauthorized().json(
            json!({"error": "invalid_client", "error_description": "Client authentication failed"}),
        );
    }
    let granted = if form.grant_type == "authorization_code" {
        let client = form.client_id.as_deref().unwrap_or_default();
        let code = form.code.as_deref().unwrap_or_default();
        let redirect = form.redirect_uri.as_deref().unwrap_or_default();
        match crate::sim::consent::lwa_code_grant(&state, client, code, redirect) {
            Ok(refresh) => refresh,
            Err(refused) => return refused,
        }
    } else if form.refresh_token.as_deref() == Some(granted.as_str()) || consent_grant {
        form.refresh_token.clone().unwrap_or_default()
    } else {
        return HttpResponse::BadRequest().json(json!({"error": "invalid_grant", "error_description": "The request has an invalid grant parameter : refresh_token"}));
    };
    apps.lwa_exchanges += 1;
    let lifetime = if apps.lwa_lifetime_seconds > 0 {
        apps.lwa_lifetime_seconds
    } else {
        3_600
    };
    let token = format!(
        "Atza|sim-{}-{}",
        apps.lwa_exchanges,
        uuid::Uuid::now_v7().simple()
    );
    apps.lwa_tokens
        .insert(token.clone(), Utc::now() + Duration::seconds(lifetime));
    HttpResponse::Ok().json(json!({
        "access_token": token,
        "refresh_token": granted,
        "token_type": "bearer",
        "expires_in": lifetime,
    }))
}

pub(super) fn order_total_cents(order_id: &str) -> i64 {
    catalogue::lines_for(order_id)
        .iter()
        .map(|(_, units, cents)| units * cents)
        .sum()
}
