//! Each platform's authorisation flow, as its docs describe it: the consent URL the seller is
//! sent to, what a callback must carry (checked before any network call), and the trade of
//! the code for tokens. Sources are cited per platform; `../shared/platforms-connect.md`
//! collects them.

mod amazon;
mod shopee;
mod shopify;
mod tiktok;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::apps::ResolvedApp;
use super::refusal::Refusal;
use crate::connections::keeper::Expiries;
use crate::error::{Error, Result};
use crate::netpolicy::OutboundClient;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    Shopify,
    Amazon,
    Shopee,
    Tiktok,
}

#[derive(Debug, Clone, Copy)]
pub enum FieldKind {
    Text,
    Integer,
    Flag,
    List,
    Url,
}

/// A field of a platform app.
pub struct AppField {
    pub name: &'static str,
    pub kind: FieldKind,
    pub secret: bool,
    pub required: bool,
    pub description: &'static str,
}

const fn field(
    name: &'static str,
    kind: FieldKind,
    secret: bool,
    required: bool,
    description: &'static str,
) -> AppField {
    AppField {
        name,
        kind,
        secret,
        required,
        description,
    }
}

const REDIRECT: AppField = field(
    "redirect_url",
    FieldKind::Url,
    false,
    false,
    "the redirect URL registered with the platform (default: this service's callback)",
);

const SHOPIFY_APP: &[AppField] = &[
    field(
        "client_id",
        FieldKind::Text,
        false,
        true,
        "the app's client id (API key)",
    ),
    field(
        "client_secret",
        FieldKind::Text,
        true,
        true,
        "the app's client secret",
    ),
    field(
        "scopes",
        FieldKind::List,
        false,
        true,
        "access scopes, e.g. [\"read_orders\", \"write_inventory\"]",
    ),
    REDIRECT,
];
const AMAZON_APP: &[AppField] = &[
    field(
        "application_id",
        FieldKind::Text,
        false,
        true,
        "the app's id in Seller Central (amzn1.sellerapps.app...)",
    ),
    field(
        "lwa_client_id",
        FieldKind::Text,
        false,
        true,
        "Login with Amazon client id",
    ),
    field(
        "lwa_client_secret",
        FieldKind::Text,
        true,
        true,
        "Login with Amazon client secret",
    ),
    field(
        "draft",
        FieldKind::Flag,
        false,
        false,
        "the app is still in Draft: consent URLs carry version=beta",
    ),
    REDIRECT,
];
const SHOPEE_APP: &[AppField] = &[
    field(
        "partner_id",
        FieldKind::Integer,
        false,
        true,
        "the partner id",
    ),
    field(
        "partner_key",
        FieldKind::Text,
        true,
        true,
        "the partner key",
    ),
    REDIRECT,
];
const TIKTOK_APP: &[AppField] = &[
    field("app_key", FieldKind::Text, false, true, "the app key"),
    field("app_secret", FieldKind::Text, true, true, "the app secret"),
    field(
        "service_id",
        FieldKind::Text,
        false,
        true,
        "the service id of the app's listing in the Partner Center",
    ),
    field(
        "authorize_url",
        FieldKind::Url,
        false,
        false,
        "the authorisation page (default https://services.tiktokshop.com/open/authorize; US sellers: https://services.us.tiktokshop.com/open/authorize)",
    ),
    REDIRECT,
];

/// What the seller's consent gave: one connection's worth (TikTok Shop may give several
/// shops), with the settings the platform told us.
/// Held (vaulted, as JSON) while a seller picks one of several shops.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Grant {
    /// The account the grant is for, as the seller knows it (a shop domain, a shop name).
    pub account: String,
    pub settings: Map<String, Value>,
    pub credentials: Map<String, Value>,
    pub expiries: Expiries,
    /// The secret that signs the platform's webhooks, where the connection keeps its own.
    pub webhook_secret: Option<String>,
}

/// What a consent redirect needs.
pub struct Consent<'a> {
    pub app: &'a ResolvedApp,
    /// The session's settings (shop domain, region, base_url...).
    pub settings: &'a Map<String, Value>,
    pub environment: &'a str,
    pub state: &'a str,
    /// The platform's clock, for signed links (Shopee): the wall clock, not the injected one.
    pub platform_time: DateTime<Utc>,
}

/// What a callback brought, with what the session knows.
pub struct Callback<'a> {
    pub app: &'a ResolvedApp,
    pub settings: &'a Map<String, Value>,
    pub environment: &'a str,
    pub query: &'a [(String, String)],
    /// The injected clock: the callback's freshness (Shopify's ±90 s) is judged by it.
    pub now: DateTime<Utc>,
}

impl Callback<'_> {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    fn required(&self, name: &str) -> std::result::Result<&str, Refusal> {
        self.param(name).ok_or_else(|| {
            Refusal::new(
                "missing_parameter",
                format!("the platform's answer has no {name}"),
            )
        })
    }
}

pub fn setting<'a>(settings: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    settings
        .get(name)
        .and_then(Value::as_str)
        .map(|s| s.trim_end_matches('/'))
        .filter(|s| !s.is_empty())
}

impl Platform {
    pub const ALL: [Self; 4] = [Self::Shopify, Self::Amazon, Self::Shopee, Self::Tiktok];

