//! Simulated Shopify Admin REST: `GET /admin/api/{version}/orders.json` as documented
//! (https://shopify.dev/docs/api/admin-rest/latest/resources/order), with
//! `X-Shopify-Access-Token` auth, page_info pagination in the Link header, and the standard
//! plan's leaky bucket (40 calls, leaking 2 per second) reported in
//! `X-Shopify-Shop-Api-Call-Limit`, 429 with `Retry-After` when it overflows; the GraphQL
//! Admin API's `productVariants` query by SKU and `inventorySetQuantities` mutation; REST
//! fulfillment orders and fulfillments with tracking.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Instant;

use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::SimState;
use super::catalogue;

/// Shopify's standard plan: a bucket of 40 calls that leaks 2 per second.
pub const DEFAULT_BUCKET: (f64, f64) = (2.0, 40.0);
const MAX_LIMIT: usize = 250;

pub struct Shop {
    token: Option<String>,
    orders: Vec<Value>,
    /// Order id -> its fulfillment (tracking), once fulfilled.
    fulfillments: HashMap<u64, Value>,
    /// Webhook subscriptions: (topic, address).
    pub webhooks: Vec<(String, String)>,
    next_id: u64,
    bucket_level: f64,
    bucket_at: Instant,
    /// (leak per second, bucket size); `PUT /_sim/shopify/{shop}/limit` changes it.
    pub limit: (f64, f64),
}

impl Shop {
    /// A shop with `count` orders, updated one minute apart up to now, the same for a name.
    pub fn seeded(name: &str, count: usize) -> Self {
        let salt = name
            .bytes()
            .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
        let mut shop = Self {
            token: None,
            orders: Vec::new(),
            fulfillments: HashMap::new(),
            webhooks: Vec::new(),
            // Shopify's order ids are unique across shops: each shop its own range.
            next_id: 450_789_469 + (salt % 1_000) * 1_000_000,
            bucket_level: 0.0,
            limit: DEFAULT_BUCKET,
            bucket_at: Instant::now(),
        };
        let start = Utc::now() - Duration::minutes(count as i64 + 1);
        for i in 0..count {
            shop.push_order(
                start + Duration::minutes(i as i64),
                salt.wrapping_add(i as u64),
            );
        }
        shop
    }

    pub fn order_count(&self) -> usize {
        self.orders.len()
    }

    /// Fulfilled orders: order id -> {tracking_number, tracking_company}.
    pub fn fulfillments(&self) -> HashMap<u64, Value> {
        self.fulfillments.clone()
    }

    fn has_order(&self, id: u64) -> bool {
        self.orders
            .binary_search_by_key(&id, |o| o["id"].as_u64().unwrap_or(0))
            .is_ok()
    }

    pub fn add_order(&mut self, at: DateTime<Utc>) -> u64 {
        let salt = self.next_id;
        self.push_order(at, salt)
    }

    fn push_order(&mut self, at: DateTime<Utc>, salt: u64) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let quantity = 1 + salt % 3;
        let price = 10 + salt % 90;
        let number = 1000 + self.orders.len() + 1;
        self.orders.push(json!({
            "id": id,
            "name": format!("#{number}"),
            "email": format!("buyer{number}@example.com"),
            // Shopify sends whole seconds with the shop's offset.
            "created_at": at.to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
            "updated_at": at.to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
            "currency": "USD",
            "financial_status": "paid",
            "total_price": format!("{}.00", price * quantity),
            "shipping_address": {
                "name": format!("Buyer {number}"), "address1": format!("{} Rosewood Court", 100 + salt % 900),
                "address2": null, "city": "Winchester", "province_code": "KY", "zip": "40391",
                "country_code": "US", "phone": "+1 859 555 0100",
            },
            "line_items": [{
                "id": id * 10,
                "sku": format!("SKU-{}", salt % 50),
                "title": "Simulated product",
                "quantity": quantity,
                "price": format!("{price}.00"),
            }],
        }));
        id
    }

    /// Leaky bucket: Some(level) when the call fits, None when it overflows.
    fn admit(&mut self) -> Option<f64> {
        let now = Instant::now();
        let (leak, size) = self.limit;
        let leaked = now.duration_since(self.bucket_at).as_secs_f64() * leak;
        self.bucket_level = (self.bucket_level - leaked).max(0.0);
        self.bucket_at = now;
        if self.bucket_level + 1.0 > size {
            return None;
        }
        self.bucket_level += 1.0;
        Some(self.bucket_level)
    }
}

