use actix_web::{HttpResponse, delete, get, patch, post, web};

use super::AppState;
use super::extract::{Auth, Json, Query};
use crate::error::Result;
use crate::flows::{FlowPatch, FlowView, NewFlow, RunView};
use crate::pagination::{Page, PageQuery};
use crate::tenancy::Scope;

/// Create a flow: a stream from a source connection to a destination, on a schedule.
#[utoipa::path(request_body = NewFlow, responses((status = 201, body = FlowView), (status = 400, body = crate::api::problem::Problem)), tag = "flows", security(("bearer" = [])))]
#[post("/v1/flows")]
pub async fn create(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    Json(input): Json<NewFlow>,
) -> Result<HttpResponse> {
    let tenant = principal.tenant(Scope::Write)?;
    Ok(HttpResponse::Created().json(
        state
            .flows
            .create(&principal.actor(), tenant, input)
            .await?,
    ))
}

#[utoipa::path(params(PageQuery), responses((status = 200, body = Page<FlowView>)), tag = "flows", security(("bearer" = [])))]
#[get("/v1/flows")]
pub async fn list(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    Query(query): Query<PageQuery>,
) -> Result<HttpResponse> {
    let tenant = principal.tenant(Scope::Read)?;
    let page = query.validate()?;
    Ok(HttpResponse::Ok().json(state.flows.list(tenant, &page).await?))
}

/// A flow, with its next run in UTC and in its own zone.
#[utoipa::path(params(("id" = String, Path)), responses((status = 200, body = FlowView), (status = 404, body = crate::api::problem::Problem)), tag = "flows", security(("bearer" = [])))]
#[get("/v1/flows/{id}")]
pub async fn get(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    let tenant = principal.tenant(Scope::Read)?;
    Ok(HttpResponse::Ok().json(state.flows.get(tenant, &id).await?))
}

#[utoipa::path(params(("id" = String, Path)), request_body = FlowPatch, responses((status = 200, body = FlowView)), tag = "flows", security(("bearer" = [])))]
#[patch("/v1/flows/{id}")]
pub async fn update(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    id: web::Path<String>,
    Json(patch): Json<FlowPatch>,
) -> Result<HttpResponse> {
    let tenant = principal.tenant(Scope::Write)?;
    Ok(HttpResponse::Ok().json(
        state
            .flows
            .update(&principal.actor(), tenant, &id, patch)
            .await?,
    ))
}

/// Delete a flow and its run history.
#[utoipa::path(params(("id" = String, Path)), responses((status = 204)), tag = "flows", security(("bearer" = [])))]
#[delete("/v1/flows/{id}")]
pub async fn delete(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    let tenant = principal.tenant(Scope::Write)?;
    state.flows.delete(&principal.actor(), tenant, &id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Queue a run now.
#[utoipa::path(params(("id" = String, Path)), responses((status = 202, body = RunView)), tag = "flows", security(("bearer" = [])))]
#[post("/v1/flows/{id}/run")]
pub async fn trigger(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    let tenant = principal.tenant(Scope::Write)?;
    Ok(HttpResponse::Accepted().json(state.flows.trigger(&principal.actor(), tenant, &id).await?))
}

/// A flow's runs, newest first.
#[utoipa::path(params(("id" = String, Path), PageQuery), responses((status = 200, body = Page<RunView>)), tag = "flows", security(("bearer" = [])))]
#[get("/v1/flows/{id}/runs")]
pub async fn runs(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    id: web::Path<String>,
    Query(query): Query<PageQuery>,
) -> Result<HttpResponse> {
    let tenant = principal.tenant(Scope::Read)?;
    let page = query.validate()?;
    Ok(HttpResponse::Ok().json(state.flows.runs(tenant, &id, &page).await?))
}

#[utoipa::path(params(("id" = String, Path)), responses((status = 200, body = RunView), (status = 404, body = crate::api::problem::Problem)), tag = "flows", security(("bearer" = [])))]
#[get("/v1/runs/{id}")]
pub async fn run(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    let tenant = principal.tenant(Scope::Read)?;
    Ok(HttpResponse::Ok().json(state.flows.run(tenant, &id).await?))
}
