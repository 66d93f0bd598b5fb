//! The platform simulator: `synchub sim --listen ADDR` serves simulated platforms on one
//! address, speaking their documented wire formats (auth headers, pagination, rate-limit
//! headers and 429s, error bodies), with fault injection set at run time and counters of
//! what happened. A connection points at it with `settings.base_url`:
//!
//! - Shopify Admin REST: `{addr}/shopify/{shop}` (orders with Link pagination, a leaky bucket
//!   of 40 calls leaking 2/s, `X-Shopify-Shop-Api-Call-Limit`, 429 with `Retry-After`);
//!   GraphQL inventory by SKU, fulfillment orders and fulfillments;
//! - a generic REST ERP: `{addr}/erp/{account}` (`X-Api-Key`, idempotent order upserts,
//!   stock levels and shipments changed since a cursor);
//! - Amazon SP-API, Shopee v2 and TikTok Shop 202309 (see `signed`).
//!
//! Every marketplace lists the same catalogue (`catalogue`: SKU-0 to SKU-999). Ops-chat
//! robots (`chat`): DingTalk, Feishu, WeCom, Slack and Standard Webhooks receivers.
//!
//! - the platforms' consent pages and code trades (`consent`), for connect links;
//! - Lingxing's OpenAPI at `{addr}/lingxing` (`lingxing`): tokens, signatures, caps.
//! - Mabang's gateway at `{addr}/mabang/api/v2` (`mabang`): body signatures, asynchronous orders.
//!
//! Control: `PUT /_sim/consent` {deny, refuse, timeout, advance_seconds, ...},
//! `PUT /_sim/faults` {error_rate, latency_ms, timeout_rate, malformed_rate,
//! schema_change, fail_after_requests, storm_seconds, forbidden_ip, hang_path},
//! `POST /_sim/shopify/{shop}/orders` {count} (new orders),
//! `PUT /_sim/erp/{account}/stock` {sku: units}, `POST /_sim/erp/{account}/ship` {count},
//! `GET /_sim/stock/{platform}/{account}` (what a marketplace was told), `GET /_sim/stats`.

// A refusal here is the simulator's answer, handed back at once: boxing it buys nothing.
#![allow(clippy::result_large_err)]

pub mod catalogue;
mod chat;
pub mod consent;
mod lingxing;
mod mabang;
pub use lingxing::{Stats as LingxingStats, Switches as LingxingSwitches};
pub use mabang::{Stats as MabangStats, Switches as MabangSwitches};
mod erp;
mod shopify;
pub mod signed;
pub mod tokens;

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use serde::{Deserialize, Serialize};

/// Faults applied to every simulated platform response until changed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Share of requests answered 500 (0 to 1).
    pub error_rate: f64,
    /// Added to every response.
    pub latency_ms: u64,
    /// Share of requests that hang for 60 s (the client's timeout fires).
    pub timeout_rate: f64,
    /// Share of responses whose body is cut short.
    pub malformed_rate: f64,
    /// Shopify renames `line_items` to `lineItems`, as a breaking API change would.
    pub schema_change: bool,
    /// After this many more requests, every request is answered 500 (an outage mid-run).
    pub fail_after_requests: Option<u64>,
    /// For this many seconds after the faults are set, every request is answered 429 with
    /// `Retry-After: 1` (a quota storm: the account's budget spent elsewhere).
    pub storm_seconds: f64,
    /// Every request is refused with 403 because the caller's IP is not whitelisted.
    pub forbidden_ip: bool,
    /// Requests whose path contains this hang for 60 s: an endpoint that never answers
    /// (say, a connector version calling an API version a proxy black-holes).
    pub hang_path: Option<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct Stats {
    pub requests: u64,
    pub throttled: u64,
    pub injected_errors: u64,
    pub orders_written: u64,
    pub duplicate_writes: u64,
    /// Calls refused for an unknown, expired or revoked access token.
    pub refused_tokens: u64,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    since_faults: AtomicU64,
    throttled: AtomicU64,
    injected_errors: AtomicU64,
    orders_written: AtomicU64,
    duplicate_writes: AtomicU64,
    refused_tokens: AtomicU64,
}

