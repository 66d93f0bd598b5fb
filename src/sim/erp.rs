//! A simulated generic REST ERP: `POST /orders` upserts one unified order keyed by its source
//! and platform id; an `Idempotency-Key` seen before returns the first answer. `X-Api-Key`
//! is required; the first key an account sees is its key.

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
    let (Some(source), Some(platform_id)) = (
        order["source_connection"].as_str(),
        order["platform_id"].as_str(),
    ) else {
        return HttpResponse::UnprocessableEntity()
            .json(json!({"error": "source_connection and platform_id are required"}));
    };
    let idempotency_key = req
        .headers()
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut erps = match state.erps.lock() {
        Ok(erps) => erps,
        Err(_) => return HttpResponse::InternalServerError().finish(),
    };
    let erp = erps.entry(account.into_inner()).or_default();
    if let Err(reason) = check_key(erp, &req) {
        return HttpResponse::Unauthorized().json(json!({ "error": reason }));
    }
    if let Some(key) = &idempotency_key
        && let Some(previous) = erp.idempotency.get(key)
    {
        state
            .counters
            .duplicate_writes
            .fetch_add(1, Ordering::Relaxed);
        return HttpResponse::Ok()
            .insert_header(("Idempotent-Replayed", "true"))
            .json(previous);
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
    if created {
        HttpResponse::Created().json(answer)
    } else {
        HttpResponse::Ok().json(answer)
    }
}

pub async fn list_orders(
    state: web::Data<SimState>,
    req: HttpRequest,
    account: web::Path<String>,
) -> HttpResponse {
    let mut erps = match state.erps.lock() {
        Ok(erps) => erps,
        Err(_) => return HttpResponse::InternalServerError().finish(),
    };
    let erp = erps.entry(account.into_inner()).or_default();
    if let Err(reason) = check_key(erp, &req) {
        return HttpResponse::Unauthorized().json(json!({ "error": reason }));
    }
    HttpResponse::Ok().json(json!({ "orders": erp.orders() }))
}
