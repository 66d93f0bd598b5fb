//! The one way to build a platform client for a saved connection: the manifest the caller
//! resolved (its pin, a run's version, a deployment's candidate), the connection's settings
//! and its decrypted credentials. Credentials that do not read as a JSON object fail loudly:
//! they never become an empty set that the platform then refuses.

use std::sync::Arc;

use sea_orm::ConnectionTrait;
use serde_json::{Map, Value};

use crate::connectors::Manifest;
use crate::connectors::client::ConnectorClient;
use crate::error::{Error, Result};
use crate::netpolicy::OutboundClient;
use crate::ratelimit::RateLimiter;
use crate::store::entities::connection;
use crate::vault::Vault;

/// What a client needs besides the connection: the vault, the shared rate limits and the
/// guarded outbound client.
pub struct ClientDeps<'a, C> {
    pub db: &'a C,
    pub vault: &'a Vault,
    pub limiter: &'a RateLimiter,
    pub http: &'a OutboundClient,
    pub clock: &'a crate::clock::Clock,
}

pub async fn client_for<C: ConnectionTrait>(
    deps: &ClientDeps<'_, C>,
    row: &connection::Model,
    manifest: Arc<Manifest>,
) -> Result<ConnectorClient> {
    let credentials = load_credentials(deps.db, deps.vault, row).await?;
    Ok(ConnectorClient::new(
        manifest,
        &row.environment,
        row.settings.as_object().cloned().unwrap_or_default(),
        credentials,
        row.id.as_str(),
        deps.limiter.clone(),
        deps.http.clone(),
    )
    .with_clock(deps.clock.clone()))
}

/// The connection's credentials, decrypted.
pub async fn load_credentials<C: ConnectionTrait>(
    db: &C,
    vault: &Vault,
    row: &connection::Model,
) -> Result<Map<String, Value>> {
    let text = match vault
        .load(db, &row.tenant_id, &row.credentials_secret_id)
        .await
    {
        Ok(text) => text,
        // Whoever replaces credentials (the keeper, a rotation, a check's token exchange)
        // deletes the old secret in the transaction that points the row at the new one: a
        // row read just before that names a secret that is gone, so read the current one.
        Err(err) => match current_secret(db, row).await? {
            Some(current) if current != row.credentials_secret_id => {
                vault.load(db, &row.tenant_id, &current).await?
            }
            _ => return Err(err),
        },
    };
    serde_json::from_str(text.expose()).map_err(|_| {
        Error::Internal(anyhow::anyhow!(
            "credentials of {} are not a JSON object",
            row.id
        ))
    })
}

async fn current_secret<C: ConnectionTrait>(
    db: &C,
    row: &connection::Model,
) -> Result<Option<crate::ids::SecretId>> {
    use sea_orm::EntityTrait;
    Ok(connection::Entity::find_by_id(row.id.clone())
        .one(db)
        .await?
        .map(|now| now.credentials_secret_id))
}
