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

use super::client::{CallError, ErrorClass};
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
    "add this service's egress IP to Lingxing's IP whitelist (设置 > 业务配置 > 全局 > 开放接口)";

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
    let (class, why) = match code {
        // The token is gone: refresh (or exchange again) and retry once.
        "2001003" => (ErrorClass::Auth, "the access token is missing or expired".to_string()),
        "2001005" => (
            ErrorClass::Auth,
            "another application took over this AppID: Lingxing keeps one live token per AppID, and a second tool asking for tokens invalidates ours; give synchub its own AppID".to_string(),
        ),
        "2001001" | "2001002" => (
            ErrorClass::Auth,
            "the AppID or AppSecret is wrong (设置 > 业务配置 > 全局 > 开放接口)".to_string(),
        ),
        "2001008" | "2001009" => (
            ErrorClass::Auth,
            "the refresh token is spent or expired; a new token exchange is needed".to_string(),
        ),
        "2001004" => (
            ErrorClass::Config,
            "the AppID is not authorised for this API; grant it in Lingxing's open API settings".to_string(),
        ),
        "2001006" | "2001007" => (
            ErrorClass::Config,
            "Lingxing refused the request signature (wrong or older than two minutes): check this host's clock".to_string(),
        ),
        "3001002" => (ErrorClass::Forbidden, IP_WHITELIST_REMEDY.to_string()),
        "3001008" | "103" => (
            ErrorClass::RateLimited,
            "too many requests in flight for this AppID and endpoint".to_string(),
        ),
        "102" | "3001001" => (ErrorClass::ClientError, "a parameter is missing or invalid".to_string()),
        "401" | "403" => (
            ErrorClass::Auth,
            "the app's authorisation is disabled or expired in Lingxing".to_string(),
        ),
        _ => (ErrorClass::ServerError, "an unexpected answer".to_string()),
    };
    CallError::new(class, format!("Lingxing {code} ({message}): {why}"))
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

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(ip.message.contains("开放接口"), "{}", ip.message);
        assert!(
            classify("2001005", "access token not match")
                .message
                .contains("another application")
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
