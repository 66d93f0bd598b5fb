//! The OpenAPI document, generated from the handlers' annotations and the domain types.

use actix_web::{HttpResponse, get};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{
    alerts, audit, connect, connections, connectors, dead_letters, deployments, flows, health,
    hooks, tenants,
};

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "synchub", description = "Keeps sellers' marketplaces and ERPs in sync. Errors are RFC 9457 problem+json."),
    paths(
        health::healthz, health::readyz, health::metrics,
        tenants::create_tenant, tenants::create_token, tenants::list_tokens, tenants::revoke_token,
        connectors::list_connectors, connectors::list_versions, connectors::publish_version,
        connections::create, connections::list, connections::get, connections::update, connections::delete,
        connections::rotate_credentials, connections::get_allowlist, connections::put_allowlist, connections::list_events,
        connections::check, connections::check_unsaved,
        connect::put_app, connect::get_app, connect::delete_app, connect::create_session, connect::get_session,
        connect::link_page, connect::start, connect::callback, connect::choose_shop,
        flows::create, flows::list, flows::get, flows::update, flows::delete, flows::trigger, flows::runs, flows::run, dead_letters::list, dead_letters::replay,
        deployments::create, deployments::list, deployments::get, deployments::act, deployments::get_policy, deployments::put_policy,
        alerts::create_channel, alerts::list_channels, alerts::test_channel,
        alerts::create_rule, alerts::list_rules, alerts::list_alerts, alerts::replay_delivery,
        hooks::receive,
        audit::list,
    ),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

#[utoipa::path(responses((status = 200, description = "this document")), tag = "ops")]
#[get("/openapi.json")]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}