pub struct SimState {
    seed_orders: usize,
    faults: Mutex<Faults>,
    faults_set_at: Mutex<std::time::Instant>,
    counters: Counters,
    shops: Mutex<HashMap<String, shopify::Shop>>,
    erps: Mutex<HashMap<String, erp::Erp>>,
    apps: Mutex<signed::Apps>,
    stock: Mutex<catalogue::Stock>,
    chat: Mutex<HashMap<String, chat::Robot>>,
    tokens: Mutex<tokens::ShopTokens>,
    consents: Mutex<consent::Consents>,
    lingxing: Mutex<lingxing::Lingxing>,
    mabang: Mutex<mabang::Mabang>,
}

impl SimState {
    pub fn new(seed_orders: usize) -> Self {
        Self {
            seed_orders,
            faults: Mutex::new(Faults::default()),
            faults_set_at: Mutex::new(std::time::Instant::now()),
            counters: Counters::default(),
            shops: Mutex::new(HashMap::new()),
            erps: Mutex::new(HashMap::new()),
            apps: Mutex::new(signed::Apps::default()),
            stock: Mutex::new(catalogue::Stock::default()),
            chat: Mutex::new(HashMap::new()),
            tokens: Mutex::new(tokens::ShopTokens::default()),
            consents: Mutex::new(consent::Consents::default()),
            lingxing: Mutex::new(lingxing::Lingxing::default()),
            mabang: Mutex::new(mabang::Mabang::default()),
        }
    }

    pub fn stats(&self) -> Stats {
        let c = &self.counters;
        Stats {
            requests: c.requests.load(Ordering::Relaxed),
            throttled: c.throttled.load(Ordering::Relaxed),
            injected_errors: c.injected_errors.load(Ordering::Relaxed),
            orders_written: c.orders_written.load(Ordering::Relaxed),
            duplicate_writes: c.duplicate_writes.load(Ordering::Relaxed),
            refused_tokens: c.refused_tokens.load(Ordering::Relaxed),
        }
    }

    pub fn set_faults(&self, faults: Faults) {
        if let Ok(mut current) = self.faults.lock() {
            *current = faults;
            self.counters.since_faults.store(0, Ordering::Relaxed);
            if let Ok(mut at) = self.faults_set_at.lock() {
                *at = std::time::Instant::now();
            }
        }
    }

    fn faults(&self) -> Faults {
        self.faults.lock().map(|f| f.clone()).unwrap_or_default()
    }

    /// Registers apps whose signatures and tokens the simulated platforms accept.
    pub fn register_apps(&self, mut registration: signed::AppRegistration) {
        let consent = std::mem::take(&mut registration.consent);
        if let Ok(mut lingxing) = self.lingxing.lock() {
            lingxing.register(std::mem::take(&mut registration.lingxing));
        }
        if let Ok(mut mabang) = self.mabang.lock() {
            mabang.register(std::mem::take(&mut registration.mabang));
        }
        if let Ok(mut consents) = self.consents.lock() {
            consents.register(consent);
        }
        if let Ok(mut apps) = self.apps.lock() {
            apps.register(registration);
        }
    }

    /// Sets what the simulated platforms do with consents and code trades.
    pub fn set_consent(&self, switches: consent::Switches) {
        if let Ok(mut consents) = self.consents.lock() {
            consents.set(switches);
        }
    }

    /// Sets what the simulated Lingxing does (token lifetime, whitelist, call duration).
    pub fn set_lingxing(&self, switches: LingxingSwitches) {
        if let Ok(mut lingxing) = self.lingxing.lock() {
            lingxing.set(switches);
        }
    }

