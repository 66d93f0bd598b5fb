//! The connections service: one type, its methods grouped by what they do.

mod allowlist;
mod connectivity;
mod credentials;
mod crud;

use std::sync::Arc;

use sea_orm::{ConnectionTrait, DatabaseConnection};
use serde_json::Value;

use super::client_for::load_credentials;
use super::model::{AuthorizationView, ConnectionView};
use super::webhook_target::{Target, TargetCache, Unavailable};
use crate::connectors::versions::Versions;
use crate::connectors::{ConnectorRegistry, Manifest, WebhookSpec};
use crate::error::{Error, Result};
use crate::ids::{ConnectionId, TenantId};
use crate::netpolicy::OutboundClient;
use crate::netpolicy::cidrs_from_json;
use crate::ratelimit::RateLimiter;
use crate::secret::SecretString;
use crate::secret::mask;
use crate::store::entities::connection;
use crate::vault::Vault;

#[derive(Clone)]
pub struct Connections {
    db: DatabaseConnection,
    vault: Vault,
    registry: Arc<ConnectorRegistry>,
    versions: Versions,
    /// For connectivity checks: the shared buckets and a client with short timeouts.
    limiter: RateLimiter,
    http: OutboundClient,
    /// What webhook ingress verifies against, cached; this service's writes invalidate it.
    webhook_targets: Arc<TargetCache>,
    timestamp_tolerance_seconds: i64,
    default_grace_seconds: i64,
    public_url: String,
    /// Secret grace periods and credential expiry dates are read against it.
    clock: crate::clock::Clock,
}

/// The secret that signs a connection's webhooks: its own `webhook_secret`, or the credential
/// the manifest names (Shopee's partner key, TikTok Shop's app secret).
pub async fn current_webhook_secret<C: ConnectionTrait>(
    db: &C,
    vault: &Vault,
    row: &connection::Model,
    spec: &WebhookSpec,
) -> Result<Option<SecretString>> {
    if let Some(id) = &row.webhook_secret_id {
        return vault.load(db, &row.tenant_id, id).await.map(Some);
    }
    let Some(field) = &spec.secret_credential else {
        return Ok(None);
    };
    let credentials = load_credentials(db, vault, row).await?;
    Ok(credentials
        .get(field)
        .and_then(Value::as_str)
        .map(SecretString::new))
}

impl Connections {
    pub fn new(
        db: DatabaseConnection,
        vault: Vault,
        registry: Arc<ConnectorRegistry>,
        settings: &crate::config::Settings,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            versions: Versions::new(db.clone(), registry.clone()),
            limiter: RateLimiter::new(db.clone()),
            http: OutboundClient::new(
                settings.outbound_policy(),
                std::time::Duration::from_secs(5),
                std::time::Duration::from_secs(15),
            )?,
            db,
            vault,
            registry,
            webhook_targets: Arc::new(TargetCache::new(std::time::Duration::from_secs(
                settings.webhooks.cache_ttl_seconds,
            ))),
            timestamp_tolerance_seconds: settings.webhooks.timestamp_tolerance_seconds,
            default_grace_seconds: settings.webhooks.secret_grace_seconds,
            public_url: settings.effective_public_url(),
            clock: crate::clock::Clock::system(),
        })
    }

    pub fn with_clock(mut self, clock: crate::clock::Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The clock this service reads; webhook ingress judges grace periods by it too.
    pub fn clock(&self) -> &crate::clock::Clock {
        &self.clock
    }

    /// What verifying `id`'s webhooks needs (scheme, secrets, allowlist), from the cache
    /// when fresh. Webhook ingress calls this for every request.
    pub async fn webhook_target(
        &self,
        id: &ConnectionId,
    ) -> Result<std::result::Result<Arc<Target>, Unavailable>> {
        self.webhook_targets
            .get(
                &self.db,
                &self.vault,
                &self.registry,
                &self.public_url,
                self.timestamp_tolerance_seconds,
                id,
            )
            .await
    }

    /// Where the rate-limit buckets live, when not in the database (Redis).
    pub fn with_limiter(mut self, limiter: RateLimiter) -> Self {
        self.limiter = limiter;
        self
    }

    fn manifest(&self, name: &str) -> Result<Arc<Manifest>> {
        self.registry.get(name).ok_or_else(|| {
            Error::invalid(
                "connector",
                format!("unknown connector {name:?}; see GET /v1/connectors"),
            )
        })
    }

    async fn find(
        &self,
        db: &impl ConnectionTrait,
        tenant: &TenantId,
        id: &str,
    ) -> Result<connection::Model> {
        crate::store::find_owned::<connection::Entity>(db, tenant, id).await
    }

    async fn view(&self, row: connection::Model) -> Result<ConnectionView> {
        let credentials = load_credentials(&self.db, &self.vault, &row).await?;
        let masked = credentials
            .iter()
            .map(|(k, v)| {
                let text = v
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string());
                (k.clone(), Value::String(mask(&text)))
            })
            .collect();
        let webhook_secret = match &row.webhook_secret_id {
            Some(id) => Some(mask(
                self.vault
                    .load(&self.db, &row.tenant_id, id)
                    .await?
                    .expose(),
            )),
            None => None,
        };
        let version = match &row.version {
            Some(v) => v.clone(),
            None => self
                .registry
                .get(&row.connector)
                .map(|m| m.version.clone())
                .unwrap_or_default(),
        };
        let now = self.clock.now();
        let credential_expiry = super::keeper::expiries(&row);
        let authorization = row.authorization_status.map(|status| AuthorizationView {
            status,
            authorized_at: row.authorized_at,
            expires_at: credential_expiry
                .get("refresh_token")
                .or_else(|| credential_expiry.get("access_token"))
                .copied(),
            by: row.authorized_by.clone(),
        });
        Ok(ConnectionView {
            webhook_url: format!("{}/v1/hooks/{}", self.public_url, row.id),
            id: row.id.to_string(),
            tenant_id: row.tenant_id.to_string(),
            name: row.name,
            connector: row.connector,
            environment: row.environment,
            settings: row.settings,
            credentials: masked,
            webhook_secret,
            credential_expiry,
            credential_refresh_failures: row.credential_refresh_failures,
            authorization,
            previous_webhook_secret_valid_until: row
                .previous_webhook_secret_expires_at
                .filter(|until| *until > now),
            allowed_cidrs: cidrs_from_json(&row.allowed_cidrs)
                .iter()
                .map(ToString::to_string)
                .collect(),
            timezone: row.timezone,
            version,
            pinned_by: row.pinned_by.unwrap_or_else(|| "default".into()),
            rejected_webhooks: row.rejected_webhooks,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}
