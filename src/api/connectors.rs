use actix_web::{HttpResponse, get, web};

use super::extract::Auth;
use crate::error::Result;
use crate::startup::AppState;
use crate::tenancy::Scope;

/// The installed connectors, with the settings and credentials each needs.
#[utoipa::path(responses((status = 200, body = Vec<crate::connectors::ConnectorSummary>)), tag = "connectors", security(("bearer" = [])))]
#[get("/v1/connectors")]
pub async fn list_connectors(
    state: web::Data<AppState>,
    Auth(principal): Auth,
) -> Result<HttpResponse> {
    principal.require(Scope::Read)?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "data": state.registry.summaries() })))
}
