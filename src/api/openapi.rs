//! The OpenAPI document, generated from the handlers' annotations and the domain types.

use actix_web::{HttpResponse, get};
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response};
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
        "408" => "The body came too slowly (problem+json)",
        "409" => "Conflicts with the current state (problem+json)",
        "410" => "Gone: used or expired",
        "413" => "Body too large (problem+json)",
        "415" => "Unsupported media type (problem+json)",
        "422" => "Understood but refused (problem+json)",
        "429" => "Too many requests (problem+json)",
        "500" => "An unexpected failure, logged with the request id (problem+json)",
        "502" => "The platform refused",
        "503" => "Temporarily unavailable (problem+json)",
        _ => "See the problem+json body",
    }
}

/// Every operation with its path and whether its method writes (POST, PUT, PATCH, DELETE).
fn operations(
    openapi: &mut utoipa::openapi::OpenApi,
) -> impl Iterator<Item = (&String, bool, &mut Operation)> {
    openapi.paths.paths.iter_mut().flat_map(|(path, item)| {
        [
            (&mut item.get, false),
            (&mut item.put, true),
            (&mut item.post, true),
            (&mut item.delete, true),
            (&mut item.patch, true),
        ]
        .into_iter()
        .filter_map(|(operation, writes)| operation.as_mut().map(|o| (o, writes)))
        .map(move |(operation, writes)| (path, writes, operation))
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
        for (_, _, operation) in operations(openapi) {
            if let Some(id) = &operation.operation_id {
                *seen.entry(id.clone()).or_default() += 1;
            }
        }
        for (path, writes, operation) in operations(openapi) {
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
            let idempotent = writes && is_idempotent_write(path, operation);
            for status in error_statuses(operation, idempotent) {
                operation
                    .responses
                    .responses
                    .entry(status.to_string())
                    .or_insert_with(|| RefOr::T(Response::new("")));
            }
            let page = operation.responses.responses.values().any(|r| {
                matches!(r, RefOr::T(r) if r.content.keys().any(|c| c.starts_with("text/html")))
            });
            for (status, response) in operation.responses.responses.iter_mut() {
                let RefOr::T(response) = response else {
                    continue;
                };
                if response.description.is_empty() {
                    response.description = describe(status).to_string();
                }
                // Every error is a problem document (RFC 9457), whatever the handler wrote;
                // a page for sellers (its success is HTML) answers its errors as pages too.
                if (status.starts_with('4') || status.starts_with('5')) && !page {
                    response.content.clear();
                    response.content.insert(
                        "application/problem+json".into(),
                        RefOr::T(
                            ContentBuilder::new()
                                .schema(Some(Ref::from_schema_name("Problem")))
                                .build(),
                        ),
                    );
                }
            }
        }
    }
}

/// The errors an operation can answer besides its own, from what it takes: a token (401,
/// 403 for a scope it lacks), an id in the path (404), query parameters or a body (400; a
/// body also 408 too slow, 413 too large, 415 not JSON), an Idempotency-Key (409 while the
/// first is in flight, 422 reused for another request); and storage trouble (500, 503).
fn error_statuses(operation: &Operation, idempotent: bool) -> Vec<u16> {
    let mut statuses = vec![500, 503];
    let parameters = operation.parameters.as_deref().unwrap_or_default();
    let takes = |place: ParameterIn| {
        parameters
            .iter()
            .any(|p| matches!(p, RefOr::T(p) if p.parameter_in == place))
    };
    if needs_token(operation) {
        statuses.extend([401, 403]);
    }
    if takes(ParameterIn::Path) {
        statuses.push(404);
    }
    if takes(ParameterIn::Query) {
        statuses.push(400);
    }
    if operation.request_body.is_some() {
        statuses.extend([400, 408, 413, 415]);
    }
    if idempotent {
        statuses.extend([400, 409, 422]);
    }
    statuses
}

/// Whether the idempotency layer (`api/idempotency.rs`) serves a write: one a token sends
/// under /v1, webhooks aside (they deduplicate by the platform's event ids). The header is
/// described once, in the document's description, like Authorization: listed on every write
/// it would have fuzzers send one key to many requests.
fn is_idempotent_write(path: &str, operation: &Operation) -> bool {
    path.starts_with("/v1/") && !path.starts_with("/v1/hooks/") && needs_token(operation)
}

/// Whether the operation is behind a bearer token (it names a security requirement).
fn needs_token(operation: &Operation) -> bool {
    operation.security.as_ref().is_some_and(|s| !s.is_empty())
}

#[derive(OpenApi)]
#[openapi(
    info(title = "synchub", description = "Keeps sellers' marketplaces and ERPs in sync. Errors are RFC 9457 problem+json (the seller's pages under /connect and the OAuth callback answer HTML). Lists answer `{\"data\": [...], \"next_cursor\"}`; pass `next_cursor` back as `cursor` for the next page. Every write under /v1 takes an optional `Idempotency-Key` header (1 to 255 visible ASCII characters, kept 24 hours per token): a retry with the same key and request gets the first answer again, marked `Idempotent-Replayed: true`; the same key with another request is a 422, and a retry while the first still runs a 409."),
    paths(
        health::healthz, health::readyz, health::metrics,
        tenants::create_tenant, tenants::create_token, tenants::list_tokens, tenants::revoke_token,
        tenants::list_operator_tokens, tenants::revoke_operator_token,
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

/// The served document: `ApiDoc` with what JSON Schema says better than the annotations,
/// built once. Free-form maps (settings, credentials) allow any property (an object schema
/// with no properties otherwise reads as "no properties" to client generators), and every
/// string a body or a resource carries is free of NUL, which the server refuses everywhere
/// (PostgreSQL stores none).
pub fn document() -> &'static serde_json::Value {
    static DOCUMENT: std::sync::LazyLock<serde_json::Value> = std::sync::LazyLock::new(|| {
        let mut document = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
        if let Some(schemas) = document.pointer_mut("/components/schemas") {
            tighten(schemas);
            zones_by_name(schemas);
            if let Some(schemas) = schemas.as_object_mut() {
                let names: Vec<&str> = chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name()).collect();
                schemas.insert(
                    "TimeZone".into(),
                    serde_json::json!({
                        "type": "string",
                        "description": "An IANA time zone name, e.g. Asia/Shanghai.",
                        "enum": names,
                    }),
                );
            }
        }
        if let Some(paths) = document.get_mut("paths").and_then(|p| p.as_object_mut()) {
            for operation in paths
                .values_mut()
                .filter_map(|i| i.as_object_mut())
                .flat_map(|i| i.values_mut())
            {
                if let Some(body) = operation.get_mut("requestBody") {
                    tighten(body);
                }
            }
        }
        document
    });
    &DOCUMENT
}

