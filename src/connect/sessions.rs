//! Making connect links and the seller's way to the platform: the link's input checked
//! and stored (only its token's hash), the page's details, and the button that mints a
//! fresh state and answers with the platform's consent URL.

use chrono::{DateTime, Duration, Utc};
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};
use serde_json::{Map, Value};

use super::model::{ConnectSessionView, CreatedConnectSession, NewConnectSession};
use super::platforms::{Consent, Platform, setting};
use super::refusal::Refusal;
use crate::audit::Actor;
use crate::error::{Error, FieldError, Result};
use crate::ids::{ConnectSessionId, ConnectionId, TenantId};
use crate::store::entities::connect_session::{self, SessionStatus};
use crate::store::entities::{connection, tenant};

use super::service::{
    Connect, LinkDetails, MAX_LINK_SECONDS, STATE_LIFETIME, check_return_url, digest, no_app,
    random_token, unknown_link,
};

impl Connect {
    /// Checks a new link's input and stores it; returns the link.
    pub async fn create_session(
        &self,
        actor: &Actor,
        tenant: &TenantId,
        input: NewConnectSession,
    ) -> Result<CreatedConnectSession> {
        let platform = Platform::from_connector(&input.connector)?;
        let mut errors = Vec::new();
        let return_url = match check_return_url(&input.return_url) {
            Ok(url) => url.to_string(),
            Err(message) => {
                errors.push(FieldError::new("return_url", message));
                String::new()
            }
        };
        let ttl = input
            .expires_in_seconds
            .unwrap_or(self.settings.link_ttl_seconds);
        if !(60..=MAX_LINK_SECONDS).contains(&ttl) {
            errors.push(FieldError::new(
                "expires_in_seconds",
                format!("must be between 60 and {MAX_LINK_SECONDS}"),
            ));
        }
        if let Some(name) = &input.name
            && (name.trim().is_empty() || name.chars().count() > 200)
        {
            errors.push(FieldError::new("name", "must be 1 to 200 characters"));
        }
        let (settings, connection_id) = match &input.connection_id {
            Some(raw) => {
                let row =
                    crate::store::find_owned::<connection::Entity>(&self.db, tenant, raw).await?;
                if row.connector != platform.connector() {
                    errors.push(FieldError::new(
                        "connection_id",
                        format!(
                            "is a {} connection, not {}",
                            row.connector,
                            platform.connector()
                        ),
                    ));
                }
                if row.environment != input.environment.as_str() {
                    errors.push(FieldError::new(
                        "environment",
                        format!("the connection runs in {}", row.environment),
                    ));
                }
                if !input.settings.is_empty() {
                    errors.push(FieldError::new(
                        "settings",
                        "leave out: authorising a connection again uses its own settings",
                    ));
                }
                (
                    row.settings.as_object().cloned().unwrap_or_default(),
                    Some(row.id),
                )
            }
            None => (
                self.check_settings(platform, &input.settings, &mut errors)?,
                None,
            ),
        };
        if !errors.is_empty() {
            return Err(Error::Invalid(errors));
        }
        crate::tenancy::ensure_tenant_exists(&self.db, tenant).await?;
        let (id, token, expires_at) = self
            .insert_session(
                &self.db,
                tenant,
                platform,
                input.environment.as_str(),
                settings,
                input.name.map(|n| n.trim().to_string()),
                connection_id,
                return_url,
                &actor.name,
                Duration::seconds(ttl),
            )
            .await?;
        Ok(CreatedConnectSession {
            id: id.to_string(),
            url: self.link_url(&token),
            expires_at,
        })
    }

    /// A link to authorise `row` again, for the alert that says it is needed. Written in the
    /// caller's transaction, beside the alert event that carries it.
    pub async fn reauthorization_link(
        &self,
        db: &impl ConnectionTrait,
        row: &connection::Model,
    ) -> Result<Option<(String, DateTime<Utc>)>> {
        let Ok(platform) = Platform::from_connector(&row.connector) else {
            return Ok(None);
        };
        let (_, token, expires_at) = self
            .insert_session(
                db,
                &row.tenant_id,
                platform,
                &row.environment,
                row.settings.as_object().cloned().unwrap_or_default(),
                None,
                Some(row.id.clone()),
                // No return URL was asked for: the seller ends on our own result page.
                String::new(),
                "credential-keeper",
                Duration::seconds(self.settings.reauthorization_link_ttl_seconds),
            )
            .await?;
        Ok(Some((self.link_url(&token), expires_at)))
    }

