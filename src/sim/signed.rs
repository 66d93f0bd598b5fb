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

use std::collections::HashMap;

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use super::{SimState, catalogue};
use crate::signing::marketplaces as signing;

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

/// Checks `x-amz-access-token` against the tokens the LWA endpoint issued.
fn amazon_authorized(state: &SimState, req: &HttpRequest) -> Result<(), HttpResponse> {
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
    if valid {
        Ok(())
    } else {
        Err(HttpResponse::Forbidden().json(json!({"errors": [{"code": "Unauthorized", "message": "Access to requested resource is denied.", "details": "The access token you provided has expired."}]})))
    }
}

fn amazon_error(status: actix_web::http::StatusCode, code: &str, message: &str) -> HttpResponse {
    HttpResponse::build(status)
        .json(json!({"errors": [{"code": code, "message": message, "details": ""}]}))
}

/// An Amazon order's items: SKU, units and the price of all units (ItemPrice).
fn amazon_items(order_id: &str) -> Vec<Value> {
    catalogue::lines_for(order_id)
        .into_iter()
        .enumerate()
        .map(|(i, (sku, units, cents))| {
            json!({"ASIN": format!("B0SIM{:05}", i), "SellerSKU": sku, "OrderItemId": format!("{}{i}", order_id.replace('-', "")),
                   "QuantityOrdered": units, "ItemPrice": {"CurrencyCode": "USD", "Amount": catalogue::money(cents * units)}})
        })
        .collect()
}

fn order_total_cents(order_id: &str) -> i64 {
    catalogue::lines_for(order_id)
        .iter()
        .map(|(_, units, cents)| units * cents)
        .sum()
}

