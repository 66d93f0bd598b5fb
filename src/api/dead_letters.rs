use actix_web::{HttpResponse, get, post, web};

use super::AppState;
use super::extract::{Auth, Query};
use crate::error::Result;
use crate::flows::RunView;
use crate::pagination::{Page, PageQuery};
use crate::tenancy::Scope;

/// Runs that failed for good: a permanent error, or every attempt used.
#[utoipa::path(params(PageQuery), responses((status = 200, body = Page<RunView>)), tag = "flows", security(("bearer" = [])))]
#[get("/v1/dead-letters")]
pub async fn list(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    Query(query): Query<PageQuery>,
) -> Result<HttpResponse> {
    let tenant = principal.tenant(Scope::Read)?;
    let page = query.validate()?;
    Ok(HttpResponse::Ok().json(state.flows.dead_letters(tenant, &page).await?))
}

/// Queue a new run that picks up where the dead one stopped.
#[utoipa::path(params(("id" = String, Path)), responses((status = 202, body = RunView), (status = 409, body = crate::api::problem::Problem)), tag = "flows", security(("bearer" = [])))]
#[post("/v1/dead-letters/{id}/replay")]
pub async fn replay(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    let tenant = principal.tenant(Scope::Write)?;
    Ok(HttpResponse::Accepted().json(state.flows.replay(&principal.actor(), tenant, &id).await?))
}
