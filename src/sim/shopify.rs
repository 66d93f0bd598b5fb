//! Simulated Shopify Admin REST: `GET /admin/api/{version}/orders.json` as documented
//! (https://shopify.dev/docs/api/admin-rest/latest/resources/order), with
//! `X-Shopify-Access-Token` auth, page_info pagination in the Link header, and the standard
//! plan's leaky bucket (40 calls, leaking 2 per second) reported in
//! `X-Shopify-Shop-Api-Call-Limit`, 429 with `Retry-After` when it overflows.

use std::sync::atomic::Ordering;
use std::time::Instant;

use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::SimState;

/// Shopify's standard plan: a bucket of 40 calls that leaks 2 per second.
pub const DEFAULT_BUCKET: (f64, f64) = (2.0, 40.0);
const MAX_LIMIT: usize = 250;

pub struct Shop {
    token: Option<String>,
    orders: Vec<Value>,
    next_id: u64,
    bucket_level: f64,
    bucket_at: Instant,
    /// (leak per second, bucket size); `PUT /_sim/shopify/{shop}/limit` changes it.
    pub limit: (f64, f64),
}

impl Shop {
    /// A shop with `count` orders, updated one minute apart up to now, the same for a name.
    pub fn seeded(name: &str, count: usize) -> Self {
        let mut shop = Self {
            token: None,
            orders: Vec::new(),
            next_id: 450_789_469,
            bucket_level: 0.0,
            limit: DEFAULT_BUCKET,
            bucket_at: Instant::now(),
        };
        let start = Utc::now() - Duration::minutes(count as i64 + 1);
        let salt = name
            .bytes()
            .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
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
    let Some(token) = req
        .headers()
        .get("x-shopify-access-token")
        .and_then(|v| v.to_str().ok())
    else {
        return error(
            actix_web::http::StatusCode::UNAUTHORIZED,
            "[API] Invalid API key or access token (unrecognized login or wrong password)",
        );
    };
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

    let (page, more, level, size) = {
        let mut shops = match state.shops.lock() {
            Ok(shops) => shops,
            Err(_) => {
                return error(
                    actix_web::http::StatusCode::INTERNAL_SERVER_ERROR,
                    "Internal Server Error",
                );
            }
        };
        let shop = shops
            .entry(shop_name.clone())
            .or_insert_with(|| Shop::seeded(&shop_name, state.seed_orders));
        // The first token a shop sees is its token from then on.
        match &shop.token {
            Some(known) if known != token => {
                return error(
                    actix_web::http::StatusCode::UNAUTHORIZED,
                    "[API] Invalid API key or access token (unrecognized login or wrong password)",
                );
            }
            None => shop.token = Some(token.to_string()),
            _ => {}
        }
        let Some(level) = shop.admit() else {
            state.counters.throttled.fetch_add(1, Ordering::Relaxed);
            return HttpResponse::TooManyRequests()
                .insert_header(("Retry-After", "1.0"))
                .insert_header(("X-Shopify-Shop-Api-Call-Limit", format!("{0}/{0}", shop.limit.1 as u64)))
                .json(json!({ "errors": "Exceeded 2 calls per second for api client. Reduce request rates to resume uninterrupted service." }));
        };
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
        let mut page: Vec<Value> = matching.take(limit + 1).cloned().collect();
        let more = page.len() > limit;
        page.truncate(limit);
        (page, more, level, shop.limit.1)
    };

    let schema_change = state.faults().schema_change;
    let orders: Vec<Value> = page
        .iter()
        .map(|order| {
            let mut order = order.clone();
            if schema_change
                && let Some(object) = order.as_object_mut()
                && let Some(lines) = object.remove("line_items")
            {
                object.insert("lineItems".into(), lines);
            }
            order
        })
        .collect();
    let mut response = HttpResponse::Ok();
    response.insert_header((
        "X-Shopify-Shop-Api-Call-Limit",
        format!("{}/{}", level.ceil() as u64, size as u64),
    ));
    if more && let Some(last) = page.last().and_then(|o| o["id"].as_u64()) {
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
    let body = super::maybe_malformed(&state, json!({ "orders": orders }).to_string());
    response.content_type("application/json").body(body)
}
