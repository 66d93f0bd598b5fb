//! API tokens: 32 random bytes shown once as `shk_<base64url>`, stored only as SHA-256.
//! A token is high-entropy, so a fast hash is enough and lookup by hash stays O(1).

use std::collections::BTreeSet;
use std::net::IpAddr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ipnet::IpNet;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::principal::{Principal, Scope};
use crate::audit::{self, Actor, Entry};
use crate::error::{Error, FieldError, Result};
use crate::ids::{TenantId, TokenId};
use crate::netpolicy::{cidrs_from_json, cidrs_to_json, parse_cidrs};
use crate::pagination::{Direction, Page, PageRequest, page_query};
use crate::store::entities::api_token;

const TOKEN_PREFIX: &str = "shk_";

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000]*[^\u0000\u0009-\u000D \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\u0000]*$"
    )]
    pub name: String,
    /// Any of read, write, deploy, admin.
    #[schema(min_items = 1)]
    pub scopes: Vec<Scope>,
    /// Source networks the token may be used from (IPv4/IPv6 CIDRs). Empty: anywhere.
    #[serde(default)]
    pub allowed_cidrs: Vec<String>,
    /// When the token stops working (RFC 3339). Absent: never.
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenView {
    pub id: String,
    pub tenant_id: Option<String>,
    pub name: String,
    /// The first characters of the token, to tell tokens apart.
    pub prefix: String,
    pub scopes: Vec<Scope>,
    pub allowed_cidrs: Vec<String>,
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
    pub revoked_at: Option<chrono::DateTime<chrono::Utc>>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub info: TokenView,
    /// The token itself. It is shown this once and cannot be recovered.
    pub token: String,
}

fn view(m: api_token::Model) -> TokenView {
    TokenView {
        id: m.id.to_string(),
        tenant_id: m.tenant_id.map(|t| t.to_string()),
        name: m.name,
        prefix: m.prefix,
        scopes: serde_json::from_value(m.scopes).unwrap_or_default(),
        allowed_cidrs: cidrs_from_json(&m.allowed_cidrs)
            .iter()
            .map(ToString::to_string)
            .collect(),
        expires_at: m.expires_at,
        revoked_at: m.revoked_at,
        created_at: m.created_at,
    }
}

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn generate_token() -> Result<String> {
    let bytes = crate::random::bytes::<32>()?;
    Ok(format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)))
}

async fn insert_token<C: ConnectionTrait>(
    db: &C,
    tenant: Option<&TenantId>,
    name: &str,
    scopes: &BTreeSet<Scope>,
    cidrs: &[IpNet],
    expires_at: Option<chrono::DateTime<chrono::Utc>>,
    plaintext: &str,
) -> Result<api_token::Model> {
    Ok(api_token::ActiveModel {
        id: Set(TokenId::generate()),
        tenant_id: Set(tenant.cloned()),
        name: Set(name.to_string()),
        token_hash: Set(hash_token(plaintext)),
        prefix: Set(plaintext.chars().take(TOKEN_PREFIX.len() + 4).collect()),
        scopes: Set(serde_json::to_value(scopes).map_err(anyhow::Error::from)?),
        allowed_cidrs: Set(cidrs_to_json(cidrs)),
        expires_at: Set(expires_at),
        revoked_at: Set(None),
        created_at: Set(chrono::Utc::now()),
    }
    .insert(db)
    .await?)
}

pub async fn create_token(
    db: &DatabaseConnection,
    actor: &Actor,
    tenant: &TenantId,
    input: NewToken,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<CreatedToken> {
    let mut errors = Vec::new();
    let name = input.name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        errors.push(FieldError::new("name", "must be 1 to 200 characters"));
    }
    if input.scopes.is_empty() {
        errors.push(FieldError::new(
            "scopes",
            "name at least one of read, write, deploy, admin",
        ));
    }
    let cidrs = parse_cidrs(&input.allowed_cidrs, "allowed_cidrs", &mut errors);
    if let Some(at) = input.expires_at
        && at <= now
    {
        errors.push(FieldError::new("expires_at", "must be in the future"));
    }
    if !errors.is_empty() {
        return Err(Error::Invalid(errors));
    }
    let scopes: BTreeSet<Scope> = input.scopes.into_iter().collect();
    let plaintext = generate_token()?;
    let txn = crate::store::begin_write(db).await?;
    super::ensure_tenant_exists(&txn, tenant).await?;
    let model = insert_token(
        &txn,
        Some(tenant),
        name,
        &scopes,
        &cidrs,
        input.expires_at,
        &plaintext,
    )
    .await?;
    audit::record(
        &txn,
        actor,
        Entry {
            tenant_id: Some(tenant),
            action: "token.create",
            resource_type: "token",
            resource_id: model.id.as_str(),
            details: serde_json::json!({
                "name": model.name,
                "scopes": model.scopes,
                "allowed_cidrs": model.allowed_cidrs,
                "expires_at": model.expires_at,
            }),
        },
    )
    .await?;
    txn.commit().await?;
    Ok(CreatedToken {
        info: view(model),
        token: plaintext,
    })
}