/// SP-API getOrders: `payload.Orders`, `payload.NextToken`, at most 100 a page.
pub async fn amazon_orders(state: web::Data<SimState>, req: HttpRequest) -> HttpResponse {
    if let Some(response) = super::inject(&state).await {
        return response;
    }
    if let Err(denied) = amazon_authorized(&state, &req) {
        return denied;
    }
    let pairs = query_pairs(&req);
    let Some(marketplaces) = param(&pairs, "MarketplaceIds") else {
        return amazon_error(
            actix_web::http::StatusCode::BAD_REQUEST,
            "InvalidInput",
            "Missing required 'MarketplaceIds'.",
        );
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
            json!({"AmazonOrderId": id, "PurchaseDate": stamp, "LastUpdateDate": stamp, "OrderStatus": "Unshipped", "MarketplaceId": account,
                   "OrderTotal": {"CurrencyCode": "USD", "Amount": catalogue::money(order_total_cents(id))}})
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

/// SP-API getOrderItems: `payload.OrderItems` of one order.
pub async fn amazon_order_items(
    state: web::Data<SimState>,
    req: HttpRequest,
    order_id: web::Path<String>,
) -> HttpResponse {
    if let Some(response) = super::inject(&state).await {
        return response;
    }
    if let Err(denied) = amazon_authorized(&state, &req) {
        return denied;
    }
    HttpResponse::Ok()
        // getOrderItems: 0.5 requests per second, burst 30.
        .insert_header(("x-amzn-RateLimit-Limit", "0.5"))
        .json(json!({"payload": {"AmazonOrderId": order_id.as_str(), "OrderItems": amazon_items(&order_id)}}))
}

/// Listings Items getListingsItem: 404 for a SKU the seller does not list.
pub async fn amazon_get_listing(
    state: web::Data<SimState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    if let Some(response) = super::inject(&state).await {
        return response;
    }
    if let Err(denied) = amazon_authorized(&state, &req) {
        return denied;
    }
    let (_, sku) = path.into_inner();
    if param(&query_pairs(&req), "marketplaceIds").is_none() {
        return amazon_error(
            actix_web::http::StatusCode::BAD_REQUEST,
            "InvalidInput",
            "Missing required 'marketplaceIds'.",
        );
    }
    if !catalogue::listed(&sku) {
        return amazon_error(
            actix_web::http::StatusCode::NOT_FOUND,
            "NOT_FOUND",
            &format!("SKU '{sku}' not found in marketplace"),
        );
    }
    HttpResponse::Ok()
        .json(json!({"sku": sku, "summaries": [{"asin": "B0SIM00000", "status": ["BUYABLE"]}]}))
}

/// Listings Items patchListingsItem: the `fulfillment_availability` quantity. A body that
/// does not patch it comes back INVALID with issues, as Amazon answers.
pub async fn amazon_patch_listing(
    state: web::Data<SimState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> HttpResponse {
    if let Some(response) = super::inject(&state).await {
        return response;
    }
    if let Err(denied) = amazon_authorized(&state, &req) {
        return denied;
    }
    let (seller, sku) = path.into_inner();
    if param(&query_pairs(&req), "marketplaceIds").is_none() {
        return amazon_error(
            actix_web::http::StatusCode::BAD_REQUEST,
            "InvalidInput",
            "Missing required 'marketplaceIds'.",
        );
    }
    let request: Value = serde_json::from_slice(&body).unwrap_or_default();
    let patch = &request["patches"][0];
    let quantity = patch["value"][0]["quantity"].as_i64();
    let valid = request["productType"].is_string()
        && matches!(patch["op"].as_str(), Some("merge" | "replace"))
        && patch["path"] == "/attributes/fulfillment_availability"
        && patch["value"][0]["fulfillment_channel_code"].is_string();
    let submission = uuid::Uuid::now_v7().simple().to_string();
    let Some(quantity) = quantity.filter(|q| valid && *q >= 0) else {
        return HttpResponse::Ok().json(json!({"sku": sku, "status": "INVALID", "submissionId": submission,
            "issues": [{"code": "4000001", "message": "The provided value for 'fulfillment_availability' is invalid.", "severity": "ERROR", "attributeNames": ["fulfillment_availability"]}]}));
    };
    if let Ok(mut stock) = state.stock.lock() {
        stock.set("amazon", &seller, &sku, quantity);
    }
    HttpResponse::Ok()
        .json(json!({"sku": sku, "status": "ACCEPTED", "submissionId": submission, "issues": []}))
}

fn shopee_error(status: actix_web::http::StatusCode, code: &str, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({"error": code, "message": message, "request_id": uuid::Uuid::now_v7().simple().to_string()}))
}

/// The partner key of a Shopee call's partner, if the timestamp is fresh.
fn shopee_partner_key(
    state: &SimState,
    partner_id: &str,
    timestamp: &str,
) -> Result<String, HttpResponse> {
    let forbidden = actix_web::http::StatusCode::FORBIDDEN;
    let key = state
        .apps
        .lock()
        .ok()
        .and_then(|apps| apps.shopee.get(partner_id).cloned())
        .ok_or_else(|| shopee_error(forbidden, "error_auth", "Invalid partner_id."))?;
    if !fresh(Some(timestamp)) {
        return Err(shopee_error(forbidden, "error_auth", "Invalid timestamp."));
    }
    Ok(key)
}

fn shopee_sign_matches(expected: &str, sign: &str) -> Result<(), HttpResponse> {
    if bool::from(expected.as_bytes().ct_eq(sign.as_bytes())) {
        Ok(())
    } else {
        Err(shopee_error(
            actix_web::http::StatusCode::FORBIDDEN,
            "error_sign",
            "Wrong sign.",
        ))
    }
}

/// Verifies partner, timestamp and sign of a Shopee v2 call, and for a shop call its
/// access token and shop id (signed too); returns the query pairs.
fn shopee_signed(
    state: &SimState,
    req: &HttpRequest,
    shop_call: bool,
) -> Result<Vec<(String, String)>, HttpResponse> {
    let path = req.path().strip_prefix("/shopee").unwrap_or(req.path());
    let pairs = query_pairs(req);
    let shop = (param(&pairs, "access_token"), param(&pairs, "shop_id"));
    let (Some(partner_id), Some(timestamp), Some(sign)) = (
        param(&pairs, "partner_id"),
        param(&pairs, "timestamp"),
        param(&pairs, "sign"),
    ) else {
        return Err(shopee_error(
            actix_web::http::StatusCode::BAD_REQUEST,
            "error_param",
            "Missing partner_id, timestamp or sign.",
        ));
    };
    // A public call signs neither the token nor the shop.
    let (token, shop_id) = match shop {
        (Some(token), Some(shop_id)) if shop_call => (token, shop_id),
        _ if shop_call => {
            return Err(shopee_error(
                actix_web::http::StatusCode::BAD_REQUEST,
                "error_param",
                "Missing access_token or shop_id.",
            ));
        }
        _ => ("", ""),
    };
    let key = shopee_partner_key(state, partner_id, timestamp)?;
    let at = timestamp.parse().unwrap_or_default();
    shopee_sign_matches(
        &signing::shopee_v2(&key, partner_id, path, at, token, shop_id),
        sign,
    )?;
    if shop_call && !state.access_token_usable(token) {
        return Err(shopee_error(
            actix_web::http::StatusCode::FORBIDDEN,
            "error_auth",
            "Invalid access_token.",
        ));
    }
    Ok(pairs)
}

/// A Shopee v2 public call (the token refresh).
pub fn shopee_public_verified(state: &SimState, req: &HttpRequest) -> Result<(), HttpResponse> {
    shopee_signed(state, req, false).map(|_| ())
}

/// A Shopee v2 shop call; returns the query pairs and the shop id.
fn shopee_verified(
    state: &SimState,
    req: &HttpRequest,
) -> Result<(Vec<(String, String)>, String), HttpResponse> {
    let pairs = shopee_signed(state, req, true)?;
    let shop_id = param(&pairs, "shop_id").unwrap_or_default().to_string();
    Ok((pairs, shop_id))
}

/// Whether `secret` is the registered secret of TikTok app `app_key`.
pub fn tiktok_app_secret_is(state: &SimState, app_key: &str, secret: &str) -> bool {
    state.apps.lock().is_ok_and(|apps| {
        apps.tiktok
            .get(app_key)
            .is_some_and(|known| bool::from(known.as_bytes().ct_eq(secret.as_bytes())))
    })
}

fn shopee_ok(response: Value) -> HttpResponse {
    HttpResponse::Ok().json(json!({"error": "", "message": "", "request_id": uuid::Uuid::now_v7().simple().to_string(), "response": response}))
}

/// Shopee v2 get_order_list, verifying partner, timestamp and sign.
pub async fn shopee_order_list(state: web::Data<SimState>, req: HttpRequest) -> HttpResponse {
    if let Some(response) = super::inject(&state).await {
        return response;
    }
    let (pairs, shop_id) = match shopee_verified(&state, &req) {
        Ok(verified) => verified,
        Err(refused) => return refused,
    };
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
    let all: Vec<_> = orders(&shop_id, state.seed_orders)
        .into_iter()
        .filter(|(_, at)| at.timestamp() >= from)
        .collect();
    let (items, next) = page(&all, offset, size);
    let list: Vec<Value> = items
        .iter()
        .map(|(id, _)| json!({"order_sn": id.replace('-', ""), "order_status": "READY_TO_SHIP"}))
        .collect();
    shopee_ok(
        json!({"more": next.is_some(), "next_cursor": next.map(|n| n.to_string()).unwrap_or_default(), "order_list": list}),
    )
}

/// Shopee v2 get_order_detail: up to 50 `order_sn_list`, with item_list and total_amount.
pub async fn shopee_order_detail(state: web::Data<SimState>, req: HttpRequest) -> HttpResponse {
    if let Some(response) = super::inject(&state).await {
        return response;
    }
    let (pairs, shop_id) = match shopee_verified(&state, &req) {
        Ok(verified) => verified,
        Err(refused) => return refused,
    };
    let wanted: Vec<&str> = param(&pairs, "order_sn_list")
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
        .collect();
    if wanted.is_empty() || wanted.len() > 50 {
        return shopee_error(
            actix_web::http::StatusCode::BAD_REQUEST,
            "error_param",
            "order_sn_list must hold 1 to 50 order_sn.",
        );
    }
    let all = orders(&shop_id, state.seed_orders);
    let list: Vec<Value> = all
        .iter()
        .filter(|(id, _)| wanted.contains(&id.replace('-', "").as_str()))
        .map(|(id, at)| {
            let items: Vec<Value> = catalogue::lines_for(id)
                .into_iter()
                .map(|(sku, units, cents)| {
                    json!({"item_id": catalogue::item_id(&sku), "item_sku": sku, "model_id": 0, "model_sku": sku,
                           "model_quantity_purchased": units, "model_discounted_price": cents as f64 / 100.0})
                })
                .collect();
            json!({"order_sn": id.replace('-', ""), "order_status": "READY_TO_SHIP", "currency": "SGD",
                   "total_amount": order_total_cents(id) as f64 / 100.0, "create_time": at.timestamp(), "update_time": at.timestamp(),
                   "item_list": items})
        })
        .collect();
    shopee_ok(json!({ "order_list": list }))
}

/// Shopee v2 product search_item by `item_sku`.
pub async fn shopee_search_item(state: web::Data<SimState>, req: HttpRequest) -> HttpResponse {
    if let Some(response) = super::inject(&state).await {
        return response;
    }
    let (pairs, _) = match shopee_verified(&state, &req) {
        Ok(verified) => verified,
        Err(refused) => return refused,
    };
    let found: Vec<u64> = param(&pairs, "item_sku")
        .and_then(catalogue::item_id)
        .into_iter()
        .collect();
    shopee_ok(
        json!({"item_id_list": found, "total_count": found.len(), "has_next_page": false, "next_offset": ""}),
    )
}

/// Shopee v2 product update_stock: seller stock of an item's models.
pub async fn shopee_update_stock(
    state: web::Data<SimState>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    if let Some(response) = super::inject(&state).await {
        return response;
    }
    let (_, shop_id) = match shopee_verified(&state, &req) {
        Ok(verified) => verified,
        Err(refused) => return refused,
    };
    let request: Value = serde_json::from_slice(&body).unwrap_or_default();
    let sku = request["item_id"].as_u64().and_then(catalogue::sku_of);
    let stock = request["stock_list"][0]["seller_stock"][0]["stock"].as_i64();
    let (Some(sku), Some(units)) = (sku, stock.filter(|s| *s >= 0)) else {
        return shopee_error(
            actix_web::http::StatusCode::BAD_REQUEST,
            "error_param",
            "item_id or stock_list is invalid.",
        );
    };
    if let Ok(mut levels) = state.stock.lock() {
        levels.set("shopee", &shop_id, &sku, units);
    }
    shopee_ok(
        json!({"success_list": [{"model_id": request["stock_list"][0]["model_id"], "stock": units}], "failure_list": []}),
    )
}

fn tiktok_error(status: actix_web::http::StatusCode, code: u32, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({"code": code, "message": message, "request_id": uuid::Uuid::now_v7().simple().to_string(), "data": {}}))
}

fn tiktok_ok(data: Value) -> HttpResponse {
    HttpResponse::Ok().json(json!({"code": 0, "message": "Success", "request_id": uuid::Uuid::now_v7().simple().to_string(), "data": data}))
}

/// Verifies app key, timestamp, sign and token of a TikTok Shop 202309 call; returns the
/// query pairs.
fn tiktok_verified(
    state: &SimState,
    req: &HttpRequest,
    body: &[u8],
) -> Result<Vec<(String, String)>, HttpResponse> {
    let unauthorized = actix_web::http::StatusCode::UNAUTHORIZED;
    let path = req.path().strip_prefix("/tiktok").unwrap_or(req.path());
    let pairs = query_pairs(req);
    let (Some(app_key), Some(sign)) = (param(&pairs, "app_key"), param(&pairs, "sign")) else {
        return Err(tiktok_error(
            unauthorized,
            106001,
            "Invalid credentials: app_key and sign are required.",
        ));
    };
    let secret = state
        .apps
        .lock()
        .ok()
        .and_then(|apps| apps.tiktok.get(app_key).cloned())
        .ok_or_else(|| tiktok_error(unauthorized, 106001, "Invalid app_key."))?;
    if !fresh(param(&pairs, "timestamp")) {
        return Err(tiktok_error(unauthorized, 106002, "Invalid timestamp."));
    }
    let expected = signing::tiktok_shop(&secret, path, &pairs, body);
    if !bool::from(expected.as_bytes().ct_eq(sign.as_bytes())) {
        return Err(tiktok_error(unauthorized, 106001, "Invalid signature."));
    }
    let token = req
        .headers()
        .get("x-tts-access-token")
        .and_then(|v| v.to_str().ok());
    if !token.is_some_and(|t| state.access_token_usable(t)) {
        return Err(tiktok_error(
            unauthorized,
            105002,
            "Expired or missing access token.",
        ));
    }
    Ok(pairs)
}

/// TikTok Shop 202309 Search Orders: one line item per unit sold, as the API lists them.
pub async fn tiktok_orders_search(
    state: web::Data<SimState>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    if let Some(response) = super::inject(&state).await {
        return response;
    }
    let pairs = match tiktok_verified(&state, &req, &body) {
        Ok(pairs) => pairs,
        Err(refused) => return refused,
    };
    let size = param(&pairs, "page_size")
        .and_then(|s| s.parse().ok())
        .unwrap_or(10usize)
        .clamp(1, 100);
    let offset = param(&pairs, "page_token")
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let since = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|b| b["update_time_ge"].as_i64())
        .unwrap_or(0);
    let shop = param(&pairs, "shop_cipher").unwrap_or("shop");
    let all: Vec<_> = orders(shop, state.seed_orders)
        .into_iter()
        .filter(|(_, at)| at.timestamp() >= since)
        .collect();
    let (items, next) = page(&all, offset, size);
    let list: Vec<Value> = items
        .iter()
        .map(|(id, at)| {
            let lines: Vec<Value> = catalogue::lines_for(id)
                .into_iter()
                .flat_map(|(sku, units, cents)| {
                    (0..units).map(move |unit| json!({"id": format!("{}{unit}", id.replace('-', "")), "seller_sku": sku, "sku_id": catalogue::item_id(&sku).map(|i| i.to_string()), "sale_price": catalogue::money(cents), "currency": "USD"}))
                })
                .collect();
            json!({"id": id.replace('-', ""), "status": "AWAITING_SHIPMENT", "create_time": at.timestamp(), "update_time": at.timestamp(),
                   "payment": {"currency": "USD", "total_amount": catalogue::money(order_total_cents(id))}, "line_items": lines})
        })
        .collect();
    tiktok_ok(
        json!({"orders": list, "next_page_token": next.map(|n| n.to_string()).unwrap_or_default(), "total_count": all.len()}),
    )
}

