//! Simulated Mabang gateway at `/mabang/api/v2`, enforcing what the public clients agree on
//! (`connectors::mabang` cites them): the `Authorization` HMAC over the exact body, the
//! app key registered with `PUT /_sim/apps {mabang: {<app_key>: <secret>}}`, a timestamp at
//! most 10 minutes off, and asynchronous order creation: `order-do-create-order` takes the
//! order, `order-do-create-order-check` answers `isok` 0 until it has been asked `polls`
//! times (3 by default), then 1. `stock-get-stock-quantity` lists the account's stock (the
//! simulated ERP account named by the app key) as changed today, 100 SKUs a page.
//!
//! `PUT /_sim/mabang` {polls, advance_seconds} (orders being created finish within the new
//! `polls` too). The error answers' codes are the
//! simulator's own: Mabang's are not public.

use std::collections::{BTreeMap, HashMap};

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::SimState;
use crate::signing;

/// "服务端允许误差 ≤10 分钟".
const DRIFT_SECONDS: i64 = 600;
const STOCK_PAGE: usize = 100;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Switches {
    pub polls: Option<u32>,
    pub advance_seconds: i64,
}

/// What the simulated Mabang counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub creates: u64,
    /// Creates of an order the account holds already.
    pub duplicates: u64,
    pub checks: u64,
    pub refused_signatures: u64,
    pub stale_timestamps: u64,
}

struct Pending {
    order: Value,
    /// Checks still answered "not yet".
    polls_left: u32,
}

#[derive(Default)]
pub struct Mabang {
    apps: HashMap<String, String>,
    /// (app key, platformOrderId) -> the order.
    orders: BTreeMap<(String, String), Pending>,
    switches: Switches,
    stats: Stats,
}

impl Mabang {
    pub fn register(&mut self, apps: HashMap<String, String>) {
        self.apps.extend(apps);
    }