#[derive(Debug, Deserialize)]
pub struct OrdersQuery {
    limit: Option<usize>,
    page_info: Option<String>,
    updated_at_min: Option<String>,
    status: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct PageInfo {
    after_id: u64,
    updated_at_min: Option<String>,
}

fn error(status: actix_web::http::StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "errors": message }))
}

fn unauthorized() -> HttpResponse {
    error(
        actix_web::http::StatusCode::UNAUTHORIZED,
        "[API] Invalid API key or access token (unrecognized login or wrong password)",
    )
}

/// Checks the access token and takes one call from the shop's bucket, then runs `answer`
/// on the shop; returns its result with the bucket's level and size, or the refusal.
fn with_shop<T>(
    state: &SimState,
    req: &HttpRequest,
    shop_name: &str,
    answer: impl FnOnce(&mut Shop) -> T,
) -> Result<(T, f64, f64), HttpResponse> {
    let token = req
        .headers()
        .get("x-shopify-access-token")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(unauthorized)?;
    let mut shops = state.shops.lock().map_err(|_| {
        error(
            actix_web::http::StatusCode::INTERNAL_SERVER_ERROR,
            "Internal Server Error",
        )
    })?;
    // A token from a seller's consent is the shop's only live token, until it expires.
    let consented = state
        .consents
        .lock()
        .ok()
        .and_then(|mut c| c.shopify_token_ok(shop_name, token));
    if consented == Some(false) {
        state
            .counters
            .refused_tokens
            .fetch_add(1, Ordering::Relaxed);
        return Err(unauthorized());
    }
    let shop = shops
        .entry(shop_name.to_string())
        .or_insert_with(|| Shop::seeded(shop_name, state.seed_orders));
    // Otherwise the first token a shop sees is its token from then on.
    match &shop.token {
        _ if consented == Some(true) => {}
        Some(known) if known != token => {
            state
                .counters
                .refused_tokens
                .fetch_add(1, Ordering::Relaxed);
            return Err(unauthorized());
        }
        None => shop.token = Some(token.to_string()),
        _ => {}
    }
    let Some(level) = shop.admit() else {
        state.counters.throttled.fetch_add(1, Ordering::Relaxed);
        return Err(HttpResponse::TooManyRequests()
            .insert_header(("Retry-After", "1.0"))
            .insert_header(("X-Shopify-Shop-Api-Call-Limit", format!("{0}/{0}", shop.limit.1 as u64)))
            .json(json!({ "errors": "Exceeded 2 calls per second for api client. Reduce request rates to resume uninterrupted service." })));
    };
    let size = shop.limit.1;
    Ok((answer(shop), level, size))
}

