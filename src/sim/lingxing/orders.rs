//! Simulated Lingxing orders and shipments, as their pages document them:
//! - `POST /pb/mp/order/v2/create` (`MultiPlatform/V2/CreateOrdersV2.md`): each order on its
//!   own: its required fields checked, a `platform_order_no` the store holds already
//!   refused ("同一店铺不支持重复"), the switch's refusals answered "system busy"; the answer
//!   lists `success_details` and `error_details`.
//! - `POST /pb/mp/order/v2/list` (`MultiPlatOrderV2.md`): the store's orders by
//!   `platform_order_nos` (at most 200), each with `platform_info[].platform_order_no`.
//! - `POST /erp/sc/routing/wms/order/wmsOrderList` (`Warehouse/WmsOrderList.md`): sales
//!   outbound orders by status and `update_at` day (Asia/Shanghai, `Y-m-d`), 200 a page.

use std::collections::BTreeMap;

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{admitted, fail, ok};
use crate::sim::SimState;

/// The zone the simulated Lingxing writes its local times in.
const ZONE: chrono_tz::Tz = chrono_tz::Asia::Shanghai;
const LOCAL: &str = "%Y-%m-%d %H:%M:%S";

#[derive(Default)]
pub struct Store {
    /// (AppID, store id, platform order no) -> the order as pushed.
    orders: BTreeMap<(String, String, String), Value>,
    /// Sales outbound orders, in the order they were shipped.
    outbound: Vec<(String, Value)>,
    pub created: u64,
    pub create_calls: u64,
    pub duplicates: u64,
    pub refused_busy: u64,
    /// How many of the next orders are refused once.
    pub refuse: u32,
    /// Every change gets a later second than the one before.
    clock: DateTime<Utc>,
}

impl Store {
    /// The orders an AppID's stores hold.
    pub fn orders(&self, app: &str) -> Vec<Value> {
        self.orders
            .iter()
            .filter(|((a, _, _), _)| a == app)
            .map(|(_, order)| order.clone())
            .collect()
    }

    fn tick(&mut self, now: DateTime<Utc>) -> DateTime<Utc> {
        let at = now.max(self.clock + chrono::Duration::seconds(1));
        self.clock = at;
        at
    }

    /// Ships up to `count` orders not shipped yet: one outbound order each, status 3.
    pub fn ship(&mut self, app: &str, count: usize, now: DateTime<Utc>) -> Vec<Value> {
        let shipped: std::collections::HashSet<String> = self
            .outbound
            .iter()
            .filter(|(a, _)| a == app)
            .filter_map(|(_, wo)| wo["platform_order_no"][0].as_str().map(String::from))
            .collect();
        let pending: Vec<String> = self
            .orders
            .keys()
            .filter(|(a, _, number)| a == app && !shipped.contains(number))
            .take(count)
            .map(|(_, _, number)| number.clone())
            .collect();
        let mut made = Vec::new();
        for number in pending {
            let at = self
                .tick(now)
                .with_timezone(&ZONE)
                .format(LOCAL)
                .to_string();
            let n = self.outbound.len() + 1;
            let wo = json!({
                "wo_id": n, "wo_number": format!("WO{:018}", 103_000_000_000_000_000u64 + n as u64),
                "status": 3, "status_name": "已出库", "platform_order_no": [number],
                "tracking_no": format!("YT{:016}", n), "waybill_no": format!("WB{n:08}"),
                "logistics_provider_name": "云途", "delivered_at": at, "update_at": at, "create_at": at,
            });
            self.outbound.push((app.to_string(), wo.clone()));
            made.push(wo);
        }
        made
    }
}

/// Lingxing's required fields of an order, and of each item (`CreateOrdersV2.md`): the
/// first one missing, as the refusal names it.
fn missing_field(order: &Value) -> Option<String> {
    let empty = |field: &str| {
        order
            .get(field)
            .and_then(|v| v.as_str())
            .is_none_or(|v| v.trim().is_empty())
    };
    let required = [
        "platform_order_no",
        "receiver_country_code",
        "receiver_name",
        "city",
        "address_line1",
    ];
    if let Some(field) = required.into_iter().find(|field| empty(field)) {
        return Some(format!("{field} is required"));
    }
    let items = order.get("items").and_then(Value::as_array);
    if items.is_none_or(|items| items.is_empty()) {
        return Some("items is required".into());
    }
    let bad_item = items.into_iter().flatten().any(|item| {
        let sku = item.get("sku").or_else(|| item.get("msku"));
        sku.and_then(Value::as_str).is_none_or(str::is_empty)
            || item
                .get("quantity")
                .and_then(Value::as_i64)
                .is_none_or(|q| q <= 0)
            || item.get("unit_price").is_none()
    });
    bad_item.then(|| "items need sku or msku, a positive quantity and unit_price".into())
}

#[derive(Deserialize)]
struct CreateBody {
    platform_code: Value,
    store_id: String,
    orders: Vec<Value>,
}

