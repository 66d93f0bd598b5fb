//! Simulated Lingxing OpenAPI at `/lingxing`, enforcing what the docs state
//! (`connectors::lingxing` cites them): the token exchange (multipart `appId`, `appSecret`)
//! and refresh (`appId`, `refreshToken`, each refresh token spent by its first use), one live
//! token per AppID (an older one answers 2001005), the signature and its two minutes, the IP
//! whitelist (3001002, when switched on) and the cap on requests in flight per endpoint
//! (3001008). Business answers are HTTP 200 with `code` 0 or the error code.
//!
//! `PUT /_sim/lingxing` {token_seconds, ip_refused, hold_ms, advance_seconds, refuse_orders}:
//! token lifetime (7,199 s), the whitelist refusing us, how long each business call takes (so
//! calls overlap), how far the platform's clock runs ahead, and how many of the next orders
//! pushed are refused once ("system busy": a partial batch failure). Orders, the store
//! lookup and shipped-out orders are in `orders.rs`; `POST /_sim/lingxing/{app_id}/ship`
//! {count} ships orders the AppID's stores hold.

use std::collections::HashMap;
use std::time::Duration as StdDuration;

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Duration, Utc};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::SimState;
use super::signed::{param, query_pairs};
use crate::signing;

mod orders;
pub use orders::{create_orders, find_orders, post_ship, wms_orders};

/// "sign的有效期为 2 分钟".
const SIGN_LIFETIME_SECONDS: i64 = 120;

