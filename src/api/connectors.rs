use actix_web::{HttpResponse, get, post, web};

use super::AppState;
use super::extract::{Auth, Json};
use crate::connectors::versions::{NewVersion, VersionView};
use crate::error::Result;
use crate::tenancy::Scope;

/// The installed connectors, with the settings and credentials each needs.
#[utoipa::path(responses((status = 200, body = crate::pagination::Page<crate::connectors::ConnectorSummary>)), tag = "connectors", security(("bearer" = [])))]
#[get("/v1/connectors")]
pub async fn list_connectors(
    state: web::Data<AppState>,
    Auth(principal): Auth,
) -> Result<HttpResponse> {
    principal.require(Scope::Read)?;
    Ok(HttpResponse::Ok().json(crate::pagination::Page::whole(state.registry.summaries())))
}

/// The versions of a connector this tenant may run: the built-in ones and those it
/// published, newest first.
#[utoipa::path(params(("name" = String, Path)), responses((status = 200, body = crate::pagination::Page<VersionView>), (status = 404, body = crate::api::problem::Problem)), tag = "connectors", security(("bearer" = [])))]
#[get("/v1/connectors/{name}/versions")]
pub async fn list_versions(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    name: web::Path<String>,
) -> Result<HttpResponse> {
    let tenant = principal.tenant(Scope::Read)?;
    let versions = state.versions.list(tenant, &name).await?;
    Ok(HttpResponse::Ok().json(crate::pagination::Page::whole(versions)))
}

/// Publish a new version of a connector: linted, semver, immutable, content-hashed.
#[utoipa::path(params(("name" = String, Path)), request_body = NewVersion, responses((status = 201, body = VersionView), (status = 400, body = crate::api::problem::Problem), (status = 409, body = crate::api::problem::Problem)), tag = "connectors", security(("bearer" = [])))]
#[post("/v1/connectors/{name}/versions")]
pub async fn publish_version(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    name: web::Path<String>,
    Json(input): Json<NewVersion>,
) -> Result<HttpResponse> {
    let tenant = principal.tenant(Scope::Deploy)?;
    let published = state
        .versions
        .publish(&principal.actor(), tenant, &name, input)
        .await?;
    Ok(HttpResponse::Created().json(published))
}