    pub fn from_connector(connector: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|p| p.connector() == connector)
            .ok_or_else(|| {
                Error::invalid(
                    "connector",
                    format!(
                        "{connector:?} has no authorisation flow; connect links serve shopify, amazon-sp-api, shopee and tiktok-shop (other connectors take pasted credentials)"
                    ),
                )
            })
    }

    pub fn connector(self) -> &'static str {
        match self {
            Self::Shopify => "shopify",
            Self::Amazon => "amazon-sp-api",
            Self::Shopee => "shopee",
            Self::Tiktok => "tiktok-shop",
        }
    }

    pub fn display_name(self) -> &'static str {
        match self {
            Self::Shopify => "Shopify",
            Self::Amazon => "Amazon Seller Central",
            Self::Shopee => "Shopee",
            Self::Tiktok => "TikTok Shop",
        }
    }

    pub fn app_fields(self) -> &'static [AppField] {
        match self {
            Self::Shopify => SHOPIFY_APP,
            Self::Amazon => AMAZON_APP,
            Self::Shopee => SHOPEE_APP,
            Self::Tiktok => TIKTOK_APP,
        }
    }

    /// Settings a session must carry before the seller goes to the platform.
    pub fn settings_before_consent(self) -> &'static [&'static str] {
        match self {
            Self::Shopify => &["shop_domain"],
            Self::Amazon => &["region", "marketplace_ids"],
            Self::Shopee | Self::Tiktok => &[],
        }
    }

    /// Settings the platform's answer fills in (a session may not set them).
    pub fn settings_from_consent(self) -> &'static [&'static str] {
        match self {
            Self::Shopify => &[],
            Self::Amazon => &["seller_id"],
            Self::Shopee => &["partner_id", "shop_id"],
            Self::Tiktok => &["app_key", "shop_cipher"],
        }
    }

    /// The settings that name the account, compared when a connection is authorised again,
    /// so a consent for another shop never lands on this connection.
    pub fn account_settings(self) -> &'static [&'static str] {
        match self {
            Self::Shopify => &["shop_domain"],
            Self::Amazon => &["seller_id"],
            Self::Shopee => &["shop_id"],
            Self::Tiktok => &["shop_cipher"],
        }
    }

    /// A check of session settings the manifest cannot express (Shopify's strict shop
    /// domain), as a message for the field.
    pub fn check_settings(
        self,
        settings: &Map<String, Value>,
    ) -> std::result::Result<(), (String, String)> {
        match self {
            Self::Shopify => {
                let shop = setting(settings, "shop_domain").unwrap_or_default();
                if shopify::valid_shop(shop) {
                    Ok(())
                } else {
                    Err((
                        "settings.shop_domain".into(),
                        "must be the store's permanent domain, <name>.myshopify.com".into(),
                    ))
                }
            }
            Self::Amazon => amazon::seller_central(settings)
                .map(|_| ())
                .map_err(|m| ("settings.marketplace_ids".into(), m)),
            Self::Shopee | Self::Tiktok => Ok(()),
        }
    }

    /// Where the seller is sent to give consent.
    pub fn consent_url(self, consent: &Consent<'_>) -> std::result::Result<url::Url, Refusal> {
        match self {
            Self::Shopify => shopify::consent_url(consent),
            Self::Amazon => amazon::consent_url(consent),
            Self::Shopee => shopee::consent_url(consent),
            Self::Tiktok => tiktok::consent_url(consent),
        }
    }

    /// Everything about a callback that needs no network: a refusal here changes nothing.
    pub fn check_callback(self, callback: &Callback<'_>) -> std::result::Result<(), Refusal> {
        if let Some(error) = callback.param("error") {
            return Err(Refusal::new(
                "access_denied",
                format!("the seller did not give consent ({error})"),
            ));
        }
        match self {
            Self::Shopify => shopify::check_callback(callback),
            Self::Amazon => amazon::check_callback(callback),
            Self::Shopee => shopee::check_callback(callback),
            Self::Tiktok => tiktok::check_callback(callback),
        }
    }

    /// Trades the callback's code for tokens.
    pub async fn exchange(
        self,
        http: &OutboundClient,
        callback: &Callback<'_>,
    ) -> std::result::Result<Vec<Grant>, Refusal> {
        match self {
            Self::Shopify => shopify::exchange(http, callback).await.map(|g| vec![g]),
            Self::Amazon => amazon::exchange(http, callback).await.map(|g| vec![g]),
            Self::Shopee => shopee::exchange(http, callback).await.map(|g| vec![g]),
            Self::Tiktok => tiktok::exchange(http, callback).await,
        }
    }
}

/// A trade's failure as the seller's page tells it: the platform refused, or could not be
/// reached (worth another try).
fn exchange_failed(platform: Platform, error: crate::connectors::client::CallError) -> Refusal {
    let code = if error.class.is_transient()
        || error.class == crate::connectors::client::ErrorClass::Blocked
    {
        "platform_unavailable"
    } else {
        "platform_refused"
    };
    Refusal::new(
        code,
        format!("{}: {}", platform.display_name(), error.message),
    )
}

fn unreadable(platform: Platform, what: impl std::fmt::Display) -> Refusal {
    Refusal::new(
        "platform_refused",
        format!("{}'s token answer: {what}", platform.display_name()),
    )
}

fn text(value: impl Into<String>) -> Value {
    Value::String(value.into())
}
