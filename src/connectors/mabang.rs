//! Mabang ERP (马帮) open API v2: its gateway envelope, its answers and its order body.
//! Mabang's doc site (gwapi.mabangerp.com/web/#/api/v2) is public but rendered by script;
//! what is used here is what independent public clients agree on (`../shared/platforms-erp.md`
//! names them):
//! - One gateway, `POST https://gwapi.mabangerp.com/api/v2`, JSON body `{"api": <action>,
//!   "appkey", "data": {...}, "timestamp": <10-digit seconds>}`, header `Authorization` =
//!   hex(HMAC-SHA256(secret, body)) (`signing::erp::mabang`); the server allows 10 minutes
//!   of drift (a third-party summary of the doc site).
//! - Answers carry `code` ("200", some versions "0") and `message`; Mabang's error codes
//!   are not public, so a refusal is classed by its wording where it names the signature,
//!   the app key or throttling, and as a client error otherwise.
//! - `order-do-create-order` creates an order asynchronously; `order-do-create-order-check`
//!   {platformOrderId} says when it is done (`isok` = 1). The order fields are the ones a
//!   public client copied from the docs: platformOrderId, buyerUserId, name, street1,
//!   countryCode, phone1, orderItems[{title, platformSku, quantity}].
//! - `stock-get-stock-quantity` {updateTime: a day, page} answers `data.page` (pages) and
//!   `data.data[]` per SKU (`stockSku`, `availableStockQuantity`, `warehouse[]`).

use serde_json::{Value, json};

use super::client::{CallError, ErrorClass};

pub const DEFAULT_BASE_URL: &str = "https://gwapi.mabangerp.com";

/// The request body as sent and signed.
pub fn envelope(action: &str, app_key: &str, data: Value, timestamp: i64) -> Vec<u8> {
    let data = match data {
        Value::Null => json!({}),
        other => other,
    };
    // Field order as the clients send it; the signature covers these exact bytes.
    let body =
        json!({"api": action, "appkey": app_key, "data": data, "timestamp": timestamp.to_string()});
    body.to_string().into_bytes()
}

/// Ok for a success answer, else the refusal classed by what it says.
pub fn check_answer(answer: &Value) -> Result<(), CallError> {
    let code = match answer.get("code") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    };
    if code == "200" || code == "0" {
        return Ok(());
    }
    let message = answer
        .get("message")
        .or_else(|| answer.get("msg"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let lower = message.to_lowercase();
    let (class, remedy) = if ["sign", "签名", "appkey", "密钥"]
        .iter()
        .any(|w| lower.contains(w))
    {
        (
            ErrorClass::Auth,
            Some(
                "Check the app key and developer secret (马帮 ERP > 开放平台) and this host's clock: Mabang allows ten minutes of drift.",
            ),
        )
    } else if ["频繁", "frequent", "limit"]
        .iter()
        .any(|w| lower.contains(w))
    {
        (ErrorClass::RateLimited, None)
    } else {
        (ErrorClass::ClientError, None)
    };
    let error = CallError::new(class, format!("Mabang {code}: {message}"));
    Err(match remedy {
        Some(remedy) => error.with_remedy(remedy),
        None => error,
    })
}

/// A unified order as `order-do-create-order` data, with only the fields a public source
/// names; `platformOrderId` (letters, digits, underscores and dashes) is the marketplace's
/// id, which the check action asks by.
pub fn order(unified: &Value) -> Value {
    let text = |pointer: &str| {
        unified
            .pointer(pointer)
            .and_then(super::template::as_text)
            .unwrap_or_default()
    };
    let items: Vec<Value> = unified["lines"]
        .as_array()
        .map(|lines| {
            lines
                .iter()
                .map(|line| {
                    json!({"title": line["sku"], "platformSku": line["sku"], "quantity": line["quantity"]})
                })
                .collect()
        })
        .unwrap_or_default();
    json!({
        "platformOrderId": platform_order_id(&text("/platform_id")),
        "buyerUserId": text("/shipping/name"),
        "name": text("/shipping/name"),
        "street1": text("/shipping/address_line1"),
        "countryCode": text("/shipping/country_code"),
        "phone1": text("/shipping/phone"),
        "orderItems": items,
    })
}

/// The id as Mabang takes it: letters, digits, underscores and dashes ("订单编号（字母、数字、
/// 下划线、横杠）"), anything else a dash.
pub fn platform_order_id(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_envelope_is_the_signed_text() {
        let body = envelope("sys-get-shop-list", "201501", Value::Null, 1_779_176_045);
        assert_eq!(
            String::from_utf8(body).unwrap(),
            r#"{"api":"sys-get-shop-list","appkey":"201501","data":{},"timestamp":"1779176045"}"#
        );
    }

    #[test]
    fn refusals_are_classed_by_their_wording() {
        assert!(check_answer(&json!({"code": "200", "message": "success"})).is_ok());
        assert!(check_answer(&json!({"code": 0})).is_ok());
        let sign = check_answer(&json!({"code": "500", "message": "签名错误"})).unwrap_err();
        assert_eq!(sign.class, ErrorClass::Auth);
        assert!(sign.remedy.is_some());
        let busy = check_answer(&json!({"code": "429", "message": "请求过于频繁"})).unwrap_err();
        assert_eq!(busy.class, ErrorClass::RateLimited);
        let other = check_answer(&json!({"code": "999", "message": "sku missing"})).unwrap_err();
        assert_eq!(other.class, ErrorClass::ClientError);
    }

    #[test]
    fn orders_take_the_fields_a_public_source_names() {
        let unified = json!({"platform_id": "5001/x", "lines": [{"sku": "A", "quantity": 2, "price": "1.00"}],
            "shipping": {"name": "Rue", "address_line1": "3824 Rosewood Court", "country_code": "US", "phone": "1"}});
        let order = order(&unified);
        assert_eq!(order["platformOrderId"], "5001-x");
        assert_eq!(order["countryCode"], "US");
        assert_eq!(order["orderItems"][0]["platformSku"], "A");
        assert_eq!(order["orderItems"][0]["quantity"], 2);
    }
}
