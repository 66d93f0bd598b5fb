//! Simulated ops-chat robots, checking what the platforms check: DingTalk's `timestamp` and
//! `sign` in the query, Feishu's in the body, Standard Webhooks headers; each platform's own
//! answers (errors inside HTTP 200 for DingTalk, Feishu and WeCom) and per-robot limits
//! (DingTalk and WeCom 20 a minute, Feishu 5 a second and 100 a minute).
//!
//! A robot is registered with its secret first: `PUT /_sim/chat/{robot}` {secret}.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use super::SimState;
use crate::signing::chat as signing;

#[derive(Default)]
pub struct Robot {
    secret: Option<String>,
    pub messages: Vec<Value>,
    sent: VecDeque<Instant>,
}

impl Robot {
    pub fn with_secret(secret: Option<String>) -> Self {
        Self {
            secret,
            ..Self::default()
        }
    }

    /// Counts a message against the limits; false when one is exceeded.
    fn admit(&mut self, limits: &[(usize, Duration)]) -> bool {
        let now = Instant::now();
        let longest = limits.iter().map(|(_, w)| *w).max().unwrap_or_default();
        while self
            .sent
            .front()
            .is_some_and(|t| now.duration_since(*t) > longest)
        {
            self.sent.pop_front();
        }
        let over = limits.iter().any(|(count, window)| {
            self.sent
                .iter()
                .filter(|t| now.duration_since(**t) <= *window)
                .count()
                >= *count
        });
        if !over {
            self.sent.push_back(now);
        }
        !over
    }
}

#[derive(Deserialize)]
pub struct RobotRegistration {
    secret: Option<String>,
}

pub async fn put_robot(
    state: web::Data<SimState>,
    robot: web::Path<String>,
    body: web::Json<RobotRegistration>,
) -> HttpResponse {
    state.register_robot(&robot, body.into_inner().secret);
    HttpResponse::NoContent().finish()
}

