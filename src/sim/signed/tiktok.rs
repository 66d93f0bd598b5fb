//! Simulated TikTok Shop 202309: order search, product search and inventory updates, each
//! call signed with the app secret and carrying `x-tts-access-token`.

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use super::{fresh, order_total_cents, orders, page, param, query_pairs};
use crate::signing::marketplaces as signing;
use crate::sim::{SimState, catalogue};

fn tiktok_error(status: actix_web::http::StatusCode, code: u32, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({"code": code, "message": message, "request_id": uuid::Uuid::now_v7().simple().to_string(), "data": {}}))
}

fn tiktok_ok(data: Value) -> HttpResponse {
    HttpResponse::Ok().json(json!({"code": 0, "message": "Success", "request_id": uuid::Uuid::now_v7().simple().to_string(), "data": data}))
}

/// Verifies app key, timestamp, sign and token of a TikTok Shop 202309 call; returns the
/// query pairs.
pub(crate) fn tiktok_verified(
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
    if let Some(response) = crate::sim::inject(&state).await {
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
                   "payment": {"currency": "USD", "total_amount": catalogue::money(order_total_cents(id))}, "line_items": lines,
                   "recipient_address": {"name": "Jordan Lee", "phone_number": "(+1)2125550147", "region_code": "US", "postal_code": "10001",
                       "address_line1": "350 5th Ave", "address_line2": "Suite 4100", "full_address": "350 5th Ave Suite 4100, New York, NY 10001",
                       "district_info": [{"address_level": "L0", "address_level_name": "Country", "address_name": "United States"},
                                         {"address_level": "L1", "address_level_name": "State", "address_name": "New York"},
                                         {"address_level": "L3", "address_level_name": "City", "address_name": "New York"}]}})
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
    if let Some(response) = crate::sim::inject(&state).await {
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
    if let Some(response) = crate::sim::inject(&state).await {
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
