//! Simulated marketplaces whose API calls are signed or need an exchanged token, verifying
//! them exactly as the platforms document:
//! - Amazon SP-API: Login with Amazon (`POST /amazon/auth/o2/token`, refresh-token grant) and
//!   `GET /amazon/orders/v0/orders` with `x-amz-access-token`, paged by `NextToken`;
//! - Shopee v2: `GET /shopee/api/v2/order/get_order_list`, signed in the query, paged by
//!   `cursor`;
//! - TikTok Shop 202309: `POST /tiktok/order/202309/orders/search`, signed in the query with
//!   `x-tts-access-token`, paged by `page_token`.
//!
//! Apps are registered with the simulator first (`PUT /_sim/apps`), as a seller's app is
//! registered with the platform: the simulator must know the secret to check a signature.

use std::collections::HashMap;

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use super::SimState;
use crate::connectors::signing;

/// How far a signed timestamp may be from the simulator's clock (Shopee: 5 minutes).
const TIMESTAMP_TOLERANCE: i64 = 300;

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
}

#[derive(Debug, Deserialize)]
pub struct LwaClient {
    pub client_secret: String,
    pub refresh_token: String,
}

impl Apps {
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
fn orders(account: &str, count: usize) -> Vec<(String, DateTime<Utc>)> {
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
fn page<T: Clone>(all: &[T], offset: usize, size: usize) -> (Vec<T>, Option<usize>) {
    let end = (offset + size).min(all.len());
    let items = all.get(offset..end).map(<[T]>::to_vec).unwrap_or_default();
    (items, (end < all.len()).then_some(end))
}

fn query_pairs(req: &HttpRequest) -> Vec<(String, String)> {
    url::form_urlencoded::parse(req.query_string().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn fresh(timestamp: Option<&str>) -> bool {
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
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// Login with Amazon token endpoint: the refresh-token grant.
pub async fn lwa_token(state: web::Data<SimState>, form: web::Form<TokenForm>) -> HttpResponse {
    if let Some(response) = super::inject(&state).await {
        return response;
    }
    let Ok(mut apps) = state.apps.lock() else {
        return HttpResponse::InternalServerError().finish();
    };
    if form.grant_type != "refresh_token" {
        return HttpResponse::BadRequest().json(json!({"error": "unsupported_grant_type", "error_description": "grant_type must be refresh_token"}));
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
    if form.refresh_token.as_deref() != Some(granted.as_str()) {
        return HttpResponse::BadRequest().json(json!({"error": "invalid_grant", "error_description": "The request has an invalid grant parameter : refresh_token"}));
    }
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

/// SP-API getOrders: `payload.Orders`, `payload.NextToken`, at most 100 a page.
pub async fn amazon_orders(state: web::Data<SimState>, req: HttpRequest) -> HttpResponse {
    if let Some(response) = super::inject(&state).await {
        return response;
    }
    let denied = || {
        HttpResponse::Forbidden().json(json!({"errors": [{"code": "Unauthorized", "message": "Access to requested resource is denied.", "details": "The access token you provided has expired."}]}))
    };
    let token = req
        .headers()
        .get("x-amz-access-token")
        .and_then(|v| v.to_str().ok());
    let valid = match (state.apps.lock(), token) {
        (Ok(apps), Some(token)) => apps
            .lwa_tokens
            .get(token)
            .is_some_and(|exp| Utc::now() < *exp),
        _ => false,
    };
    if !valid {
        return denied();
    }
    let pairs = query_pairs(&req);
    let Some(marketplaces) = param(&pairs, "MarketplaceIds") else {
        return HttpResponse::BadRequest().json(json!({"errors": [{"code": "InvalidInput", "message": "Missing required 'MarketplaceIds'.", "details": ""}]}));
    };
    let size = param(&pairs, "MaxResultsPerPage")
        .and_then(|s| s.parse().ok())
        .unwrap_or(100usize)
        .clamp(1, 100);
    let offset = param(&pairs, "NextToken")
        .and_then(|t| t.strip_prefix("sim-"))
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let since =
        param(&pairs, "LastUpdatedAfter").and_then(|t| DateTime::parse_from_rfc3339(t).ok());
    let account = marketplaces.split(',').next().unwrap_or_default();
    let all: Vec<_> = orders(account, state.seed_orders)
        .into_iter()
        .filter(|(_, at)| since.is_none_or(|s| *at > s))
        .collect();
    let (items, next) = page(&all, offset, size);
    let orders: Vec<Value> = items
        .iter()
        .map(|(id, at)| {
            let stamp = at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            json!({"AmazonOrderId": id, "PurchaseDate": stamp, "LastUpdateDate": stamp, "OrderStatus": "Unshipped", "MarketplaceId": account, "OrderTotal": {"CurrencyCode": "USD", "Amount": "19.99"}})
        })
        .collect();
    let mut payload = json!({ "Orders": orders });
    if let Some(next) = next {
        payload["NextToken"] = json!(format!("sim-{next}"));
    }
    HttpResponse::Ok()
        // getOrders: 0.0167 requests per second, burst 20.
        .insert_header(("x-amzn-RateLimit-Limit", "0.0167"))
        .json(json!({ "payload": payload }))
}

/// Shopee v2 get_order_list, verifying partner, timestamp and sign.
pub async fn shopee_order_list(state: web::Data<SimState>, req: HttpRequest) -> HttpResponse {
    if let Some(response) = super::inject(&state).await {
        return response;
    }
    const PATH: &str = "/api/v2/order/get_order_list";
    let pairs = query_pairs(&req);
    let error = |status: actix_web::http::StatusCode, code: &str, message: &str| {
        HttpResponse::build(status).json(json!({"error": code, "message": message, "request_id": uuid::Uuid::now_v7().simple().to_string()}))
    };
    let (Some(partner_id), Some(timestamp), Some(token), Some(shop_id), Some(sign)) = (
        param(&pairs, "partner_id"),
        param(&pairs, "timestamp"),
        param(&pairs, "access_token"),
        param(&pairs, "shop_id"),
        param(&pairs, "sign"),
    ) else {
        return error(
            actix_web::http::StatusCode::BAD_REQUEST,
            "error_param",
            "Missing partner_id, timestamp, access_token, shop_id or sign.",
        );
    };
    let key = state
        .apps
        .lock()
        .ok()
        .and_then(|apps| apps.shopee.get(partner_id).cloned());
    let Some(key) = key else {
        return error(
            actix_web::http::StatusCode::FORBIDDEN,
            "error_auth",
            "Invalid partner_id.",
        );
    };
    if !fresh(Some(timestamp)) {
        return error(
            actix_web::http::StatusCode::FORBIDDEN,
            "error_auth",
            "Invalid timestamp.",
        );
    }
    let expected = signing::shopee_v2(
        &key,
        partner_id,
        PATH,
        timestamp.parse().unwrap_or_default(),
        token,
        shop_id,
    );
    if !bool::from(expected.as_bytes().ct_eq(sign.as_bytes())) {
        return error(
            actix_web::http::StatusCode::FORBIDDEN,
            "error_sign",
            "Wrong sign.",
        );
    }
    let size = param(&pairs, "page_size")
        .and_then(|s| s.parse().ok())
        .unwrap_or(20usize)
        .clamp(1, 100);
    let offset = param(&pairs, "cursor")
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let from = param(&pairs, "time_from")
        .and_then(|t| t.parse::<i64>().ok())
        .unwrap_or(0);
    let all: Vec<_> = orders(shop_id, state.seed_orders)
        .into_iter()
        .filter(|(_, at)| at.timestamp() >= from)
        .collect();
    let (items, next) = page(&all, offset, size);
    let list: Vec<Value> = items
        .iter()
        .map(|(id, _)| json!({"order_sn": id.replace('-', ""), "order_status": "READY_TO_SHIP"}))
        .collect();
    HttpResponse::Ok().json(json!({
        "error": "", "message": "", "request_id": uuid::Uuid::now_v7().simple().to_string(),
        "response": {"more": next.is_some(), "next_cursor": next.map(|n| n.to_string()).unwrap_or_default(), "order_list": list},
    }))
}

/// TikTok Shop 202309 Search Orders, verifying app key, timestamp, sign and token.
pub async fn tiktok_orders_search(
    state: web::Data<SimState>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    if let Some(response) = super::inject(&state).await {
        return response;
    }
    const PATH: &str = "/order/202309/orders/search";
    let pairs = query_pairs(&req);
    let error = |status: actix_web::http::StatusCode, code: u32, message: &str| {
        HttpResponse::build(status).json(json!({"code": code, "message": message, "request_id": uuid::Uuid::now_v7().simple().to_string(), "data": {}}))
    };
    let (Some(app_key), Some(sign)) = (param(&pairs, "app_key"), param(&pairs, "sign")) else {
        return error(
            actix_web::http::StatusCode::UNAUTHORIZED,
            106001,
            "Invalid credentials: app_key and sign are required.",
        );
    };
    let secret = state
        .apps
        .lock()
        .ok()
        .and_then(|apps| apps.tiktok.get(app_key).cloned());
    let Some(secret) = secret else {
        return error(
            actix_web::http::StatusCode::UNAUTHORIZED,
            106001,
            "Invalid app_key.",
        );
    };
    if !fresh(param(&pairs, "timestamp")) {
        return error(
            actix_web::http::StatusCode::UNAUTHORIZED,
            106002,
            "Invalid timestamp.",
        );
    }
    let expected = signing::tiktok_shop(&secret, PATH, &pairs, &body);
    if !bool::from(expected.as_bytes().ct_eq(sign.as_bytes())) {
        return error(
            actix_web::http::StatusCode::UNAUTHORIZED,
            106001,
            "Invalid signature.",
        );
    }
    if req.headers().get("x-tts-access-token").is_none() {
        return error(
            actix_web::http::StatusCode::UNAUTHORIZED,
            105002,
            "Expired or missing access token.",
        );
    }
    let size = param(&pairs, "page_size")
        .and_then(|s| s.parse().ok())
        .unwrap_or(10usize)
        .clamp(1, 100);
    let offset = param(&pairs, "page_token")
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let shop = param(&pairs, "shop_cipher").unwrap_or("shop");
    let all = orders(shop, state.seed_orders);
    let (items, next) = page(&all, offset, size);
    let list: Vec<Value> = items
        .iter()
        .map(|(id, at)| json!({"id": id.replace('-', ""), "status": "AWAITING_SHIPMENT", "create_time": at.timestamp(), "update_time": at.timestamp(), "payment": {"currency": "USD", "total_amount": "19.99"}}))
        .collect();
    HttpResponse::Ok().json(json!({
        "code": 0, "message": "Success", "request_id": uuid::Uuid::now_v7().simple().to_string(),
        "data": {"orders": list, "next_page_token": next.map(|n| n.to_string()).unwrap_or_default(), "total_count": all.len()},
    }))
}