    /// Sets what the simulated Mabang does (polls before an order is created, its clock).
    pub fn set_mabang(&self, switches: MabangSwitches) {
        if let Ok(mut mabang) = self.mabang.lock() {
            mabang.set(switches);
        }
    }

    /// What the simulated Mabang counted: creates, checks, refusals.
    pub fn mabang_stats(&self) -> MabangStats {
        self.mabang.lock().map(|m| m.stats()).unwrap_or_default()
    }

    /// The orders an app key's Mabang account holds, each with whether it is created.
    pub fn mabang_orders(&self, app_key: &str) -> Vec<(serde_json::Value, bool)> {
        self.mabang
            .lock()
            .map(|m| m.orders(app_key))
            .unwrap_or_default()
    }

    /// Lingxing token exchanges and refreshes answered.
    pub fn lingxing_tokens(&self) -> (u64, u64) {
        let stats = self.lingxing_stats();
        (stats.exchanges, stats.refreshes)
    }

    /// What the simulated Lingxing counted: tokens, refusals, orders.
    pub fn lingxing_stats(&self) -> LingxingStats {
        self.lingxing.lock().map(|l| l.stats()).unwrap_or_default()
    }

    /// The orders an AppID's Lingxing stores hold, as pushed.
    pub fn lingxing_orders(&self, app_id: &str) -> Vec<serde_json::Value> {
        self.lingxing
            .lock()
            .map(|l| l.orders(app_id))
            .unwrap_or_default()
    }

    /// Ships up to `count` of an AppID's Lingxing orders; returns the outbound orders.
    pub fn ship_lingxing_orders(&self, app_id: &str, count: usize) -> Vec<serde_json::Value> {
        self.lingxing
            .lock()
            .map(|mut l| l.ship(app_id, count))
            .unwrap_or_default()
    }

    /// An ERP account's warehouse stock (Lingxing's account is its AppID).
    pub fn erp_stock(&self, account: &str) -> Vec<(String, i64)> {
        self.erps
            .lock()
            .ok()
            .and_then(|erps| erps.get(account).map(erp::Erp::stock_levels))
            .unwrap_or_default()
    }

    /// How many code trades (and Shopify refreshes) the platforms answered.
    pub fn consent_trades(&self) -> (u64, u64) {
        self.consents
            .lock()
            .map(|c| (c.trades, c.shopify_refreshes))
            .unwrap_or_default()
    }

    /// How many Login with Amazon token exchanges were made.
    pub fn lwa_exchanges(&self) -> u64 {
        self.apps
            .lock()
            .map(|a| a.lwa_exchanges)
            .unwrap_or_default()
    }

    /// The orders an ERP account holds, as the tests and the demo read them.
    pub fn erp_orders(&self, account: &str) -> Vec<serde_json::Value> {
        self.erps
            .lock()
            .ok()
            .and_then(|erps| erps.get(account).map(erp::Erp::orders))
            .unwrap_or_default()
    }

    /// When each order an ERP account holds first arrived, by the order's platform id.
    pub fn erp_arrivals(&self, account: &str) -> HashMap<String, std::time::Instant> {
        self.erps
            .lock()
            .ok()
            .and_then(|erps| erps.get(account).map(erp::Erp::arrivals))
            .unwrap_or_default()
    }

    /// Sets an ERP warehouse's stock of each SKU (each change gets a new version).
    pub fn set_erp_stock(&self, account: &str, levels: &[(String, i64)]) {
        if let Ok(mut erps) = self.erps.lock() {
            erps.entry(account.to_string())
                .or_default()
                .set_stock(levels);
        }
    }

    /// Ships up to `count` of an ERP's orders not shipped yet; returns the shipments.
    pub fn ship_erp_orders(&self, account: &str, count: usize) -> Vec<serde_json::Value> {
        self.erps
            .lock()
            .map(|mut erps| erps.entry(account.to_string()).or_default().ship(count))
            .unwrap_or_default()
    }