    /// The settings a new link may carry: the manifest's, less those the platform's answer
    /// fills in, checked as a connection's would be.
    pub(super) fn check_settings(
        &self,
        platform: Platform,
        given: &Map<String, Value>,
        errors: &mut Vec<FieldError>,
    ) -> Result<Map<String, Value>> {
        let manifest = self
            .registry
            .get(platform.connector())
            .ok_or(Error::NotFound("connector"))?;
        let specs: Vec<_> = manifest
            .settings
            .iter()
            .filter(|f| !platform.settings_from_consent().contains(&f.name.as_str()))
            .cloned()
            .collect();
        let mut settings = given.clone();
        let before = errors.len();
        crate::connections::validate_fields(
            "settings",
            &specs,
            &mut settings,
            self.http.policy(),
            errors,
        );
        if errors.len() == before
            && let Err((field, message)) = platform.check_settings(&settings)
        {
            errors.push(FieldError::new(field, message));
        }
        Ok(settings)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn insert_session(
        &self,
        db: &impl ConnectionTrait,
        tenant: &TenantId,
        platform: Platform,
        environment: &str,
        settings: Map<String, Value>,
        name: Option<String>,
        connection_id: Option<ConnectionId>,
        return_url: String,
        created_by: &str,
        ttl: Duration,
    ) -> Result<(ConnectSessionId, String, DateTime<Utc>)> {
        let token = random_token()?;
        let now = self.clock.now();
        let expires_at = now + ttl;
        let row = connect_session::ActiveModel {
            id: Set(ConnectSessionId::generate()),
            tenant_id: Set(tenant.clone()),
            connector: Set(platform.connector().to_string()),
            environment: Set(environment.to_string()),
            settings: Set(Value::Object(settings)),
            name: Set(name),
            connection_id: Set(connection_id),
            return_url: Set(return_url),
            token_hash: Set(digest(&token)),
            state_hash: Set(None),
            state_expires_at: Set(None),
            status: Set(SessionStatus::Pending),
            error_code: Set(None),
            error_message: Set(None),
            connection_ids: Set(None),
            pending_secret_id: Set(None),
            created_by: Set(created_by.to_string()),
            expires_at: Set(expires_at),
            created_at: Set(now),
            finished_at: Set(None),
        }
        .insert(db)
        .await?;
        Ok((row.id, token, expires_at))
    }

    pub async fn session(&self, tenant: &TenantId, id: &str) -> Result<ConnectSessionView> {
        let row = crate::store::find_owned::<connect_session::Entity>(&self.db, tenant, id).await?;
        Ok(self.session_view(row))
    }

    pub(super) fn session_view(&self, row: connect_session::Model) -> ConnectSessionView {
        let open = matches!(
            row.status,
            SessionStatus::Pending | SessionStatus::Authorizing | SessionStatus::ChoosingShop
        );
        let status = if open && row.expires_at <= self.clock.now() {
            SessionStatus::Expired
        } else {
            row.status
        };
        ConnectSessionView {
            id: row.id.to_string(),
            connector: row.connector,
            environment: row.environment,
            status,
            error_code: row.error_code,
            error_message: row.error_message,
            connection_id: row.connection_id.map(|c| c.to_string()),
            connection_ids: row
                .connection_ids
                .and_then(|v| serde_json::from_value(v).ok())
                .unwrap_or_default(),
            return_url: row.return_url,
            created_by: row.created_by,
            expires_at: row.expires_at,
            created_at: row.created_at,
            finished_at: row.finished_at,
        }
    }

    /// The session a link's token opens, if it is still open.
    pub(super) async fn open_link(
        &self,
        token: &str,
    ) -> Result<std::result::Result<connect_session::Model, Refusal>> {
        if token.len() > 64 {
            return Ok(Err(unknown_link()));
        }
        let row = connect_session::Entity::find()
            .filter(connect_session::Column::TokenHash.eq(digest(token)))
            .one(&self.db)
            .await?;
        let Some(row) = row else {
            return Ok(Err(unknown_link()));
        };
        Ok(match row.status {
            SessionStatus::Completed => Err(Refusal::new(
                "link_used",
                "this link was used: the store is connected",
            )),
            SessionStatus::Failed => Err(Refusal::new(
                "link_used",
                "this link was used and the authorisation failed; ask for a new link",
            )),
            _ if row.expires_at <= self.clock.now() => Err(Refusal::new(
                "link_expired",
                "this link has expired; ask for a new one",
            )),
            _ => Ok(row),
        })
    }

    /// What the seller's page shows for a link.
    pub async fn link(&self, token: &str) -> Result<std::result::Result<LinkDetails, Refusal>> {
        let row = match self.open_link(token).await? {
            Ok(row) => row,
            Err(refusal) => return Ok(Err(refusal)),
        };
        let platform = Platform::from_connector(&row.connector)?;
        let tenant_name = tenant::Entity::find_by_id(row.tenant_id.clone())
            .one(&self.db)
            .await?
            .map(|t| t.name)
            .unwrap_or_default();
        let settings = row.settings.as_object().cloned().unwrap_or_default();
        let account = match &row.connection_id {
            Some(id) => connection::Entity::find_by_id(id.clone())
                .one(&self.db)
                .await?
                .map(|c| c.name),
            None => setting(&settings, "shop_domain").map(String::from),
        };
        let consent_origin = match self.consent(&row, "origin-probe", &settings).await? {
            Ok(url) => Some(url.origin().ascii_serialization()),
            Err(refusal) => return Ok(Err(refusal)),
        };
        Ok(Ok(LinkDetails {
            platform,
            tenant_name,
            account,
            reauthorize: row.connection_id.is_some(),
            expires_at: row.expires_at,
            consent_origin,
        }))
    }

    pub(super) async fn consent(
        &self,
        row: &connect_session::Model,
        state: &str,
        settings: &Map<String, Value>,
    ) -> Result<std::result::Result<url::Url, Refusal>> {
        let platform = Platform::from_connector(&row.connector)?;
        let Some(app) = self
            .apps
            .resolve(&self.db, &row.tenant_id, platform)
            .await?
        else {
            return Ok(Err(no_app(platform)));
        };
        Ok(platform.consent_url(&Consent {
            app: &app,
            settings,
            environment: &row.environment,
            state,
            platform_time: Utc::now(),
        }))
    }

    /// The button: a fresh state for the session (any earlier one stops counting), and the
    /// platform's consent URL that carries it.
    pub async fn start(&self, token: &str) -> Result<std::result::Result<url::Url, Refusal>> {
        let row = match self.open_link(token).await? {
            Ok(row) => row,
            Err(refusal) => return Ok(Err(refusal)),
        };
        let state = random_token()?;
        let settings = row.settings.as_object().cloned().unwrap_or_default();
        let url = match self.consent(&row, &state, &settings).await? {
            Ok(url) => url,
            Err(refusal) => return Ok(Err(refusal)),
        };
        let now = self.clock.now();
        let minted = connect_session::Entity::update_many()
            .col_expr(
                connect_session::Column::StateHash,
                Some(digest(&state)).into(),
            )
            .col_expr(
                connect_session::Column::StateExpiresAt,
                Some(now + STATE_LIFETIME).into(),
            )
            .col_expr(
                connect_session::Column::Status,
                SessionStatus::Authorizing.as_str().into(),
            )
            .filter(connect_session::Column::Id.eq(row.id.clone()))
            .filter(connect_session::Column::Status.is_in([
                SessionStatus::Pending.as_str(),
                SessionStatus::Authorizing.as_str(),
            ]))
            .exec(&self.db)
            .await?;
        if minted.rows_affected == 0 {
            // Finished, or waiting for the seller's pick of a shop, since it was read.
            return Ok(Err(Refusal::new(
                "link_used",
                "this link was used; ask for a new one",
            )));
        }
        Ok(Ok(url))
    }
}
