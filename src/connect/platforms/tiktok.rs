//! TikTok Shop (Partner Center, API 202309) seller authorisation. Its docs are a JS app we
//! could not store; these facts are where third-party sources agree
//! (`../shared/platforms-connect.md`, TikTok Shop; the README lists them as third-party):
//! - Consent: `https://services.tiktokshop.com/open/authorize?service_id&state` (US sellers:
//!   `services.us.tiktokshop.com`); TikTok redirects to the URL registered with the app.
//! - Callback: `code` (the auth code) and `state`.
//! - Trade: `GET https://auth.tiktok-shops.com/api/v2/token/get?app_key&app_secret&auth_code
//!   &grant_type=authorized_code`, unsigned → `data` with both tokens and their expiries as
//!   Unix timestamps.
//! - Shops: `GET /authorization/202309/shops` (signed, `x-tts-access-token`) → each shop's
//!   cipher, which the API calls need.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{Callback, Consent, Grant, Platform, exchange_failed, setting, text, unreadable};
use crate::connect::refusal::Refusal;
use crate::connectors::token_refresh;
use crate::netpolicy::OutboundClient;
use crate::signing::marketplaces::tiktok_shop;

const AUTHORIZE_URL: &str = "https://services.tiktokshop.com/open/authorize";
const TOKEN_GET_URL: &str = "https://auth.tiktok-shops.com/api/v2/token/get";
const SHOPS_PATH: &str = "/authorization/202309/shops";

fn api_base(settings: &Map<String, Value>, environment: &str) -> String {
    match setting(settings, "base_url") {
        Some(base) => base.to_string(),
        None if environment == "sandbox" => "https://open-api-sandbox.tiktokglobalshop.com".into(),
        None => "https://open-api.tiktokglobalshop.com".into(),
    }
}

/// The code trade lives beside the refresh (`/api/v2/token/refresh`), which a connection may
/// point elsewhere (the simulator).
fn token_get_url(settings: &Map<String, Value>) -> String {
    setting(settings, "token_endpoint")
        .and_then(|refresh| refresh.strip_suffix("/refresh"))
        .map(|prefix| format!("{prefix}/get"))
        .unwrap_or_else(|| TOKEN_GET_URL.to_string())
}

pub fn consent_url(consent: &Consent<'_>) -> Result<url::Url, Refusal> {
    let page = match setting(consent.settings, "base_url") {
        Some(base) => format!("{base}/open/authorize"),
        None => consent
            .app
            .text("authorize_url")
            .unwrap_or_else(|| AUTHORIZE_URL.to_string()),
    };
    let mut url = url::Url::parse(&page)
        .map_err(|e| Refusal::new("misconfigured", format!("authorisation page: {e}")))?;
    url.query_pairs_mut()
        .append_pair(
            "service_id",
            &consent.app.text("service_id").unwrap_or_default(),
        )
        .append_pair("state", consent.state);
    Ok(url)
}

pub fn check_callback(callback: &Callback<'_>) -> Result<(), Refusal> {
    callback.required("code").map(|_| ())
}

#[derive(Deserialize)]
struct Answer<T> {
    code: i64,
    #[serde(default)]
    message: String,
    data: Option<T>,
}

#[derive(Deserialize)]
struct Tokens {
    access_token: String,
    access_token_expire_in: i64,
    refresh_token: String,
    refresh_token_expire_in: i64,
    #[serde(default)]
    seller_name: String,
}

#[derive(Deserialize)]
struct Shops {
    #[serde(default)]
    shops: Vec<Shop>,
}

#[derive(Deserialize)]
struct Shop {
    #[serde(default)]
    name: String,
    #[serde(default)]
    region: String,
    cipher: String,
}

fn answered<T>(answer: Value) -> Result<T, Refusal>
where
    T: serde::de::DeserializeOwned,
{
    let answer: Answer<T> =
        serde_json::from_value(answer).map_err(|e| unreadable(Platform::Tiktok, e))?;
    if answer.code != 0 {
        return Err(Refusal::new(
            "platform_refused",
            format!("TikTok Shop: code {}: {}", answer.code, answer.message),
        ));
    }
    answer
        .data
        .ok_or_else(|| unreadable(Platform::Tiktok, "no data in the answer"))
}

pub async fn exchange(
    http: &OutboundClient,
    callback: &Callback<'_>,
) -> Result<Vec<Grant>, Refusal> {
    let app = callback.app;
    let app_key = app.text("app_key").unwrap_or_default();
    let app_secret = app.text("app_secret").unwrap_or_default();
    let request = http.get(token_get_url(callback.settings)).query(&[
        ("app_key", app_key.as_str()),
        ("app_secret", app_secret.as_str()),
        ("auth_code", callback.required("code")?),
        ("grant_type", "authorized_code"),
    ]);
    let tokens: Tokens = answered(
        token_refresh::send(http, "TikTok Shop", request)
            .await
            .map_err(|e| exchange_failed(Platform::Tiktok, e))?,
    )?;
    let access_expiry = token_refresh::tiktok_instant(tokens.access_token_expire_in, callback.now)
        .ok_or_else(|| unreadable(Platform::Tiktok, "access_token_expire_in"))?;
    let refresh_expiry =
        token_refresh::tiktok_instant(tokens.refresh_token_expire_in, callback.now);

    let timestamp = chrono::Utc::now().timestamp().to_string();
    let query = vec![
        ("app_key".to_string(), app_key.clone()),
        ("timestamp".to_string(), timestamp),
    ];
    let sign = tiktok_shop(&app_secret, SHOPS_PATH, &query, b"");
    let mut url = url::Url::parse(&format!(
        "{}{SHOPS_PATH}",
        api_base(callback.settings, callback.environment)
    ))
    .map_err(|e| Refusal::new("misconfigured", format!("API host: {e}")))?;
    url.query_pairs_mut()
        .extend_pairs(&query)
        .append_pair("sign", &sign);
    let request = http
        .get(url)
        .header("x-tts-access-token", tokens.access_token.as_str());
    let shops: Shops = answered(
        token_refresh::send(http, "TikTok Shop", request)
            .await
            .map_err(|e| exchange_failed(Platform::Tiktok, e))?,
    )?;
    if shops.shops.is_empty() {
        return Err(Refusal::new(
            "no_shop",
            format!("{} authorised the app but has no shop", tokens.seller_name),
        ));
    }
    Ok(shops
        .shops
        .into_iter()
        .map(|shop| {
            let mut settings = Map::new();
            settings.insert("app_key".into(), text(app_key.clone()));
            settings.insert("shop_cipher".into(), text(shop.cipher));
            let mut credentials = Map::new();
            credentials.insert("app_secret".into(), text(app_secret.clone()));
            credentials.insert("access_token".into(), text(tokens.access_token.clone()));
            credentials.insert("refresh_token".into(), text(tokens.refresh_token.clone()));
            let mut expiries = crate::connections::keeper::Expiries::new();
            expiries.insert("access_token".into(), access_expiry);
            if let Some(at) = refresh_expiry {
                expiries.insert("refresh_token".into(), at);
            }
            Grant {
                account: format!("{} ({})", shop.name, shop.region),
                settings,
                credentials,
                expiries,
                // TikTok signs webhooks with the app secret, which the credentials hold.
                webhook_secret: None,
            }
        })
        .collect())
}
