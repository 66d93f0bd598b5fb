//! Lingxing OpenAPI (领星 ERP): its token, its request signature and its answers. The
//! seller creates an AppID and AppSecret (设置 > 业务配置 > 全局 > 开放接口) and whitelists
//! our egress IPs; there is no consent flow. Sources: the copy of apidoc.lingxing.com in
//! youjunhui-sky/zoupw-lingxing-v2 `lingxing-api-docs/docs/`:
//! - `Authorization/GetToken.md`: `POST /api/auth-server/oauth/access-token`, multipart form
//!   `appId`, `appSecret` → `{code: "200", msg, data: {access_token, refresh_token,
//!   expires_in: 7199}}`; `Authorization/RefreshToken.md`: `POST /api/auth-server/oauth/refresh`
//!   with `appId`, `refreshToken`; each refresh token is spent by its first use and lives
//!   two hours (`Guidance/newInstructions.md` §3.2). One live token per AppID: another tool
//!   asking for tokens on the same AppID makes ours answer 2001005 (`Guidance/QA.md`).
//! - Every business call carries `access_token`, `app_key` (the AppID), `timestamp` and
//!   `sign` in the query; a POST's business parameters go in a JSON body and are signed too
//!   (§2.3, §4.1; `signing::erp::lingxing`). A sign is good for two minutes.
//! - Business answers carry `code` 0 on success, else a code inside the 200
//!   (`Guidance/ErrorCode.md`, QA).

use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use serde_json::Value;

use super::client::{CallError, ErrorClass, TokenFault};
use super::token_refresh::{RefreshedTokens, send};
use crate::netpolicy::OutboundClient;
use crate::signing::erp as signing;

pub const DEFAULT_BASE_URL: &str = "https://openapi.lingxing.com";
pub const TOKEN_PATH: &str = "/api/auth-server/oauth/access-token";
pub const REFRESH_PATH: &str = "/api/auth-server/oauth/refresh";
/// "refresh_token的有效期为 2个小时" (newInstructions §3.2).
pub const REFRESH_TOKEN_LIFETIME: Duration = Duration::hours(2);

/// Where the seller whitelists our egress IPs.
pub const IP_WHITELIST_REMEDY: &str =
    "Add this service's egress IP to Lingxing's IP whitelist (设置 > 业务配置 > 全局 > 开放接口).";

pub struct App<'a> {
    pub base_url: &'a str,
    pub app_id: &'a str,
    pub app_secret: &'a str,
}

/// Lingxing's codes come as numbers or as text ("200", "2001005").
fn code_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

/// What a code other than success means, as a call error with what to do about it.
pub fn classify(code: &str, message: &str) -> CallError {
    let (class, why, remedy, fault) = match code {
        // The token is gone: the engine renews it and retries once.
        "2001003" => (
            ErrorClass::Auth,
            "the access token is missing or expired",
            None,
            Some(TokenFault::Expired),
        ),
        "2001005" => (
            ErrorClass::Auth,
            "another application took over this AppID: Lingxing keeps one live token per AppID, and a second tool asking for tokens invalidated ours",
            Some(
                "Give synchub an AppID of its own (设置 > 业务配置 > 全局 > 开放接口), or stop the other tool, then run the connection's check to take the token back.",
            ),
            Some(TokenFault::TakenOver),
        ),
        "2001001" | "2001002" => (
            ErrorClass::Auth,
            "the AppID or AppSecret is wrong",
            Some(
                "Copy the AppID and AppSecret again from 设置 > 业务配置 > 全局 > 开放接口 and rotate the connection's credentials.",
            ),
            None,
        ),
        "2001008" | "2001009" => (
            ErrorClass::Auth,
            "the refresh token is spent or expired; a new token exchange is needed",
            None,
            Some(TokenFault::Expired),
        ),
        "2001004" => (
            ErrorClass::Config,
            "the AppID is not authorised for this API",
            Some(
                "Grant the AppID this API in Lingxing's open API settings (设置 > 业务配置 > 全局 > 开放接口).",
            ),
            None,
        ),
        "2001006" | "2001007" => (
            ErrorClass::Config,
            "Lingxing refused the request signature (wrong, or older than two minutes)",
            Some("Check this host's clock (NTP): a sign is good for two minutes."),
            None,
        ),
        "3001002" => (
            ErrorClass::Forbidden,
            "the IP whitelist refuses this server's address",
            Some(IP_WHITELIST_REMEDY),
            None,
        ),
        "3001008" | "103" => (
            ErrorClass::RateLimited,
            "too many requests in flight for this AppID and endpoint",
            None,
            None,
        ),
        "102" | "3001001" => (
            ErrorClass::ClientError,
            "a parameter is missing or invalid",
            None,
            None,
        ),
        "401" | "403" => (
            ErrorClass::Auth,
            "the app's authorisation is disabled or expired in Lingxing",
            Some("Enable the AppID again in 设置 > 业务配置 > 全局 > 开放接口."),
            None,
        ),
        _ => (ErrorClass::ServerError, "an unexpected answer", None, None),
    };
    let mut error = CallError::new(class, format!("Lingxing {code} ({message}): {why}"));
    if let Some(remedy) = remedy {
        error = error.with_remedy(remedy);
    }
    if let Some(fault) = fault {
        error = error.with_token_fault(fault);
    }
    error
}

