use std::sync::Arc;

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction,
    EntityTrait, QueryFilter, Set,
};
use serde_json::{Map, Value};

use super::client_for::{ClientDeps, client_for, load_credentials};
use super::fields;
use super::masking::mask;
use super::model::{
    AllowlistView, ConnectionPatch, ConnectionView, CredentialsRotation, NewConnection,
};
use super::webhook_target::{Target, TargetCache, Unavailable};
use crate::audit::{self, Actor, Entry};
use crate::connectors::checks::{self, CheckReport, CheckStatus, ShadowReport};
use crate::connectors::client::ConnectorClient;
use crate::connectors::versions::Versions;
use crate::connectors::{ConnectorRegistry, Manifest, WebhookScheme, WebhookSpec};
use crate::error::{Error, FieldError, Result};
use crate::ids::{ConnectionId, SecretId, TenantId};
use crate::netpolicy::{OutboundClient, OutboundPolicy};
use crate::netpolicy::{cidrs_from_json, cidrs_to_json, parse_cidrs};
use crate::pagination::{Direction, Page, PageRequest, page_query};
use crate::ratelimit::RateLimiter;
use crate::secret::SecretString;
use crate::store::entities::{connection, webhook_event};
use crate::tenancy::ensure_tenant_exists;
use crate::timezone::parse_timezone;
use crate::vault::Vault;

const MAX_GRACE_SECONDS: i64 = 7 * 24 * 3600;
const MAX_SECRET_LEN: usize = 4096;

/// A new connection's input, checked.
struct Validated {
    manifest: Arc<Manifest>,
    name: String,
    settings: Map<String, Value>,
    credentials: Map<String, Value>,
    expiries: super::keeper::Expiries,
    cidrs: Vec<ipnet::IpNet>,
}

/// A connection pinned through the API, not by a deployment.
const PINNED_BY_HAND: &str = "hand";

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

fn check_name(name: &str, errors: &mut Vec<FieldError>) -> String {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        errors.push(FieldError::new("name", "must be 1 to 200 characters"));
    }
    name.to_string()
}

fn check_secret(
    field: &str,
    secret: &str,
    scheme: Option<WebhookScheme>,
    errors: &mut Vec<FieldError>,
) {
    if secret.trim().is_empty() || secret.len() > MAX_SECRET_LEN {
        errors.push(FieldError::new(
            field,
            format!("must be 1 to {MAX_SECRET_LEN} bytes"),
        ));
    } else if scheme == Some(WebhookScheme::StandardWebhooks)
        && crate::signing::standard_webhooks_key(secret).is_none()
    {
        errors.push(FieldError::new(
            field,
            "Standard Webhooks secrets look like whsec_<base64>",
        ));
    }
}

fn check_credentials(
    manifest: &Manifest,
    outbound: &OutboundPolicy,
    credentials: &Map<String, Value>,
    errors: &mut Vec<FieldError>,
) -> Map<String, Value> {
    let mut credentials = credentials.clone();
    fields::validate(
        "credentials",
        &manifest.credentials,
        &mut credentials,
        outbound,
        errors,
    );
    for (name, value) in &credentials {
        if value.as_str().is_some_and(|s| s.len() > MAX_SECRET_LEN) {
            errors.push(FieldError::new(
                format!("credentials.{name}"),
                "is too long",
            ));
        }
    }
    credentials
}

