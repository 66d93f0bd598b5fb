//! A simulated generic REST ERP: `POST /orders` upserts one unified order keyed by its source
//! and platform id, `POST /orders/batch` up to 500; an idempotency key seen before returns
//! the first answer. `X-Api-Key` is required; the first key an account sees is its key.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

use super::SimState;

#[derive(Default)]
pub struct Erp {
    api_key: Option<String>,
    orders: BTreeMap<String, Value>,
    idempotency: HashMap<String, Value>,
}

impl Erp {
    pub fn orders(&self) -> Vec<Value> {
        self.orders.values().cloned().collect()
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
    if !created {
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
