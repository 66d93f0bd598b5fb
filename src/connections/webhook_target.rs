//! What verifying one connection's webhooks needs (scheme, secrets, allowlist), loaded from
//! the database and the vault and cached for a few seconds: ingress must not decrypt secrets
//! on every request. Owned by the connections service, whose writes invalidate the entry at
//! once; ingress asks the service for it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use sea_orm::{DatabaseConnection, EntityTrait};

use crate::connectors::{ConnectorRegistry, SignatureEncoding, WebhookScheme, WebhookSpec};
use crate::error::Result;
use crate::ids::{ConnectionId, TenantId};
use crate::netpolicy::cidrs_from_json;
use crate::secret::SecretString;
use crate::store::entities::connection;
use crate::vault::Vault;

const MAX_ENTRIES: usize = 100_000;

/// Everything a scheme needs besides the request: resolved from the manifest and connection.
#[derive(Debug, Clone)]
pub struct SchemeConfig {
    pub scheme: WebhookScheme,
    /// Generic HMAC: the header name, its encoding and an optional prefix like `sha256=`.
    pub signature_header: String,
    pub encoding: SignatureEncoding,
    pub prefix: Option<String>,
    /// Shopee: the callback URL as registered (part of the signed text).
    pub callback_url: String,
    /// TikTok Shop: the app key prefixed to the body.
    pub app_key: String,
    /// Standard Webhooks: tolerance in seconds, both directions.
    pub tolerance_seconds: i64,
}

#[derive(Debug)]
pub struct Target {
    pub tenant_id: TenantId,
    pub connection_id: ConnectionId,
    pub connector: String,
    pub scheme: SchemeConfig,
    pub spec: WebhookSpec,
    /// The current secret, then any rotated-out secret with the instant its grace ends.
    pub secrets: Vec<(SecretString, Option<i64>)>,
    pub allowlist: Vec<IpNet>,
}

impl Target {
    /// The secrets that still verify at `now` (seconds since the epoch).
    pub fn valid_secrets(&self, now: i64) -> Vec<&str> {
        self.secrets
            .iter()
            .filter(|(_, until)| until.is_none_or(|until| now < until))
            .map(|(secret, _)| secret.expose())
            .collect()
    }
}

/// Why a connection cannot take webhooks at all.
#[derive(Debug, Clone)]
pub enum Unavailable {
    NotFound,
    NoWebhooks(String),
}

type Entry = (Instant, Result<Arc<Target>, Unavailable>);

pub struct TargetCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, Entry>>,
}

impl TargetCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub fn invalidate(&self, id: &ConnectionId) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(id.as_str());
        }
    }

    fn cached(&self, id: &ConnectionId) -> Option<Result<Arc<Target>, Unavailable>> {
        let entries = self.entries.lock().ok()?;
        let (at, value) = entries.get(id.as_str())?;
        (at.elapsed() < self.ttl).then(|| value.clone())
    }

    fn put(&self, id: &ConnectionId, value: Result<Arc<Target>, Unavailable>) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
            entries.insert(id.as_str().to_string(), (Instant::now(), value));
        }
    }

    pub async fn get(
        &self,
        db: &DatabaseConnection,
        vault: &Vault,
        registry: &ConnectorRegistry,
        public_url: &str,
        tolerance_seconds: i64,
        id: &ConnectionId,
    ) -> Result<Result<Arc<Target>, Unavailable>> {
        if let Some(hit) = self.cached(id) {
            return Ok(hit);
        }
        let loaded = load(db, vault, registry, public_url, tolerance_seconds, id).await?;
        let value = loaded.map(Arc::new);
        self.put(id, value.clone());
        Ok(value)
    }
}

fn setting<'a>(settings: &'a serde_json::Value, name: &str) -> Option<&'a str> {
    settings
        .get(name)
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
}

async fn load(
    db: &DatabaseConnection,
    vault: &Vault,
    registry: &ConnectorRegistry,
    public_url: &str,
    tolerance_seconds: i64,
    id: &ConnectionId,
) -> Result<Result<Target, Unavailable>> {
    // The public ingress knows only the connection id; the tenant comes from the row.
    let Some(row) = connection::Entity::find_by_id(id.clone()).one(db).await? else {
        return Ok(Err(Unavailable::NotFound));
    };
    let Some(manifest) = registry.get(&row.connector) else {
        return Ok(Err(Unavailable::NoWebhooks(format!(
            "connector {} is not installed",
            row.connector
        ))));
    };
    let Some(spec) = manifest.webhook.clone() else {
        return Ok(Err(Unavailable::NoWebhooks(format!(
            "{} does not send webhooks",
            manifest.display_name
        ))));
    };
    let settings = &row.settings;
    let scheme = spec
        .scheme_setting
        .as_deref()
        .and_then(|name| setting(settings, name))
        .and_then(|value| serde_json::from_value::<WebhookScheme>(value.into()).ok())
        .unwrap_or(spec.scheme);
    let encoding = setting(settings, "webhook_signature_encoding")
        .and_then(|value| serde_json::from_value::<SignatureEncoding>(value.into()).ok())
        .or(spec.signature_encoding)
        .unwrap_or(SignatureEncoding::Hex);
    let config = SchemeConfig {
        scheme,
        signature_header: setting(settings, "webhook_signature_header")
            .or(spec.signature_header.as_deref())
            .unwrap_or("X-Signature-SHA256")
            .to_string(),
        encoding,
        prefix: spec.signature_prefix.clone(),
        callback_url: setting(settings, "push_callback_url")
            .map(str::to_string)
            .unwrap_or_else(|| format!("{public_url}/v1/hooks/{}", row.id)),
        app_key: spec
            .app_key_setting
            .as_deref()
            .and_then(|name| setting(settings, name))
            .unwrap_or_default()
            .to_string(),
        tolerance_seconds,
    };

    let mut secrets = Vec::new();
    if let Some(current) = super::service::current_webhook_secret(db, vault, &row, &spec).await? {
        secrets.push((current, None));
    }
    if let (Some(previous), Some(until)) = (
        &row.previous_webhook_secret_id,
        row.previous_webhook_secret_expires_at,
    ) {
        secrets.push((
            vault.load(db, &row.tenant_id, previous).await?,
            Some(until.timestamp()),
        ));
    }
    Ok(Ok(Target {
        tenant_id: row.tenant_id,
        connection_id: row.id,
        connector: row.connector,
        scheme: config,
        spec,
        secrets,
        allowlist: cidrs_from_json(&row.allowed_cidrs),
    }))
}