/// The scheme a connection's settings select (generic ERPs may pick Standard Webhooks).
fn effective_scheme(manifest: &Manifest, settings: &Map<String, Value>) -> Option<WebhookScheme> {
    let spec = manifest.webhook.as_ref()?;
    spec.scheme_setting
        .as_deref()
        .and_then(|name| settings.get(name))
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .or(Some(spec.scheme))
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
                OutboundPolicy::from_settings(settings),
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
        })
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
        let id = ConnectionId::parse(id).ok_or(Error::NotFound("connection"))?;
        connection::Entity::find_in_tenant(tenant)
            .filter(connection::Column::Id.eq(id))
            .one(db)
            .await?
            .ok_or(Error::NotFound("connection"))
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
        let now = chrono::Utc::now();
        let credential_expiry = super::keeper::expiries(&row);
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

    pub async fn create(
        &self,
        actor: &Actor,
        tenant: &TenantId,
        input: NewConnection,
    ) -> Result<ConnectionView> {
        let Validated {
            manifest,
            name,
            settings,
            credentials,
            expiries,
            cidrs,
        } = self.validate(tenant, &input).await?;

        let txn = crate::store::begin_write(&self.db).await?;
        ensure_tenant_exists(&txn, tenant).await?;
        self.ensure_name_free(&txn, tenant, &name, None).await?;
        let credentials_text = Value::Object(credentials).to_string();
        let credentials_secret_id = self.vault.store(&txn, tenant, &credentials_text).await?;
        let webhook_secret_id = match &input.webhook_secret {
            Some(secret) => Some(self.vault.store(&txn, tenant, secret).await?),
            None => None,
        };
        let now = chrono::Utc::now();
        let row = connection::ActiveModel {
            id: Set(ConnectionId::generate()),
            tenant_id: Set(tenant.clone()),
            name: Set(name),
            connector: Set(manifest.name.clone()),
            environment: Set(input.environment.as_str().to_string()),
            settings: Set(Value::Object(settings)),
            credentials_secret_id: Set(credentials_secret_id),
            webhook_secret_id: Set(webhook_secret_id),
            previous_webhook_secret_id: Set(None),
            previous_webhook_secret_expires_at: Set(None),
            allowed_cidrs: Set(cidrs_to_json(&cidrs)),
            timezone: Set(input.timezone),
            pinned_by: Set(input.version.as_ref().map(|_| PINNED_BY_HAND.to_string())),
            version: Set(input.version),
            rejected_webhooks: Set(0),
            credentials_due_at: Set(super::keeper::first_look(&manifest, &expiries, now)),
            credential_expiry: Set(Some(serde_json::json!(expiries))),
            credential_refresh_failures: Set(0),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&txn)
        .await?;
        audit::record(
            &txn,
            actor,
            Entry {
                tenant_id: Some(tenant),
                action: "connection.create",
                resource_type: "connection",
                resource_id: row.id.as_str(),
                details: serde_json::json!({
                    "name": row.name,
                    "connector": row.connector,
                    "environment": row.environment,
                    "settings": row.settings,
                    "webhook_secret_set": row.webhook_secret_id.is_some(),
                }),
            },
        )
        .await?;
        txn.commit().await?;
        self.webhook_targets.invalidate(&row.id);
        self.view(row).await
    }

    /// Checks a new connection as `create` would, without saving anything.
    async fn validate(&self, tenant: &TenantId, input: &NewConnection) -> Result<Validated> {
        let manifest = self
            .pinned_manifest(tenant, &input.connector, input.version.as_deref())
            .await?;
        let mut errors = Vec::new();
        let name = check_name(&input.name, &mut errors);
        let mut settings = input.settings.clone();
        fields::validate(
            "settings",
            &manifest.settings,
            &mut settings,
            self.http.policy(),
            &mut errors,
        );
        let credentials = check_credentials(
            &manifest,
            self.http.policy(),
            &input.credentials,
            &mut errors,
        );
        let expiries =
            super::keeper::check_expiries(&input.credential_expires_at, &credentials, &mut errors);
        let scheme = effective_scheme(&manifest, &settings);
        if let Some(secret) = &input.webhook_secret {
            check_secret("webhook_secret", secret, scheme, &mut errors);
        }
        if let Some(tz) = &input.timezone
            && let Err(message) = parse_timezone(tz)
        {
            errors.push(FieldError::new("timezone", message));
        }
        let cidrs = parse_cidrs(&input.allowed_cidrs, "allowed_cidrs", &mut errors);
        if !errors.is_empty() {
            return Err(Error::Invalid(errors));
        }
        Ok(Validated {
            manifest,
            name,
            settings,
            credentials,
            expiries,
            cidrs,
        })
    }

    /// Runs the connectivity checks of a saved connection, with its pinned version or the
    /// one named. The read probe spends the shared rate-limit budget like any call.
    pub async fn check(
        &self,
        actor: &Actor,
        tenant: &TenantId,
        id: &str,
        version: Option<&str>,
    ) -> Result<CheckReport> {
        let row = self.find(&self.db, tenant, id).await?;
        let manifest = self
            .pinned_manifest(tenant, &row.connector, version.or(row.version.as_deref()))
            .await?;
        let client = self.client(&row, manifest).await?;
        let webhook_url = format!("{}/v1/hooks/{}", self.public_url, row.id);
        let report = checks::run(&client, &self.http, &webhook_url).await;
        if !report.passed {
            let failed: Vec<&str> = report
                .checks
                .iter()
                .filter(|c| c.status == CheckStatus::Failed)
                .map(|c| c.name)
                .collect();
            crate::alerts::events::emit(
                &self.db,
                crate::alerts::events::Event {
                    tenant,
                    kind: "check_failed",
                    severity: crate::alerts::message::Severity::Warning,
                    group_key: row.id.to_string(),
                    connection_id: Some(row.id.to_string()),
                    flow_id: None,
                    message: format!(
                        "the connectivity check of {} failed: {}",
                        row.name,
                        failed.join(", ")
                    ),
                    details: serde_json::json!({"version": report.version}),
                },
            )
            .await?;
        }
        audit::record(
            &self.db,
            actor,
            Entry {
                tenant_id: Some(tenant),
                action: "connection.check",
                resource_type: "connection",
                resource_id: row.id.as_str(),
                details: serde_json::json!({
                    "version": report.version,
                    "passed": report.passed,
                    "failed": report.checks.iter().filter(|c| c.status == CheckStatus::Failed).map(|c| c.name).collect::<Vec<_>>(),
                }),
            },
        )
        .await?;
        Ok(report)
    }

    /// A client for a saved connection on `manifest`, with its decrypted credentials.
    async fn client(
        &self,
        row: &connection::Model,
        manifest: Arc<Manifest>,
    ) -> Result<ConnectorClient> {
        let deps = ClientDeps {
            db: &self.db,
            vault: &self.vault,
            limiter: &self.limiter,
            http: &self.http,
        };
        client_for(&deps, row, manifest).await
    }

    /// Blue-green's shadow read: the same window read with the connection's current version
    /// and with `version`, compared record by record.
    pub async fn compare_reads(
        &self,
        tenant: &TenantId,
        id: &str,
        version: &str,
    ) -> Result<ShadowReport> {
        let row = self.find(&self.db, tenant, id).await?;
        let current = self
            .pinned_manifest(tenant, &row.connector, row.version.as_deref())
            .await?;
        let new = self
            .pinned_manifest(tenant, &row.connector, Some(version))
            .await?;
        let current = self.client(&row, current).await?;
        let new = self.client(&row, new).await?;
        Ok(checks::compare_reads(&current, &new).await)
    }

    /// Runs the connectivity checks of a connection before it is saved (webhook
    /// subscriptions need its URL, so they wait until it exists).
    pub async fn check_unsaved(
        &self,
        tenant: &TenantId,
        input: NewConnection,
    ) -> Result<CheckReport> {
        let Validated {
            manifest,
            settings,
            credentials,
            ..
        } = self.validate(tenant, &input).await?;
        let client = ConnectorClient::new(
            manifest,
            input.environment.as_str(),
            settings,
            credentials,
            &format!("unsaved:{tenant}"),
            self.limiter.clone(),
            self.http.clone(),
        );
        Ok(checks::run(&client, &self.http, "").await)
    }

    /// The manifest of the version a connection is to run: the built-in one, or a
    /// published version the tenant can see.
    async fn pinned_manifest(
        &self,
        tenant: &TenantId,
        connector: &str,
        version: Option<&str>,
    ) -> Result<Arc<Manifest>> {
        self.manifest(connector)?;
        self.versions
            .manifest(tenant, connector, version)
            .await?
            .ok_or_else(|| {
                Error::invalid(
                    "version",
                    format!(
                        "{connector} has no version {:?}; see GET /v1/connectors/{connector}/versions",
                        version.unwrap_or_default()
                    ),
                )
            })
    }

    async fn ensure_name_free(
        &self,
        txn: &DatabaseTransaction,
        tenant: &TenantId,
        name: &str,
        except: Option<&ConnectionId>,
    ) -> Result<()> {
        let mut query =
            connection::Entity::find_in_tenant(tenant).filter(connection::Column::Name.eq(name));
        if let Some(id) = except {
            query = query.filter(connection::Column::Id.ne(id.clone()));
        }
        if query.one(txn).await?.is_some() {
            return Err(Error::Conflict(format!(
                "a connection named {name:?} exists already"
            )));
        }
        Ok(())
    }

    pub async fn get(&self, tenant: &TenantId, id: &str) -> Result<ConnectionView> {
        let row = self.find(&self.db, tenant, id).await?;
        self.view(row).await
    }

    /// Checks that the connection exists in the tenant and returns its id.
    pub async fn resolve(&self, tenant: &TenantId, id: &str) -> Result<ConnectionId> {
        Ok(self.find(&self.db, tenant, id).await?.id)
    }

    pub async fn list(
        &self,
        tenant: &TenantId,
        page: &PageRequest,
    ) -> Result<Page<ConnectionView>> {
        let query = connection::Entity::find_in_tenant(tenant);
        let rows = page_query(query, connection::Column::Id, page, Direction::OldestFirst)
            .all(&self.db)
            .await?;
        let has_more = rows.len() > page.limit;
        let mut data = Vec::with_capacity(rows.len().min(page.limit));
        for row in rows.into_iter().take(page.limit) {
            data.push(self.view(row).await?);
        }
        let next_cursor = if has_more {
            data.last().map(|v| v.id.clone())
        } else {
            None
        };
        Ok(Page { data, next_cursor })
    }

    pub async fn update(
        &self,
        actor: &Actor,
        tenant: &TenantId,
        id: &str,
        patch: ConnectionPatch,
    ) -> Result<ConnectionView> {
        let txn = crate::store::begin_write(&self.db).await?;
        let row = self.find(&txn, tenant, id).await?;
        let version = patch.version.as_deref().or(row.version.as_deref());
        let manifest = self
            .pinned_manifest(tenant, &row.connector, version)
            .await?;
        let mut errors = Vec::new();
        let mut changed = Vec::new();
        let mut active: connection::ActiveModel = row.clone().into();
        if let Some(name) = &patch.name {
            let name = check_name(name, &mut errors);
            if errors.is_empty() {
                self.ensure_name_free(&txn, tenant, &name, Some(&row.id))
                    .await?;
            }
            active.name = Set(name);
            changed.push("name");
        }
        if let Some(environment) = patch.environment {
            active.environment = Set(environment.as_str().to_string());
            changed.push("environment");
        }
        if let Some(mut settings) = patch.settings {
            fields::validate(
                "settings",
                &manifest.settings,
                &mut settings,
                self.http.policy(),
                &mut errors,
            );
            active.settings = Set(Value::Object(settings));
            changed.push("settings");
        }
        if let Some(tz) = patch.timezone {
            if let Err(message) = parse_timezone(&tz) {
                errors.push(FieldError::new("timezone", message));
            }
            active.timezone = Set(Some(tz));
            changed.push("timezone");
        }
        if let Some(version) = patch.version {
            active.version = Set(Some(version));
            active.pinned_by = Set(Some(PINNED_BY_HAND.into()));
            changed.push("version");
        }
        if !errors.is_empty() {
            return Err(Error::Invalid(errors));
        }
        if changed.is_empty() {
            return Err(Error::invalid("body", "name at least one field to change"));
        }
        active.updated_at = Set(chrono::Utc::now());
        let updated = active.update(&txn).await?;
        audit::record(
            &txn,
            actor,
            Entry {
                tenant_id: Some(tenant),
                action: "connection.update",
                resource_type: "connection",
                resource_id: updated.id.as_str(),
                details: serde_json::json!({
                    "changed": changed,
                    "before": { "name": row.name, "environment": row.environment, "settings": row.settings, "timezone": row.timezone, "version": row.version },
                    "after": { "name": updated.name, "environment": updated.environment, "settings": updated.settings, "timezone": updated.timezone, "version": updated.version },
                }),
            },
        )
        .await?;
        txn.commit().await?;
        self.webhook_targets.invalidate(&updated.id);
        self.view(updated).await
    }

    pub async fn delete(&self, actor: &Actor, tenant: &TenantId, id: &str) -> Result<()> {
        let txn = crate::store::begin_write(&self.db).await?;
        let row = self.find(&txn, tenant, id).await?;
        webhook_event::Entity::delete_many()
            .filter(webhook_event::Column::TenantId.eq(tenant.clone()))
            .filter(webhook_event::Column::ConnectionId.eq(row.id.clone()))
            .exec(&txn)
            .await?;
        connection::Entity::delete_by_id(row.id.clone())
            .exec(&txn)
            .await?;
        let secrets: Vec<&SecretId> = [
            Some(&row.credentials_secret_id),
            row.webhook_secret_id.as_ref(),
            row.previous_webhook_secret_id.as_ref(),
        ]
        .into_iter()
        .flatten()
        .collect();
        for secret in secrets {
            self.vault.delete(&txn, tenant, secret).await?;
        }
        audit::record(
            &txn,
            actor,
            Entry {
                tenant_id: Some(tenant),
                action: "connection.delete",
                resource_type: "connection",
                resource_id: row.id.as_str(),
                details: serde_json::json!({ "name": row.name, "connector": row.connector }),
            },
        )
        .await?;
        txn.commit().await?;
        self.webhook_targets.invalidate(&row.id);
        Ok(())
    }

    /// Replaces credentials and/or the webhook secret. If the secret that signs webhooks
    /// changes, the old one keeps verifying for the grace period.
    pub async fn rotate_credentials(
        &self,
        actor: &Actor,
        tenant: &TenantId,
        id: &str,
        input: CredentialsRotation,
    ) -> Result<ConnectionView> {
        let txn = crate::store::begin_write(&self.db).await?;
        let row = self.find(&txn, tenant, id).await?;
        let manifest = self.manifest(&row.connector)?;
        let mut errors = Vec::new();
        if input.credentials.is_none() && input.webhook_secret.is_none() {
            errors.push(FieldError::new(
                "body",
                "give credentials, webhook_secret, or both",
            ));
        }
        let grace = input.grace_seconds.unwrap_or(self.default_grace_seconds);
        if !(0..=MAX_GRACE_SECONDS).contains(&grace) {
            errors.push(FieldError::new(
                "grace_seconds",
                format!("must be between 0 and {MAX_GRACE_SECONDS}"),
            ));
        }
        let settings = row.settings.as_object().cloned().unwrap_or_default();
        let scheme = effective_scheme(&manifest, &settings);
        let credentials = input
            .credentials
            .as_ref()
            .map(|c| check_credentials(&manifest, self.http.policy(), c, &mut errors));
        let expiries = match (&credentials, &input.credential_expires_at) {
            (Some(credentials), given) => Some(super::keeper::check_expiries(
                &given.clone().unwrap_or_default(),
                credentials,
                &mut errors,
            )),
            (None, Some(_)) => {
                errors.push(FieldError::new(
                    "credential_expires_at",
                    "give it with the credentials it dates",
                ));
                None
            }
            (None, None) => None,
        };
        if let Some(secret) = &input.webhook_secret {
            check_secret("webhook_secret", secret, scheme, &mut errors);
        }
        if !errors.is_empty() {
            return Err(Error::Invalid(errors));
        }

        let old_signing = match &manifest.webhook {
            Some(spec) => current_webhook_secret(&txn, &self.vault, &row, spec).await?,
            None => None,
        };
        let mut active: connection::ActiveModel = row.clone().into();
        let mut retired: Vec<SecretId> = Vec::new();
        if let Some(credentials) = credentials {
            let new_id = self
                .vault
                .store(&txn, tenant, &Value::Object(credentials).to_string())
                .await?;
            active.credentials_secret_id = Set(new_id);
            retired.push(row.credentials_secret_id.clone());
            let expiries = expiries.unwrap_or_default();
            active.credentials_due_at = Set(super::keeper::first_look(
                &manifest,
                &expiries,
                chrono::Utc::now(),
            ));
            active.credential_expiry = Set(Some(serde_json::json!(expiries)));
            active.credential_refresh_failures = Set(0);
        }
        if let Some(secret) = &input.webhook_secret {
            active.webhook_secret_id = Set(Some(self.vault.store(&txn, tenant, secret).await?));
            retired.extend(row.webhook_secret_id.clone());
        }
        active.updated_at = Set(chrono::Utc::now());
        let updated = active.update(&txn).await?;
        let new_signing = match &manifest.webhook {
            Some(spec) => current_webhook_secret(&txn, &self.vault, &updated, spec).await?,
            None => None,
        };

        let signing_changed = old_signing.is_some() && old_signing != new_signing;
        let mut active: connection::ActiveModel = updated.clone().into();
        let mut grace_until = None;
        if signing_changed {
            retired.extend(row.previous_webhook_secret_id.clone());
            if let (Some(old), true) = (&old_signing, grace > 0) {
                let until = chrono::Utc::now() + chrono::Duration::seconds(grace);
                active.previous_webhook_secret_id =
                    Set(Some(self.vault.store(&txn, tenant, old.expose()).await?));
                active.previous_webhook_secret_expires_at = Set(Some(until));
                grace_until = Some(until);
            } else {
                active.previous_webhook_secret_id = Set(None);
                active.previous_webhook_secret_expires_at = Set(None);
            }
        }
        let updated = active.update(&txn).await?;
        for secret in &retired {
            self.vault.delete(&txn, tenant, secret).await?;
        }
        audit::record(
            &txn,
            actor,
            Entry {
                tenant_id: Some(tenant),
                action: "connection.rotate_credentials",
                resource_type: "connection",
                resource_id: updated.id.as_str(),
                details: serde_json::json!({
                    "credentials_rotated": input.credentials.is_some(),
                    "webhook_secret_rotated": input.webhook_secret.is_some(),
                    "previous_webhook_secret_valid_until": grace_until,
                }),
            },
        )
        .await?;
        txn.commit().await?;
        self.webhook_targets.invalidate(&updated.id);
        self.view(updated).await
    }

    pub async fn allowlist(&self, tenant: &TenantId, id: &str) -> Result<AllowlistView> {
        let row = self.find(&self.db, tenant, id).await?;
        Ok(AllowlistView {
            cidrs: cidrs_from_json(&row.allowed_cidrs)
                .iter()
                .map(ToString::to_string)
                .collect(),
        })
    }

    pub async fn set_allowlist(
        &self,
        actor: &Actor,
        tenant: &TenantId,
        id: &str,
        input: AllowlistView,
    ) -> Result<AllowlistView> {
        let mut errors = Vec::new();
        let cidrs = parse_cidrs(&input.cidrs, "cidrs", &mut errors);
        if !errors.is_empty() {
            return Err(Error::Invalid(errors));
        }
        let txn = crate::store::begin_write(&self.db).await?;
        let row = self.find(&txn, tenant, id).await?;
        let before = row.allowed_cidrs.clone();
        let mut active: connection::ActiveModel = row.into();
        active.allowed_cidrs = Set(cidrs_to_json(&cidrs));
        active.updated_at = Set(chrono::Utc::now());
        let updated = active.update(&txn).await?;
        audit::record(
            &txn,
            actor,
            Entry {
                tenant_id: Some(tenant),
                action: "connection.set_allowlist",
                resource_type: "connection",
                resource_id: updated.id.as_str(),
                details: serde_json::json!({ "before": before, "after": updated.allowed_cidrs }),
            },
        )
        .await?;
        txn.commit().await?;
        self.webhook_targets.invalidate(&updated.id);
        Ok(AllowlistView {
            cidrs: cidrs.iter().map(ToString::to_string).collect(),
        })
    }
}
