use actix_web::{HttpResponse, delete, get, patch, post, put, web};

use super::AppState;
use super::extract::{Auth, Json, Query};
use crate::connections::{
    AllowlistView, ConnectionPatch, ConnectionView, CredentialsRotation, NewConnection,
};
use crate::error::Result;
use crate::pagination::{Page, PageQuery};
use crate::tenancy::Scope;

/// Create a connection; credentials and the webhook secret are encrypted, never returned.
#[utoipa::path(request_body = NewConnection, responses((status = 201, body = ConnectionView), (status = 400, body = crate::api::problem::Problem)), tag = "connections", security(("bearer" = [])))]
#[post("/v1/connections")]
pub async fn create(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    Json(input): Json<NewConnection>,
) -> Result<HttpResponse> {
    let tenant = principal.tenant(Scope::Write)?;
    let view = state
        .connections
        .create(&principal.actor(), tenant, input)
        .await?;
    Ok(HttpResponse::Created().json(view))
}

#[utoipa::path(params(PageQuery), responses((status = 200, body = Page<ConnectionView>)), tag = "connections", security(("bearer" = [])))]
#[get("/v1/connections")]
pub async fn list(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    Query(query): Query<PageQuery>,
) -> Result<HttpResponse> {
    let tenant = principal.tenant(Scope::Read)?;
    let page = query.validate()?;
    Ok(HttpResponse::Ok().json(state.connections.list(tenant, &page).await?))
}

#[utoipa::path(params(("id" = String, Path)), responses((status = 200, body = ConnectionView), (status = 404, body = crate::api::problem::Problem)), tag = "connections", security(("bearer" = [])))]
#[get("/v1/connections/{id}")]
pub async fn get(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    let tenant = principal.tenant(Scope::Read)?;
    Ok(HttpResponse::Ok().json(state.connections.get(tenant, &id).await?))
}

#[utoipa::path(params(("id" = String, Path)), request_body = ConnectionPatch, responses((status = 200, body = ConnectionView)), tag = "connections", security(("bearer" = [])))]
#[patch("/v1/connections/{id}")]
pub async fn update(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    id: web::Path<String>,
    Json(patch): Json<ConnectionPatch>,
) -> Result<HttpResponse> {
    let tenant = principal.tenant(Scope::Write)?;
    Ok(HttpResponse::Ok().json(
        state
            .connections
            .update(&principal.actor(), tenant, &id, patch)
            .await?,
    ))
}

/// Delete a connection with its secrets and received events.
#[utoipa::path(params(("id" = String, Path)), responses((status = 204)), tag = "connections", security(("bearer" = [])))]
#[delete("/v1/connections/{id}")]
pub async fn delete(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    let tenant = principal.tenant(Scope::Write)?;
    state
        .connections
        .delete(&principal.actor(), tenant, &id)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Rotate credentials and/or the webhook secret; the old signing secret keeps verifying for
/// `grace_seconds`.
#[utoipa::path(params(("id" = String, Path)), request_body = CredentialsRotation, responses((status = 200, body = ConnectionView)), tag = "connections", security(("bearer" = [])))]
#[put("/v1/connections/{id}/credentials")]
pub async fn rotate_credentials(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    id: web::Path<String>,
    Json(input): Json<CredentialsRotation>,
) -> Result<HttpResponse> {
    let tenant = principal.tenant(Scope::Write)?;
    Ok(HttpResponse::Ok().json(
        state
            .connections
            .rotate_credentials(&principal.actor(), tenant, &id, input)
            .await?,
    ))
}

#[utoipa::path(params(("id" = String, Path)), responses((status = 200, body = AllowlistView)), tag = "connections", security(("bearer" = [])))]
#[get("/v1/connections/{id}/allowlist")]
pub async fn get_allowlist(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    let tenant = principal.tenant(Scope::Read)?;
    Ok(HttpResponse::Ok().json(state.connections.allowlist(tenant, &id).await?))
}

/// Replace who may send this connection's webhooks. An empty list accepts any address.
#[utoipa::path(params(("id" = String, Path)), request_body = AllowlistView, responses((status = 200, body = AllowlistView)), tag = "connections", security(("bearer" = [])))]
#[put("/v1/connections/{id}/allowlist")]
pub async fn put_allowlist(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    id: web::Path<String>,
    Json(input): Json<AllowlistView>,
) -> Result<HttpResponse> {
    let tenant = principal.tenant(Scope::Write)?;
    Ok(HttpResponse::Ok().json(
        state
            .connections
            .set_allowlist(&principal.actor(), tenant, &id, input)
            .await?,
    ))
}

/// Webhook events received for this connection, newest first; kept for
/// `webhooks.retention_days` (default 30).
#[utoipa::path(params(("id" = String, Path), PageQuery), responses((status = 200, body = Page<crate::webhooks::EventView>)), tag = "connections", security(("bearer" = [])))]
#[get("/v1/connections/{id}/events")]
pub async fn list_events(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    id: web::Path<String>,
    Query(query): Query<PageQuery>,
) -> Result<HttpResponse> {
    let tenant = principal.tenant(Scope::Read)?;
    let page = query.validate()?;
    let connection = state.connections.resolve(tenant, &id).await?;
    Ok(HttpResponse::Ok()
        .json(crate::webhooks::list_events(&state.db, tenant, &connection, &page).await?))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
pub struct CheckQuery {
    /// Check this connector version instead of the pinned one (before deploying it).
    pub version: Option<String>,
}

/// Connectivity checks of a connection: DNS, TCP, TLS, authentication, a read probe and the
/// platform's webhook subscriptions, each with status, duration, error class and remedy.
#[utoipa::path(params(("id" = String, Path), CheckQuery), responses((status = 200, body = crate::connectors::checks::CheckReport), (status = 404, body = crate::api::problem::Problem)), tag = "connections", security(("bearer" = [])))]
#[post("/v1/connections/{id}/check")]
pub async fn check(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    id: web::Path<String>,
    Query(query): Query<CheckQuery>,
) -> Result<HttpResponse> {
    let tenant = principal.tenant(Scope::Write)?;
    let report = state
        .connections
        .check(&principal.actor(), tenant, &id, query.version.as_deref())
        .await?;
    Ok(HttpResponse::Ok().json(report))
}

/// The same checks for a connection not saved yet: its settings and credentials as
/// `POST /v1/connections` takes them. Nothing is stored.
#[utoipa::path(request_body = NewConnection, responses((status = 200, body = crate::connectors::checks::CheckReport), (status = 400, body = crate::api::problem::Problem)), tag = "connections", security(("bearer" = [])))]
#[post("/v1/connections/check")]
pub async fn check_unsaved(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    Json(input): Json<NewConnection>,
) -> Result<HttpResponse> {
    let tenant = principal.tenant(Scope::Write)?;
    Ok(HttpResponse::Ok().json(state.connections.check_unsaved(tenant, input).await?))
}
