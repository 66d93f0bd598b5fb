//! Shopee Open Platform v2 shop authorisation. The official guide is not public in a form
//! we could store; these facts are where several third-party sources agree
//! (`../shared/platforms-connect.md`, Shopee; the README lists them as third-party):
//! - Link: `{host}/api/v2/shop/auth_partner?partner_id&timestamp&sign&redirect`, sign =
//!   hex HMAC-SHA256(partner_key, partner_id + path + timestamp), valid 5 minutes. The
//!   redirect parameter is `redirect`; Shopee sends no `state`, so ours rides in the
//!   redirect URL itself.
//! - Callback: `code` with `shop_id` (a shop account) or `main_account_id`, never both.
//! - Trade: `POST {host}/api/v2/auth/token/get?partner_id&timestamp&sign` (same signature,
//!   path `/api/v2/auth/token/get`), JSON {code, partner_id, shop_id | main_account_id} →
//!   access_token (expire_in ≈ 4 h), refresh_token (30 days), `shop_id_list` for a main
//!   account.

use chrono::{Duration, Utc};
use serde_json::{Map, Value, json};

use super::{Callback, Consent, Grant, Platform, exchange_failed, setting, text, unreadable};
use crate::connect::refusal::Refusal;
use crate::connectors::token_refresh;
use crate::netpolicy::OutboundClient;
use crate::signing::marketplaces::shopee_v2;

pub const AUTH_PATH: &str = "/api/v2/shop/auth_partner";
pub const TOKEN_PATH: &str = "/api/v2/auth/token/get";
const REFRESH_TOKEN_LIFETIME: Duration = Duration::days(30);

/// https://open.shopee.com/developer-guide/4 (hosts by environment), or the base_url.
fn host(settings: &Map<String, Value>, environment: &str) -> String {
    match setting(settings, "base_url") {
        Some(base) => base.to_string(),
        None if environment == "sandbox" => "https://partner.test-stable.shopeemobile.com".into(),
        None => "https://partner.shopeemobile.com".into(),
    }
}

fn signed(url: &mut url::Url, partner_id: &str, partner_key: &str, path: &str, timestamp: i64) {
    url.query_pairs_mut()
        .append_pair("partner_id", partner_id)
        .append_pair("timestamp", &timestamp.to_string())
        .append_pair(
            "sign",
            &shopee_v2(partner_key, partner_id, path, timestamp, "", ""),
        );
}

pub fn consent_url(consent: &Consent<'_>) -> Result<url::Url, Refusal> {
    let app = consent.app;
    let mut redirect = url::Url::parse(&app.redirect_url)
        .map_err(|e| Refusal::new("misconfigured", format!("redirect URL: {e}")))?;
    redirect
        .query_pairs_mut()
        .append_pair("state", consent.state);
    let mut url = url::Url::parse(&format!(
        "{}{AUTH_PATH}",
        host(consent.settings, consent.environment)
    ))
    .map_err(|e| Refusal::new("misconfigured", format!("Shopee host: {e}")))?;
    signed(
        &mut url,
        &app.text("partner_id").unwrap_or_default(),
        &app.text("partner_key").unwrap_or_default(),
        AUTH_PATH,
        consent.platform_time.timestamp(),
    );
    url.query_pairs_mut()
        .append_pair("redirect", redirect.as_str());
    Ok(url)
}

pub fn check_callback(callback: &Callback<'_>) -> Result<(), Refusal> {
    callback.required("code")?;
    let numeric = |name| callback.param(name).map(|v| v.parse::<u64>().is_ok());
    match (numeric("shop_id"), numeric("main_account_id")) {
        (Some(true), None) | (None, Some(true)) => Ok(()),
        _ => Err(Refusal::new(
            "missing_parameter",
            "Shopee's answer must carry a numeric shop_id or main_account_id, not both",
        )),
    }
}

pub async fn exchange(http: &OutboundClient, callback: &Callback<'_>) -> Result<Grant, Refusal> {
    let app = callback.app;
    let partner_id = app.text("partner_id").unwrap_or_default();
    let partner_key = app.text("partner_key").unwrap_or_default();
    let partner_number: u64 = partner_id.parse().unwrap_or_default();
    let code = callback.required("code")?;
    let mut body = json!({"code": code, "partner_id": partner_number});
    let (account_field, account_id) = match callback.param("shop_id") {
        Some(shop) => ("shop_id", shop),
        None => ("main_account_id", callback.required("main_account_id")?),
    };
    body[account_field] = json!(account_id.parse::<u64>().unwrap_or_default());
    let mut url = url::Url::parse(&format!(
        "{}{TOKEN_PATH}",
        host(callback.settings, callback.environment)
    ))
    .map_err(|e| Refusal::new("misconfigured", format!("Shopee host: {e}")))?;
    // The platform checks the request's own time against its clock.
    signed(
        &mut url,
        &partner_id,
        &partner_key,
        TOKEN_PATH,
        Utc::now().timestamp(),
    );
    let answer = token_refresh::send(http, "Shopee", http.post(url).json(&body))
        .await
        .map_err(|e| exchange_failed(Platform::Shopee, e))?;
    let answer: token_refresh::ShopeeAnswer =
        serde_json::from_value(answer).map_err(|e| unreadable(Platform::Shopee, e))?;
    if !answer.error.is_empty() {
        return Err(Refusal::new(
            "platform_refused",
            format!("Shopee: {}: {}", answer.error, answer.message),
        ));
    }
    if answer.access_token.is_empty() || answer.refresh_token.is_empty() || answer.expire_in <= 0 {
        return Err(unreadable(Platform::Shopee, "no tokens in the answer"));
    }
    // A main account's token serves the shops it lists; a connection is one shop with its
    // own refresh token, so only a main account with one shop maps onto one.
    let shop_id = match account_field {
        "shop_id" => account_id.to_string(),
        _ => match answer.shop_id_list.as_slice() {
            [only] => only.to_string(),
            shops => {
                return Err(Refusal::new(
                    "several_shops",
                    format!(
                        "the main account authorised {} shops; authorise each shop from its own shop account, one link each",
                        shops.len()
                    ),
                ));
            }
        },
    };
    let mut settings = Map::new();
    settings.insert("partner_id".into(), json!(partner_number));
    settings.insert(
        "shop_id".into(),
        json!(shop_id.parse::<u64>().unwrap_or_default()),
    );
    let mut credentials = Map::new();
    credentials.insert("partner_key".into(), text(partner_key));
    credentials.insert("access_token".into(), text(answer.access_token));
    credentials.insert("refresh_token".into(), text(answer.refresh_token));
    let mut expiries = crate::connections::keeper::Expiries::new();
    expiries.insert(
        "access_token".into(),
        callback.now + Duration::seconds(answer.expire_in),
    );
    expiries.insert(
        "refresh_token".into(),
        callback.now + REFRESH_TOKEN_LIFETIME,
    );
    Ok(Grant {
        account: format!("shop {shop_id}"),
        settings,
        credentials,
        expiries,
        // Shopee signs pushes with the partner key, which the credentials hold.
        webhook_secret: None,
    })
}
