//! The declarative part of a manifest that the sync engine executes: auth scheme, rate-limit
//! groups, operations (method, path, query, pagination, where the records are) and the
//! mapping of platform records onto unified records.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::manifest::Manifest;
use crate::error::FieldError;

/// How requests are authenticated: a closed set, each implemented in Rust.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(tag = "scheme", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthSpec {
    /// `X-Shopify-Access-Token: <credential>`.
    ShopifyAccessToken { credential: String },
    /// A header carrying a credential as is.
    ApiKeyHeader { header: String, credential: String },
    /// `Authorization: Bearer <credential>`.
    Bearer { credential: String },
    /// Shopee v2: partner_id, timestamp, access_token, shop_id and sign in the query.
    ShopeeV2 {
        partner_id_setting: String,
        shop_id_setting: String,
        partner_key: String,
        access_token: String,
    },
    /// TikTok Shop 202309: app_key, timestamp and sign in the query, the token in
    /// `x-tts-access-token`.
    TiktokShop {
        app_key_setting: String,
        app_secret: String,
        access_token: String,
    },
    /// Amazon SP-API: a Login with Amazon access token from the refresh token, cached and
    /// refreshed before it expires, in `x-amz-access-token`.
    AmazonLwa {
        client_id: String,
        client_secret: String,
        refresh_token: String,
        /// A setting that overrides the token endpoint (the simulator).
        endpoint_setting: Option<String>,
    },
}

impl AuthSpec {
    pub fn credentials(&self) -> Vec<&str> {
        match self {
            Self::ShopifyAccessToken { credential } | Self::Bearer { credential } => {
                vec![credential]
            }
            Self::ApiKeyHeader { credential, .. } => vec![credential],
            Self::ShopeeV2 {
                partner_key,
                access_token,
                ..
            } => vec![partner_key, access_token],
            Self::TiktokShop {
                app_secret,
                access_token,
                ..
            } => vec![app_secret, access_token],
            Self::AmazonLwa {
                client_id,
                client_secret,
                refresh_token,
                ..
            } => vec![client_id, client_secret, refresh_token],
        }
    }

    /// The settings the scheme reads.
    pub fn settings(&self) -> Vec<&str> {
        match self {
            Self::ShopeeV2 {
                partner_id_setting,
                shop_id_setting,
                ..
            } => vec![partner_id_setting, shop_id_setting],
            Self::TiktokShop {
                app_key_setting, ..
            } => vec![app_key_setting],
            Self::AmazonLwa {
                endpoint_setting: Some(setting),
                ..
            } => vec![setting],
            _ => vec![],
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSpec {
    /// Operations name this group.
    pub group: String,
    /// Tokens per second.
    pub rate: f64,
    pub burst: f64,
    /// Connections to the same account share the bucket: the setting naming the account.
    pub account_setting: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    Get,
    Post,
    Put,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OperationSpec {
    pub method: Method,
    /// Path after the base URL; `{setting}` placeholders come from settings.
    pub path: String,
    /// Rate-limit group this operation spends.
    pub group: String,
    /// Query parameters; `{cursor}` is the incremental cursor, `{setting}` a setting.
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// JSON pointer to the array of records in the response.
    pub records: Option<String>,
    pub pagination: Option<Pagination>,
    /// Header carrying an idempotency key on writes, where the platform takes one.
    pub idempotency_header: Option<String>,
    /// A write that takes many records per call.
    pub batch: Option<BatchSpec>,
}

/// How a batch write is shaped: `{"<field>": [record, ...]}`, each record carrying its own
/// idempotency key in `item_key` where the platform takes one.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchSpec {
    /// Most records per call (1 to 10,000).
    pub max: usize,
    pub field: String,
    pub item_key: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Pagination {
    /// RFC 8288 `Link: <url>; rel="next"` (Shopify); the next URL is followed as given.
    LinkHeader,
    /// A token in the body sent back as a parameter (Amazon `NextToken`, ERP cursors).
    Token { response: String, param: String },
    /// Page numbers from `start`, until a page comes back short or empty.
    PageNumber {
        param: String,
        start: u32,
        size: u32,
    },
}

/// Where each unified field is in a platform record (JSON pointers).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Mappings {
    pub order: Option<OrderMapping>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderMapping {
    pub id: String,
    pub number: String,
    pub status: String,
    pub currency: String,
    pub total: String,
    pub created_at: String,
    pub updated_at: String,
    pub lines: String,
    pub line_sku: String,
    pub line_quantity: String,
    pub line_price: String,
}

/// Checks operations against the rest of the manifest, with field paths.
pub fn lint_operations(manifest: &Manifest) -> Vec<FieldError> {
    let mut problems = Vec::new();
    let groups: Vec<&str> = manifest
        .rate_limits
        .iter()
        .map(|r| r.group.as_str())
        .collect();
    for (i, limit) in manifest.rate_limits.iter().enumerate() {
        if !(limit.rate > 0.0
            && limit.rate.is_finite()
            && limit.burst >= 1.0
            && limit.burst.is_finite())
        {
            problems.push(FieldError::new(
                format!("rate_limits[{i}]"),
                "rate must be > 0 and burst >= 1",
            ));
        }
    }
    for (name, op) in &manifest.operations {
        if !groups.contains(&op.group.as_str()) {
            problems.push(FieldError::new(
                format!("operations.{name}.group"),
                "names no rate_limits group",
            ));
        }
        if !op.path.starts_with('/') {
            problems.push(FieldError::new(
                format!("operations.{name}.path"),
                "must start with /",
            ));
        }
        if op
            .batch
            .as_ref()
            .is_some_and(|b| !(1..=10_000).contains(&b.max))
        {
            problems.push(FieldError::new(
                format!("operations.{name}.batch.max"),
                "must be between 1 and 10000",
            ));
        }
        if op
            .records
            .as_deref()
            .is_some_and(|p| !p.is_empty() && !p.starts_with('/'))
        {
            problems.push(FieldError::new(
                format!("operations.{name}.records"),
                "a JSON pointer starts with /",
            ));
        }
    }
    if let Some(auth) = &manifest.auth {
        for credential in auth.credentials() {
            if !manifest.credentials.iter().any(|f| f.name == credential) {
                problems.push(FieldError::new(
                    "auth.credential",
                    format!("{credential} is not a credentials field"),
                ));
            }
        }
        for setting in auth.settings() {
            if !manifest.settings.iter().any(|f| f.name == setting) {
                problems.push(FieldError::new(
                    "auth.setting",
                    format!("{setting} is not a settings field"),
                ));
            }
        }
    }
    if !manifest.operations.is_empty() && manifest.environments.is_empty() {
        problems.push(FieldError::new(
            "environments",
            "operations need a base URL per environment",
        ));
    }
    problems
}
