//! Rotating a connection's credentials and webhook secret, with a grace period for the
//! old secret so the platform's retries in flight still verify.

use sea_orm::{ActiveModelTrait, Set};
use serde_json::{Map, Value};

use super::crud::{check_credentials, check_secret, effective_scheme};
use super::{Connections, current_webhook_secret};
use crate::audit::{self, Actor, Entry};
use crate::connections::model::{
    Authorization, ConnectionView, CredentialsRotation, Reauthorization,
};
use crate::error::{Error, FieldError, Result};
use crate::ids::{ConnectionId, SecretId, TenantId};
use crate::store::entities::connection::{self, AuthorizationStatus};

pub(super) const MAX_GRACE_SECONDS: i64 = 7 * 24 * 3600;

impl Connections {
    /// Replaces credentials and/or the webhook secret. If the secret that signs webhooks
    /// changes, the old one keeps verifying for the grace period.
    pub async fn rotate_credentials(
        &self,
        actor: &Actor,
        tenant: &TenantId,
        id: &str,
        input: CredentialsRotation,
    ) -> Result<ConnectionView> {
        self.rotate(actor, tenant, id, input, None).await
    }

    /// A seller's new consent for the connection: its credentials rotated (audited as a
    /// re-authorisation), the settings the platform told updated, the authorisation dated.
    /// A consent for another account (another shop) is refused and changes nothing.
    pub async fn reauthorize(
        &self,
        actor: &Actor,
        tenant: &TenantId,
        id: &ConnectionId,
        grant: Reauthorization,
        authorization: Authorization,
    ) -> Result<ConnectionView> {
        let rotation = CredentialsRotation {
            credentials: Some(grant.credentials),
            credential_expires_at: Some(grant.expiries),
            webhook_secret: grant.webhook_secret,
            grace_seconds: None,
        };
        self.rotate(
            actor,
            tenant,
            id.as_str(),
            rotation,
            Some((grant.settings, authorization)),
        )
        .await
    }

    async fn rotate(
        &self,
        actor: &Actor,
        tenant: &TenantId,
        id: &str,
        mut input: CredentialsRotation,
        reauthorizing: Option<(Map<String, Value>, Authorization)>,
    ) -> Result<ConnectionView> {
        let txn = crate::store::begin_write(&self.db).await?;
        let row = self.find(&txn, tenant, id).await?;
        let manifest = self.manifest(&row.connector)?;
        if let Some((told, authorization)) = &reauthorizing {
            for name in authorization.account_settings {
                if let (Some(new), Some(old)) = (told.get(*name), row.settings.get(*name))
                    && new != old
                {
                    return Err(Error::Forbidden(format!(
                        "the seller authorised {name} {new}, but this connection is for {old}"
                    )));
                }
            }
            // The same secret again (Shopify's client secret) is no rotation.
            let current = match &manifest.webhook {
                Some(spec) => current_webhook_secret(&txn, &self.vault, &row, spec).await?,
                None => None,
            };
            if input.webhook_secret.as_deref() == current.as_ref().map(|s| s.expose()) {
                input.webhook_secret = None;
            }
        }
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
            (Some(credentials), given) => Some(crate::connections::keeper::check_expiries(
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
        if let Some(credentials) = &credentials {
            self.ensure_app_unshared(&txn, tenant, &manifest, credentials, Some(&row.id))
                .await?;
        }
        let mut active: connection::ActiveModel = row.clone().into();
        let mut retired: Vec<SecretId> = Vec::new();
        if let Some(credentials) = credentials {
            let new_id = self
                .vault
                .store(
                    &txn,
                    tenant,
                    &Value::Object(credentials.clone()).to_string(),
                )
                .await?;
            active.credentials_secret_id = Set(new_id);
            retired.push(row.credentials_secret_id.clone());
            let expiries = expiries.unwrap_or_default();
            active.credentials_due_at = Set(crate::connections::keeper::first_look(
                &manifest,
                &credentials,
                &expiries,
                self.clock.now(),
            ));
            active.credential_expiry = Set(Some(serde_json::json!(expiries)));
            active.credential_refresh_failures = Set(0);
        }
        if let Some(secret) = &input.webhook_secret {
            active.webhook_secret_id = Set(Some(self.vault.store(&txn, tenant, secret).await?));
            retired.extend(row.webhook_secret_id.clone());
        }
        active.updated_at = Set(self.clock.now());
        if let Some((told, authorization)) = &reauthorizing {
            let mut settings = row.settings.as_object().cloned().unwrap_or_default();
            settings.extend(told.clone());
            active.settings = Set(Value::Object(settings));
            active.authorized_at = Set(Some(self.clock.now()));
            active.authorized_by = Set(Some(authorization.by.clone()));
            active.authorization_status = Set(Some(AuthorizationStatus::Authorized));
        }
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
                let until = self.clock.now() + chrono::Duration::seconds(grace);
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
                action: if reauthorizing.is_some() {
                    "connection.reauthorize"
                } else {
                    "connection.rotate_credentials"
                },
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
}
