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

/// What the annotations leave out and client generators need: a description on every
/// response (OpenAPI requires one), and operation ids unique across the document (handlers
/// in different files share names such as `list`): a repeated one is prefixed with its tag.
struct Conformance;

fn describe(status: &str) -> &'static str {
    match status {
        "200" => "OK",
        "201" => "Created",
        "202" => "Accepted: queued",
        "204" => "Done; no content",
        "303" => "See the Location header",
        "400" => "Invalid input (problem+json naming the field)",
        "401" => "Missing or invalid bearer token (problem+json)",
        "403" => "The token may not do this (problem+json)",
        "404" => "Not found, or another tenant's (problem+json)",
        "409" => "Conflicts with the current state (problem+json)",
        "410" => "Gone: used or expired",
        "413" => "Body too large (problem+json)",
        "415" => "Unsupported media type (problem+json)",
        "422" => "Understood but refused (problem+json)",
        "429" => "Too many requests (problem+json)",
        "502" => "The platform refused",
        "503" => "Temporarily unavailable (problem+json)",
        _ => "See the problem+json body",
    }
}

fn operations(
    openapi: &mut utoipa::openapi::OpenApi,
) -> impl Iterator<Item = (&String, &mut utoipa::openapi::path::Operation)> {
    openapi.paths.paths.iter_mut().flat_map(|(path, item)| {
        [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        .map(move |operation| (path, operation))
    })
}

/// The resource a path names: its last segment that is no parameter (`dead_letters` of
/// `/v1/dead-letters/{id}/replay` is `replay`'s; `flows` of `/v1/flows/{id}`).
fn resource(path: &str) -> String {
    path.split('/')
        .rfind(|s| !s.is_empty() && !s.starts_with('{') && *s != "v1")
        .unwrap_or("root")
        .replace('-', "_")
}

impl Modify for Conformance {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let mut seen = std::collections::HashMap::<String, usize>::new();
        for (_, operation) in operations(openapi) {
            if let Some(id) = &operation.operation_id {
                *seen.entry(id.clone()).or_default() += 1;
            }
        }
        for (path, operation) in operations(openapi) {
            let repeated = operation
                .operation_id
                .as_ref()
                .is_some_and(|id| seen.get(id).copied().unwrap_or(0) > 1);
            if repeated {
                operation.operation_id = operation
                    .operation_id
                    .take()
                    .map(|id| format!("{id}_{}", resource(path)));
            }
            for (status, response) in operation.responses.responses.iter_mut() {
                if let utoipa::openapi::RefOr::T(response) = response
                    && response.description.is_empty()
                {
                    response.description = describe(status).to_string();
                }
            }
        }
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
    modifiers(&BearerAuth, &Conformance),
)]
pub struct ApiDoc;

/// The methods the document lists for a concrete request path (`/v1/flows/flw_1/run`
/// matches `/v1/flows/{id}/run`), upper-case; empty when no documented path matches. The
/// document is the one list of routes, so a 405's `Allow` cannot drift from it.
pub fn methods_for(path: &str) -> Vec<String> {
    static ROUTES: std::sync::LazyLock<Vec<(Vec<String>, Vec<String>)>> =
        std::sync::LazyLock::new(|| {
            let document = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
            let Some(paths) = document["paths"].as_object() else {
                return Vec::new();
            };
            paths
                .iter()
                .map(|(template, item)| {
                    let segments = template.split('/').map(str::to_string).collect();
                    let methods = item
                        .as_object()
                        .map(|ops| ops.keys().map(|m| m.to_ascii_uppercase()).collect())
                        .unwrap_or_default();
                    (segments, methods)
                })
                .collect()
        });
    let asked: Vec<&str> = path.split('/').collect();
    let mut methods: Vec<String> = ROUTES
        .iter()
        .filter(|(template, _)| {
            template.len() == asked.len()
                && template.iter().zip(&asked).all(|(t, a)| {
                    t == a || (t.starts_with('{') && t.ends_with('}') && !a.is_empty())
                })
        })
        .flat_map(|(_, methods)| methods.iter().cloned())
        .collect();
    methods.sort();
    methods.dedup();
    methods
}

#[utoipa::path(responses((status = 200, description = "this document")), tag = "ops")]
#[get("/openapi.json")]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Client generators break on repeated operation ids; OpenAPI requires a description on
    /// every response.
    #[test]
    fn operation_ids_are_unique_and_responses_described() {
        let document = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let mut ids = std::collections::HashSet::new();
        for (path, item) in document["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let id = operation["operationId"].as_str().unwrap_or_default();
                assert!(
                    ids.insert(id.to_string()),
                    "{method} {path}: operationId {id} repeats"
                );
                for (status, response) in operation["responses"].as_object().unwrap() {
                    assert!(
                        response["description"]
                            .as_str()
                            .is_some_and(|d| !d.is_empty()),
                        "{method} {path} {status}: no description"
                    );
                }
            }
        }
        assert!(
            ids.contains("list_connections") && ids.contains("list_dead_letters"),
            "{ids:?}"
        );
    }
}