fn same(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

fn query(req: &HttpRequest) -> HashMap<String, String> {
    url::form_urlencoded::parse(req.query_string().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn within_an_hour(seconds: i64) -> bool {
    (chrono::Utc::now().timestamp() - seconds).abs() <= 3600
}

/// Runs `answer` on the robot; an unknown robot is refused as the platform would.
fn with_robot(
    state: &SimState,
    name: &str,
    unknown: HttpResponse,
    answer: impl FnOnce(&mut Robot) -> HttpResponse,
) -> HttpResponse {
    let Ok(mut robots) = state.chat.lock() else {
        return HttpResponse::InternalServerError().finish();
    };
    match robots.get_mut(name) {
        Some(robot) => answer(robot),
        None => unknown,
    }
}

const MINUTE: Duration = Duration::from_secs(60);

pub async fn dingtalk(
    state: web::Data<SimState>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    if let Some(response) = super::inject(&state).await {
        return response;
    }
    let params = query(&req);
    let token = params.get("access_token").cloned().unwrap_or_default();
    let message: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    with_robot(
        &state,
        &token,
        HttpResponse::Ok().json(json!({"errcode": 300001, "errmsg": "token is not exist"})),
        |robot| {
            if let Some(secret) = &robot.secret {
                let (Some(timestamp), Some(sign)) = (params.get("timestamp"), params.get("sign"))
                else {
                    return HttpResponse::Ok().json(json!({"errcode": 310000, "errmsg": "sign not match, more: [https://ding-doc.dingtalk.com/doc#/serverapi2/qf2nxq]"}));
                };
                let fresh = timestamp
                    .parse::<i64>()
                    .is_ok_and(|ms| within_an_hour(ms / 1000));
                let expected = timestamp
                    .parse()
                    .map(|ms| signing::dingtalk(secret, ms))
                    .unwrap_or_default();
                if !fresh || !same(&expected, sign) {
                    return HttpResponse::Ok().json(json!({"errcode": 310000, "errmsg": "sign not match, more: [https://ding-doc.dingtalk.com/doc#/serverapi2/qf2nxq]"}));
                }
            }
            if !matches!(
                message["msgtype"].as_str(),
                Some("text" | "markdown" | "link" | "actionCard" | "feedCard")
            ) {
                return HttpResponse::Ok()
                    .json(json!({"errcode": 40035, "errmsg": "缺少参数 json"}));
            }
            if !robot.admit(&[(20, MINUTE)]) {
                return HttpResponse::Ok().json(json!({"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"}));
            }
            robot.messages.push(message);
            HttpResponse::Ok().json(json!({"errcode": 0, "errmsg": "ok"}))
        },
    )
}

pub async fn feishu(
    state: web::Data<SimState>,
    robot: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    if let Some(response) = super::inject(&state).await {
        return response;
    }
    let message: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    with_robot(&state, &robot, HttpResponse::Ok().json(json!({"code": 19001, "data": {}, "msg": "param invalid: incoming webhook access token invalid"})), |robot| {
        if let Some(secret) = &robot.secret {
            let timestamp = message["timestamp"].as_str().and_then(|t| t.parse::<i64>().ok());
            let sign = message["sign"].as_str().unwrap_or_default();
            let valid = timestamp.is_some_and(|t| within_an_hour(t) && same(&signing::feishu(secret, t), sign));
            if !valid {
                return HttpResponse::Ok().json(json!({"code": 19021, "data": {}, "msg": "sign match fail or timestamp is not within one hour from current time"}));
            }
        }
        if message["msg_type"].as_str().is_none() {
            return HttpResponse::Ok().json(json!({"code": 19002, "data": {}, "msg": "params error, msg_type need"}));
        }
        if !robot.admit(&[(5, Duration::from_secs(1)), (100, MINUTE)]) {
            return HttpResponse::Ok().json(json!({"code": 11232, "data": {}, "msg": "frequency limited psm"}));
        }
        robot.messages.push(message);
        HttpResponse::Ok().json(json!({"code": 0, "data": {}, "msg": "success"}))
    })
}

pub async fn wecom(state: web::Data<SimState>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    if let Some(response) = super::inject(&state).await {
        return response;
    }
    let key = query(&req).get("key").cloned().unwrap_or_default();
    let message: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    with_robot(
        &state,
        &key,
        HttpResponse::Ok().json(json!({"errcode": 93000, "errmsg": "invalid webhook url"})),
        |robot| {
            if message["msgtype"].as_str().is_none() {
                return HttpResponse::Ok()
                    .json(json!({"errcode": 40008, "errmsg": "invalid message type"}));
            }
            if !robot.admit(&[(20, MINUTE)]) {
                return HttpResponse::Ok()
                    .json(json!({"errcode": 45009, "errmsg": "api freq out of limit"}));
            }
            robot.messages.push(message);
            HttpResponse::Ok().json(json!({"errcode": 0, "errmsg": "ok"}))
        },
    )
}

pub async fn slack(
    state: web::Data<SimState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    if let Some(response) = super::inject(&state).await {
        return response;
    }
    let message: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    with_robot(
        &state,
        &path,
        HttpResponse::NotFound().body("no_service"),
        |robot| {
            if message["text"].as_str().is_none() && message["blocks"].as_array().is_none() {
                return HttpResponse::BadRequest().body("invalid_payload");
            }
            // Incoming webhooks: about one message a second.
            if !robot.admit(&[(1, Duration::from_millis(900))]) {
                return HttpResponse::TooManyRequests()
                    .insert_header(("Retry-After", "1"))
                    .body("rate_limited");
            }
            robot.messages.push(message);
            HttpResponse::Ok().body("ok")
        },
    )
}

pub async fn webhook(
    state: web::Data<SimState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    if let Some(response) = super::inject(&state).await {
        return response;
    }
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let (id, timestamp, signature) = (
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
    );
    with_robot(&state, &path, HttpResponse::NotFound().finish(), |robot| {
        let key = robot
            .secret
            .as_deref()
            .and_then(crate::signing::standard_webhooks_key);
        let valid = match (key, timestamp.parse::<i64>()) {
            (Some(key), Ok(ts)) => {
                let expected = crate::signing::standard_webhooks(&key, &id, ts, &body);
                (chrono::Utc::now().timestamp() - ts).abs() <= 300
                    && signature.split_whitespace().any(|s| same(s, &expected))
            }
            _ => false,
        };
        if !valid {
            return HttpResponse::Unauthorized().json(json!({"error": "invalid signature"}));
        }
        robot
            .messages
            .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
        HttpResponse::NoContent().finish()
    })
}