    /// What a marketplace account was told about stock: SKU -> units. Platforms are
    /// `shopify` (by shop), `amazon` (by seller id), `shopee` (by shop id) and `tiktok` (by
    /// shop cipher).
    pub fn marketplace_stock(
        &self,
        platform: &str,
        account: &str,
    ) -> std::collections::BTreeMap<String, i64> {
        self.stock
            .lock()
            .map(|s| s.levels(platform, account))
            .unwrap_or_default()
    }

    /// How many stock writes the marketplaces accepted.
    pub fn stock_writes(&self) -> u64 {
        self.stock.lock().map(|s| s.writes).unwrap_or_default()
    }

    /// A shop's fulfilled orders: order id -> {tracking_number, tracking_company}.
    pub fn shop_fulfillments(&self, shop: &str) -> HashMap<u64, serde_json::Value> {
        self.shops
            .lock()
            .ok()
            .and_then(|shops| shops.get(shop).map(shopify::Shop::fulfillments))
            .unwrap_or_default()
    }

    /// Registers an ops-chat robot (its token or path segment) and the secret it checks.
    pub fn register_robot(&self, robot: &str, secret: Option<String>) {
        if let Ok(mut robots) = self.chat.lock() {
            let entry = robots.entry(robot.to_string()).or_default();
            *entry = chat::Robot::with_secret(secret);
        }
    }

    /// The messages a robot accepted, oldest first.
    pub fn chat_messages(&self, robot: &str) -> Vec<serde_json::Value> {
        self.chat
            .lock()
            .ok()
            .and_then(|robots| robots.get(robot).map(|r| r.messages.clone()))
            .unwrap_or_default()
    }

    /// Subscribes a shop's webhook topic to an address.
    pub fn subscribe_webhook(&self, shop: &str, topic: &str, address: &str) {
        if let Ok(mut shops) = self.shops.lock() {
            shops
                .entry(shop.to_string())
                .or_insert_with(|| shopify::Shop::seeded(shop, self.seed_orders))
                .webhooks
                .push((topic.to_string(), address.to_string()));
        }
    }

    /// Sets a shop's call bucket (Shopify's default: 2/s from a bucket of 40).
    pub fn set_shop_limit(&self, shop: &str, rate: f64, burst: f64) {
        if let Ok(mut shops) = self.shops.lock() {
            let shop = shops
                .entry(shop.to_string())
                .or_insert_with(|| shopify::Shop::seeded(shop, self.seed_orders));
            shop.limit = (rate, burst);
        }
    }

    /// How many orders a shop holds.
    pub fn shop_order_count(&self, shop: &str) -> usize {
        self.shops
            .lock()
            .ok()
            .and_then(|shops| shops.get(shop).map(shopify::Shop::order_count))
            .unwrap_or(0)
    }

    /// Adds `count` new orders to a shop (created now), returning their ids.
    pub fn add_orders(&self, shop: &str, count: usize) -> Vec<u64> {
        let mut shops = match self.shops.lock() {
            Ok(shops) => shops,
            Err(_) => return Vec::new(),
        };
        let shop = shops
            .entry(shop.to_string())
            .or_insert_with(|| shopify::Shop::seeded(shop, self.seed_orders));
        (0..count)
            .map(|_| shop.add_order(chrono::Utc::now()))
            .collect()
    }
}

fn chance(rate: f64) -> bool {
    if rate <= 0.0 {
        return false;
    }
    let bytes = crate::random::bytes::<8>().unwrap_or([0xff; 8]);
    (u64::from_le_bytes(bytes) as f64 / u64::MAX as f64) < rate
}

