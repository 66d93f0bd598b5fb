use serde::{Deserialize, Serialize};

use crate::error::FieldError;

#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Stable identifier, e.g. `shopify`.
    pub name: String,
    pub display_name: String,
    pub kind: ConnectorKind,
    /// Semantic version of this manifest.
    pub version: String,
    /// The platform's official API documentation.
    pub docs_url: String,
    #[serde(default)]
    pub settings: Vec<FieldSpec>,
    #[serde(default)]
    pub credentials: Vec<FieldSpec>,
    pub webhook: Option<WebhookSpec>,
    /// Base URL per environment (`production`, `sandbox`); `{setting}` placeholders are
    /// filled from the connection's settings. A `base_url` setting overrides them.
    #[serde(default)]
    pub environments: std::collections::BTreeMap<String, String>,
    pub auth: Option<super::spec::AuthSpec>,
    #[serde(default)]
    pub rate_limits: Vec<super::spec::RateLimitSpec>,
    /// Most requests in flight per connection, across every worker and process; a
    /// `max_concurrent_requests` setting overrides it. Without either, no cap.
    pub concurrency: Option<u32>,
    #[serde(default)]
    pub operations: std::collections::BTreeMap<String, super::spec::OperationSpec>,
    #[serde(default)]
    pub mappings: super::spec::Mappings,
    /// How unified records are written here, by kind (`stock`, `shipment`).
    #[serde(default)]
    pub writes: std::collections::BTreeMap<String, super::spec::WriteSpec>,
    /// Connectivity checks beyond the network: a read probe, webhook subscriptions.
    #[serde(default)]
    pub checks: super::spec::ChecksSpec,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ConnectorKind {
    Marketplace,
    Erp,
}

#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    pub name: String,
    #[serde(default)]
    pub required: bool,
    #[serde(default, rename = "type")]
    pub field_type: FieldType,
    pub description: String,
    /// Allowed values, for `enum` fields.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    /// A suffix the value must end with (e.g. `.myshopify.com`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub must_end_with: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub example: Option<String>,
    /// The value used when the connection leaves the field out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    #[default]
    String,
    /// An http(s) URL; it passes the outbound guard.
    Url,
    /// A DNS host name, nothing else (no port, path or address literal): for settings that
    /// are filled into a base URL's host, such as a shop domain.
    Host,
    Enum,
    Integer,
    Boolean,
    StringList,
}

#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookSpec {
    pub scheme: WebhookScheme,
    /// A settings field that lets a connection choose another scheme (generic ERPs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme_setting: Option<String>,
    /// Header holding the signature (for the generic HMAC scheme; a connection setting
    /// `webhook_signature_header` overrides it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature_header: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature_encoding: Option<SignatureEncoding>,
    /// Text before the signature value, e.g. `sha256=`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature_prefix: Option<String>,
    /// Where the platform's event id is: a header, or a JSON pointer into the body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id_header: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id_pointer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_header: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_pointer: Option<String>,
    /// The credential that signs webhooks when the connection has no separate
    /// `webhook_secret` (Shopee's partner key, TikTok Shop's app secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_credential: Option<String>,
    /// The setting holding the app key that TikTok Shop prefixes to the signed body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_key_setting: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WebhookScheme {
    /// `X-Shopify-Hmac-Sha256` = base64(HMAC-SHA256(secret, body)).
    ShopifyHmac,
    /// `Authorization` = hex(HMAC-SHA256(partner_key, callback_url + "|" + body)).
    ShopeePush,
    /// `Authorization` = hex(HMAC-SHA256(app_secret, app_key + body)).
    TiktokShop,
    /// `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64>`.
    StandardWebhooks,
    /// A configurable header with HMAC-SHA256(secret, body), hex or base64.
    HmacSha256Header,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SignatureEncoding {
    Hex,
    Base64,
}

impl Manifest {
    /// Parses and checks a manifest, reporting every problem with its field path.
    pub fn parse(text: &str) -> Result<Self, Vec<FieldError>> {
        let manifest: Manifest = toml::from_str(text).map_err(|e| {
            // toml's message spans lines (position, the line, a caret, the reason).
            let message = e.to_string();
            let reason = message
                .lines()
                .rev()
                .find(|line| !line.trim().is_empty() && !line.trim_start().starts_with(['|', '^']))
                .unwrap_or("invalid TOML");
            let position = message.lines().next().unwrap_or_default();
            vec![FieldError::new(
                "manifest",
                format!("{}: {}", position.trim_end_matches(':'), reason.trim()),
            )]
        })?;
        let problems = manifest.lint();
        if problems.is_empty() {
            Ok(manifest)
        } else {
            Err(problems)
        }
    }

    pub fn lint(&self) -> Vec<FieldError> {
        let mut problems = Vec::new();
        let valid_name = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        };
        if !valid_name(&self.name) {
            problems.push(FieldError::new(
                "name",
                "lowercase letters, digits and dashes, 1 to 64",
            ));
        }
        if semver::Version::parse(&self.version).is_err() {
            problems.push(FieldError::new(
                "version",
                "must be a semantic version like 1.2.0",
            ));
        }
        for (group, fields) in [
            ("settings", &self.settings),
            ("credentials", &self.credentials),
        ] {
            let mut seen = std::collections::BTreeSet::new();
            for (i, field) in fields.iter().enumerate() {
                if !valid_name(&field.name.replace('_', "-")) {
                    problems.push(FieldError::new(
                        format!("{group}[{i}].name"),
                        "lowercase snake_case",
                    ));
                }
                if !seen.insert(field.name.as_str()) {
                    problems.push(FieldError::new(
                        format!("{group}[{i}].name"),
                        "duplicate field",
                    ));
                }
                if field.field_type == FieldType::Enum && field.values.is_empty() {
                    problems.push(FieldError::new(
                        format!("{group}[{i}].values"),
                        "an enum needs values",
                    ));
                }
            }
        }
        problems.extend(super::lint::lint_operations(self));
        if let Some(webhook) = &self.webhook {
            if webhook.scheme == WebhookScheme::HmacSha256Header
                && webhook.signature_header.is_none()
            {
                problems.push(FieldError::new(
                    "webhook.signature_header",
                    "required by hmac_sha256_header",
                ));
            }
            if webhook.scheme == WebhookScheme::TiktokShop && webhook.app_key_setting.is_none() {
                problems.push(FieldError::new(
                    "webhook.app_key_setting",
                    "required by tiktok_shop",
                ));
            }
            for (field, pointer) in [
                ("webhook.event_id_pointer", &webhook.event_id_pointer),
                ("webhook.topic_pointer", &webhook.topic_pointer),
            ] {
                if pointer.as_deref().is_some_and(|p| !p.starts_with('/')) {
                    problems.push(FieldError::new(field, "a JSON pointer starts with /"));
                }
            }
            if let Some(credential) = &webhook.secret_credential
                && !self.credentials.iter().any(|f| &f.name == credential)
            {
                problems.push(FieldError::new(
                    "webhook.secret_credential",
                    "names no credential field",
                ));
            }
            for (field, setting) in [
                ("webhook.app_key_setting", &webhook.app_key_setting),
                ("webhook.scheme_setting", &webhook.scheme_setting),
            ] {
                if let Some(setting) = setting
                    && !self.settings.iter().any(|f| &f.name == setting)
                {
                    problems.push(FieldError::new(field, "names no settings field"));
                }
            }
        }
        problems
    }
}
