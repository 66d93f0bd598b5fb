//! Creating, reading, changing and deleting connections: settings and credentials checked
//! against the manifest, names unique per tenant, every change audited.

use std::sync::Arc;

use sea_orm::{ActiveModelTrait, ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, Set};
use serde_json::{Map, Value};

use super::Connections;
use crate::audit::{self, Actor, Entry};
use crate::connections::fields;
use crate::connections::model::{ConnectionPatch, ConnectionView, NewConnection};
use crate::connectors::{Manifest, WebhookScheme};
use crate::error::{Error, FieldError, Result};
use crate::ids::{ConnectionId, SecretId, TenantId};
use crate::netpolicy::OutboundPolicy;
use crate::netpolicy::{cidrs_to_json, parse_cidrs};
use crate::pagination::{Direction, Page, PageRequest, page_query};
use crate::store::entities::connection::AuthorizationStatus;
use crate::store::entities::{connection, webhook_event};
use crate::tenancy::ensure_tenant_exists;
use crate::timezone::parse_timezone;

pub(super) const MAX_SECRET_LEN: usize = 4096;

/// A new connection's input, checked.
pub(super) struct Validated {
    pub(super) manifest: Arc<Manifest>,
    pub(super) name: String,
    pub(super) settings: Map<String, Value>,
    pub(super) credentials: Map<String, Value>,
    pub(super) expiries: crate::connections::keeper::Expiries,
    pub(super) cidrs: Vec<ipnet::IpNet>,
}

/// A connection pinned through the API, not by a deployment.
pub(super) const PINNED_BY_HAND: &str = "hand";

pub(super) fn check_name(name: &str, errors: &mut Vec<FieldError>) -> String {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        errors.push(FieldError::new("name", "must be 1 to 200 characters"));
    }
    name.to_string()
}

pub(super) fn check_secret(
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

pub(super) fn check_credentials(
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
pub(super) fn effective_scheme(
    manifest: &Manifest,
    settings: &Map<String, Value>,
) -> Option<WebhookScheme> {
    let spec = manifest.webhook.as_ref()?;
    spec.scheme_setting
        .as_deref()
        .and_then(|name| settings.get(name))
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .or(Some(spec.scheme))
}

impl Connections {
    pub async fn create(
        &self,
        actor: &Actor,
        tenant: &TenantId,
        input: NewConnection,
    ) -> Result<ConnectionView> {
        self.insert(actor, tenant, input, None).await
    }

    /// Creates a connection a seller authorised through a connect link sent by `by`.
    pub async fn create_authorized(
        &self,
        actor: &Actor,
        tenant: &TenantId,
        input: NewConnection,
        by: &str,
    ) -> Result<ConnectionView> {
        self.insert(actor, tenant, input, Some(by)).await
    }

    async fn insert(
        &self,
        actor: &Actor,
        tenant: &TenantId,
        input: NewConnection,
        authorized_by: Option<&str>,
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
        self.ensure_app_unshared(&txn, tenant, &manifest, &credentials, None)
            .await?;
        let credentials_text = Value::Object(credentials.clone()).to_string();
        let credentials_secret_id = self.vault.store(&txn, tenant, &credentials_text).await?;
        let webhook_secret_id = match &input.webhook_secret {
            Some(secret) => Some(self.vault.store(&txn, tenant, secret).await?),
            None => None,
        };
        let now = self.clock.now();
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
            credentials_due_at: Set(crate::connections::keeper::first_look(
                &manifest,
                &credentials,
                &expiries,
                now,
            )),
            credential_expiry: Set(Some(serde_json::json!(expiries))),
            credential_refresh_failures: Set(0),
            authorized_at: Set(authorized_by.map(|_| now)),
            authorized_by: Set(authorized_by.map(String::from)),
            authorization_status: Set(authorized_by.map(|_| AuthorizationStatus::Authorized)),
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
                    "authorized_through_connect_link": authorized_by.is_some(),
                }),
            },
        )
        .await?;
        txn.commit().await?;
        self.webhook_targets.invalidate(&row.id);
        self.view(row).await
    }

    /// Checks a new connection as `create` would, without saving anything.
    pub(super) async fn validate(
        &self,
        tenant: &TenantId,
        input: &NewConnection,
    ) -> Result<Validated> {
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
        let expiries = crate::connections::keeper::check_expiries(
            &input.credential_expires_at,
            &credentials,
            &mut errors,
        );
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

    pub(super) async fn ensure_name_free(
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

    /// Refuses a second connection of the tenant on an app for which the platform keeps one
    /// live token (Lingxing's AppID): the two would take turns signing each other out, and
    /// every run of one would fail on the other's exchange. Other tenants' connections are
    /// not compared, so nothing about them shows.
    pub(super) async fn ensure_app_unshared(
        &self,
        txn: &DatabaseTransaction,
        tenant: &TenantId,
        manifest: &Manifest,
        credentials: &Map<String, Value>,
        except: Option<&ConnectionId>,
    ) -> Result<()> {
        let Some(name) = manifest
            .auth
            .as_ref()
            .and_then(|auth| auth.exclusive_credential())
        else {
            return Ok(());
        };
        let Some(wanted) = credentials.get(name).and_then(Value::as_str) else {
            return Ok(());
        };
        let mut others = connection::Entity::find_in_tenant(tenant)
            .filter(connection::Column::Connector.eq(manifest.name.clone()));
        if let Some(id) = except {
            others = others.filter(connection::Column::Id.ne(id.clone()));
        }
        for other in others.all(txn).await? {
            let stored = self
                .vault
                .load(txn, tenant, &other.credentials_secret_id)
                .await?;
            let same = serde_json::from_str::<Value>(stored.expose())
                .ok()
                .and_then(|c| c.get(name).and_then(Value::as_str).map(|v| v == wanted))
                .unwrap_or(false);
            if same {
                return Err(Error::Conflict(format!(
                    "connection {:?} uses this {name} already: {} keeps one live token per \
                     app, so a second connection on it would end the first one's token at \
                     every exchange; flow through that connection, or give this one an app \
                     of its own",
                    other.name, manifest.name
                )));
            }
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
        active.updated_at = Set(self.clock.now());
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
}