/// Each endpoint's token bucket, as its page states it (newInstructions §5).
fn capacity(path: &str) -> usize {
    match path.trim_start_matches("/lingxing") {
        "/pb/mp/order/v2/create" | "/pb/mp/order/v2/list" => 10,
        _ => 1,
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Switches {
    pub token_seconds: Option<i64>,
    pub ip_refused: bool,
    pub hold_ms: u64,
    pub advance_seconds: i64,
    pub refuse_orders: u32,
}

/// What the simulated Lingxing counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub exchanges: u64,
    pub refreshes: u64,
    /// Calls answered 3001008 (an endpoint's bucket was empty).
    pub too_frequent: u64,
    pub orders_created: u64,
    /// Calls of the order create endpoint that were admitted.
    pub create_calls: u64,
    /// Pushed orders refused because the store held their platform order number.
    pub duplicates_refused: u64,
    /// Pushed orders refused by the `refuse_orders` switch.
    pub refused_busy: u64,
}

#[derive(Default)]
pub struct Lingxing {
    /// AppID -> AppSecret.
    apps: HashMap<String, String>,
    /// AppID -> its one live access token and when it expires.
    live: HashMap<String, (String, DateTime<Utc>)>,
    /// Access tokens a later exchange for the same AppID replaced.
    superseded: HashMap<String, String>,
    /// Unspent refresh tokens -> (AppID, expiry).
    refresh: HashMap<String, (String, DateTime<Utc>)>,
    in_flight: HashMap<(String, String), usize>,
    switches: Switches,
    pub exchanges: u64,
    pub refreshes: u64,
    /// Calls answered 3001008 because the endpoint's bucket was empty.
    pub too_frequent: u64,
    /// Orders, by (AppID, store id, platform order no), and what happened to pushes.
    orders: orders::Store,
}

impl Lingxing {
    pub(super) fn now(&self) -> DateTime<Utc> {
        Utc::now() + Duration::seconds(self.switches.advance_seconds)
    }

    pub fn set(&mut self, switches: Switches) {
        self.orders.refuse = switches.refuse_orders;
        self.switches = switches;
    }

    /// What the simulated Lingxing counted.
    pub fn stats(&self) -> Stats {
        Stats {
            exchanges: self.exchanges,
            refreshes: self.refreshes,
            too_frequent: self.too_frequent,
            orders_created: self.orders.created,
            create_calls: self.orders.create_calls,
            duplicates_refused: self.orders.duplicates,
            refused_busy: self.orders.refused_busy,
        }
    }

    pub fn orders(&self, app: &str) -> Vec<Value> {
        self.orders.orders(app)
    }

    pub fn ship(&mut self, app: &str, count: usize) -> Vec<Value> {
        let now = self.now();
        self.orders.ship(app, count, now)
    }

    pub fn register(&mut self, apps: HashMap<String, String>) {
        self.apps.extend(apps);
    }

    /// A new pair for the AppID; its previous token stops working (2001005).
    fn issue(&mut self, app_id: &str) -> Value {
        let id = uuid::Uuid::now_v7();
        let access = format!("{id}");
        let refresh = format!("{}", uuid::Uuid::now_v7());
        let lifetime = self.switches.token_seconds.unwrap_or(7_199);
        let now = self.now();
        if let Some((old, _)) = self.live.insert(
            app_id.into(),
            (access.clone(), now + Duration::seconds(lifetime)),
        ) {
            self.superseded.insert(old, app_id.into());
        }
        self.refresh
            .insert(refresh.clone(), (app_id.into(), now + Duration::hours(2)));
        json!({"code": "200", "msg": "OK", "data": {"access_token": access, "refresh_token": refresh, "expires_in": lifetime}})
    }

    /// The AppID a live token belongs to, or the code that refuses it.
    fn token_owner(&self, token: &str) -> Result<String, (&'static str, &'static str)> {
        if self.superseded.contains_key(token) {
            return Err(("2001005", "access token not match"));
        }
        let now = self.now();
        self.live
            .iter()
            .find(|(_, (live, expires))| live == token && now < *expires)
            .map(|(app, _)| app.clone())
            .ok_or(("2001003", "access token is missing or expired"))
    }
}

pub(super) fn fail(code: &str, message: &str) -> HttpResponse {
    let numeric: Value = code.parse::<i64>().map(Value::from).unwrap_or(json!(code));
    HttpResponse::Ok().json(
        json!({"code": numeric, "message": message, "data": Value::Null,
                                   "request_id": uuid::Uuid::now_v7().simple().to_string()}),
    )
}

fn token_fail(code: &str, message: &str) -> HttpResponse {
    HttpResponse::Ok().json(json!({"code": code, "msg": message, "data": Value::Null}))
}

/// The text fields of a multipart form.
async fn form_fields(mut form: actix_multipart::Multipart) -> HashMap<String, String> {
    let mut fields = HashMap::new();
    while let Some(Ok(mut field)) = form.next().await {
        let Some(name) = field.name().map(String::from) else {
            continue;
        };
        let mut value = Vec::new();
        while let Some(Ok(chunk)) = field.next().await {
            if value.len() + chunk.len() > 4096 {
                break;
            }
            value.extend_from_slice(&chunk);
        }
        fields.insert(name, String::from_utf8_lossy(&value).into_owned());
    }
    fields
}

pub async fn put_switches(state: web::Data<SimState>, body: web::Json<Switches>) -> HttpResponse {
    match state.lingxing.lock() {
        Ok(mut lingxing) => {
            lingxing.set(body.into_inner());
            HttpResponse::NoContent().finish()
        }
        Err(_) => HttpResponse::InternalServerError().finish(),
    }
}

pub async fn access_token(
    state: web::Data<SimState>,
    form: actix_multipart::Multipart,
) -> HttpResponse {
    let fields = form_fields(form).await;
    let (Some(app_id), Some(secret)) = (fields.get("appId"), fields.get("appSecret")) else {
        return token_fail("3001001", "appId and appSecret are required");
    };
    let Ok(mut lingxing) = state.lingxing.lock() else {
        return HttpResponse::InternalServerError().finish();
    };
    match lingxing.apps.get(app_id) {
        None => token_fail("2001001", "app not exist"),
        Some(known) if !signing::constant_time_eq(known.as_bytes(), secret.as_bytes()) => {
            token_fail("2001002", "app secret not correct")
        }
        Some(_) => {
            lingxing.exchanges += 1;
            HttpResponse::Ok().json(lingxing.issue(app_id))
        }
    }
}

pub async fn refresh(state: web::Data<SimState>, form: actix_multipart::Multipart) -> HttpResponse {
    let fields = form_fields(form).await;
    let (Some(app_id), Some(token)) = (fields.get("appId"), fields.get("refreshToken")) else {
        return token_fail("3001001", "appId and refreshToken are required");
    };
    let Ok(mut lingxing) = state.lingxing.lock() else {
        return HttpResponse::InternalServerError().finish();
    };
    let now = lingxing.now();
    match lingxing.refresh.remove(token) {
        Some((owner, expires)) if &owner == app_id && now < expires => {
            lingxing.refreshes += 1;
            // The refreshed token replaces the old one, which then is simply gone.
            if let Some((old, _)) = lingxing.live.remove(app_id) {
                lingxing.superseded.remove(&old);
            }
            let answer = lingxing.issue(app_id);
            HttpResponse::Ok().json(answer)
        }
        Some((_, expires)) if now >= expires => token_fail("2001008", "refresh token expired"),
        _ => token_fail("2001009", "refresh token not valid"),
    }
}

/// Checks a business call's common parameters, token, sign and freshness; returns its AppID.
fn verified(state: &SimState, req: &HttpRequest, body: &[u8]) -> Result<String, HttpResponse> {
    let pairs = query_pairs(req);
    let (Some(token), Some(app_key), Some(timestamp), Some(sign)) = (
        param(&pairs, "access_token"),
        param(&pairs, "app_key"),
        param(&pairs, "timestamp"),
        param(&pairs, "sign"),
    ) else {
        return Err(fail(
            "3001001",
            "missing query parameter: access_token, app_key, timestamp and sign are required",
        ));
    };
    let lingxing = state
        .lingxing
        .lock()
        .map_err(|_| HttpResponse::InternalServerError().finish())?;
    if lingxing.switches.ip_refused {
        return Err(fail("3001002", "ip not permit"));
    }
    let owner = lingxing
        .token_owner(token)
        .map_err(|(code, m)| fail(code, m))?;
    if owner != app_key {
        return Err(fail("2001005", "access token not match"));
    }
    let fresh = timestamp
        .parse::<i64>()
        .is_ok_and(|t| (lingxing.now().timestamp() - t).abs() <= SIGN_LIFETIME_SECONDS);
    let mut signed: Vec<(String, String)> =
        pairs.iter().filter(|(k, _)| k != "sign").cloned().collect();
    if !body.is_empty() {
        let body: Value = serde_json::from_slice(body)
            .map_err(|_| fail("102", "invalid parameter: body is not JSON"))?;
        signed.extend(signing::erp::lingxing_body_params(&body));
    }
    let expected = signing::erp::lingxing(app_key, &signed).unwrap_or_default();
    if !signing::constant_time_eq(expected.as_bytes(), sign.as_bytes()) {
        return Err(fail("2001006", "api sign not correct"));
    }
    if !fresh {
        return Err(fail("2001007", "api sign has expired"));
    }
    Ok(owner)
}

/// Holds a slot of the endpoint's bucket for the call; None when it is full (3001008).
struct InFlight<'a> {
    state: &'a SimState,
    key: (String, String),
}