#[derive(Deserialize)]
struct TokenAnswer {
    code: Value,
    #[serde(default)]
    msg: String,
    data: Option<TokenData>,
}

#[derive(Deserialize)]
struct TokenData {
    access_token: String,
    refresh_token: String,
    expires_in: Value,
}

async fn token_call(
    http: &OutboundClient,
    url: String,
    form: reqwest::multipart::Form,
    now: DateTime<Utc>,
) -> Result<RefreshedTokens, CallError> {
    let answer = send(http, "Lingxing", http.post(url).multipart(form)).await?;
    let answer: TokenAnswer = serde_json::from_value(answer).map_err(|e| {
        CallError::new(
            ErrorClass::SchemaMismatch,
            format!("Lingxing token answer: {e}"),
        )
        .in_token_exchange()
    })?;
    let code = code_text(&answer.code);
    if code != "200" {
        return Err(classify(&code, &answer.msg).in_token_exchange());
    }
    let data = answer.data.ok_or_else(|| {
        CallError::new(ErrorClass::SchemaMismatch, "Lingxing token answer: no data")
            .in_token_exchange()
    })?;
    let seconds = code_text(&data.expires_in).parse::<i64>().unwrap_or(0);
    if data.access_token.is_empty() || seconds <= 0 {
        return Err(CallError::new(
            ErrorClass::SchemaMismatch,
            "Lingxing token answer: no token or lifetime",
        )
        .in_token_exchange());
    }
    Ok(RefreshedTokens {
        access_token: data.access_token,
        refresh_token: data.refresh_token,
        access_expires_at: now + Duration::seconds(seconds),
        refresh_expires_at: Some(now + REFRESH_TOKEN_LIFETIME),
    })
}

/// A fresh token pair from the AppID and AppSecret. It makes any earlier token of this
/// AppID stop working.
pub async fn exchange(
    http: &OutboundClient,
    app: &App<'_>,
    now: DateTime<Utc>,
) -> Result<RefreshedTokens, CallError> {
    // The form encodes the secret as it must be (QA item 1: special characters).
    let form = reqwest::multipart::Form::new()
        .text("appId", app.app_id.to_string())
        .text("appSecret", app.app_secret.to_string());
    token_call(http, format!("{}{TOKEN_PATH}", app.base_url), form, now).await
}

/// Spends the refresh token for a new pair.
pub async fn refresh(
    http: &OutboundClient,
    app: &App<'_>,
    refresh_token: &str,
    now: DateTime<Utc>,
) -> Result<RefreshedTokens, CallError> {
    let form = reqwest::multipart::Form::new()
        .text("appId", app.app_id.to_string())
        .text("refreshToken", refresh_token.to_string());
    token_call(http, format!("{}{REFRESH_PATH}", app.base_url), form, now).await
}

/// Adds the common parameters and the sign to a built request: the query's own
/// parameters and, for a JSON body, its top-level fields are signed with them.
pub fn sign_request(
    request: &mut reqwest::Request,
    app_id: &str,
    access_token: &str,
    timestamp: i64,
) -> Result<(), CallError> {
    request
        .url_mut()
        .query_pairs_mut()
        .append_pair("access_token", access_token)
        .append_pair("app_key", app_id)
        .append_pair("timestamp", &timestamp.to_string());
    let mut params: Vec<(String, String)> = request
        .url()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if let Some(body) = request.body().and_then(|b| b.as_bytes())
        && !body.is_empty()
    {
        let body: Value = serde_json::from_slice(body).map_err(|e| {
            CallError::new(
                ErrorClass::Config,
                format!("a Lingxing body must be JSON: {e}"),
            )
        })?;
        params.extend(signing::lingxing_body_params(&body));
    }
    let sign = signing::lingxing(app_id, &params).ok_or_else(|| {
        CallError::new(
            ErrorClass::Config,
            "the Lingxing AppID must be 16 characters (it keys the AES-128 signature)",
        )
    })?;
    request
        .url_mut()
        .query_pairs_mut()
        .append_pair("sign", &sign);
    Ok(())
}