pub async fn list_tokens(
    db: &DatabaseConnection,
    tenant: &TenantId,
    page: &PageRequest,
) -> Result<Page<TokenView>> {
    super::ensure_tenant_exists(db, tenant).await?;
    token_page(db, api_token::Entity::find_in_tenant(tenant), page).await
}

/// A page of the tokens `query` selects, oldest first.
async fn token_page(
    db: &DatabaseConnection,
    query: sea_orm::Select<api_token::Entity>,
    page: &PageRequest,
) -> Result<Page<TokenView>> {
    let rows = page_query(query, api_token::Column::Id, page, Direction::OldestFirst)
        .all(db)
        .await?;
    Ok(Page::from_rows(
        rows,
        page.limit,
        |m| m.id.to_string(),
        view,
    ))
}

pub async fn revoke_token(
    db: &DatabaseConnection,
    actor: &Actor,
    tenant: &TenantId,
    token: &str,
) -> Result<TokenView> {
    let txn = crate::store::begin_write(db).await?;
    let model = crate::store::find_owned::<api_token::Entity>(&txn, tenant, token).await?;
    let model = if model.revoked_at.is_none() {
        revoke_and_record(
            &txn,
            actor,
            model,
            Some(tenant),
            "token.revoke",
            chrono::Utc::now(),
        )
        .await?
    } else {
        model
    };
    txn.commit().await?;
    Ok(view(model))
}

/// Marks `model` revoked at `now` and records who did it, inside the caller's transaction.
async fn revoke_and_record(
    txn: &sea_orm::DatabaseTransaction,
    actor: &Actor,
    model: api_token::Model,
    tenant_id: Option<&TenantId>,
    action: &'static str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<api_token::Model> {
    let mut active: api_token::ActiveModel = model.into();
    active.revoked_at = Set(Some(now));
    let updated = active.update(txn).await?;
    audit::record(
        txn,
        actor,
        Entry {
            tenant_id,
            action,
            resource_type: "token",
            resource_id: updated.id.as_str(),
            details: serde_json::json!({ "name": updated.name }),
        },
    )
    .await?;
    Ok(updated)
}

/// Whether a token still lets its holder in at `now`: not revoked, not expired.
fn usable_at(model: &api_token::Model, now: chrono::DateTime<chrono::Utc>) -> bool {
    model.revoked_at.is_none() && model.expires_at.is_none_or(|at| at > now)
}

/// The operator's tokens (admin over every tenant; never the tokens themselves).
pub async fn list_operator_tokens(
    db: &DatabaseConnection,
    page: &PageRequest,
) -> Result<Page<TokenView>> {
    let operator_tokens = api_token::Entity::find().filter(api_token::Column::TenantId.is_null());
    token_page(db, operator_tokens, page).await
}

/// Who may revoke the last working operator token.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum LastOperatorToken {
    /// The API: a request that revoked the last one would leave nobody able to manage
    /// tenants until someone with the database's credentials runs `synchub operator-token`.
    Keep,
    /// The command line, run with the database's credentials, which can always make another.
    MayRevoke,
}