/// Applies latency, timeouts and injected errors; Some(response) ends the request there.
async fn inject(state: &SimState) -> Option<HttpResponse> {
    state.counters.requests.fetch_add(1, Ordering::Relaxed);
    let since = state.counters.since_faults.fetch_add(1, Ordering::Relaxed) + 1;
    let faults = state.faults();
    if faults.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
    }
    if chance(faults.timeout_rate) {
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
    let storming = faults.storm_seconds > 0.0
        && state
            .faults_set_at
            .lock()
            .is_ok_and(|at| at.elapsed().as_secs_f64() < faults.storm_seconds);
    if storming {
        state.counters.throttled.fetch_add(1, Ordering::Relaxed);
        return Some(
            HttpResponse::TooManyRequests()
                .insert_header(("Retry-After", "1"))
                .json(serde_json::json!({"errors": "Too many requests: the account's quota is spent"})),
        );
    }
    if faults.forbidden_ip {
        return Some(HttpResponse::Forbidden().json(serde_json::json!({
            "error": "error_ip", "message": "Your IP address is not in the app's IP whitelist."
        })));
    }
    if chance(faults.error_rate) || faults.fail_after_requests.is_some_and(|n| since > n) {
        state
            .counters
            .injected_errors
            .fetch_add(1, Ordering::Relaxed);
        return Some(
            HttpResponse::InternalServerError()
                .json(serde_json::json!({"errors": "Internal Server Error"})),
        );
    }
    None
}

/// Cuts a body short when the malformed fault fires.
fn maybe_malformed(state: &SimState, body: String) -> String {
    if chance(state.faults().malformed_rate) {
        body.chars().take(body.len() / 2).collect()
    } else {
        body
    }
}

async fn put_faults(state: web::Data<SimState>, faults: web::Json<Faults>) -> HttpResponse {
    state.set_faults(faults.into_inner());
    HttpResponse::Ok().json(state.faults())
}

async fn get_stats(state: web::Data<SimState>) -> HttpResponse {
    HttpResponse::Ok().json(state.stats())
}

#[derive(Deserialize)]
struct Limit {
    rate: f64,
    burst: f64,
}

/// Sets a shop's call bucket: `rate` calls leak per second from a bucket of `burst`.
async fn put_limit(
    state: web::Data<SimState>,
    shop: web::Path<String>,
    body: web::Json<Limit>,
) -> HttpResponse {
    if !(body.rate > 0.0 && body.burst >= 1.0) {
        return HttpResponse::BadRequest()
            .json(serde_json::json!({"errors": "rate > 0 and burst >= 1"}));
    }
    state.set_shop_limit(&shop, body.rate, body.burst);
    HttpResponse::Ok().json(serde_json::json!({"rate": body.rate, "burst": body.burst}))
}

#[derive(Deserialize)]
struct AddOrders {
    count: usize,
}

async fn post_orders(
    state: web::Data<SimState>,
    shop: web::Path<String>,
    body: web::Json<AddOrders>,
) -> HttpResponse {
    let ids = state.add_orders(&shop, body.count.min(100_000));
    HttpResponse::Created().json(serde_json::json!({ "ids": ids }))
}

async fn put_erp_stock(
    state: web::Data<SimState>,
    account: web::Path<String>,
    body: web::Json<std::collections::BTreeMap<String, i64>>,
) -> HttpResponse {
    let levels: Vec<(String, i64)> = body.into_inner().into_iter().collect();
    state.set_erp_stock(&account, &levels);
    HttpResponse::NoContent().finish()
}

async fn post_erp_ship(
    state: web::Data<SimState>,
    account: web::Path<String>,
    body: web::Json<AddOrders>,
) -> HttpResponse {
    let shipments = state.ship_erp_orders(&account, body.count.min(100_000));
    HttpResponse::Created().json(serde_json::json!({ "shipments": shipments }))
}