/// A business answer: its `data` on `code` 0, else the classified error.
pub fn answer_data(answer: &Value) -> Result<&Value, CallError> {
    let code = answer.get("code").map(code_text).unwrap_or_default();
    if code == "0" {
        return Ok(answer.get("data").unwrap_or(&Value::Null));
    }
    let message = answer
        .get("message")
        .or_else(|| answer.get("msg"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    Err(classify(&code, message))
}

/// Lingxing's platform code of a custom platform (自定义平台), where pushed orders belong:
/// Lingxing pulls the big marketplaces itself, and a pushed copy in one of those stores would
/// duplicate it (`MultiPlatOrderV2.md`, platform_code list).
pub const CUSTOM_PLATFORM_CODE: i64 = 10009;

/// A unified order (as `sync` hands it to an ERP) as one order of
/// `/pb/mp/order/v2/create` (`MultiPlatform/V2/CreateOrdersV2.md`): `platform_order_no` is
/// the marketplace's id, unique per store ("同一店铺不支持重复"), so a repeated push is refused
/// rather than duplicated. Amounts go as decimal text, as the doc's example sends them.
pub fn order(unified: &Value) -> Value {
    let text = |pointer: &str| {
        unified
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let items: Vec<Value> = unified["lines"]
        .as_array()
        .map(|lines| {
            lines
                .iter()
                .map(|line| {
                    serde_json::json!({
                        "sku": line["sku"],
                        "quantity": line["quantity"],
                        "unit_price": line["price"],
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let mut order = serde_json::json!({
        "platform_order_no": text("/platform_id"),
        "receiver_name": text("/shipping/name"),
        "receiver_country_code": text("/shipping/country_code"),
        "city": text("/shipping/city"),
        "address_line1": text("/shipping/address_line1"),
        "amount_currency": text("/currency"),
        "order_total_amount": text("/total"),
        "items": items,
    });
    if let Some(at) = chrono::DateTime::parse_from_rfc3339(&text("/created_at")).ok()
        && let Some(object) = order.as_object_mut()
    {
        object.insert("global_purchase_time".into(), at.timestamp().into());
    }
    // The buyer's order number (Shopify's "#1001") is what the seller searches by.
    let number = text("/number");
    if !number.is_empty()
        && let Some(object) = order.as_object_mut()
    {
        object.insert(
            "remark".into(),
            format!("{} order {number}", text("/source")).into(),
        );
    }
    order
}

/// What one create call answered: the orders it took and the ones it refused, with why.
#[derive(Debug, Default, PartialEq)]
pub struct CreateAnswer {
    pub created: Vec<String>,
    pub refused: Vec<(String, String)>,
}

/// Reads `data.success_details` and `data.error_details` of a create answer.
pub fn create_answer(data: &Value) -> Result<CreateAnswer, CallError> {
    let list = |field: &str| -> Result<Vec<Value>, CallError> {
        match data.get(field) {
            Some(Value::Array(items)) => Ok(items.clone()),
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(_) => Err(CallError::new(
                ErrorClass::SchemaMismatch,
                format!("Lingxing's create answer: data.{field} is not a list"),
            )),
        }
    };
    let number = |item: &Value| item.get("platform_order_no").map(code_text);
    let created = list("success_details")?.iter().filter_map(number).collect();
    let refused = list("error_details")?
        .iter()
        .filter_map(|item| {
            let message = item
                .get("error_message")
                .and_then(Value::as_str)
                .unwrap_or("refused without a reason");
            Some((number(item)?, message.to_string()))
        })
        .collect();
    Ok(CreateAnswer { created, refused })
}

/// The platform order numbers a store holds, from a `/pb/mp/order/v2/list` page
/// (`data.list[].platform_info[].platform_order_no`).
pub fn listed_order_numbers(records: &[Value]) -> std::collections::HashSet<String> {
    records
        .iter()
        .filter_map(|order| order.get("platform_info").and_then(Value::as_array))
        .flatten()
        .filter_map(|info| info.get("platform_order_no").map(code_text))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of the doc's request example, from a unified order.
    #[test]
    fn unified_orders_become_create_orders() {
        let unified = serde_json::json!({
            "source": "shopify", "platform_id": "5001", "number": "#1001", "currency": "USD",
            "total": "20.80", "created_at": "2026-11-27T10:00:00Z",
            "lines": [{"sku": "xhp004", "quantity": 1, "price": "10.00"}],
            "shipping": {"name": "Rue", "country_code": "US", "city": "Winchester",
                         "address_line1": "3824 Rosewood Court"},
        });
        let order = order(&unified);
        assert_eq!(order["platform_order_no"], "5001");
        assert_eq!(order["receiver_country_code"], "US");
        assert_eq!(order["address_line1"], "3824 Rosewood Court");
        assert_eq!(order["items"][0]["sku"], "xhp004");
        assert_eq!(order["items"][0]["unit_price"], "10.00");
        assert_eq!(order["global_purchase_time"], 1_795_773_600);
        assert_eq!(order["remark"], "shopify order #1001");
    }

    /// The doc's success example, and a partial failure.
    #[test]
    fn create_answers_say_which_orders_were_taken() {
        let data = serde_json::json!({"error_details": [], "success_details": [
            {"platform_order_no": "263407812560417017", "global_order_no": "103336708973801472"}]});
        assert_eq!(
            create_answer(&data).unwrap(),
            CreateAnswer {
                created: vec!["263407812560417017".into()],
                refused: vec![]
            }
        );
        let data = serde_json::json!({"success_details": [{"platform_order_no": "1"}],
            "error_details": [{"platform_order_no": "2", "error_message": "sku not exist"}]});
        let answer = create_answer(&data).unwrap();
        assert_eq!(answer.refused, vec![("2".into(), "sku not exist".into())]);
        assert!(create_answer(&serde_json::json!({"success_details": 3})).is_err());
    }

    #[test]
    fn codes_inside_answers_are_classified() {
        assert_eq!(classify("2001003", "").class, ErrorClass::Auth);
        assert_eq!(
            classify("2001006", "sign not correct").class,
            ErrorClass::Config
        );
        assert_eq!(classify("2001004", "").class, ErrorClass::Config);
        assert_eq!(classify("3001008", "").class, ErrorClass::RateLimited);
        assert_eq!(classify("103", "").class, ErrorClass::RateLimited);
        let ip = classify("3001002", "ip not permit");
        assert_eq!(ip.class, ErrorClass::Forbidden);
        assert_eq!(ip.remedy.as_deref(), Some(IP_WHITELIST_REMEDY));
        let taken = classify("2001005", "access token not match");
        assert!(taken.message.contains("another application"));
        assert_eq!(taken.token_fault, Some(TokenFault::TakenOver));
        assert_eq!(
            classify("2001003", "").token_fault,
            Some(TokenFault::Expired)
        );
        assert!(answer_data(&serde_json::json!({"code": 0, "data": [1]})).is_ok());
        assert_eq!(
            answer_data(&serde_json::json!({"code": 3001008, "message": "too frequent"}))
                .map_err(|e| e.class),
            Err(ErrorClass::RateLimited)
        );
    }

    /// A POST's body fields are signed with the common parameters, which go in the query.
    #[test]
    fn requests_are_signed_with_their_body() {
        let url =
            "https://openapi.lingxing.com/erp/sc/routing/data/local_inventory/inventoryDetails";
        let mut request = reqwest::Request::new(reqwest::Method::POST, url.parse().unwrap());
        *request.body_mut() = Some(r#"{"offset":0,"length":100}"#.into());
        sign_request(
            &mut request,
            "ak_TESTTESTTEST1",
            "00000000-0000-0000-0000-000000000000",
            1_720_429_074,
        )
        .unwrap();
        let pairs: std::collections::HashMap<String, String> =
            request.url().query_pairs().into_owned().collect();
        // The same parameters as the known-answer vector: the same sign.
        assert_eq!(
            pairs["sign"],
            "ovEHsQ9sZ3hLI+VMxaSdX7WohSnP8v/p1wCGBRnlPGlj2ydHRAtAl4luDaQWfJi6"
        );
        assert!(
            request
                .url()
                .as_str()
                .contains("sign=ovEHsQ9sZ3hLI%2BVMxaSdX7"),
            "URL-encoded"
        );
        assert!(
            !pairs.contains_key("offset"),
            "body fields stay in the body"
        );
    }
}
