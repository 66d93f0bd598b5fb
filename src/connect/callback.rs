//! The platform's answer: the state found and claimed once, the answer checked as the
//! platform documents before any call, the code traded, and the grant saved as a new
//! connection or new credentials for the one the link was for, then checked.

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use super::platforms::{Callback, Grant, Platform};
use super::refusal::Refusal;
use crate::audit::Actor;
use crate::connections::{Authorization, NewConnection, Reauthorization};
use crate::error::{Error, Result};
use crate::ids::SecretId;
use crate::store::entities::connect_session::{self, SessionStatus};
use crate::store::entities::connection;

use super::service::{
    CallbackOutcome, Connect, STATE_LIFETIME, digest, no_app, random_token, unknown_link,
};

impl Connect {
    /// The session a state names, if the state is current; a refusal says why not.
    pub(super) async fn session_of_state(
        &self,
        platform: Platform,
        state: Option<&str>,
        expected: SessionStatus,
    ) -> Result<std::result::Result<connect_session::Model, Refusal>> {
        let Some(state) = state.filter(|s| s.len() <= 64) else {
            return Ok(Err(Refusal::new(
                "invalid_state",
                "the answer carries no state synchub gave out",
            )));
        };
        let hash = digest(state);
        let row = connect_session::Entity::find()
            .filter(connect_session::Column::StateHash.eq(hash.clone()))
            .one(&self.db)
            .await?;
        let matches = row.as_ref().is_some_and(|r| {
            r.state_hash
                .as_deref()
                .is_some_and(|h| bool::from(h.as_bytes().ct_eq(hash.as_bytes())))
                && r.connector == platform.connector()
        });
        let Some(row) = row.filter(|_| matches) else {
            return Ok(Err(Refusal::new(
                "invalid_state",
                "the answer carries no state synchub gave out for this platform",
            )));
        };
        let now = self.clock.now();
        if row.status != expected || row.state_expires_at.is_none() {
            return Ok(Err(Refusal::new(
                "state_used",
                "this answer was already used; the authorisation cannot be replayed",
            )));
        }
        if row.state_expires_at.is_some_and(|at| at <= now) || row.expires_at <= now {
            return Ok(Err(Refusal::new(
                "state_expired",
                "more than 10 minutes passed on the platform's page; open the link again",
            )));
        }
        Ok(Ok(row))
    }

    /// Claims the session's state: true for exactly one caller.
    pub(super) async fn claim(
        &self,
        row: &connect_session::Model,
        status: SessionStatus,
    ) -> Result<bool> {
        let claimed = connect_session::Entity::update_many()
            .col_expr(
                connect_session::Column::StateExpiresAt,
                Option::<DateTime<Utc>>::None.into(),
            )
            .filter(connect_session::Column::Id.eq(row.id.clone()))
            .filter(connect_session::Column::StateHash.eq(row.state_hash.clone()))
            .filter(connect_session::Column::Status.eq(status.as_str()))
            .filter(connect_session::Column::StateExpiresAt.is_not_null())
            .exec(&self.db)
            .await?;
        Ok(claimed.rows_affected == 1)
    }

    /// `GET /v1/oauth/callback/{connector}`: the platform sent the seller back.
    pub async fn callback(
        &self,
        connector: &str,
        query: &[(String, String)],
    ) -> Result<CallbackOutcome> {
        let Ok(platform) = Platform::from_connector(connector) else {
            return Ok(CallbackOutcome::Refused(Refusal::new(
                "invalid_state",
                "no authorisation flow answers here",
            )));
        };
        let state = query
            .iter()
            .find(|(k, _)| k == "state")
            .map(|(_, v)| v.as_str());
        let row = match self
            .session_of_state(platform, state, SessionStatus::Authorizing)
            .await?
        {
            Ok(row) => row,
            Err(refusal) => return Ok(CallbackOutcome::Refused(refusal)),
        };
        let Some(app) = self
            .apps
            .resolve(&self.db, &row.tenant_id, platform)
            .await?
        else {
            return Ok(CallbackOutcome::Refused(no_app(platform)));
        };
        let settings = row.settings.as_object().cloned().unwrap_or_default();
        let callback = Callback {
            app: &app,
            settings: &settings,
            environment: &row.environment,
            query,
            now: self.clock.now(),
        };
        if let Err(refusal) = platform.check_callback(&callback) {
            // A denial is the seller's answer and ends the session; a forged or stale
            // answer leaves it as it was, for the seller's real one.
            if refusal.code == "access_denied"
                && self.claim(&row, SessionStatus::Authorizing).await?
            {
                return self.fail(&row, refusal).await;
            }
            return Ok(CallbackOutcome::Refused(refusal));
        }
        if !self.claim(&row, SessionStatus::Authorizing).await? {
            return Ok(CallbackOutcome::Refused(Refusal::new(
                "state_used",
                "this answer was already used; the authorisation cannot be replayed",
            )));
        }
        let grants = match platform.exchange(&self.http, &callback).await {
            Ok(grants) => grants,
            Err(refusal) => return self.fail(&row, refusal).await,
        };
        self.with_grants(&row, platform, grants).await
    }