async fn get_marketplace_stock(
    state: web::Data<SimState>,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let (platform, account) = path.into_inner();
    HttpResponse::Ok().json(state.marketplace_stock(&platform, &account))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/_sim/faults", web::put().to(put_faults))
        .route("/_sim/erp/{account}/stock", web::put().to(put_erp_stock))
        .route("/_sim/chat/{robot}", web::put().to(chat::put_robot))
        .route("/dingtalk/robot/send", web::post().to(chat::dingtalk))
        .route(
            "/feishu/open-apis/bot/v2/hook/{robot}",
            web::post().to(chat::feishu),
        )
        .route("/wecom/cgi-bin/webhook/send", web::post().to(chat::wecom))
        .route("/slack/services/{robot}", web::post().to(chat::slack))
        .route("/hook/{robot}", web::post().to(chat::webhook))
        .route("/_sim/erp/{account}/ship", web::post().to(post_erp_ship))
        .route(
            "/_sim/stock/{platform}/{account}",
            web::get().to(get_marketplace_stock),
        )
        .route("/_sim/stats", web::get().to(get_stats))
        .route("/_sim/shopify/{shop}/orders", web::post().to(post_orders))
        .route("/_sim/shopify/{shop}/limit", web::put().to(put_limit))
        .route(
            "/shopify/{shop}/admin/api/{version}/orders.json",
            web::get().to(shopify::list_orders),
        )
        .route("/erp/{account}/orders", web::post().to(erp::create_order))
        .route(
            "/erp/{account}/orders/batch",
            web::post().to(erp::create_orders),
        )
        .route("/erp/{account}/orders", web::get().to(erp::list_orders))
        .route("/erp/{account}/stock", web::get().to(erp::list_stock))
        .route(
            "/erp/{account}/shipments",
            web::get().to(erp::list_shipments),
        )
        .route(
            "/shopify/{shop}/admin/api/{version}/webhooks.json",
            web::get().to(shopify::list_webhooks),
        )
        .route(
            "/shopify/{shop}/admin/api/{version}/graphql.json",
            web::post().to(shopify::graphql),
        )
        .route(
            "/shopify/{shop}/admin/api/{version}/orders/{id}/fulfillment_orders.json",
            web::get().to(shopify::fulfillment_orders),
        )
        .route(
            "/shopify/{shop}/admin/api/{version}/fulfillments.json",
            web::post().to(shopify::create_fulfillment),
        )
        .route(
            "/amazon/orders/v0/orders/{id}/orderItems",
            web::get().to(signed::amazon_order_items),
        )
        .route(
            "/amazon/listings/2021-08-01/items/{seller}/{sku}",
            web::get().to(signed::amazon_get_listing),
        )
        .route(
            "/amazon/listings/2021-08-01/items/{seller}/{sku}",
            web::patch().to(signed::amazon_patch_listing),
        )
        .route(
            "/shopee/api/v2/order/get_order_detail",
            web::get().to(signed::shopee_order_detail),
        )
        .route(
            "/shopee/api/v2/product/search_item",
            web::get().to(signed::shopee_search_item),
        )
        .route(
            "/shopee/api/v2/product/update_stock",
            web::post().to(signed::shopee_update_stock),
        )
        .route(
            "/tiktok/product/202309/products/search",
            web::post().to(signed::tiktok_products_search),
        )
        .route(
            "/tiktok/product/202309/products/{id}/inventory/update",
            web::post().to(signed::tiktok_update_inventory),
        )
        .route("/_sim/apps", web::put().to(signed::put_apps))
        .route("/_sim/consent", web::put().to(consent::put_consent))
        .route("/_sim/lingxing", web::put().to(lingxing::put_switches))
        .route(
            "/lingxing/api/auth-server/oauth/access-token",
            web::post().to(lingxing::access_token),
        )
        .route(
            "/lingxing/api/auth-server/oauth/refresh",
            web::post().to(lingxing::refresh),
        )
        .route(
            "/lingxing/erp/sc/routing/data/local_inventory/inventoryDetails",
            web::post().to(lingxing::inventory_details),
        )
        .route(
            "/lingxing/pb/mp/order/v2/create",
            web::post().to(lingxing::create_orders),
        )
        .route(
            "/lingxing/pb/mp/order/v2/list",
            web::post().to(lingxing::find_orders),
        )
        .route(
            "/lingxing/erp/sc/routing/wms/order/wmsOrderList",
            web::post().to(lingxing::wms_orders),
        )
        .route("/_sim/mabang", web::put().to(mabang::put_switches))
        .route("/mabang/api/v2", web::post().to(mabang::gateway))
        .route(
            "/_sim/lingxing/{app_id}/ship",
            web::post().to(lingxing::post_ship),
        )
        .route("/_sim/consent/decide", web::post().to(consent::decide))
        .route("/_sim/landing", web::get().to(consent::landing))
        .route(
            "/shopify/{shop}/admin/oauth/authorize",
            web::get().to(consent::shopify_authorize),
        )
        .route(
            "/shopify/{shop}/admin/oauth/access_token",
            web::post().to(consent::shopify_access_token),
        )
        .route(
            "/amazon/apps/authorize/consent",
            web::get().to(consent::amazon_consent),
        )
        .route(
            "/shopee/api/v2/shop/auth_partner",
            web::get().to(consent::shopee_auth_partner),
        )
        .route(
            "/shopee/api/v2/auth/token/get",
            web::post().to(consent::shopee_token_get),
        )
        .route(
            "/tiktok/open/authorize",
            web::get().to(consent::tiktok_authorize),
        )
        .route(
            "/tiktok-auth/api/v2/token/get",
            web::get().to(consent::tiktok_token_get),
        )
        .route(
            "/tiktok/authorization/202309/shops",
            web::get().to(consent::tiktok_authorized_shops),
        )
        .route(
            "/shopee/api/v2/auth/access_token/get",
            web::post().to(tokens::shopee_refresh),
        )
        .route(
            "/tiktok-auth/api/v2/token/refresh",
            web::get().to(tokens::tiktok_refresh),
        )
        .route("/amazon/auth/o2/token", web::post().to(signed::lwa_token))
        .route(
            "/amazon/orders/v0/orders",
            web::get().to(signed::amazon_orders),
        )
        .route(
            "/shopee/api/v2/order/get_order_list",
            web::get().to(signed::shopee_order_list),
        )
        .route(
            "/tiktok/order/202309/orders/search",
            web::post().to(signed::tiktok_orders_search),
        );
}

