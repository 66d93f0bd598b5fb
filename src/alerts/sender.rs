//! Sends one message to one channel and reads the platform's answer the way its docs
//! describe it: DingTalk, Feishu and WeCom report failures inside an HTTP 200 body, and each
//! has its own "sending too fast" answer, which means wait and try again, not give up.

use std::time::Duration;

use serde_json::{Value, json};

use super::channel::ChannelKind;
use crate::netpolicy::outbound::read_limited;
use crate::netpolicy::{OutboundClient, OutboundError};
use crate::signing::chat as signing;

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

/// The most of an answer read: chat platforms answer in a few hundred bytes.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// What of an answer may be shown to the tenant: the status, and the platform's documented
/// code and message fields (or Slack's one-word error), never the body as such, so a channel
/// pointed at a server inside the operator's network cannot read its pages out.
fn shown(status: reqwest::StatusCode, kind: ChannelKind, body: &[u8]) -> String {
    let clip = |text: &str| text.chars().take(200).collect::<String>();
    let answer: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let fields: &[&str] = match kind {
        ChannelKind::Dingtalk | ChannelKind::Wecom => &["errcode", "errmsg"],
        ChannelKind::Feishu => &["code", "msg"],
        ChannelKind::Slack | ChannelKind::Webhook => &[],
    };
    let mut parts = vec![format!("HTTP {status}")];
    for field in fields {
        match answer.get(*field) {
            Some(Value::String(text)) => parts.push(format!("{field}={}", clip(text))),
            Some(Value::Number(n)) => parts.push(format!("{field}={n}")),
            _ => {}
        }
    }
    // Slack answers a word: ok, invalid_payload, no_service, channel_is_archived...
    // https://docs.slack.dev/messaging/sending-messages-using-incoming-webhooks#handling-errors
    if kind == ChannelKind::Slack
        && let Ok(word) = std::str::from_utf8(body)
        && (1..=64).contains(&word.trim().len())
        && word
            .trim()
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b == b'_')
    {
        parts.push(word.trim().to_string());
    }
    parts.join(" ")
}

pub async fn send(http: &OutboundClient, destination: &Destination<'_>, body: Value) -> Outcome {
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
            let key = secret.and_then(crate::signing::standard_webhooks_key);
            let Some(key) = key else {
                return Outcome::Failed {
                    reason: "a webhook channel needs a whsec_ secret".into(),
                };
            };
            let bytes = serde_json::to_vec(&body).unwrap_or_default();
            request_headers.push((
                "webhook-signature",
                crate::signing::standard_webhooks(&key, &id, timestamp, &bytes),
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
    // The guard's errors carry no URL: a robot's URL carries its token.
    let response = match http.send(request).await {
        Ok(response) => response,
        Err(OutboundError::Blocked(blocked)) => {
            return Outcome::Failed { reason: blocked.0 };
        }
        Err(err) => {
            return Outcome::Retry {
                after: Duration::from_secs(5),
                reason: err.to_string(),
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
    let text = read_limited(response, MAX_ANSWER_BYTES)
        .await
        .unwrap_or_default();
    let answer_shown = shown(status, destination.kind, &text);
    if status.as_u16() == 429 {
        return Outcome::Retry {
            after: retry_after.unwrap_or(Duration::from_secs(60)),
            reason: answer_shown,
        };
    }
    if status.is_server_error() {
        return Outcome::Retry {
            after: Duration::from_secs(10),
            reason: answer_shown,
        };
    }
    if !status.is_success() {
        return Outcome::Failed {
            reason: answer_shown,
        };
    }
    let answer: Value = serde_json::from_slice(&text).unwrap_or(Value::Null);
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
                answer: answer_shown,
            };
        }
    };
    match answer.get(field).and_then(Value::as_i64) {
        Some(0) => Outcome::Delivered {
            answer: answer_shown,
        },
        Some(code) if too_fast.contains(&code) => Outcome::Retry {
            after: Duration::from_secs(60),
            reason: format!("the platform says too fast: {answer_shown}"),
        },
        Some(_) => Outcome::Failed {
            reason: format!("the platform refused the message: {answer_shown}"),
        },
        None => Outcome::Failed {
            reason: format!("an answer without {field}: {answer_shown}"),
        },
    }
}
