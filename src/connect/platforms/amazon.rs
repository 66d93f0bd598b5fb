//! Amazon SP-API website authorization.
//! - Consent: `{Seller Central URL}/apps/authorize/consent?application_id&state&redirect_uri`,
//!   plus `version=beta` while the app is a Draft (error MD1000 otherwise). Authorizations
//!   are regional: the Seller Central of the connection's first marketplace.
//!   https://developer-docs.amazon.com/sp-api/docs/website-authorization-workflow
//!   (Seller Central URLs: the developer guide's table, amzn/selling-partner-api-docs
//!   `guides/en-US/developer-guide/SellingPartnerApiDeveloperGuide.md`; marketplace ids:
//!   https://developer-docs.amazon.com/sp-api/docs/marketplace-ids)
//! - Callback: `state`, `selling_partner_id`, `spapi_oauth_code` (valid 5 minutes).
//! - Trade: `POST https://api.amazon.com/auth/o2/token`, form `grant_type=authorization_code`,
//!   code, redirect_uri, client_id, client_secret → access token (1 h) and refresh token.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{Callback, Consent, Grant, Platform, exchange_failed, setting, text, unreadable};
use crate::connect::refusal::Refusal;
use crate::connectors::{lwa, token_refresh};
use crate::netpolicy::OutboundClient;

/// Marketplace id → Seller Central host, for the marketplaces the guide's table lists.
const SELLER_CENTRAL: &[(&str, &str)] = &[
    ("A2EUQ1WTGCTBG2", "sellercentral.amazon.ca"),
    ("ATVPDKIKX0DER", "sellercentral.amazon.com"),
    ("A1AM78C64UM0Y8", "sellercentral.amazon.com.mx"),
    ("A2Q3Y263D00KWC", "sellercentral.amazon.com.br"),
    ("A1RKKUPIHCS9HS", "sellercentral-europe.amazon.com"),
    ("A1F83G8C2ARO7P", "sellercentral-europe.amazon.com"),
    ("A13V1IB3VIYZZH", "sellercentral-europe.amazon.com"),
    ("A1PA6795UKMFR9", "sellercentral-europe.amazon.com"),
    ("APJ6JRA9NG5V4", "sellercentral-europe.amazon.com"),
    ("A1805IZSGTT6HS", "sellercentral.amazon.nl"),
    ("A2NODRKZP88ZB9", "sellercentral.amazon.se"),
    ("A1C3SOZRARQ6R3", "sellercentral.amazon.pl"),
    ("A33AVAJ2PDY3EV", "sellercentral.amazon.com.tr"),
    ("A2VIGQ35RCS4UG", "sellercentral.amazon.ae"),
    ("A21TJRUUN4KGV", "sellercentral.amazon.in"),
    ("A19VAU5U5O7RUS", "sellercentral.amazon.sg"),
    ("A39IBJ37TRP1C6", "sellercentral.amazon.com.au"),
    ("A1VC38T7YXB528", "sellercentral.amazon.co.jp"),
];

/// Where the seller consents: the connection's base_url (the simulator), else the Seller
/// Central of its first marketplace.
pub fn seller_central(settings: &Map<String, Value>) -> Result<String, String> {
    if let Some(base) = setting(settings, "base_url") {
        return Ok(base.to_string());
    }
    let first = settings
        .get("marketplace_ids")
        .and_then(Value::as_array)
        .and_then(|ids| ids.first())
        .and_then(Value::as_str)
        .unwrap_or_default();
    SELLER_CENTRAL
        .iter()
        .find(|(id, _)| *id == first)
        .map(|(_, host)| format!("https://{host}"))
        .ok_or_else(|| {
            format!(
                "the first marketplace id {first:?} has no Seller Central consent page synchub knows (see https://developer-docs.amazon.com/sp-api/docs/marketplace-ids)"
            )
        })
}

pub fn consent_url(consent: &Consent<'_>) -> Result<url::Url, Refusal> {
    let base = seller_central(consent.settings).map_err(|m| Refusal::new("misconfigured", m))?;
    let mut url = url::Url::parse(&format!("{base}/apps/authorize/consent"))
        .map_err(|e| Refusal::new("misconfigured", format!("Seller Central URL: {e}")))?;
    url.query_pairs_mut()
        .append_pair(
            "application_id",
            &consent.app.text("application_id").unwrap_or_default(),
        )
        .append_pair("state", consent.state)
        .append_pair("redirect_uri", &consent.app.redirect_url);
    if consent.app.flag("draft") {
        url.query_pairs_mut().append_pair("version", "beta");
    }
    Ok(url)
}

pub fn check_callback(callback: &Callback<'_>) -> Result<(), Refusal> {
    callback.required("spapi_oauth_code")?;
    let seller = callback.required("selling_partner_id")?;
    if seller.len() > 64 || !seller.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(Refusal::new(
            "missing_parameter",
            "selling_partner_id is not a merchant token",
        ));
    }
    Ok(())
}

#[derive(Deserialize)]
struct TokenAnswer {
    refresh_token: String,
}

pub async fn exchange(http: &OutboundClient, callback: &Callback<'_>) -> Result<Grant, Refusal> {
    let app = callback.app;
    let client_id = app.text("lwa_client_id").unwrap_or_default();
    let client_secret = app.text("lwa_client_secret").unwrap_or_default();
    let endpoint = setting(callback.settings, "lwa_endpoint").unwrap_or(lwa::DEFAULT_ENDPOINT);
    let request = http.post(endpoint).form(&[
        ("grant_type", "authorization_code"),
        ("code", callback.required("spapi_oauth_code")?),
        ("redirect_uri", app.redirect_url.as_str()),
        ("client_id", client_id.as_str()),
        ("client_secret", client_secret.as_str()),
    ]);
    let answer = token_refresh::send(http, "Login with Amazon", request)
        .await
        .map_err(|e| exchange_failed(Platform::Amazon, e))?;
    let answer: TokenAnswer =
        serde_json::from_value(answer).map_err(|e| unreadable(Platform::Amazon, e))?;
    let seller = callback.required("selling_partner_id")?.to_string();
    let mut settings = Map::new();
    settings.insert("seller_id".into(), text(seller.clone()));
    let mut credentials = Map::new();
    credentials.insert("lwa_client_id".into(), text(client_id));
    credentials.insert("lwa_client_secret".into(), text(client_secret));
    credentials.insert("refresh_token".into(), text(answer.refresh_token));
    Ok(Grant {
        account: seller,
        settings,
        credentials,
        // LWA refresh tokens do not expire while the authorisation stands (a year for
        // self-authorised apps is the seller's to renew, not stated in the answer).
        expiries: Default::default(),
        webhook_secret: None,
    })
}
