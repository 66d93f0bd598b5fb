use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EnvironmentKind {
    Sandbox,
    Production,
}

impl EnvironmentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sandbox => "sandbox",
            Self::Production => "production",
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewConnection {
    /// Unique within the tenant, e.g. "US Shopify store".
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000]*[^\u0000\u0009-\u000D \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\u0000]*$"
    )]
    pub name: String,
    /// A connector name from `GET /v1/connectors`.
    pub connector: String,
    pub environment: EnvironmentKind,
    /// Non-secret settings, as the connector declares them.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub settings: Map<String, Value>,
    /// Secret credentials, as the connector declares them. Stored encrypted; never returned.
    #[schema(value_type = Object)]
    pub credentials: Map<String, Value>,
    /// When credentials expire, where known (RFC 3339 per credential name). Ops hear
    /// `credential_expiring` ahead of each; tokens the connector refreshes itself
    /// (Shopee, TikTok Shop) are refreshed before theirs.
    #[serde(default)]
    pub credential_expires_at: BTreeMap<String, chrono::DateTime<chrono::Utc>>,
    /// Secret that signs this connection's webhooks (Shopify: the app's client secret).
    pub webhook_secret: Option<String>,
    /// IANA time zone; defaults to the tenant's.
    pub timezone: Option<String>,
    /// Connector version to pin (built in or published); defaults to the built-in one.
    pub version: Option<String>,
    /// Who may send this connection's webhooks (CIDRs). Empty: anyone with a valid signature.
    #[serde(default)]
    pub allowed_cidrs: Vec<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectionPatch {
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000]*[^\u0000\u0009-\u000D \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\u0000]*$"
    )]
    pub name: Option<String>,
    pub environment: Option<EnvironmentKind>,
    /// Replaces the settings as a whole.
    #[schema(value_type = Option<Object>)]
    pub settings: Option<Map<String, Value>>,
    pub timezone: Option<String>,
    pub version: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialsRotation {
    /// The new credentials, as a whole.
    #[schema(value_type = Option<Object>)]
    pub credentials: Option<Map<String, Value>>,
    /// When the new credentials expire, where known; replaces the old dates.
    pub credential_expires_at: Option<BTreeMap<String, chrono::DateTime<chrono::Utc>>>,
    /// The new webhook secret.
    pub webhook_secret: Option<String>,
    /// How long the previous webhook-signing secret keeps verifying (0 to 604800 seconds;
    /// default `webhooks.secret_grace_seconds`, 24 hours), so the platform's retries of
    /// events signed before the rotation are not lost.
    pub grace_seconds: Option<i64>,
}

/// Who sent the connect link a seller authorised a connection through, and which settings
/// name the account (a new consent must be for the same one).
pub struct Authorization {
    pub by: String,
    pub account_settings: &'static [&'static str],
}

/// What a seller's new consent gives a connection: settings the platform told, and the new
/// credentials with their expiry dates.
pub struct Reauthorization {
    pub settings: Map<String, Value>,
    pub credentials: Map<String, Value>,
    pub expiries: BTreeMap<String, chrono::DateTime<chrono::Utc>>,
    pub webhook_secret: Option<String>,
}

/// Where a connection's authorisation stands, for connections a seller authorised through a
/// connect link (pasted credentials have none).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuthorizationView {
    pub status: crate::store::entities::connection::AuthorizationStatus,
    pub authorized_at: Option<chrono::DateTime<chrono::Utc>>,
    /// When the seller must authorise again at the latest: the refresh token's expiry, else
    /// the access token's, where the platform stated one.
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Who sent the link.
    pub by: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConnectionView {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub connector: String,
    pub environment: String,
    #[schema(value_type = Object)]
    pub settings: Value,
    /// Each credential masked: `****` and at most the last 4 characters.
    #[schema(value_type = Object)]
    pub credentials: Map<String, Value>,
    pub webhook_secret: Option<String>,
    /// When each credential expires, where known: given with the credentials, or learnt
    /// from the platform at each token refresh.
    pub credential_expiry: BTreeMap<String, chrono::DateTime<chrono::Utc>>,
    /// Token refreshes that failed in a row (0 when the last one worked).
    pub credential_refresh_failures: i64,
    /// Set when a seller authorised the connection through a connect link.
    pub authorization: Option<AuthorizationView>,
    /// Until when the previous webhook secret still verifies, after a rotation.
    pub previous_webhook_secret_valid_until: Option<chrono::DateTime<chrono::Utc>>,
    /// The URL to register with the platform for this connection's webhooks.
    pub webhook_url: String,
    pub allowed_cidrs: Vec<String>,
    pub timezone: Option<String>,
    /// The connector version the connection runs.
    pub version: String,
    /// Why: "default" (the built-in version), "hand" (pinned through the API) or
    /// "deployment:<id>".
    pub pinned_by: String,
    /// Webhooks refused (bad signature or foreign source) since the connection was created.
    pub rejected_webhooks: i64,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AllowlistView {
    /// IPv4 and IPv6 CIDRs. Empty: webhooks are accepted from any address.
    pub cidrs: Vec<String>,
}
