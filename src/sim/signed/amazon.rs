//! Simulated Amazon SP-API: orders, order items and the Listings Items quantity patch, each
//! call checked for a Login with Amazon access token the simulator issued.

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{order_total_cents, orders, page, param, query_pairs};
use crate::sim::{SimState, catalogue};

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

/// SP-API getOrders: `payload.Orders`, `payload.NextToken`, at most 100 a page.
pub async fn amazon_orders(state: web::Data<SimState>, req: HttpRequest) -> HttpResponse {
    if let Some(response) = crate::sim::inject(&state).await {
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
    if let Some(response) = crate::sim::inject(&state).await {
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
    if let Some(response) = crate::sim::inject(&state).await {
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
    if let Some(response) = crate::sim::inject(&state).await {
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