    /// New switches; orders still being created finish within the new `polls` too.
    pub fn set(&mut self, switches: Switches) {
        if let Some(polls) = switches.polls {
            for pending in self.orders.values_mut() {
                pending.polls_left = pending.polls_left.min(polls);
            }
        }
        self.switches = switches;
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The orders an app key's account holds, created or not yet.
    pub fn orders(&self, app_key: &str) -> Vec<(Value, bool)> {
        self.orders
            .iter()
            .filter(|((key, _), _)| key == app_key)
            .map(|(_, pending)| (pending.order.clone(), pending.polls_left == 0))
            .collect()
    }
}

fn answer(code: &str, message: &str, data: Value) -> HttpResponse {
    HttpResponse::Ok().json(json!({"code": code, "message": message, "data": data}))
}

fn refuse(message: &str) -> HttpResponse {
    answer("999", message, Value::Null)
}

#[derive(Deserialize)]
struct Envelope {
    api: String,
    appkey: String,
    #[serde(default)]
    data: Value,
    timestamp: Value,
}

pub async fn put_switches(state: web::Data<SimState>, body: web::Json<Switches>) -> HttpResponse {
    match state.mabang.lock() {
        Ok(mut mabang) => {
            mabang.set(body.into_inner());
            HttpResponse::NoContent().finish()
        }
        Err(_) => HttpResponse::InternalServerError().finish(),
    }
}

/// `POST /mabang/api/v2`: checks the envelope and its signature, then the action.
pub async fn gateway(
    state: web::Data<SimState>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    if let Some(fault) = super::inject(&state).await {
        return fault;
    }
    let Ok(envelope) = serde_json::from_slice::<Envelope>(&body) else {
        return refuse("参数错误: api, appkey, data and timestamp are required");
    };
    let Ok(mut mabang) = state.mabang.lock() else {
        return HttpResponse::InternalServerError().finish();
    };
    let Some(secret) = mabang.apps.get(&envelope.appkey).cloned() else {
        return refuse("appkey 不存在 (unknown appkey)");
    };
    let given = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let expected = signing::erp::mabang(&secret, &body);
    if !signing::constant_time_eq(expected.as_bytes(), given.as_bytes()) {
        mabang.stats.refused_signatures += 1;
        return refuse("签名错误 (sign not correct)");
    }
    let now = Utc::now() + Duration::seconds(mabang.switches.advance_seconds);
    let sent = match &envelope.timestamp {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    };
    if sent.is_none_or(|t| (now.timestamp() - t).abs() > DRIFT_SECONDS) {
        mabang.stats.stale_timestamps += 1;
        return refuse("timestamp 误差超过10分钟 (timestamp expired)");
    }
    let app = envelope.appkey;
    match envelope.api.as_str() {
        "sys-get-shop-list" => answer(
            "200",
            "success",
            json!({"data": [{"shopId": "1001", "shopName": "Simulated shop"}]}),
        ),
        "order-do-create-order" => {
            let order = envelope.data;
            let Some(id) = order["platformOrderId"].as_str().map(String::from) else {
                return refuse("platformOrderId 不能为空");
            };
            let complete = ["street1", "countryCode", "name"]
                .iter()
                .all(|f| order[f].as_str().is_some_and(|v| !v.is_empty()))
                && order["orderItems"]
                    .as_array()
                    .is_some_and(|i| !i.is_empty());
            if !complete {
                return refuse(
                    "订单信息不完整: street1, countryCode, name and orderItems are required",
                );
            }
            let key = (app, id.clone());
            if mabang.orders.contains_key(&key) {
                mabang.stats.duplicates += 1;
                return refuse(&format!("订单 {id} 已存在"));
            }
            mabang.stats.creates += 1;
            let polls_left = mabang.switches.polls.unwrap_or(3);
            mabang.orders.insert(key, Pending { order, polls_left });
            answer(
                "200",
                "订单创建中 (being created)",
                json!({"platformOrderId": id}),
            )
        }
        "order-do-create-order-check" => {
            let id = envelope.data["platformOrderId"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            mabang.stats.checks += 1;
            let Some(pending) = mabang.orders.get_mut(&(app, id.clone())) else {
                return refuse(&format!("订单 {id} 不存在"));
            };
            pending.polls_left = pending.polls_left.saturating_sub(1);
            let done = u8::from(pending.polls_left == 0);
            answer(
                "200",
                "success",
                json!({"platformOrderId": id, "isok": done}),
            )
        }
        "stock-get-stock-quantity" => {
            let data = envelope.data;
            let today = now
                .with_timezone(&chrono_tz::Asia::Shanghai)
                .format("%Y-%m-%d")
                .to_string();
            let skus = data["stockSkus"].as_str().unwrap_or_default();
            let day = data["updateTime"].as_str().unwrap_or_default();
            if skus.is_empty() && day.is_empty() {
                return refuse("updateTime 为必填");
            }
            drop(mabang);
            let levels: Vec<(String, i64)> = state
                .erp_stock(&app)
                .into_iter()
                .filter(|(sku, _)| {
                    if skus.is_empty() {
                        day == today
                    } else {
                        skus.split(',').any(|s| s == sku)
                    }
                })
                .collect();
            let page = data["page"].as_u64().unwrap_or(1).max(1) as usize;
            let pages = levels.len().div_ceil(STOCK_PAGE);
            let rows: Vec<Value> = levels
                .iter()
                .skip((page - 1) * STOCK_PAGE)
                .take(STOCK_PAGE)
                .map(|(sku, units)| {
                    json!({"stockSku": sku, "stockQuantity": units, "availableStockQuantity": units,
                           "warehouse": [{"warehouseId": 1, "warehouseName": "SZBA宝安仓", "stockQuantity": units}]})
                })
                .collect();
            answer("200", "success", json!({"page": pages, "data": rows}))
        }
        other => refuse(&format!("api {other} 不存在")),
    }
}