/// Holds requests whose path matches `Faults::hang_path` for a minute before answering.
async fn hang_matching(
    request: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    let hangs = request
        .app_data::<web::Data<SimState>>()
        .and_then(|state| state.faults().hang_path)
        .is_some_and(|pattern| request.path().contains(&pattern));
    if hangs {
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
    next.call(request).await
}

/// A running simulator: its address and state.
pub struct Simulator {
    pub address: String,
    pub state: web::Data<SimState>,
    server: actix_web::dev::ServerHandle,
}

impl Simulator {
    /// Starts on `listen` (port 0 for any) with `seed_orders` orders per new shop.
    pub fn start(listen: &str, seed_orders: usize) -> anyhow::Result<Self> {
        let state = web::Data::new(SimState::new(seed_orders));
        let listener = TcpListener::bind(listen)?;
        let address = format!("http://{}", listener.local_addr()?);
        let data = state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .wrap(actix_web::middleware::from_fn(hang_matching))
                .configure(configure)
        })
        .listen(listener)?
        .workers(2)
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Ok(Self {
            address,
            state,
            server: handle,
        })
    }

    pub async fn stop(self) {
        self.server.stop(false).await;
    }
}

/// `synchub sim`: runs until interrupted.
pub async fn serve(listen: &str, seed_orders: usize) -> anyhow::Result<()> {
    let sim = Simulator::start(listen, seed_orders)?;
    println!("simulator listening on {}", sim.address);
    println!(
        "  Shopify base_url: {}/shopify/<shop>   ERP base_url: {}/erp/<account>",
        sim.address, sim.address
    );
    shutdown_signal().await?;
    sim.stop().await;
    Ok(())
}

/// Ctrl-C, or SIGTERM as systemd, `docker stop` and CI cleanup send it.
async fn shutdown_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result,
            _ = terminate.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}