impl<'a> InFlight<'a> {
    fn take(state: &'a SimState, app: &str, path: &str, capacity: usize) -> Option<Self> {
        let key = (app.to_string(), path.to_string());
        let mut lingxing = state.lingxing.lock().ok()?;
        let count = lingxing.in_flight.entry(key.clone()).or_default();
        if *count >= capacity {
            return None;
        }
        *count += 1;
        Some(Self { state, key })
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Ok(mut lingxing) = self.state.lingxing.lock()
            && let Some(count) = lingxing.in_flight.get_mut(&self.key)
        {
            *count = count.saturating_sub(1);
        }
    }
}

/// A business call's prologue: faults, the signature and token, the endpoint's bucket and
/// the call's duration. The AppID and the slot (held until the answer is made), or the
/// refusal to answer with.
async fn admitted<'a>(
    state: &'a SimState,
    req: &HttpRequest,
    body: &[u8],
) -> Result<(String, InFlight<'a>), HttpResponse> {
    // The answer time counts from the call's arrival, its checks included.
    let arrived = std::time::Instant::now();
    if let Some(fault) = super::inject(state).await {
        return Err(fault);
    }
    let app = verified(state, req, body)?;
    let Some(slot) = InFlight::take(state, &app, req.path(), capacity(req.path())) else {
        if let Ok(mut lingxing) = state.lingxing.lock() {
            lingxing.too_frequent += 1;
        }
        return Err(fail("3001008", "request too frequent"));
    };
    let hold = state
        .lingxing
        .lock()
        .map(|l| l.switches.hold_ms)
        .unwrap_or(0);
    if hold > 0 {
        // A thread's sleep, not tokio's: its timer rounds up to the next millisecond and
        // wakes late, which made a 20 ms answer take 21.1 on average (measured).
        let left = (arrived + StdDuration::from_millis(hold))
            .saturating_duration_since(std::time::Instant::now());
        let _ = tokio::task::spawn_blocking(move || std::thread::sleep(left)).await;
    }
    Ok((app, slot))
}

/// A success answer with its `data`, as every business API words it.
fn ok(data: Value, total: Option<usize>) -> HttpResponse {
    let mut answer = json!({"code": 0, "message": "success", "error_details": [], "data": data,
                            "request_id": uuid::Uuid::now_v7().simple().to_string()});
    if let (Some(total), Some(object)) = (total, answer.as_object_mut()) {
        object.insert("total".into(), total.into());
    }
    HttpResponse::Ok().json(answer)
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct InventoryQuery {
    offset: usize,
    length: Option<usize>,
    wid: String,
}

/// `POST /erp/sc/routing/data/local_inventory/inventoryDetails`: the AppID's warehouse
/// stock (`product_valid_num` available) in warehouse 1, as the simulated ERP account named
/// by the AppID holds it.
pub async fn inventory_details(
    state: web::Data<SimState>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let (app, _slot) = match admitted(&state, &req, &body).await {
        Ok(admitted) => admitted,
        Err(refused) => return refused,
    };
    let query: InventoryQuery = serde_json::from_slice(&body).unwrap_or_default();
    let length = query.length.unwrap_or(20);
    if length == 0 || length > 800 {
        return fail("102", "invalid parameter: length must be 1 to 800");
    }
    let warehouses: Vec<&str> = query
        .wid
        .split(',')
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .collect();
    let levels = if warehouses.is_empty() || warehouses.contains(&"1") {
        state.erp_stock(&app)
    } else {
        Vec::new()
    };
    let page: Vec<Value> = levels
        .iter()
        .skip(query.offset)
        .take(length)
        .map(|(sku, units)| json!({"wid": 1, "sku": sku, "product_valid_num": units, "product_total": units, "product_lock_num": 0}))
        .collect();
    ok(Value::Array(page), Some(levels.len()))
}
