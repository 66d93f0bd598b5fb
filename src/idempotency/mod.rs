//! Idempotency keys for writes. The first request with a key claims it; its response (unless
//! a 5xx, which may be retried) is stored and replayed to every later request with the same
//! key and the same content. Keys belong to the API token that sent them and live 24 hours.
//! A kept response may carry a secret (a newly issued API token, later a connect link), so
//! every kept body is sealed by the vault like a credential: a database dump shows none.

use anyhow::Context;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    Set,
};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::store::entities::idempotency_key;
use crate::vault::{MasterKey, Vault};

/// How long a key is remembered.
pub const RETENTION: chrono::Duration = chrono::Duration::hours(24);
/// A claim whose request never finished (the process died) is abandoned after this.
pub const ABANDONED_AFTER: chrono::Duration = chrono::Duration::minutes(5);
pub const MAX_KEY_LEN: usize = 255;

pub struct StoredResponse {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

pub enum Claim {
    /// This request owns the key: serve it, then `complete` or `release`.
    Claimed,
    /// A finished request had this key: replay its response.
    Replay(StoredResponse),
}

/// What a kept response is sealed for: its token's scope and its key.
pub fn binding(scope: &str, key: &str) -> String {
    format!("idempotency/{scope}/{key}")
}

pub fn scope_of_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

pub fn request_hash(method: &str, path_and_query: &str, body: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(method.as_bytes());
    hasher.update([0]);
    hasher.update(path_and_query.as_bytes());
    hasher.update([0]);
    hasher.update(body);
    hex::encode(hasher.finalize())
}

pub fn validate_key(key: &str) -> Result<()> {
    if key.is_empty() || key.len() > MAX_KEY_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::invalid(
            "Idempotency-Key",
            format!("must be 1 to {MAX_KEY_LEN} visible ASCII characters"),
        ));
    }
    Ok(())
}

pub async fn claim(
    db: &DatabaseConnection,
    vault: &Vault,
    scope: &str,
    key: &str,
    hash: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Claim> {
    let inserted = idempotency_key::Entity::insert(idempotency_key::ActiveModel {
        scope: Set(scope.to_string()),
        idempotency_key: Set(key.to_string()),
        request_hash: Set(hash.to_string()),
        status: Set(None),
        content_type: Set(None),
        body: Set(None),
        created_at: Set(now),
    })
    .on_conflict(
        OnConflict::columns([
            idempotency_key::Column::Scope,
            idempotency_key::Column::IdempotencyKey,
        ])
        .do_nothing()
        .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    if inserted == 1 {
        return Ok(Claim::Claimed);
    }
    let existing = idempotency_key::Entity::find_by_id((scope.to_string(), key.to_string()))
        .one(db)
        .await?
        .ok_or_else(|| {
            Error::Conflict("the idempotency key was released meanwhile; retry".into())
        })?;
    let expired = existing.created_at + RETENTION < now;
    let abandoned = existing.status.is_none() && existing.created_at + ABANDONED_AFTER < now;
    if expired || abandoned {
        // Take the stale key over, if no one else just did.
        let taken = idempotency_key::Entity::update_many()
            .col_expr(idempotency_key::Column::RequestHash, hash.into())
            .col_expr(idempotency_key::Column::Status, Option::<i32>::None.into())
            .col_expr(
                idempotency_key::Column::Body,
                Option::<Vec<u8>>::None.into(),
            )
            .col_expr(idempotency_key::Column::CreatedAt, now.into())
            .filter(idempotency_key::Column::Scope.eq(scope))
            .filter(idempotency_key::Column::IdempotencyKey.eq(key))
            .filter(idempotency_key::Column::CreatedAt.eq(existing.created_at))
            .exec(db)
            .await?;
        if taken.rows_affected == 1 {
            return Ok(Claim::Claimed);
        }
        return Err(Error::Conflict(
            "a request with this idempotency key is in progress".into(),
        ));
    }
    if existing.request_hash != hash {
        return Err(Error::IdempotencyKeyReused);
    }
    match existing.status {
        None => Err(Error::Conflict(
            "a request with this idempotency key is in progress".into(),
        )),
        Some(status) => {
            let body = match &existing.body {
                Some(sealed) => vault
                    .open_bytes(&binding(scope, key), sealed)
                    .map_err(|_| {
                        Error::Conflict(
                            "the response kept for this idempotency key can no longer be opened (the master key changed); send the request with a new key".into(),
                        )
                    })?,
                None => Vec::new(),
            };
            Ok(Claim::Replay(StoredResponse {
                status: u16::try_from(status).unwrap_or(500),
                content_type: existing.content_type,
                body,
            }))
        }
    }
}

pub async fn complete(
    db: &DatabaseConnection,
    vault: &Vault,
    scope: &str,
    key: &str,
    response: StoredResponse,
) -> Result<()> {
    let body = vault.seal_bytes(&binding(scope, key), &response.body)?;
    let row = idempotency_key::ActiveModel {
        scope: Set(scope.to_string()),
        idempotency_key: Set(key.to_string()),
        status: Set(Some(i32::from(response.status))),
        content_type: Set(response.content_type),
        body: Set(Some(body)),
        ..Default::default()
    };
    row.update(db).await?;
    Ok(())
}

/// Forgets a claim whose request failed in a way worth retrying.
pub async fn release(db: &DatabaseConnection, scope: &str, key: &str) -> Result<()> {
    idempotency_key::Entity::delete_by_id((scope.to_string(), key.to_string()))
        .exec(db)
        .await?;
    Ok(())
}

/// Re-wraps the kept responses' data keys from `old` to `new` inside the caller's
/// transaction (the master-key rotation); returns how many were re-wrapped.
pub async fn rewrap_kept<C: ConnectionTrait>(
    txn: &C,
    old: &MasterKey,
    new: &MasterKey,
) -> anyhow::Result<usize> {
    let kept = idempotency_key::Entity::find()
        .filter(idempotency_key::Column::Body.is_not_null())
        .all(txn)
        .await?;
    let mut rewrapped = 0;
    for row in kept {
        let Some(body) = &row.body else { continue };
        let binding = binding(&row.scope, &row.idempotency_key);
        let Some(body) = crate::vault::rewrap_sealed(old, new, &binding, body)
            .with_context(|| format!("re-wrapping the kept response of {binding}"))?
        else {
            continue;
        };
        let mut active: idempotency_key::ActiveModel = row.into();
        active.body = Set(Some(body));
        active.update(txn).await?;
        rewrapped += 1;
    }
    Ok(rewrapped)
}

/// Deletes keys past their retention; returns how many.
pub async fn prune(db: &DatabaseConnection, now: chrono::DateTime<chrono::Utc>) -> Result<u64> {
    let cutoff = now - RETENTION;
    Ok(idempotency_key::Entity::delete_many()
        .filter(idempotency_key::Column::CreatedAt.lt(cutoff))
        .exec(db)
        .await?
        .rows_affected)
}