pub async fn list_orders(
    state: web::Data<SimState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    query: web::Query<OrdersQuery>,
) -> HttpResponse {
    if let Some(response) = super::inject(&state).await {
        return response;
    }
    let (shop_name, version) = path.into_inner();
    let limit = query.limit.unwrap_or(50);
    if limit == 0 || limit > MAX_LIMIT {
        return error(
            actix_web::http::StatusCode::BAD_REQUEST,
            "limit must be between 1 and 250",
        );
    }
    let (after_id, updated_at_min) = match &query.page_info {
        Some(info) => {
            // With page_info, Shopify refuses filters other than limit and fields.
            if query.updated_at_min.is_some() || query.status.is_some() {
                return error(
                    actix_web::http::StatusCode::BAD_REQUEST,
                    "page_info - Invalid value.",
                );
            }
            let decoded = URL_SAFE_NO_PAD
                .decode(info)
                .ok()
                .and_then(|b| serde_json::from_slice::<PageInfo>(&b).ok());
            match decoded {
                Some(p) => (p.after_id, p.updated_at_min),
                None => {
                    return error(
                        actix_web::http::StatusCode::BAD_REQUEST,
                        "page_info - Invalid value.",
                    );
                }
            }
        }
        None => (0, query.updated_at_min.clone()),
    };
    let min: Option<DateTime<Utc>> = match &updated_at_min {
        Some(text) => match DateTime::parse_from_rfc3339(text) {
            Ok(t) => Some(t.with_timezone(&Utc)),
            Err(_) => {
                return error(
                    actix_web::http::StatusCode::BAD_REQUEST,
                    "updated_at_min - Invalid value.",
                );
            }
        },
        None => None,
    };

    let schema_change = state.faults().schema_change;
    let answer = with_shop(&state, &req, &shop_name, |shop| {
        // Orders are kept in id order: a page starts after its predecessor's last id.
        let first = shop
            .orders
            .partition_point(|o| o["id"].as_u64().unwrap_or(0) <= after_id);
        let matching = shop.orders[first..].iter().filter(|o| {
            let updated = o["updated_at"]
                .as_str()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok());
            min.is_none_or(|m| updated.is_some_and(|u| u >= m))
        });
        let mut page: Vec<&Value> = matching.take(limit + 1).collect();
        let more = page.len() > limit;
        page.truncate(limit);
        let last = page.last().and_then(|o| o["id"].as_u64());
        // Written out under the lock rather than copied out of it: a page of 250 orders
        // copied twice was most of this simulator's work in `bench throughput`.
        let body = if schema_change {
            let renamed: Vec<Value> = page
                .iter()
                .map(|order| {
                    let mut order = (*order).clone();
                    if let Some(object) = order.as_object_mut()
                        && let Some(lines) = object.remove("line_items")
                    {
                        object.insert("lineItems".into(), lines);
                    }
                    order
                })
                .collect();
            json!({ "orders": renamed }).to_string()
        } else {
            serde_json::to_string(&OrdersPage { orders: &page }).unwrap_or_default()
        };
        (body, more, last)
    });
    let ((body, more, last), level, size) = match answer {
        Ok(answer) => answer,
        Err(response) => return response,
    };

    let mut response = HttpResponse::Ok();
    response.insert_header((
        "X-Shopify-Shop-Api-Call-Limit",
        format!("{}/{}", level.ceil() as u64, size as u64),
    ));
    if more && let Some(last) = last {
        let info = PageInfo {
            after_id: last,
            updated_at_min,
        };
        let token = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&info).unwrap_or_default());
        let conn = req.connection_info();
        let link = format!(
            "<{}://{}/shopify/{shop_name}/admin/api/{version}/orders.json?limit={limit}&page_info={token}>; rel=\"next\"",
            conn.scheme(),
            conn.host()
        );
        response.insert_header(("Link", link));
    }
    let body = super::maybe_malformed(&state, body);
    response.content_type("application/json").body(body)
}

/// A page of orders as Shopify's REST API answers it.
#[derive(serde::Serialize)]
struct OrdersPage<'a> {
    orders: &'a [&'a Value],
}

fn gid(kind: &str, id: u64) -> String {
    format!("gid://shopify/{kind}/{id}")
}

fn gid_number(gid: &str, kind: &str) -> Option<u64> {
    gid.strip_prefix(&format!("gid://shopify/{kind}/"))?
        .parse()
        .ok()
}