/// Revokes an operator token (a leaked one, or the bootstrap token once others exist); it
/// stops working at once. A tenant's token is not found here, and revoking a revoked one
/// changes nothing.
pub async fn revoke_operator_token(
    db: &DatabaseConnection,
    actor: &Actor,
    token: &str,
    last: LastOperatorToken,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<TokenView> {
    let id = TokenId::parse(token).ok_or(Error::NotFound("token"))?;
    let txn = crate::store::begin_write(db).await?;
    // Every operator token, locked (PostgreSQL; SQLite's write transaction holds the whole
    // database): two revokes at once of the last two would each see the other still working.
    let operator_tokens = api_token::Entity::find()
        .filter(api_token::Column::TenantId.is_null())
        .order_by_asc(api_token::Column::Id)
        .lock_exclusive()
        .all(&txn)
        .await?;
    let (mut asked, others): (Vec<_>, Vec<_>) =
        operator_tokens.into_iter().partition(|t| t.id == id);
    let model = asked.pop().ok_or(Error::NotFound("token"))?;
    if model.revoked_at.is_some() {
        return Ok(view(model));
    }
    if last == LastOperatorToken::Keep && !others.iter().any(|t| usable_at(t, now)) {
        return Err(Error::Conflict(
            "this is the last working operator token: create another with `synchub operator-token` first".into(),
        ));
    }
    let updated = revoke_and_record(&txn, actor, model, None, "token.operator_revoke", now).await?;
    txn.commit().await?;
    Ok(view(updated))
}

/// Resolves a bearer token to its principal. Unknown, expired and revoked tokens are 401;
/// a valid token used from outside its networks is 403.
pub async fn authenticate(
    db: &DatabaseConnection,
    bearer: &str,
    client_ip: IpAddr,
    request_id: Option<String>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Principal> {
    if !bearer.starts_with(TOKEN_PREFIX) || bearer.len() > 128 {
        return Err(Error::Unauthenticated(
            "the bearer token is not a synchub token (those start with shk_)",
        ));
    }
    const NOT_VALID: &str = "the bearer token is not valid: unknown, revoked or expired";
    let model = api_token::Entity::find()
        .filter(api_token::Column::TokenHash.eq(hash_token(bearer)))
        .one(db)
        .await?
        .ok_or(Error::Unauthenticated(NOT_VALID))?;
    if !usable_at(&model, now) {
        return Err(Error::Unauthenticated(NOT_VALID));
    }
    let cidrs = cidrs_from_json(&model.allowed_cidrs);
    if !crate::netpolicy::allows(&cidrs, client_ip) {
        return Err(Error::Forbidden(format!(
            "this token may not be used from {client_ip}"
        )));
    }
    Ok(Principal {
        token_id: model.id,
        token_name: model.name,
        tenant_id: model.tenant_id,
        scopes: serde_json::from_value(model.scopes).unwrap_or_default(),
        request_id,
    })
}

/// What start-up did about the operator token.
#[derive(Debug, PartialEq, Eq)]
pub enum Bootstrap {
    /// Tokens exist already: nothing was created.
    AlreadyInitialised,
    /// The database was empty and the configured token now works.
    CreatedFromConfig,
    /// The database was empty and this token was generated; it must be printed once.
    Generated(String),
    /// The database was empty, no token was configured and none may be generated (in
    /// production a token printed to stdout ends in the log pipeline): `synchub operator-token`
    /// creates one.
    Withheld,
}

/// On an empty database, creates the operator token: the configured one, or a generated
/// one when `generate` allows.
pub async fn bootstrap_operator_token(
    db: &DatabaseConnection,
    given: Option<&str>,
    generate: bool,
) -> Result<Bootstrap> {
    let txn = crate::store::begin_write(db).await?;
    if api_token::Entity::find().count(&txn).await? > 0 {
        return Ok(Bootstrap::AlreadyInitialised);
    }
    let plaintext = match given {
        Some(token)
            if token.starts_with(TOKEN_PREFIX) && token.len() >= TOKEN_PREFIX.len() + 32 =>
        {
            token.to_string()
        }
        Some(_) => {
            return Err(Error::Internal(anyhow::anyhow!(
                "SYNCHUB_BOOTSTRAP_TOKEN must start with `{TOKEN_PREFIX}` and carry at least 32 more characters"
            )));
        }
        None if generate => generate_token()?,
        None => return Ok(Bootstrap::Withheld),
    };
    insert_operator_token(
        &txn,
        &Actor::system("bootstrap"),
        "operator",
        &plaintext,
        "token.bootstrap",
        given.is_some(),
    )
    .await?;
    txn.commit().await?;
    Ok(if given.is_some() {
        Bootstrap::CreatedFromConfig
    } else {
        Bootstrap::Generated(plaintext)
    })
}

/// A new operator token (admin over every tenant) for `synchub operator-token`: the first in
/// production, or one that replaces a lost one. Run by whoever holds the database's
/// credentials, which is the operator already.
pub async fn create_operator_token(db: &DatabaseConnection, name: &str) -> Result<String> {
    let plaintext = generate_token()?;
    let txn = crate::store::begin_write(db).await?;
    // The audit log says the command line made it: no token stands behind the call.
    let actor = Actor::system("cli:operator-token");
    insert_operator_token(
        &txn,
        &actor,
        name,
        &plaintext,
        "token.operator_create",
        false,
    )
    .await?;
    txn.commit().await?;
    Ok(plaintext)
}

async fn insert_operator_token<C: sea_orm::ConnectionTrait>(
    txn: &C,
    actor: &Actor,
    name: &str,
    plaintext: &str,
    action: &'static str,
    given: bool,
) -> Result<()> {
    let scopes: BTreeSet<Scope> = [Scope::Admin].into_iter().collect();
    let model = insert_token(txn, None, name, &scopes, &[], None, plaintext).await?;
    audit::record(
        txn,
        actor,
        Entry {
            tenant_id: None,
            action,
            resource_type: "token",
            resource_id: model.id.as_str(),
            details: serde_json::json!({ "name": name, "given": given }),
        },
    )
    .await
}