    /// Several shops with one authorisation: the one the connection is for when it is
    /// authorised again, else the seller's pick.
    pub(super) async fn with_grants(
        &self,
        row: &connect_session::Model,
        platform: Platform,
        mut grants: Vec<Grant>,
    ) -> Result<CallbackOutcome> {
        if grants.len() > 1 {
            if let Some(id) = &row.connection_id {
                let existing = connection::Entity::find_by_id(id.clone())
                    .one(&self.db)
                    .await?;
                let wanted = existing.and_then(|c| {
                    platform
                        .account_settings()
                        .iter()
                        .map(|name| c.settings.get(*name).cloned())
                        .collect::<Option<Vec<_>>>()
                });
                grants.retain(|g| {
                    let values: Option<Vec<Value>> = platform
                        .account_settings()
                        .iter()
                        .map(|name| g.settings.get(*name).cloned())
                        .collect();
                    values.is_some() && values == wanted
                });
                if grants.is_empty() {
                    return self
                        .fail(
                            row,
                            Refusal::new(
                                "wrong_account",
                                "the seller authorised shops other than this connection's",
                            ),
                        )
                        .await;
                }
            } else {
                return self.hold_for_choice(row, grants).await;
            }
        }
        let Some(grant) = grants.into_iter().next() else {
            return self
                .fail(row, Refusal::new("no_shop", "the platform granted no shop"))
                .await;
        };
        self.finish(row, platform, grant).await
    }

    /// Keeps the grants (vaulted) and a new state for the seller's pick.
    pub(super) async fn hold_for_choice(
        &self,
        row: &connect_session::Model,
        grants: Vec<Grant>,
    ) -> Result<CallbackOutcome> {
        let shops: Vec<String> = grants.iter().map(|g| g.account.clone()).collect();
        let held = serde_json::to_string(&grants)
            .map_err(|e| Error::Internal(anyhow::anyhow!("holding the grants: {e}")))?;
        let choice = random_token()?;
        let txn = crate::store::begin_write(&self.db).await?;
        let secret = self.vault.store(&txn, &row.tenant_id, &held).await?;
        connect_session::Entity::update_many()
            .col_expr(
                connect_session::Column::StateHash,
                Some(digest(&choice)).into(),
            )
            .col_expr(
                connect_session::Column::StateExpiresAt,
                Some(self.clock.now() + STATE_LIFETIME).into(),
            )
            .col_expr(
                connect_session::Column::Status,
                SessionStatus::ChoosingShop.as_str().into(),
            )
            .col_expr(
                connect_session::Column::PendingSecretId,
                Some(secret).into(),
            )
            .filter(connect_session::Column::Id.eq(row.id.clone()))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(CallbackOutcome::ChooseShop { choice, shops })
    }

    /// The seller picked shop number `index` of those the platform granted.
    pub async fn choose_shop(
        &self,
        connector: &str,
        choice: &str,
        index: usize,
    ) -> Result<CallbackOutcome> {
        let Ok(platform) = Platform::from_connector(connector) else {
            return Ok(CallbackOutcome::Refused(unknown_link()));
        };
        let row = match self
            .session_of_state(platform, Some(choice), SessionStatus::ChoosingShop)
            .await?
        {
            Ok(row) => row,
            Err(refusal) => return Ok(CallbackOutcome::Refused(refusal)),
        };
        let Some(secret) = row.pending_secret_id.clone() else {
            return Ok(CallbackOutcome::Refused(unknown_link()));
        };
        let held = self.vault.load(&self.db, &row.tenant_id, &secret).await?;
        let grants: Vec<Grant> = serde_json::from_str(held.expose()).unwrap_or_default();
        let Some(grant) = grants.into_iter().nth(index) else {
            return Ok(CallbackOutcome::Refused(Refusal::new(
                "missing_parameter",
                "pick one of the shops listed",
            )));
        };
        if !self.claim(&row, SessionStatus::ChoosingShop).await? {
            return Ok(CallbackOutcome::Refused(Refusal::new(
                "state_used",
                "a shop was already picked for this link",
            )));
        }
        self.finish(&row, platform, grant).await
    }