/// The SKU in a search query such as `sku:"SKU-1"` or `sku:SKU-1`.
fn sku_in_query(query: &str) -> Option<&str> {
    let rest = query.trim().strip_prefix("sku:")?;
    Some(rest.trim_matches('"'))
}

/// `POST /admin/api/{version}/graphql.json`: the two operations the connector sends. The
/// simulator recognises them by their root field, as the real schema would resolve them.
pub async fn graphql(
    state: web::Data<SimState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> HttpResponse {
    if let Some(response) = super::inject(&state).await {
        return response;
    }
    let (shop_name, _) = path.into_inner();
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return error(
            actix_web::http::StatusCode::BAD_REQUEST,
            "Invalid JSON in request body",
        );
    };
    if let Err(response) = with_shop(&state, &req, &shop_name, |_| ()) {
        return response;
    }
    let query = request["query"].as_str().unwrap_or_default();
    let variables = &request["variables"];
    let answer = if query.contains("productVariants") {
        let sku = variables["q"]
            .as_str()
            .and_then(sku_in_query)
            .unwrap_or_default();
        let nodes: Vec<Value> = catalogue::item_id(sku)
            .map(|id| json!({"id": gid("ProductVariant", id), "sku": sku, "inventoryItem": {"id": gid("InventoryItem", id)}}))
            .into_iter()
            .collect();
        Ok(json!({"productVariants": {"nodes": nodes}}))
    } else if query.contains("inventorySetQuantities") {
        set_quantities(&state, &shop_name, &variables["input"])
    } else {
        Err("Field is not defined on QueryRoot or Mutation".to_string())
    };
    match answer {
        Ok(data) => HttpResponse::Ok().json(json!({"data": data, "extensions": {"cost": {"requestedQueryCost": 10, "actualQueryCost": 10}}})),
        Err(message) => HttpResponse::Ok().json(json!({"errors": [{"message": message}]})),
    }
}

/// inventorySetQuantities: sets the `available` quantity of each item at a location.
fn set_quantities(state: &SimState, shop: &str, input: &Value) -> Result<Value, String> {
    if input["name"] != "available" {
        return Ok(
            json!({"inventorySetQuantities": {"userErrors": [{"field": ["input", "name"], "message": "The quantity name must be available or on_hand."}]}}),
        );
    }
    if input["ignoreCompareQuantity"] != true
        && input["quantities"][0].get("compareQuantity").is_none()
    {
        return Ok(
            json!({"inventorySetQuantities": {"userErrors": [{"field": ["input", "ignoreCompareQuantity"], "message": "compareQuantity is required unless ignoreCompareQuantity is true."}]}}),
        );
    }
    let quantities = input["quantities"].as_array().cloned().unwrap_or_default();
    let mut changes = Vec::new();
    for (i, entry) in quantities.iter().enumerate() {
        let sku = entry["inventoryItemId"]
            .as_str()
            .and_then(|g| gid_number(g, "InventoryItem"))
            .and_then(catalogue::sku_of);
        let location = entry["locationId"]
            .as_str()
            .and_then(|g| gid_number(g, "Location"));
        let quantity = entry["quantity"].as_i64();
        match (sku, location, quantity) {
            (Some(sku), Some(_), Some(quantity)) => changes.push((sku, quantity)),
            _ => {
                return Ok(
                    json!({"inventorySetQuantities": {"userErrors": [{"field": ["input", "quantities", i.to_string()], "message": "The specified inventory item or location could not be found, or the quantity is not an integer."}]}}),
                );
            }
        }
    }
    let mut stock = state
        .stock
        .lock()
        .map_err(|_| "Internal error".to_string())?;
    for (sku, quantity) in &changes {
        stock.set("shopify", shop, sku, *quantity);
    }
    Ok(
        json!({"inventorySetQuantities": {"inventoryAdjustmentGroup": {"reason": input["reason"]}, "userErrors": []}}),
    )
}

