//! Connectivity checks of saved and unsaved connections, and blue-green's shadow reads.

use std::sync::Arc;

use super::Connections;
use super::crud::Validated;
use crate::audit::{self, Actor, Entry};
use crate::connections::client_for::{ClientDeps, client_for};
use crate::connections::model::NewConnection;
use crate::connectors::Manifest;
use crate::connectors::checks::{self, CheckReport, CheckStatus, ShadowReport};
use crate::connectors::client::ConnectorClient;
use crate::connectors::token_refresh::RefreshedTokens;
use crate::error::{Error, Result};
use crate::ids::TenantId;
use crate::store::entities::connection;

impl Connections {
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
        let mut client = self.client(&row, manifest).await?;
        let webhook_url = format!("{}/v1/hooks/{}", self.public_url, row.id);
        // A check that exchanges the app's credentials (Lingxing) makes the stored token
        // stop working: it runs under the token lock and stores what it got.
        let lock = crate::connections::keeper::token_lock(&self.limiter, &row.id).await?;
        let report = checks::run(&mut client, &self.http, &webhook_url).await;
        let stored = match client.renewed() {
            Some(tokens) => self.store_renewed(actor, &row, &client, tokens).await,
            None => Ok(()),
        };
        if let Some(lock) = lock {
            crate::connections::keeper::unlock(&self.limiter, lock).await;
        }
        stored?;
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
                    at: self.clock.now(),
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

    /// Stores the tokens a check obtained in place of the connection's, with their expiry;
    /// the keeper looks at once and plans their renewal. Nothing is written when the
    /// credentials were replaced since the check read them.
    async fn store_renewed(
        &self,
        actor: &Actor,
        row: &connection::Model,
        client: &ConnectorClient,
        tokens: &RefreshedTokens,
    ) -> Result<()> {
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
        let Some(names) = client.refreshable() else {
            return Ok(());
        };
        let mut expiries = crate::connections::keeper::expiries(row);
        expiries.insert(names.access_token.into(), tokens.access_expires_at);
        match tokens.refresh_expires_at {
            Some(at) => expiries.insert(names.refresh_token.into(), at),
            None => expiries.remove(names.refresh_token),
        };
        let txn = crate::store::begin_write(&self.db).await?;
        let credentials = serde_json::Value::Object(client.credentials().clone()).to_string();
        let secret = self.vault.store(&txn, &row.tenant_id, &credentials).await?;
        let updated = connection::Entity::update_many()
            .col_expr(connection::Column::CredentialsSecretId, secret.into())
            .col_expr(
                connection::Column::CredentialExpiry,
                Some(serde_json::json!(expiries)).into(),
            )
            .col_expr(
                connection::Column::CredentialsDueAt,
                Some(self.clock.now()).into(),
            )
            .col_expr(connection::Column::CredentialRefreshFailures, 0i64.into())
            .filter(connection::Column::Id.eq(row.id.clone()))
            .filter(connection::Column::CredentialsSecretId.eq(row.credentials_secret_id.clone()))
            .exec(&txn)
            .await?;
        if updated.rows_affected == 0 {
            return Ok(());
        }
        self.vault
            .delete(&txn, &row.tenant_id, &row.credentials_secret_id)
            .await?;
        audit::record(
            &txn,
            actor,
            Entry {
                tenant_id: Some(&row.tenant_id),
                action: "connection.refresh_credentials",
                resource_type: "connection",
                resource_id: row.id.as_str(),
                details: serde_json::json!({"by": "connectivity check", "expiries": expiries}),
            },
        )
        .await?;
        txn.commit().await?;
        Ok(())
    }

    /// A client for a saved connection on `manifest`, with its decrypted credentials.
    pub(super) async fn client(
        &self,
        row: &connection::Model,
        manifest: Arc<Manifest>,
    ) -> Result<ConnectorClient> {
        let deps = ClientDeps {
            db: &self.db,
            clock: &self.clock,
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
        let mut client = ConnectorClient::new(
            manifest,
            input.environment.as_str(),
            settings,
            credentials,
            &format!("unsaved:{tenant}"),
            self.limiter.clone(),
            self.http.clone(),
        );
        Ok(checks::run(&mut client, &self.http, "").await)
    }

    /// The manifest of the version a connection is to run: the built-in one, or a
    /// published version the tenant can see.
    pub(super) async fn pinned_manifest(
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
}