/// Every `timezone` property is a zone the server knows: the `TimeZone` enum (nullable
/// where the field is optional).
fn zones_by_name(schema: &mut serde_json::Value) {
    match schema {
        serde_json::Value::Object(node) => {
            if let Some(serde_json::Value::Object(properties)) = node.get_mut("properties")
                && let Some(zone) = properties.get_mut("timezone")
            {
                let nullable = zone["type"]
                    .as_array()
                    .is_some_and(|t| t.iter().any(|t| t == "null"));
                let description = zone.get("description").cloned();
                let reference = serde_json::json!({"$ref": "#/components/schemas/TimeZone"});
                let mut replaced = if nullable {
                    serde_json::json!({"oneOf": [reference, {"type": "null"}]})
                } else {
                    reference
                };
                if let Some(description) = description {
                    replaced["description"] = description;
                }
                *zone = replaced;
            }
            node.values_mut().for_each(zones_by_name);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(zones_by_name),
        _ => {}
    }
}

/// No NUL in any string left open (no pattern, enum, const or format of its own).
const NO_NUL: &str = "^[^\\u0000]*$";

fn tighten(schema: &mut serde_json::Value) {
    match schema {
        serde_json::Value::Object(node) => {
            let types: Vec<&str> = match node.get("type") {
                Some(serde_json::Value::String(t)) => vec![t.as_str()],
                Some(serde_json::Value::Array(ts)) => {
                    ts.iter().filter_map(|t| t.as_str()).collect()
                }
                _ => Vec::new(),
            };
            let object = types.contains(&"object");
            let string = types.contains(&"string");
            if object
                && !["properties", "additionalProperties", "$ref"]
                    .iter()
                    .any(|k| node.contains_key(*k))
            {
                node.insert("additionalProperties".into(), serde_json::Value::Bool(true));
            }
            if string
                && !["pattern", "enum", "const", "format"]
                    .iter()
                    .any(|k| node.contains_key(*k))
            {
                node.insert("pattern".into(), NO_NUL.into());
            }
            for value in node.values_mut() {
                tighten(value);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(tighten),
        _ => {}
    }
}

/// The methods the document lists for a concrete request path (`/v1/flows/flw_1/run`
/// matches `/v1/flows/{id}/run`), upper-case; empty when no documented path matches. The
/// document is the one list of routes, so a 405's `Allow` cannot drift from it.
pub fn methods_for(path: &str) -> Vec<String> {
    static ROUTES: std::sync::LazyLock<Vec<(Vec<String>, Vec<String>)>> =
        std::sync::LazyLock::new(|| {
            let Some(paths) = document()["paths"].as_object() else {
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
    let matching: Vec<(usize, &Vec<String>)> = ROUTES
        .iter()
        .filter(|(template, _)| {
            template.len() == asked.len()
                && template.iter().zip(&asked).all(|(t, a)| {
                    t == a || (t.starts_with('{') && t.ends_with('}') && !a.is_empty())
                })
        })
        .map(|(template, methods)| {
            let literal = template.iter().filter(|t| !t.starts_with('{')).count();
            (literal, methods)
        })
        .collect();
    // The most literal template wins, as the router's order has it: `/v1/connections/check`
    // is its own route, not `/v1/connections/{id}`.
    let most_literal = matching.iter().map(|(n, _)| *n).max().unwrap_or(0);
    let mut methods: Vec<String> = matching
        .into_iter()
        .filter(|(n, _)| *n == most_literal)
        .flat_map(|(_, methods)| methods.iter().cloned())
        .collect();
    methods.sort();
    methods.dedup();
    methods
}

#[utoipa::path(responses((status = 200, description = "this document")), tag = "ops")]
#[get("/openapi.json")]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(document())
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

    /// Every error is documented as problem+json (a seller's page answers HTML), every
    /// operation behind a token can answer 401 and 403, an id in the path 404, and storage
    /// trouble 500 and 503.
    #[test]
    fn every_operation_documents_its_errors() {
        let document = document();
        for (path, item) in document["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let responses = operation["responses"].as_object().unwrap();
                let page = path.starts_with("/connect/") || path.starts_with("/v1/oauth/");
                for (status, response) in responses {
                    if status.starts_with('4') || status.starts_with('5') {
                        let types: Vec<&String> = response["content"]
                            .as_object()
                            .map(|c| c.keys().collect())
                            .unwrap_or_default();
                        assert!(
                            page || types == ["application/problem+json"],
                            "{method} {path} {status}: {types:?}"
                        );
                    }
                }
                let has = |status: &str| responses.contains_key(status);
                assert!(has("500") && has("503"), "{method} {path}");
                if operation.get("security").is_some() {
                    assert!(has("401") && has("403"), "{method} {path}");
                }
                if path.contains('{') {
                    assert!(has("404") || has("400"), "{method} {path}");
                }
            }
        }
    }

    /// Names are trimmed with `str::trim` (Unicode White_Space) and refused when nothing is
    /// left. The document's pattern for them must name exactly those characters: `\s` would
    /// not do, as ECMA-262 (JSON Schema's regex dialect) leaves U+0085 out of it and a fuzzer
    /// then sends "\u{85}" as a valid name. (Names the server echoes carry only `NO_NUL`.)
    #[test]
    fn the_name_pattern_accepts_what_trimming_keeps() {
        fn name_patterns(node: &serde_json::Value, found: &mut Vec<String>) {
            match node {
                serde_json::Value::Object(map) => {
                    if let Some(pattern) = map
                        .get("properties")
                        .and_then(|p| p.get("name"))
                        .and_then(|n| n.get("pattern"))
                        .and_then(|p| p.as_str())
                        .filter(|p| *p != NO_NUL)
                    {
                        found.push(pattern.to_string());
                    }
                    map.values().for_each(|v| name_patterns(v, found));
                }
                serde_json::Value::Array(items) => {
                    items.iter().for_each(|v| name_patterns(v, found))
                }
                _ => {}
            }
        }
        let mut found = Vec::new();
        name_patterns(document(), &mut found);
        assert!(found.len() >= 9, "{found:?}");
        found.sort();
        found.dedup();
        assert_eq!(
            found.len(),
            1,
            "every name field has one pattern: {found:?}"
        );
        // `\s`, `\w` and `\d` mean different sets in different regex dialects.
        assert!(
            !["\\s", "\\S", "\\w", "\\W", "\\d", "\\D"]
                .iter()
                .any(|shorthand| found[0].contains(shorthand)),
            "{}",
            found[0]
        );
        let pattern = regex::Regex::new(&found[0]).unwrap();
        for c in (0..=u32::from(char::MAX)).filter_map(char::from_u32) {
            let kept = !c.to_string().trim().is_empty() && c != '\0';
            assert_eq!(
                pattern.is_match(&c.to_string()),
                kept,
                "U+{:04X}",
                u32::from(c)
            );
        }
        assert!(pattern.is_match(" \u{3000}Shop\u{85}"));
        assert!(!pattern.is_match("\u{85} \u{a0}"));
        assert!(!pattern.is_match("Shop\0"));
    }

    /// Lists are `{data, next_cursor}`; the bounds the server enforces are in the document;
    /// free-form maps take any property; zones are the ones the server knows.
    #[test]
    fn the_document_says_what_the_server_enforces() {
        let document = document();
        for path in [
            "/v1/connectors",
            "/v1/deployments",
            "/v1/alert-channels",
            "/v1/alert-rules",
            "/v1/alerts",
            "/v1/connections",
            "/v1/flows",
        ] {
            let schema = document["paths"][path]["get"]["responses"]["200"]["content"]
                ["application/json"]["schema"]["$ref"]
                .as_str()
                .unwrap_or_default();
            assert!(
                schema.starts_with("#/components/schemas/Page_"),
                "{path}: {schema}"
            );
        }
        let limit = document["paths"]["/v1/flows"]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "limit")
            .unwrap();
        assert_eq!(
            (&limit["schema"]["minimum"], &limit["schema"]["maximum"]),
            (
                &serde_json::json!(1),
                &serde_json::json!(crate::pagination::MAX_LIMIT)
            )
        );
        let settings =
            &document["components"]["schemas"]["NewConnection"]["properties"]["settings"];
        assert_eq!(settings["additionalProperties"], true, "{settings}");
        let zones = document["components"]["schemas"]["TimeZone"]["enum"]
            .as_array()
            .unwrap();
        assert!(zones.iter().any(|z| z == "Asia/Shanghai"));
        let tenant_zone = &document["components"]["schemas"]["NewTenant"]["properties"]["timezone"];
        assert_eq!(
            tenant_zone["$ref"], "#/components/schemas/TimeZone",
            "{tenant_zone}"
        );
        let name = &document["components"]["schemas"]["NewTenant"]["properties"]["name"];
        assert_eq!(
            (&name["minLength"], &name["maxLength"]),
            (&serde_json::json!(1), &serde_json::json!(200))
        );
    }
}
