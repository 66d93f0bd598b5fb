//! The HTTP surface: actix-web handlers only. Each parses, authorizes, calls the domain and
//! lets `problem` map errors. One file per resource.

mod alerts;
mod audit;
mod connect;
mod connections;
mod connectors;
mod dead_letters;
mod deployments;
mod extract;
mod flows;
mod health;
mod hooks;
pub mod idempotency;
pub mod middleware;
pub mod openapi;
pub mod problem;
mod state;
mod tenants;

pub use state::AppState;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};

/// What a worker process serves: health, readiness and metrics.
pub fn configure_ops(cfg: &mut web::ServiceConfig) {
    cfg.service(health::healthz)
        .service(health::readyz)
        .service(health::metrics);
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    // Routes are tried in order and each `{param}` pattern costs a regex match (twice: the
    // middleware asks for the matched pattern too), so the hot webhook route goes first.
    cfg.service(hooks::receive)
        .service(health::healthz)
        .service(health::readyz)
        .service(health::metrics)
        .service(openapi::openapi_json)
        .service(tenants::create_tenant)
        .service(tenants::create_token)
        .service(tenants::list_tokens)
        .service(tenants::revoke_token)
        .service(tenants::list_operator_tokens)
        .service(tenants::revoke_operator_token)
        .service(connectors::list_connectors)
        .service(connectors::list_versions)
        .service(connectors::publish_version)
        .service(connections::check_unsaved)
        .service(connections::check)
        .service(connections::create)
        .service(connections::list)
        .service(connections::get)
        .service(connections::update)
        .service(connections::delete)
        .service(connections::rotate_credentials)
        .service(connections::get_allowlist)
        .service(connections::put_allowlist)
        .service(connections::list_events)
        .service(connect::put_app)
        .service(connect::get_app)
        .service(connect::delete_app)
        .service(connect::create_session)
        .service(connect::get_session)
        .service(connect::link_page)
        .service(connect::start)
        .service(connect::callback)
        .service(connect::choose_shop)
        .service(flows::create)
        .service(flows::list)
        .service(flows::get)
        .service(flows::update)
        .service(flows::delete)
        .service(flows::trigger)
        .service(flows::runs)
        .service(flows::run)
        .service(dead_letters::list)
        .service(dead_letters::replay)
        .service(deployments::create)
        .service(deployments::list)
        .service(deployments::get)
        .service(deployments::act)
        .service(deployments::get_policy)
        .service(deployments::put_policy)
        .service(alerts::create_channel)
        .service(alerts::list_channels)
        .service(alerts::test_channel)
        .service(alerts::create_rule)
        .service(alerts::list_rules)
        .service(alerts::list_alerts)
        .service(alerts::replay_delivery)
        .service(audit::list);
}

/// Where the API is served: unknown routes get a 404, known routes asked with a method they
/// do not serve a 405 with `Allow`; both problem+json.
pub async fn not_found(request: actix_web::HttpRequest) -> HttpResponse {
    let allowed = openapi::methods_for(request.path());
    if allowed.is_empty() {
        return no_route().await;
    }
    let allow = allowed.join(", ");
    let mut response = problem::problem_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "Method not allowed",
        format!(
            "{} is not served here; this route takes {allow}",
            request.method()
        ),
        Vec::new(),
    );
    if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&allow) {
        response
            .headers_mut()
            .insert(actix_web::http::header::ALLOW, value);
    }
    response
}

/// A 404 problem+json: every unknown route, and every route of a process that does not serve
/// the API (a worker serves only health and metrics).
pub async fn no_route() -> HttpResponse {
    problem::problem_response(
        StatusCode::NOT_FOUND,
        "not_found",
        "Not found",
        "no such route; see /openapi.json".into(),
        Vec::new(),
    )
}
