//! Simulated Shopee v2: order list and detail, item search and stock updates, each call
//! signed with the partner key as Shopee documents.

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use super::{fresh, order_total_cents, orders, page, param, query_pairs};
use crate::signing::marketplaces as signing;
use crate::sim::{SimState, catalogue};

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
    if let Some(response) = crate::sim::inject(&state).await {
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
    if let Some(response) = crate::sim::inject(&state).await {
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
                   "item_list": items,
                   "recipient_address": {"name": "Tan Wei", "phone": "6591234567", "town": "", "district": "", "city": "Singapore",
                                         "state": "", "region": "SG", "zipcode": "238859", "full_address": "1 Orchard Road, #01-01"}})
        })
        .collect();
    shopee_ok(json!({ "order_list": list }))
}

/// Shopee v2 product search_item by `item_sku`.
pub async fn shopee_search_item(state: web::Data<SimState>, req: HttpRequest) -> HttpResponse {
    if let Some(response) = crate::sim::inject(&state).await {
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
    if let Some(response) = crate::sim::inject(&state).await {
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