    /// Saves the grant (a new connection, or the connection's credentials rotated), runs the
    /// connectivity check, closes the session and says where the seller goes.
    pub(super) async fn finish(
        &self,
        row: &connect_session::Model,
        platform: Platform,
        grant: Grant,
    ) -> Result<CallbackOutcome> {
        let actor = Actor {
            token_id: None,
            tenant_id: Some(row.tenant_id.clone()),
            name: format!(
                "seller (connect session {}, link by {})",
                row.id, row.created_by
            ),
            request_id: None,
        };
        let authorization = Authorization {
            by: row.created_by.clone(),
            account_settings: platform.account_settings(),
        };
        let saved = match &row.connection_id {
            Some(id) => {
                self.connections
                    .reauthorize(
                        &actor,
                        &row.tenant_id,
                        id,
                        Reauthorization {
                            settings: grant.settings,
                            credentials: grant.credentials,
                            expiries: grant.expiries,
                            webhook_secret: grant.webhook_secret,
                        },
                        authorization,
                    )
                    .await
            }
            None => {
                let mut settings = row.settings.as_object().cloned().unwrap_or_default();
                settings.extend(grant.settings.clone());
                let name = row
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("{} {}", platform.display_name(), grant.account));
                self.connections
                    .create_authorized(
                        &actor,
                        &row.tenant_id,
                        NewConnection {
                            name,
                            connector: platform.connector().to_string(),
                            environment: if row.environment == "sandbox" {
                                crate::connections::EnvironmentKind::Sandbox
                            } else {
                                crate::connections::EnvironmentKind::Production
                            },
                            settings,
                            credentials: grant.credentials,
                            credential_expires_at: grant.expiries,
                            webhook_secret: grant.webhook_secret,
                            timezone: None,
                            version: None,
                            allowed_cidrs: Vec::new(),
                        },
                        &row.created_by,
                    )
                    .await
            }
        };
        let view = match saved {
            Ok(view) => view,
            Err(Error::Invalid(fields)) => {
                let detail = fields
                    .iter()
                    .map(|f| format!("{}: {}", f.field, f.message))
                    .collect::<Vec<_>>()
                    .join("; ");
                return self
                    .fail(row, Refusal::new("connection_refused", detail))
                    .await;
            }
            Err(Error::Conflict(message)) => {
                return self
                    .fail(row, Refusal::new("connection_refused", message))
                    .await;
            }
            Err(Error::Forbidden(message)) => {
                return self.fail(row, Refusal::new("wrong_account", message)).await;
            }
            Err(other) => return Err(other),
        };
        let check = self
            .connections
            .check(&actor, &row.tenant_id, &view.id, None)
            .await
            .map(|report| report.passed)
            .unwrap_or(false);
        self.close(
            row,
            SessionStatus::Completed,
            None,
            Some(vec![view.id.clone()]),
        )
        .await?;
        let mut pairs = vec![
            ("status", "completed".to_string()),
            ("connection_id", view.id),
            ("check", if check { "passed" } else { "failed" }.to_string()),
        ];
        pairs.push(("session_id", row.id.to_string()));
        Ok(CallbackOutcome::ReturnTo {
            url: with_query(&row.return_url, &pairs),
            refusal: None,
        })
    }

    pub(super) async fn fail(
        &self,
        row: &connect_session::Model,
        refusal: Refusal,
    ) -> Result<CallbackOutcome> {
        tracing::info!(session = %row.id, code = refusal.code, detail = %refusal.detail, "connect session failed");
        self.close(row, SessionStatus::Failed, Some(&refusal), None)
            .await?;
        if row.return_url.is_empty() {
            return Ok(CallbackOutcome::Refused(refusal));
        }
        let pairs = [
            ("status", "failed".to_string()),
            ("error", refusal.code.to_string()),
            ("session_id", row.id.to_string()),
        ];
        Ok(CallbackOutcome::ReturnTo {
            url: with_query(&row.return_url, &pairs),
            refusal: Some(refusal),
        })
    }

    pub(super) async fn close(
        &self,
        row: &connect_session::Model,
        status: SessionStatus,
        refusal: Option<&Refusal>,
        connections: Option<Vec<String>>,
    ) -> Result<()> {
        let txn = crate::store::begin_write(&self.db).await?;
        if let Some(secret) = &row.pending_secret_id {
            self.vault.delete(&txn, &row.tenant_id, secret).await?;
        }
        connect_session::Entity::update_many()
            .col_expr(connect_session::Column::Status, status.as_str().into())
            .col_expr(
                connect_session::Column::ErrorCode,
                refusal.map(|r| r.code.to_string()).into(),
            )
            .col_expr(
                connect_session::Column::ErrorMessage,
                refusal.map(|r| r.detail.clone()).into(),
            )
            .col_expr(
                connect_session::Column::ConnectionIds,
                connections.map(|c| json!(c)).into(),
            )
            .col_expr(
                connect_session::Column::PendingSecretId,
                Option::<SecretId>::None.into(),
            )
            .col_expr(
                connect_session::Column::StateExpiresAt,
                Option::<DateTime<Utc>>::None.into(),
            )
            .col_expr(
                connect_session::Column::FinishedAt,
                Some(self.clock.now()).into(),
            )
            .filter(connect_session::Column::Id.eq(row.id.clone()))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(())
    }
}

/// The return URL with the outcome added to its query (its own parameters kept).
fn with_query(base: &str, pairs: &[(&str, String)]) -> String {
    match url::Url::parse(base) {
        Ok(mut url) => {
            url.query_pairs_mut()
                .extend_pairs(pairs.iter().map(|(k, v)| (*k, v.as_str())));
            url.to_string()
        }
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::with_query;

    #[test]
    fn outcomes_join_the_return_urls_own_query() {
        assert_eq!(
            with_query(
                "https://s.example/done?from=mail",
                &[("status", "completed".into())]
            ),
            "https://s.example/done?from=mail&status=completed"
        );
    }
}
