use actix_web::{HttpResponse, get, post, put, web};

use super::AppState;
use super::extract::{Auth, Json};
use crate::deploy::{DeployPolicy, DeploymentView, NewDeployment, RollbackRequest};
use crate::error::{Error, Result};
use crate::tenancy::Scope;

/// Roll a connector version out to connections: verified first, then switched with the
/// strategy, inside the deploy window (or waiting for it), gated, rolled back on failure.
#[utoipa::path(request_body = NewDeployment, responses((status = 201, body = DeploymentView), (status = 400, body = crate::api::problem::Problem), (status = 409, body = crate::api::problem::Problem)), tag = "deployments", security(("bearer" = [])))]
#[post("/v1/deployments")]
pub async fn create(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    Json(input): Json<NewDeployment>,
) -> Result<HttpResponse> {
    let tenant = principal.tenant(Scope::Deploy)?;
    let created = state
        .deployments
        .create(&principal.actor(), tenant, input)
        .await?;
    Ok(HttpResponse::Created().json(created))
}

/// The tenant's latest 50 deployments, newest first.
#[utoipa::path(responses((status = 200, body = crate::pagination::Page<DeploymentView>)), tag = "deployments", security(("bearer" = [])))]
#[get("/v1/deployments")]
pub async fn list(state: web::Data<AppState>, Auth(principal): Auth) -> Result<HttpResponse> {
    let tenant = principal.tenant(Scope::Read)?;
    let data = state.deployments.list(tenant).await?;
    Ok(HttpResponse::Ok().json(crate::pagination::Page::whole(data)))
}

/// A deployment with its targets and its timeline (each step, gate figures and decision).
#[utoipa::path(params(("id" = String, Path)), responses((status = 200, body = DeploymentView), (status = 404, body = crate::api::problem::Problem)), tag = "deployments", security(("bearer" = [])))]
#[get("/v1/deployments/{id}")]
pub async fn get(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    let tenant = principal.tenant(Scope::Read)?;
    Ok(HttpResponse::Ok().json(state.deployments.get(tenant, &id).await?))
}

/// promote (skip the rest of the current gate), pause, resume, or rollback (body:
/// {restore_cursors, reason}).
#[utoipa::path(params(("id" = String, Path), ("action" = String, Path, description = "promote, pause, resume or rollback")), request_body(content = Option<RollbackRequest>, description = "rollback only"), responses((status = 200, body = DeploymentView), (status = 409, body = crate::api::problem::Problem)), tag = "deployments", security(("bearer" = [])))]
#[post("/v1/deployments/{id}/{action}")]
pub async fn act(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse> {
    let tenant = principal.tenant(Scope::Deploy)?;
    let (id, action) = path.into_inner();
    let actor = principal.actor();
    let view = match action.as_str() {
        "rollback" => {
            let request: RollbackRequest = if body.iter().all(u8::is_ascii_whitespace) {
                RollbackRequest::default()
            } else {
                serde_json::from_slice(&body).map_err(|e| Error::invalid("body", e.to_string()))?
            };
            state
                .deployments
                .rollback(&actor, tenant, &id, request)
                .await?
        }
        "promote" | "pause" | "resume" => {
            state.deployments.act(&actor, tenant, &id, &action).await?
        }
        _ => return Err(Error::NotFound("deployment action")),
    };
    Ok(HttpResponse::Ok().json(view))
}

/// The tenant's deploy windows and freeze dates.
#[utoipa::path(responses((status = 200, body = DeployPolicy)), tag = "deployments", security(("bearer" = [])))]
#[get("/v1/deploy-policy")]
pub async fn get_policy(state: web::Data<AppState>, Auth(principal): Auth) -> Result<HttpResponse> {
    let tenant = principal.tenant(Scope::Read)?;
    Ok(HttpResponse::Ok().json(state.deployments.policy(tenant).await?))
}

#[utoipa::path(request_body = DeployPolicy, responses((status = 200, body = DeployPolicy), (status = 400, body = crate::api::problem::Problem)), tag = "deployments", security(("bearer" = [])))]
#[put("/v1/deploy-policy")]
pub async fn put_policy(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    Json(policy): Json<DeployPolicy>,
) -> Result<HttpResponse> {
    let tenant = principal.tenant(Scope::Deploy)?;
    Ok(HttpResponse::Ok().json(
        state
            .deployments
            .set_policy(&principal.actor(), tenant, policy)
            .await?,
    ))
}
