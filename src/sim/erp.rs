//! A simulated generic REST ERP: `POST /orders` upserts one unified order keyed by its source
//! and platform id, `POST /orders/batch` up to 500; an idempotency key seen before returns
//! the first answer. `GET /stock` and `GET /shipments` list the warehouse's stock levels and
//! dispatches changed since `updated_since`, oldest first, by page. `X-Api-Key` is
//! required; the first key an account sees is its key.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::Ordering;

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::SimState;

#[derive(Default)]
pub struct Erp {
    api_key: Option<String>,
    orders: BTreeMap<String, Value>,
    idempotency: HashMap<String, Value>,
    /// SKU -> (units, last change).
    stock: BTreeMap<String, (i64, DateTime<Utc>)>,
    shipments: Vec<Value>,
    shipped: HashSet<String>,
    /// When each order (by platform id) first arrived: `bench latency` reads it.
    arrived: HashMap<String, std::time::Instant>,
    /// Every change gets a later instant than the one before, so versions never tie.
    clock: DateTime<Utc>,
}

impl Erp {
    pub fn orders(&self) -> Vec<Value> {
        self.orders.values().cloned().collect()
    }

    pub fn arrivals(&self) -> HashMap<String, std::time::Instant> {
        self.arrived.clone()
    }

    /// Milliseconds, as the ERP's database keeps them.
    fn tick(&mut self) -> DateTime<Utc> {
        let now = DateTime::from_timestamp_millis(Utc::now().timestamp_millis())
            .unwrap_or_else(Utc::now)
            .max(self.clock + chrono::Duration::milliseconds(1));
        self.clock = now;
        now
    }

    /// The warehouse's stock, by SKU.
    pub fn stock_levels(&self) -> Vec<(String, i64)> {
        self.stock
            .iter()
            .map(|(sku, (units, _))| (sku.clone(), *units))
            .collect()
    }

    /// Sets the warehouse's stock of each SKU.
    pub fn set_stock(&mut self, levels: &[(String, i64)]) {
        for (sku, units) in levels {
            let at = self.tick();
            self.stock.insert(sku.clone(), (*units, at));
        }
    }

    /// Ships up to `count` orders not shipped yet, oldest key first; returns the shipments.
    pub fn ship(&mut self, count: usize) -> Vec<Value> {
        let pending: Vec<(String, Value)> = self
            .orders
            .iter()
            .filter(|(key, _)| !self.shipped.contains(*key))
            .take(count)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut shipped = Vec::new();
        for (key, order) in pending {
            let at = self.tick();
            let stamp = at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            let shipment = json!({
                "id": format!("SHP-{}", self.shipments.len() + 1),
                "platform_id": order["platform_id"],
                "source_connection": order["source_connection"],
                "carrier": "UPS",
                "tracking_number": format!("1Z999AA1{:010}", self.shipments.len() + 1),
                "shipped_at": stamp,
                "updated_at": stamp,
            });
            self.shipped.insert(key);
            self.shipments.push(shipment.clone());
            shipped.push(shipment);
        }
        shipped
    }
}

/// Checks `X-Api-Key`; Err carries the reason for the 401.
fn check_key(erp: &mut Erp, req: &HttpRequest) -> Result<(), &'static str> {
    let key = req
        .headers()
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if key.is_empty() {
        return Err("missing X-Api-Key");
    }
    match &erp.api_key {
        Some(known) if known != key => Err("invalid X-Api-Key"),
        Some(_) => Ok(()),
        None => {
            erp.api_key = Some(key.to_string());
            Ok(())
        }
    }
}

/// What one order upsert did.
enum Upserted {
    Created,
    Updated,
    /// The idempotency key was seen before: the first answer, nothing written.
    Replayed,
}

