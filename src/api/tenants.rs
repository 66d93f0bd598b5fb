use actix_web::{HttpResponse, delete, get, post, web};

use super::AppState;
use super::extract::{Auth, Json, Query};
use crate::error::{Error, Result};
use crate::ids::TenantId;
use crate::pagination::PageQuery;
use crate::tenancy::{self, NewTenant, NewToken, Principal, Scope};

/// The tenant a token request is about: the operator may name any tenant, a tenant admin
/// only its own (another tenant's id is "not found", never "forbidden").
fn token_tenant(principal: &Principal, raw: &str) -> Result<TenantId> {
    principal.require(Scope::Admin)?;
    let id = TenantId::parse(raw).ok_or(Error::NotFound("tenant"))?;
    match &principal.tenant_id {
        None => Ok(id),
        Some(own) if *own == id => Ok(id),
        Some(_) => Err(Error::NotFound("tenant")),
    }
}

/// Create a tenant (operator only).
#[utoipa::path(request_body = NewTenant, responses((status = 201, body = tenancy::TenantView), (status = 400, body = crate::api::problem::Problem)), tag = "tenants", security(("bearer" = [])))]
#[post("/v1/tenants")]
pub async fn create_tenant(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    Json(input): Json<NewTenant>,
) -> Result<HttpResponse> {
    principal.require_operator()?;
    principal.require(Scope::Admin)?;
    let tenant = tenancy::create_tenant(&state.db, &principal.actor(), input).await?;
    Ok(HttpResponse::Created().json(tenant))
}

/// Create an API token for a tenant; the token is in the response once.
#[utoipa::path(request_body = NewToken, params(("id" = String, Path)), responses((status = 201, body = tenancy::CreatedToken)), tag = "tenants", security(("bearer" = [])))]
#[post("/v1/tenants/{id}/tokens")]
pub async fn create_token(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    path: web::Path<String>,
    Json(input): Json<NewToken>,
) -> Result<HttpResponse> {
    let tenant = token_tenant(&principal, &path)?;
    let created = tenancy::create_token(
        &state.db,
        &principal.actor(),
        &tenant,
        input,
        state.clock.now(),
    )
    .await?;
    Ok(HttpResponse::Created().json(created))
}

/// List a tenant's tokens (never the tokens themselves).
#[utoipa::path(params(("id" = String, Path), PageQuery), responses((status = 200, body = crate::pagination::Page<tenancy::TokenView>)), tag = "tenants", security(("bearer" = [])))]
#[get("/v1/tenants/{id}/tokens")]
pub async fn list_tokens(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    path: web::Path<String>,
    Query(query): Query<PageQuery>,
) -> Result<HttpResponse> {
    let tenant = token_tenant(&principal, &path)?;
    let page = query.validate()?;
    Ok(HttpResponse::Ok().json(tenancy::list_tokens(&state.db, &tenant, &page).await?))
}

/// Revoke a token; it stops working at once.
#[utoipa::path(params(("id" = String, Path), ("token_id" = String, Path)), responses((status = 200, body = tenancy::TokenView)), tag = "tenants", security(("bearer" = [])))]
#[delete("/v1/tenants/{id}/tokens/{token_id}")]
pub async fn revoke_token(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse> {
    let (tenant, token) = path.into_inner();
    let tenant = token_tenant(&principal, &tenant)?;
    let revoked = tenancy::revoke_token(&state.db, &principal.actor(), &tenant, &token).await?;
    Ok(HttpResponse::Ok().json(revoked))
}

/// List the operator's tokens (operator only; never the tokens themselves).
#[utoipa::path(params(PageQuery), responses((status = 200, body = crate::pagination::Page<tenancy::TokenView>), (status = 403, body = crate::api::problem::Problem)), tag = "tenants", security(("bearer" = [])))]
#[get("/v1/operator/tokens")]
pub async fn list_operator_tokens(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    Query(query): Query<PageQuery>,
) -> Result<HttpResponse> {
    principal.require_operator()?;
    principal.require(Scope::Admin)?;
    let page = query.validate()?;
    Ok(HttpResponse::Ok().json(tenancy::list_operator_tokens(&state.db, &page).await?))
}

/// Revoke an operator token (operator only); it stops working at once. The last working one
/// stays: 409 until another exists (`synchub operator-token` makes one).
#[utoipa::path(params(("token_id" = String, Path)), responses((status = 200, body = tenancy::TokenView), (status = 404, body = crate::api::problem::Problem), (status = 409, body = crate::api::problem::Problem)), tag = "tenants", security(("bearer" = [])))]
#[delete("/v1/operator/tokens/{token_id}")]
pub async fn revoke_operator_token(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    principal.require_operator()?;
    principal.require(Scope::Admin)?;
    let revoked = tenancy::revoke_operator_token(
        &state.db,
        &principal.actor(),
        &path,
        tenancy::LastOperatorToken::Keep,
        state.clock.now(),
    )
    .await?;
    Ok(HttpResponse::Ok().json(revoked))
}
