//! Shopify's authorization code grant, for standalone (non-embedded) apps, with expiring
//! offline tokens.
//! - Consent: `https://{shop}/admin/oauth/authorize?client_id&scope&redirect_uri&state&grant_options[]`
//!   (empty `grant_options[]`: an offline token).
//!   https://shopify.dev/docs/apps/build/authentication-authorization/access-tokens/authorization-code-grant
//! - Callback: HMAC over every parameter (`signing::marketplaces::shopify_oauth`), a timestamp
//!   within 90 s (the JS SDK's window), and a strict `*.myshopify.com` shop before any call.
//! - Trade: `POST https://{shop}/admin/oauth/access_token` {client_id, client_secret, code,
//!   expiring: 1}: an access token of 1 hour with a refresh token of 90 days.
//!   https://shopify.dev/docs/apps/build/authentication-authorization/access-tokens/offline-access-tokens
//!   (`expiring` as the Ruby SDK sends it, `lib/shopify_api/auth/oauth.rb`).

use chrono::Duration;
use serde::Deserialize;
use serde_json::{Map, json};

use super::{Callback, Consent, Grant, Platform, exchange_failed, setting, text, unreadable};
use crate::connect::refusal::Refusal;
use crate::connectors::token_refresh;
use crate::netpolicy::OutboundClient;
use crate::signing;

/// How far a callback's timestamp may be from our clock.
const CALLBACK_WINDOW: Duration = Duration::seconds(90);

/// The store's permanent domain: `^[a-z0-9][a-z0-9-]*\.myshopify\.com$`, stricter than the
/// SDK's `sanitizeShop`, which also takes shopify.com and myshopify.io hosts.
pub fn valid_shop(shop: &str) -> bool {
    let Some(name) = shop.strip_suffix(".myshopify.com") else {
        return false;
    };
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && name.len() <= 255
}

/// The shop's admin: `https://{shop}`, or the base_url a connection points elsewhere.
fn admin_base(settings: &Map<String, serde_json::Value>) -> String {
    match setting(settings, "base_url") {
        Some(base) => base.to_string(),
        None => format!(
            "https://{}",
            setting(settings, "shop_domain").unwrap_or_default()
        ),
    }
}

pub fn consent_url(consent: &Consent<'_>) -> Result<url::Url, Refusal> {
    let app = consent.app;
    let scopes: Vec<&str> = app
        .fields
        .get("scopes")
        .and_then(|v| v.as_array())
        .map(|items| items.iter().filter_map(|s| s.as_str()).collect())
        .unwrap_or_default();
    let mut url = url::Url::parse(&format!(
        "{}/admin/oauth/authorize",
        admin_base(consent.settings)
    ))
    .map_err(|e| Refusal::new("misconfigured", format!("shop URL: {e}")))?;
    url.query_pairs_mut()
        .append_pair("client_id", &app.text("client_id").unwrap_or_default())
        .append_pair("scope", &scopes.join(","))
        .append_pair("redirect_uri", &app.redirect_url)
        .append_pair("state", consent.state)
        // Empty: an offline token, the one a background sync needs.
        .append_pair("grant_options[]", "");
    Ok(url)
}

pub fn check_callback(callback: &Callback<'_>) -> Result<(), Refusal> {
    let secret = callback.app.text("client_secret").unwrap_or_default();
    let received = callback.required("hmac")?;
    let expected = signing::marketplaces::shopify_oauth(&secret, callback.query);
    // Lowercase hex, as Shopify sends it; anything else cannot match.
    let same = hex::decode(received).is_ok_and(|r| signing::matches(&expected, &r));
    if !same {
        return Err(Refusal::new(
            "bad_signature",
            "the callback's hmac does not match its parameters",
        ));
    }
    let timestamp = callback
        .required("timestamp")?
        .parse::<i64>()
        .ok()
        .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
        .ok_or_else(|| Refusal::new("bad_signature", "the callback's timestamp is not a number"))?;
    if (callback.now - timestamp).abs() > CALLBACK_WINDOW {
        return Err(Refusal::new(
            "stale_callback",
            "the callback is more than 90 seconds old (or from the future)",
        ));
    }
    let shop = callback.required("shop")?;
    let expected_shop = setting(callback.settings, "shop_domain").unwrap_or_default();
    if !valid_shop(shop) || !shop.eq_ignore_ascii_case(expected_shop) {
        return Err(Refusal::new(
            "wrong_account",
            format!("the consent is for {shop:?}, the link for {expected_shop:?}"),
        ));
    }
    callback.required("code").map(|_| ())
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    scope: String,
    expires_in: Option<i64>,
    refresh_token: Option<String>,
    refresh_token_expires_in: Option<i64>,
}

pub async fn exchange(http: &OutboundClient, callback: &Callback<'_>) -> Result<Grant, Refusal> {
    let app = callback.app;
    let client_id = app.text("client_id").unwrap_or_default();
    let client_secret = app.text("client_secret").unwrap_or_default();
    let request = http
        .post(format!(
            "{}/admin/oauth/access_token",
            admin_base(callback.settings)
        ))
        .json(&json!({
            "client_id": client_id,
            "client_secret": client_secret,
            "code": callback.required("code")?,
            "expiring": 1,
        }));
    let answer = token_refresh::send(http, "Shopify", request)
        .await
        .map_err(|e| exchange_failed(Platform::Shopify, e))?;
    let answer: TokenAnswer =
        serde_json::from_value(answer).map_err(|e| unreadable(Platform::Shopify, e))?;
    if answer.access_token.is_empty() {
        return Err(unreadable(Platform::Shopify, "no access token"));
    }
    tracing::debug!(scope = %answer.scope, "shopify granted scopes");
    let mut credentials = Map::new();
    credentials.insert("access_token".into(), text(answer.access_token));
    let mut expiries = crate::connections::keeper::Expiries::new();
    if let Some(refresh) = answer.refresh_token.filter(|t| !t.is_empty()) {
        credentials.insert("refresh_token".into(), text(refresh));
        // The refresh needs the app's credentials; the connection keeps its own copy.
        credentials.insert("client_id".into(), text(client_id));
        credentials.insert("client_secret".into(), text(client_secret.clone()));
        if let Some(seconds) = answer.refresh_token_expires_in.filter(|s| *s > 0) {
            expiries.insert(
                "refresh_token".into(),
                callback.now + Duration::seconds(seconds),
            );
        }
    }
    if let Some(seconds) = answer.expires_in.filter(|s| *s > 0) {
        expiries.insert(
            "access_token".into(),
            callback.now + Duration::seconds(seconds),
        );
    }
    Ok(Grant {
        account: setting(callback.settings, "shop_domain")
            .unwrap_or_default()
            .to_string(),
        settings: Map::new(),
        credentials,
        expiries,
        // Shopify signs webhooks with the app's client secret.
        webhook_secret: Some(client_secret),
    })
}

#[cfg(test)]
mod tests {
    use super::valid_shop;

    #[test]
    fn only_permanent_shop_domains_pass() {
        assert!(valid_shop("acme-us.myshopify.com"));
        assert!(valid_shop("0shop.myshopify.com"));
        for bad in [
            "myshopify.com",
            ".myshopify.com",
            "-acme.myshopify.com",
            "acme.myshopify.com.evil.com",
            "acme.shopify.com",
            "acme.myshopify.io",
            "ACME.myshopify.com",
            "acme_us.myshopify.com",
            "evil.com/acme.myshopify.com",
            "acme.myshopify.com:8443",
        ] {
            assert!(!valid_shop(bad), "{bad}");
        }
    }
}