/// Upserts one order; returns the answer and what happened.
fn upsert(
    state: &SimState,
    erp: &mut Erp,
    order: Value,
    idempotency_key: Option<String>,
) -> Result<(Value, Upserted), &'static str> {
    let (Some(source), Some(platform_id)) = (
        order["source_connection"].as_str(),
        order["platform_id"].as_str(),
    ) else {
        return Err("source_connection and platform_id are required");
    };
    if let Some(key) = &idempotency_key
        && let Some(previous) = erp.idempotency.get(key)
    {
        state
            .counters
            .duplicate_writes
            .fetch_add(1, Ordering::Relaxed);
        return Ok((previous.clone(), Upserted::Replayed));
    }
    let erp_key = format!("{source}/{platform_id}");
    let created = !erp.orders.contains_key(&erp_key);
    if created {
        erp.arrived
            .insert(platform_id.to_string(), std::time::Instant::now());
    } else {
        state
            .counters
            .duplicate_writes
            .fetch_add(1, Ordering::Relaxed);
    }
    erp.orders.insert(erp_key.clone(), order);
    state
        .counters
        .orders_written
        .fetch_add(1, Ordering::Relaxed);
    let answer = json!({ "erp_order_id": erp_key, "created": created });
    if let Some(key) = idempotency_key {
        erp.idempotency.insert(key, answer.clone());
    }
    Ok((
        answer,
        if created {
            Upserted::Created
        } else {
            Upserted::Updated
        },
    ))
}

/// Runs `answer` on the account once the caller's `X-Api-Key` checks out.
fn with_account(
    state: &SimState,
    req: &HttpRequest,
    account: String,
    answer: impl FnOnce(&mut Erp) -> HttpResponse,
) -> HttpResponse {
    let mut erps = match state.erps.lock() {
        Ok(erps) => erps,
        Err(_) => return HttpResponse::InternalServerError().finish(),
    };
    let erp = erps.entry(account).or_default();
    match check_key(erp, req) {
        Ok(()) => answer(erp),
        Err(reason) => HttpResponse::Unauthorized().json(json!({ "error": reason })),
    }
}