/// TikTok Shop 202309 Search Products by `seller_skus`.
pub async fn tiktok_products_search(
    state: web::Data<SimState>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    if let Some(response) = super::inject(&state).await {
        return response;
    }
    if let Err(refused) = tiktok_verified(&state, &req, &body) {
        return refused;
    }
    let request: Value = serde_json::from_slice(&body).unwrap_or_default();
    let products: Vec<Value> = request["seller_skus"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter_map(|sku| {
            let id = catalogue::item_id(sku)?;
            Some(json!({"id": id.to_string(), "title": "Simulated product", "skus": [{"id": (id + 1_000_000).to_string(), "seller_sku": sku}]}))
        })
        .collect();
    tiktok_ok(json!({"products": products, "total_count": products.len(), "next_page_token": ""}))
}

/// TikTok Shop 202309 Update Inventory of a product's SKUs.
pub async fn tiktok_update_inventory(
    state: web::Data<SimState>,
    req: HttpRequest,
    product: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    if let Some(response) = super::inject(&state).await {
        return response;
    }
    let pairs = match tiktok_verified(&state, &req, &body) {
        Ok(pairs) => pairs,
        Err(refused) => return refused,
    };
    let shop = param(&pairs, "shop_cipher").unwrap_or("shop").to_string();
    let request: Value = serde_json::from_slice(&body).unwrap_or_default();
    let sku = product.parse::<u64>().ok().and_then(catalogue::sku_of);
    let sku_matches = request["skus"][0]["id"]
        .as_str()
        .and_then(|s| s.parse::<u64>().ok())
        == product.parse::<u64>().ok().map(|p| p + 1_000_000);
    let quantity = request["skus"][0]["inventory"][0]["quantity"].as_i64();
    match (sku, quantity) {
        (Some(sku), Some(quantity)) if sku_matches && quantity >= 0 => {
            if let Ok(mut stock) = state.stock.lock() {
                stock.set("tiktok", &shop, &sku, quantity);
            }
            tiktok_ok(json!({}))
        }
        // TikTok reports business errors in `code` with HTTP 200.
        _ => HttpResponse::Ok().json(json!({"code": 12019004, "message": "The product or SKU does not exist.", "request_id": uuid::Uuid::now_v7().simple().to_string(), "data": {}})),
    }
}