pub async fn create_orders(
    state: web::Data<SimState>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let (app, _slot) = match admitted(&state, &req, &body).await {
        Ok(admitted) => admitted,
        Err(refused) => return refused,
    };
    let Ok(create) = serde_json::from_slice::<CreateBody>(&body) else {
        return fail(
            "102",
            "invalid parameter: platform_code, store_id and orders are required",
        );
    };
    if create.platform_code.as_i64().is_none() || create.store_id.is_empty() {
        return fail("102", "invalid parameter: platform_code or store_id");
    }
    let Ok(mut lingxing) = state.lingxing.lock() else {
        return HttpResponse::InternalServerError().finish();
    };
    let store = &mut lingxing.orders;
    store.create_calls += 1;
    let (mut success, mut errors) = (Vec::new(), Vec::new());
    for order in create.orders {
        let number = order["platform_order_no"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let key = (app.clone(), create.store_id.clone(), number.clone());
        let refusal = if let Some(why) = missing_field(&order) {
            Some(why)
        } else if store.orders.contains_key(&key) {
            store.duplicates += 1;
            Some(format!("平台单号 {number} 已存在"))
        } else if store.refuse > 0 {
            store.refuse -= 1;
            store.refused_busy += 1;
            Some("system busy, please try again later".to_string())
        } else {
            None
        };
        match refusal {
            Some(message) => {
                errors.push(json!({"platform_order_no": number, "error_message": message}))
            }
            None => {
                store.created += 1;
                let global = format!("{}", 103_336_708_973_801_472u64 + store.created);
                let mut stored = order.clone();
                if let Some(object) = stored.as_object_mut() {
                    object.insert("global_order_no".into(), global.clone().into());
                    object.insert("store_id".into(), create.store_id.clone().into());
                }
                store.orders.insert(key, stored);
                success.push(json!({"platform_order_no": number, "global_order_no": global}));
            }
        }
    }
    ok(
        json!({"success_details": success, "error_details": errors}),
        None,
    )
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ListBody {
    offset: usize,
    length: usize,
    store_id: Vec<String>,
    platform_order_nos: Vec<String>,
}

pub async fn find_orders(
    state: web::Data<SimState>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let (app, _slot) = match admitted(&state, &req, &body).await {
        Ok(admitted) => admitted,
        Err(refused) => return refused,
    };
    let Ok(list) = serde_json::from_slice::<ListBody>(&body) else {
        return fail("102", "invalid parameter");
    };
    if list.length == 0 || list.length > 500 || list.platform_order_nos.len() > 200 {
        return fail(
            "102",
            "invalid parameter: length 1 to 500, at most 200 platform_order_nos",
        );
    }
    // Without order numbers the real API wants a time window; the simulator lists by number.
    let Ok(lingxing) = state.lingxing.lock() else {
        return HttpResponse::InternalServerError().finish();
    };
    let found: Vec<Value> = lingxing
        .orders
        .orders
        .iter()
        .filter(|((a, store, number), _)| {
            a == &app
                && (list.store_id.is_empty() || list.store_id.contains(store))
                && list.platform_order_nos.contains(number)
        })
        .map(|((_, store, number), order)| {
            json!({"store_id": store, "global_order_no": order["global_order_no"], "status": 4,
                   "platform_info": [{"platform_order_no": number, "platform_code": 10009}]})
        })
        .collect();
    let total = found.len();
    let page: Vec<Value> = found
        .into_iter()
        .skip(list.offset)
        .take(list.length)
        .collect();
    ok(json!({"total": total, "list": page}), None)
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct WmsBody {
    page: Option<usize>,
    page_size: Option<usize>,
    status_arr: Vec<i64>,
    time_type: Option<String>,
    start_date: Option<String>,
    end_date: Option<String>,
}

pub async fn wms_orders(
    state: web::Data<SimState>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let (app, _slot) = match admitted(&state, &req, &body).await {
        Ok(admitted) => admitted,
        Err(refused) => return refused,
    };
    let Ok(query) = serde_json::from_slice::<WmsBody>(&body) else {
        return fail("102", "invalid parameter");
    };
    let (page, size) = (query.page.unwrap_or(1), query.page_size.unwrap_or(20));
    if page == 0 || size == 0 || size > 200 {
        return fail("102", "invalid parameter: page from 1, page_size 1 to 200");
    }
    let day = |raw: &Option<String>| {
        raw.as_deref()
            .map(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d"))
    };
    let (Ok(from), Ok(to)) = (
        day(&query.start_date).transpose(),
        day(&query.end_date).transpose(),
    ) else {
        return fail("102", "invalid parameter: dates are Y-m-d");
    };
    let field = query.time_type.as_deref().unwrap_or("create_at");
    let Ok(lingxing) = state.lingxing.lock() else {
        return HttpResponse::InternalServerError().finish();
    };
    let matching: Vec<&Value> = lingxing
        .orders
        .outbound
        .iter()
        .filter(|(a, _)| a == &app)
        .map(|(_, wo)| wo)
        .filter(|wo| {
            query.status_arr.is_empty()
                || wo["status"]
                    .as_i64()
                    .is_some_and(|s| query.status_arr.contains(&s))
        })
        .filter(|wo| {
            let Some(at) = wo[field]
                .as_str()
                .and_then(|t| chrono::NaiveDateTime::parse_from_str(t, LOCAL).ok())
            else {
                return false;
            };
            from.is_none_or(|f| at.date() >= f) && to.is_none_or(|t| at.date() <= t)
        })
        .collect();
    let total = matching.len();
    let rows: Vec<Value> = matching
        .into_iter()
        .skip((page - 1) * size)
        .take(size)
        .cloned()
        .collect();
    ok(Value::Array(rows), Some(total))
}

#[derive(Deserialize)]
pub struct Ship {
    count: usize,
}

/// `POST /_sim/lingxing/{app_id}/ship` {count}: ships that many of the AppID's orders.
pub async fn post_ship(
    state: web::Data<SimState>,
    app: web::Path<String>,
    body: web::Json<Ship>,
) -> HttpResponse {
    let shipments = state.ship_lingxing_orders(&app, body.count.min(100_000));
    HttpResponse::Created().json(json!({ "shipments": shipments }))
}