fn idempotency_key(req: &HttpRequest) -> Option<String> {
    req.headers()
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

pub async fn create_order(
    state: web::Data<SimState>,
    req: HttpRequest,
    account: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    if let Some(response) = super::inject(&state).await {
        return response;
    }
    let Ok(order) = serde_json::from_slice::<Value>(&body) else {
        return HttpResponse::BadRequest().json(json!({"error": "body must be JSON"}));
    };
    with_account(&state, &req, account.into_inner(), |erp| {
        match upsert(&state, erp, order, idempotency_key(&req)) {
            Err(reason) => HttpResponse::UnprocessableEntity().json(json!({ "error": reason })),
            Ok((answer, Upserted::Replayed)) => HttpResponse::Ok()
                .insert_header(("Idempotent-Replayed", "true"))
                .json(answer),
            Ok((answer, Upserted::Created)) => HttpResponse::Created().json(answer),
            Ok((answer, Upserted::Updated)) => HttpResponse::Ok().json(answer),
        }
    })
}

/// `POST /orders/batch` {"orders": [order, ...]}: each order is upserted as `POST /orders`
/// would, keyed by its own `idempotency_key`; the whole batch is checked before any is
/// written, so a bad order fails the call and writes nothing.
pub async fn create_orders(
    state: web::Data<SimState>,
    req: HttpRequest,
    account: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    if let Some(response) = super::inject(&state).await {
        return response;
    }
    let Ok(Value::Object(mut batch)) = serde_json::from_slice::<Value>(&body) else {
        return HttpResponse::BadRequest().json(json!({"error": "body must be a JSON object"}));
    };
    let Some(Value::Array(orders)) = batch.remove("orders") else {
        return HttpResponse::UnprocessableEntity()
            .json(json!({"error": "orders must be an array"}));
    };
    if orders.len() > 500 {
        return HttpResponse::PayloadTooLarge()
            .json(json!({"error": "at most 500 orders per batch"}));
    }
    if let Some(i) = orders.iter().position(|o| {
        o["source_connection"].as_str().is_none() || o["platform_id"].as_str().is_none()
    }) {
        return HttpResponse::UnprocessableEntity()
            .json(json!({"error": format!("orders[{i}]: source_connection and platform_id are required")}));
    }
    with_account(&state, &req, account.into_inner(), |erp| {
        let mut results = Vec::with_capacity(orders.len());
        for order in orders {
            let key = order["idempotency_key"].as_str().map(str::to_string);
            match upsert(&state, erp, order, key) {
                Ok((answer, _)) => results.push(answer),
                Err(reason) => {
                    return HttpResponse::UnprocessableEntity().json(json!({ "error": reason }));
                }
            }
        }
        HttpResponse::Ok().json(json!({ "results": results }))
    })
}

pub async fn list_orders(
    state: web::Data<SimState>,
    req: HttpRequest,
    account: web::Path<String>,
) -> HttpResponse {
    with_account(&state, &req, account.into_inner(), |erp| {
        HttpResponse::Ok().json(json!({ "orders": erp.orders() }))
    })
}

#[derive(Debug, Deserialize)]
pub struct ChangedQuery {
    updated_since: Option<String>,
    page: Option<usize>,
    limit: Option<usize>,
}

impl ChangedQuery {
    /// The page's bounds (pages count from 1) and the instant changes are listed from.
    fn window(&self) -> Result<(usize, usize, Option<DateTime<Utc>>), HttpResponse> {
        let since = match &self.updated_since {
            None => None,
            Some(text) => Some(
                DateTime::parse_from_rfc3339(text)
                    .map_err(|_| {
                        HttpResponse::BadRequest()
                            .json(json!({"error": "updated_since must be RFC 3339"}))
                    })?
                    .with_timezone(&Utc),
            ),
        };
        let limit = self.limit.unwrap_or(100).clamp(1, 500);
        let page = self.page.unwrap_or(1).max(1);
        Ok(((page - 1) * limit, limit, since))
    }
}

/// `GET /stock`: {"stock": [{"sku", "available", "updated_at"}]}, oldest change first.
pub async fn list_stock(
    state: web::Data<SimState>,
    req: HttpRequest,
    account: web::Path<String>,
    query: web::Query<ChangedQuery>,
) -> HttpResponse {
    if let Some(response) = super::inject(&state).await {
        return response;
    }
    let (offset, limit, since) = match query.window() {
        Ok(window) => window,
        Err(response) => return response,
    };
    with_account(&state, &req, account.into_inner(), |erp| {
        let mut changed: Vec<(&String, &(i64, DateTime<Utc>))> = erp
            .stock
            .iter()
            .filter(|(_, (_, at))| since.is_none_or(|s| *at >= s))
            .collect();
        changed.sort_by(|a, b| (a.1.1, a.0).cmp(&(b.1.1, b.0)));
        let stock: Vec<Value> = changed
            .into_iter()
            .skip(offset)
            .take(limit)
            .map(|(sku, (units, at))| json!({"sku": sku, "available": units, "updated_at": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)}))
            .collect();
        HttpResponse::Ok().json(json!({ "stock": stock }))
    })
}

/// `GET /shipments`: {"shipments": [...]}, oldest first.
pub async fn list_shipments(
    state: web::Data<SimState>,
    req: HttpRequest,
    account: web::Path<String>,
    query: web::Query<ChangedQuery>,
) -> HttpResponse {
    if let Some(response) = super::inject(&state).await {
        return response;
    }
    let (offset, limit, since) = match query.window() {
        Ok(window) => window,
        Err(response) => return response,
    };
    with_account(&state, &req, account.into_inner(), |erp| {
        let shipments: Vec<&Value> = erp
            .shipments
            .iter()
            .filter(|s| {
                since.is_none_or(|since| {
                    s["updated_at"]
                        .as_str()
                        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                        .is_some_and(|at| at >= since)
                })
            })
            .skip(offset)
            .take(limit)
            .collect();
        HttpResponse::Ok().json(json!({ "shipments": shipments }))
    })
}
