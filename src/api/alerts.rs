use actix_web::{HttpResponse, get, post, web};

use super::AppState;
use super::extract::{Auth, Json};
use crate::alerts::{ChannelView, NewChannel, TestReport};
use crate::error::Result;
use crate::tenancy::Scope;

/// Add an ops-chat channel: Slack, DingTalk, Feishu/Lark, WeCom, or a signed webhook. The
/// URL and the secret are stored encrypted; neither comes back.
#[utoipa::path(request_body = NewChannel, responses((status = 201, body = ChannelView), (status = 400, body = crate::api::problem::Problem)), tag = "alerts", security(("bearer" = [])))]
#[post("/v1/alert-channels")]
pub async fn create_channel(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    Json(input): Json<NewChannel>,
) -> Result<HttpResponse> {
    let tenant = principal.tenant(Scope::Admin)?;
    let created = state
        .alert_channels
        .create(&principal.actor(), tenant, input)
        .await?;
    Ok(HttpResponse::Created().json(created))
}

#[utoipa::path(responses((status = 200, body = crate::pagination::Page<ChannelView>)), tag = "alerts", security(("bearer" = [])))]
#[get("/v1/alert-channels")]
pub async fn list_channels(
    state: web::Data<AppState>,
    Auth(principal): Auth,
) -> Result<HttpResponse> {
    let tenant = principal.tenant(Scope::Read)?;
    let data = state.alert_channels.list(tenant).await?;
    Ok(HttpResponse::Ok().json(crate::pagination::Page::whole(data)))
}

/// Send a test message now and report what the platform answered.
#[utoipa::path(params(("id" = String, Path)), responses((status = 200, body = TestReport), (status = 404, body = crate::api::problem::Problem)), tag = "alerts", security(("bearer" = [])))]
#[post("/v1/alert-channels/{id}/test")]
pub async fn test_channel(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    let tenant = principal.tenant(Scope::Admin)?;
    let report = state
        .alert_channels
        .test(&principal.actor(), tenant, &id)
        .await?;
    Ok(HttpResponse::Ok().json(report))
}

/// Add an alert rule: event kinds, scope, threshold, severity, channels, quiet hours.
#[utoipa::path(request_body = crate::alerts::NewRule, responses((status = 201, body = crate::alerts::RuleView), (status = 400, body = crate::api::problem::Problem)), tag = "alerts", security(("bearer" = [])))]
#[post("/v1/alert-rules")]
pub async fn create_rule(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    Json(input): Json<crate::alerts::NewRule>,
) -> Result<HttpResponse> {
    let tenant = principal.tenant(Scope::Admin)?;
    let rule = crate::alerts::rules::create(&state.db, &principal.actor(), tenant, input).await?;
    Ok(HttpResponse::Created().json(rule))
}

#[utoipa::path(responses((status = 200, body = crate::pagination::Page<crate::alerts::RuleView>)), tag = "alerts", security(("bearer" = [])))]
#[get("/v1/alert-rules")]
pub async fn list_rules(state: web::Data<AppState>, Auth(principal): Auth) -> Result<HttpResponse> {
    let tenant = principal.tenant(Scope::Read)?;
    let data = crate::alerts::rules::list(&state.db, tenant).await?;
    Ok(HttpResponse::Ok().json(crate::pagination::Page::whole(data)))
}

/// Alerts with their deliveries: what fired, how often, and whether each channel got it.
#[utoipa::path(responses((status = 200, body = crate::pagination::Page<crate::alerts::AlertView>)), tag = "alerts", security(("bearer" = [])))]
#[get("/v1/alerts")]
pub async fn list_alerts(
    state: web::Data<AppState>,
    Auth(principal): Auth,
) -> Result<HttpResponse> {
    let tenant = principal.tenant(Scope::Read)?;
    let data = crate::alerts::views::alerts(&state.db, tenant).await?;
    Ok(HttpResponse::Ok().json(crate::pagination::Page::whole(data)))
}

/// Put a dead delivery back in the outbox.
#[utoipa::path(params(("id" = String, Path)), responses((status = 200, body = crate::alerts::DeliveryView), (status = 404, body = crate::api::problem::Problem), (status = 409, body = crate::api::problem::Problem)), tag = "alerts", security(("bearer" = [])))]
#[post("/v1/alert-deliveries/{id}/replay")]
pub async fn replay_delivery(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    let tenant = principal.tenant(Scope::Admin)?;
    let delivery = crate::alerts::views::replay(&state.db, &principal.actor(), tenant, &id).await?;
    Ok(HttpResponse::Ok().json(delivery))
}