/// `GET /admin/api/{version}/orders/{id}/fulfillment_orders.json`: one fulfillment order
/// per order, open until fulfilled.
pub async fn fulfillment_orders(
    state: web::Data<SimState>,
    req: HttpRequest,
    path: web::Path<(String, String, u64)>,
) -> HttpResponse {
    if let Some(response) = super::inject(&state).await {
        return response;
    }
    let (shop_name, _, order_id) = path.into_inner();
    let answer = with_shop(&state, &req, &shop_name, |shop| {
        shop.has_order(order_id).then(|| {
            let status = if shop.fulfillments.contains_key(&order_id) { "closed" } else { "open" };
            json!([{"id": order_id * 10 + 1, "order_id": order_id, "status": status, "request_status": "unsubmitted"}])
        })
    });
    match answer {
        Err(response) => response,
        Ok((None, ..)) => error(actix_web::http::StatusCode::NOT_FOUND, "Not Found"),
        Ok((Some(list), ..)) => HttpResponse::Ok().json(json!({ "fulfillment_orders": list })),
    }
}

/// `POST /admin/api/{version}/fulfillments.json`: fulfils open fulfillment orders with
/// tracking; a closed one is refused with 422, as Shopify does.
pub async fn create_fulfillment(
    state: web::Data<SimState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> HttpResponse {
    if let Some(response) = super::inject(&state).await {
        return response;
    }
    let (shop_name, _) = path.into_inner();
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return error(actix_web::http::StatusCode::BAD_REQUEST, "Invalid JSON");
    };
    let fulfillment = &body["fulfillment"];
    let Some(fulfillment_order) =
        fulfillment["line_items_by_fulfillment_order"][0]["fulfillment_order_id"].as_u64()
    else {
        return error(
            actix_web::http::StatusCode::UNPROCESSABLE_ENTITY,
            "line_items_by_fulfillment_order is required",
        );
    };
    let tracking = json!({
        "tracking_number": fulfillment["tracking_info"]["number"],
        "tracking_company": fulfillment["tracking_info"]["company"],
    });
    let order_id = fulfillment_order / 10;
    let answer = with_shop(&state, &req, &shop_name, |shop| {
        if fulfillment_order % 10 != 1 || !shop.has_order(order_id) {
            return Err(actix_web::http::StatusCode::NOT_FOUND);
        }
        if shop.fulfillments.contains_key(&order_id) {
            return Err(actix_web::http::StatusCode::UNPROCESSABLE_ENTITY);
        }
        shop.fulfillments.insert(order_id, tracking.clone());
        Ok(())
    });
    match answer {
        Err(response) => response,
        Ok((Err(status), ..)) if status == actix_web::http::StatusCode::NOT_FOUND => error(status, "Not Found"),
        Ok((Err(status), ..)) => HttpResponse::build(status).json(json!({"errors": [format!("Fulfillment order {fulfillment_order} has an unfulfillable status= closed.")]})),
        Ok((Ok(()), ..)) => HttpResponse::Created().json(json!({"fulfillment": {"id": fulfillment_order * 7, "order_id": order_id, "status": "success", "tracking_number": tracking["tracking_number"], "tracking_company": tracking["tracking_company"]}})),
    }
}

/// `GET /admin/api/{version}/webhooks.json`: the shop's webhook subscriptions.
pub async fn list_webhooks(
    state: web::Data<SimState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    if let Some(response) = super::inject(&state).await {
        return response;
    }
    let (shop_name, _) = path.into_inner();
    match with_shop(&state, &req, &shop_name, |shop| {
        shop.webhooks
            .iter()
            .enumerate()
            .map(|(i, (topic, address))| json!({"id": 4_759_306 + i as u64, "topic": topic, "address": address, "format": "json", "api_version": "2025-07"}))
            .collect::<Vec<_>>()
    }) {
        Ok((webhooks, ..)) => HttpResponse::Ok().json(json!({ "webhooks": webhooks })),
        Err(response) => response,
    }
}
