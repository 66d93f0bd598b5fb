//! Sends one message to one channel and reads the platform's answer the way its docs
//! describe it: DingTalk, Feishu and WeCom report failures inside an HTTP 200 body, and each
//! has its own "sending too fast" answer, which means wait and try again, not give up.

use std::time::Duration;

use serde_json::{Value, json};

use super::channel::ChannelKind;
use super::signing;

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Delivered {
        answer: String,
    },
    /// Worth trying again after this long: the network, a 5xx, a 429, a platform's
    /// "too fast" answer.
    Retry {
        after: Duration,
        reason: String,
    },
    /// Trying again will not help: a bad signature, a revoked robot, an invalid body.
    Failed {
        reason: String,
    },
}

/// What a channel needs to send: where, and the secret that signs.
pub struct Destination<'a> {
    pub kind: ChannelKind,
    pub url: &'a str,
    pub secret: Option<&'a str>,
}

fn snippet(text: &str) -> String {
    text.chars().take(300).collect()
}

pub async fn send(http: &reqwest::Client, destination: &Destination<'_>, body: Value) -> Outcome {
    let now = chrono::Utc::now();
    let mut url = match reqwest::Url::parse(destination.url) {
        Ok(url) => url,
        Err(e) => {
            return Outcome::Failed {
                reason: format!("the channel's URL is invalid: {e}"),
            };
        }
    };
    let mut body = body;
    let mut request_headers: Vec<(&str, String)> = Vec::new();
    match (destination.kind, destination.secret) {
        (ChannelKind::Dingtalk, Some(secret)) => {
            let timestamp = now.timestamp_millis();
            url.query_pairs_mut()
                .append_pair("timestamp", &timestamp.to_string())
                .append_pair("sign", &signing::dingtalk(secret, timestamp));
        }
        (ChannelKind::Feishu, Some(secret)) => {
            let timestamp = now.timestamp();
            if let Some(object) = body.as_object_mut() {
                object.insert("timestamp".into(), json!(timestamp.to_string()));
                object.insert("sign".into(), json!(signing::feishu(secret, timestamp)));
            }
        }
        (ChannelKind::Webhook, secret) => {
            let id = format!("msg_{}", uuid::Uuid::now_v7().simple());
            let timestamp = now.timestamp();
            if let Some(object) = body.as_object_mut() {
                object.insert("timestamp".into(), json!(now.to_rfc3339()));
            }
            let key = secret.and_then(crate::webhooks::standard_webhooks_key);
            let Some(key) = key else {
                return Outcome::Failed {
                    reason: "a webhook channel needs a whsec_ secret".into(),
                };
            };
            let bytes = serde_json::to_vec(&body).unwrap_or_default();
            request_headers.push((
                "webhook-signature",
                signing::standard_webhooks(&key, &id, timestamp, &bytes),
            ));
            request_headers.push(("webhook-id", id));
            request_headers.push(("webhook-timestamp", timestamp.to_string()));
        }
        _ => {}
    }
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    let mut request = http
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(bytes);
    for (name, value) in request_headers {
        request = request.header(name, value);
    }
    let response = match request.send().await {
        Ok(response) => response,
        Err(err) => {
            // Without the URL: it carries the robot's token.
            return Outcome::Retry {
                after: Duration::from_secs(5),
                reason: err.without_url().to_string(),
            };
        }
    };
    let status = response.status();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let text = response.text().await.unwrap_or_default();
    if status.as_u16() == 429 {
        return Outcome::Retry {
            after: retry_after.unwrap_or(Duration::from_secs(60)),
            reason: format!("HTTP 429: {}", snippet(&text)),
        };
    }
    if status.is_server_error() {
        return Outcome::Retry {
            after: Duration::from_secs(10),
            reason: format!("HTTP {status}: {}", snippet(&text)),
        };
    }
    if !status.is_success() {
        return Outcome::Failed {
            reason: format!("HTTP {status}: {}", snippet(&text)),
        };
    }
    let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    // (code field, the "too fast" codes) per platform.
    let (field, too_fast): (&str, &[i64]) = match destination.kind {
        // 130101: send too fast (20 messages a minute per robot).
        ChannelKind::Dingtalk => ("errcode", &[130101]),
        // 45009: api freq out of limit (20 a minute per robot).
        ChannelKind::Wecom => ("errcode", &[45009]),
        // 11232: frequency limited (5 a second, 100 a minute per bot).
        ChannelKind::Feishu => ("code", &[11232]),
        ChannelKind::Slack | ChannelKind::Webhook => {
            return Outcome::Delivered {
                answer: snippet(&text),
            };
        }
    };
    match answer.get(field).and_then(Value::as_i64) {
        Some(0) => Outcome::Delivered {
            answer: snippet(&text),
        },
        Some(code) if too_fast.contains(&code) => Outcome::Retry {
            after: Duration::from_secs(60),
            reason: format!("the platform says too fast: {}", snippet(&text)),
        },
        Some(_) => Outcome::Failed {
            reason: format!("the platform refused the message: {}", snippet(&text)),
        },
        None => Outcome::Failed {
            reason: format!("an answer without {field}: {}", snippet(&text)),
        },
    }
}
