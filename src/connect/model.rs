//! What the connect API takes and shows.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::connections::EnvironmentKind;
use crate::store::entities::connect_session::SessionStatus;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewConnectSession {
    /// shopify, amazon-sp-api, shopee or tiktok-shop.
    pub connector: String,
    pub environment: EnvironmentKind,
    /// The connector's own settings known before consent: Shopify's `shop_domain`, Amazon's
    /// `region` and `marketplace_ids`, and `base_url` where the manifest has it. What the
    /// platform tells (Shopee's shop id, TikTok's shop cipher...) is filled in from its
    /// answer. Left out when `connection_id` is given: that connection's settings are used.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub settings: Map<String, Value>,
    /// The new connection's name (default: the platform and the account).
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000]*[^\u0000\u0009-\u000D \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\u0000]*$"
    )]
    pub name: Option<String>,
    /// Authorise this existing connection again instead of creating one.
    pub connection_id: Option<String>,
    /// Where the seller lands afterwards (http or https), with `status`, `connection_id`
    /// and, on failure, `error`. Fixed here; the callback never reads a destination.
    pub return_url: String,
    /// How long the link stays valid (60 s to 30 days; default `connect.link_ttl_seconds`).
    pub expires_in_seconds: Option<i64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedConnectSession {
    pub id: String,
    /// The link to send the seller: a plain URL, usable from any browser.
    pub url: String,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConnectSessionView {
    pub id: String,
    pub connector: String,
    pub environment: String,
    pub status: SessionStatus,
    /// Why it failed: a stable code (`access_denied`, `platform_refused`, ...).
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// The connection it authorises again, if any.
    pub connection_id: Option<String>,
    /// The connections it created or authorised again.
    pub connection_ids: Vec<String>,
    pub return_url: String,
    pub created_by: String,
    pub expires_at: chrono::DateTime<chrono::Utc>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
}
