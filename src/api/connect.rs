//! Connect links: platform apps, connect sessions, the seller's page and the platforms'
//! callbacks. The seller's pages are HTML with strict security headers; everything else is
//! JSON like the rest of the API.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, delete, get, post, put, web};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::AppState;
use super::extract::{Auth, Json};
use crate::connect::page::{self, Lang};

/// The connectors with a consent flow, as the document shows the `{connector}` of platform
/// apps and callbacks: `Platform::ALL`'s names (the handlers answer any other with a 400).
struct ConnectConnector;

impl utoipa::PartialSchema for ConnectConnector {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .enum_values(Some(Platform::ALL.map(Platform::connector)))
            .into()
    }
}

impl utoipa::ToSchema for ConnectConnector {}
use crate::connect::{
    CallbackOutcome, ConnectSessionView, CreatedConnectSession, NewConnectSession, Platform,
    PlatformAppView, Refusal,
};
use crate::error::Result;
use crate::ids::TenantId;
use crate::tenancy::{Principal, Scope};

/// The operator's token speaks for the default app of every tenant; a tenant's for its own.
fn app_owner(principal: &Principal, scope: Scope) -> Result<TenantId> {
    if principal.is_operator() {
        principal.require(scope)?;
        Ok(TenantId::operator())
    } else {
        principal.tenant(scope).cloned()
    }
}

/// Register (or replace) the app connect links use on a platform. With the operator's token:
/// the default for every tenant without its own. Secrets are vaulted and come back masked.
#[utoipa::path(params(("connector" = inline(ConnectConnector), Path)), request_body(content = Object, description = "The platform's app fields: Shopify client_id, client_secret, scopes; Amazon application_id, lwa_client_id, lwa_client_secret, draft; Shopee partner_id, partner_key; TikTok Shop app_key, app_secret, service_id, authorize_url; all: redirect_url"), responses((status = 200, description = "The app, secrets masked", body = PlatformAppView), (status = 400, description = "A field is missing or invalid, or the connector has no consent flow", body = crate::api::problem::Problem)), tag = "connect", security(("bearer" = [])))]
#[put("/v1/platform-apps/{connector}")]
pub async fn put_app(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    connector: web::Path<String>,
    Json(input): Json<Map<String, Value>>,
) -> Result<HttpResponse> {
    let owner = app_owner(&principal, Scope::Write)?;
    let view = state
        .connect
        .apps()
        .put(&principal.actor(), &owner, &connector, &input)
        .await?;
    Ok(HttpResponse::Ok().json(view))
}

/// The app a tenant's connect links use: its own, else the operator's (without secrets).
#[utoipa::path(params(("connector" = inline(ConnectConnector), Path)), responses((status = 200, description = "The app", body = PlatformAppView), (status = 400, description = "The connector has no consent flow", body = crate::api::problem::Problem), (status = 404, description = "No app is registered", body = crate::api::problem::Problem)), tag = "connect", security(("bearer" = [])))]
#[get("/v1/platform-apps/{connector}")]
pub async fn get_app(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    connector: web::Path<String>,
) -> Result<HttpResponse> {
    let owner = app_owner(&principal, Scope::Read)?;
    Ok(HttpResponse::Ok().json(state.connect.apps().get(&owner, &connector).await?))
}

#[utoipa::path(params(("connector" = inline(ConnectConnector), Path)), responses((status = 204, description = "Deleted"), (status = 400, description = "The connector has no consent flow", body = crate::api::problem::Problem), (status = 404, description = "No app is registered", body = crate::api::problem::Problem)), tag = "connect", security(("bearer" = [])))]
#[delete("/v1/platform-apps/{connector}")]
pub async fn delete_app(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    connector: web::Path<String>,
) -> Result<HttpResponse> {
    let owner = app_owner(&principal, Scope::Write)?;
    state
        .connect
        .apps()
        .delete(&principal.actor(), &owner, &connector)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Make a connect link for a seller: a new connection, or (`connection_id`) new consent for
/// an existing one.
#[utoipa::path(request_body = NewConnectSession, responses((status = 201, description = "The link", body = CreatedConnectSession), (status = 400, description = "Invalid input", body = crate::api::problem::Problem), (status = 404, description = "No such connection", body = crate::api::problem::Problem)), tag = "connect", security(("bearer" = [])))]
#[post("/v1/connect-sessions")]
pub async fn create_session(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    Json(input): Json<NewConnectSession>,
) -> Result<HttpResponse> {
    let tenant = principal.tenant(Scope::Write)?;
    let created = state
        .connect
        .create_session(&principal.actor(), tenant, input)
        .await?;
    Ok(HttpResponse::Created().json(created))
}

#[utoipa::path(params(("id" = String, Path)), responses((status = 200, description = "The session's status", body = ConnectSessionView), (status = 404, description = "No such session", body = crate::api::problem::Problem)), tag = "connect", security(("bearer" = [])))]
#[get("/v1/connect-sessions/{id}")]
pub async fn get_session(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    let tenant = principal.tenant(Scope::Read)?;
    Ok(HttpResponse::Ok().json(state.connect.session(tenant, &id).await?))
}

fn lang(req: &HttpRequest) -> Lang {
    Lang::from_accept_language(
        req.headers()
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok()),
    )
}

/// An HTML page with the headers a page that handles authorisation needs: nothing but its
/// own inline style runs, forms post only to us (and the platform's consent page), no
/// framing unless the operator allows an origin, no referrer, nothing cached.
fn html(state: &AppState, status: u16, form_targets: &str, body: String) -> HttpResponse {
    let ancestors = &state.settings.connect.frame_ancestors;
    let frame_ancestors = if ancestors.is_empty() {
        "'none'".to_string()
    } else {
        ancestors.join(" ")
    };
    let csp = format!(
        "default-src 'none'; style-src {}; form-action {form_targets}; frame-ancestors {frame_ancestors}; base-uri 'none'",
        page::style_source()
    );
    let mut response = HttpResponse::build(
        actix_web::http::StatusCode::from_u16(status)
            .unwrap_or(actix_web::http::StatusCode::BAD_REQUEST),
    );
    response
        .content_type("text/html; charset=utf-8")
        .insert_header(("Content-Security-Policy", csp))
        .insert_header(("Referrer-Policy", "no-referrer"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header(("Cache-Control", "no-store"));
    if ancestors.is_empty() {
        response.insert_header(("X-Frame-Options", "DENY"));
    }
    response.body(body)
}

fn refused(state: &AppState, req: &HttpRequest, refusal: &Refusal) -> HttpResponse {
    refused_with(state, req, refusal, None)
}

fn refused_with(
    state: &AppState,
    req: &HttpRequest,
    refusal: &Refusal,
    back_to: Option<&str>,
) -> HttpResponse {
    let status = match refusal.code {
        "unknown_link" => 404,
        "link_expired" | "link_used" | "state_expired" | "state_used" => 410,
        "platform_unavailable" => 503,
        "platform_refused" | "no_platform_app" | "misconfigured" => 502,
        _ => 400,
    };
    html(
        state,
        status,
        "'none'",
        page::refusal_page(lang(req), refusal, back_to),
    )
}

fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .insert_header(("Referrer-Policy", "no-referrer"))
        .insert_header(("Cache-Control", "no-store"))
        .finish()
}

/// The seller's page: what is being connected, for whom, and one button. Reading it
/// changes nothing (chat apps fetch links to preview them).
#[utoipa::path(params(("token" = String, Path)), responses((status = 200, content_type = "text/html", body = String, description = "The connect page (HTML)"), (status = 404, content_type = "text/html", body = String, description = "Unknown link (HTML)"), (status = 410, content_type = "text/html", body = String, description = "Expired or used link (HTML)")), tag = "connect")]
#[get("/connect/{token}")]
pub async fn link_page(
    state: web::Data<AppState>,
    req: HttpRequest,
    token: web::Path<String>,
) -> Result<HttpResponse> {
    Ok(match state.connect.link(&token).await? {
        Ok(link) => {
            let targets = format!("'self' {}", link.consent_origin.clone().unwrap_or_default());
            let action = format!("/connect/{token}");
            html(
                &state,
                200,
                targets.trim(),
                page::connect_page(lang(&req), &link, &action),
            )
        }
        Err(refusal) => refused(&state, &req, &refusal),
    })
}

/// The button: to the platform's consent page with a fresh state.
#[utoipa::path(params(("token" = String, Path)), responses((status = 303, description = "To the platform's consent page"), (status = 410, content_type = "text/html", body = String, description = "Expired or used link (HTML)")), tag = "connect")]
#[post("/connect/{token}")]
pub async fn start(
    state: web::Data<AppState>,
    req: HttpRequest,
    token: web::Path<String>,
) -> Result<HttpResponse> {
    Ok(match state.connect.start(&token).await? {
        Ok(url) => see_other(url.as_str()),
        Err(refusal) => refused(&state, &req, &refusal),
    })
}

fn outcome(
    state: &AppState,
    req: &HttpRequest,
    connector: &str,
    outcome: CallbackOutcome,
) -> HttpResponse {
    match outcome {
        // A failure is explained here first; the return URL learns of it from the link.
        CallbackOutcome::ReturnTo {
            url,
            refusal: Some(refusal),
        } => refused_with(
            state,
            req,
            &refusal,
            Some(&url).filter(|u| !u.is_empty()).map(String::as_str),
        ),
        CallbackOutcome::ReturnTo { url, .. } if !url.is_empty() => see_other(&url),
        CallbackOutcome::Refused(refusal) => refused(state, req, &refusal),
        CallbackOutcome::ReturnTo { refusal: None, .. } => {
            html(state, 200, "'none'", page::done_page(lang(req)))
        }
        CallbackOutcome::ChooseShop { choice, shops } => {
            let action = format!("/v1/oauth/callback/{connector}/shop");
            html(
                state,
                200,
                "'self'",
                page::choose_shop_page(lang(req), &action, &choice, &shops),
            )
        }
    }
}

/// Where the platform sends the seller back after consent. Checks what the platform
/// documents (Shopify's HMAC and timestamp, the state), trades the code, saves the
/// connection, checks it and redirects to the session's return URL.
#[utoipa::path(params(("connector" = inline(ConnectConnector), Path)), responses((status = 303, description = "To the session's return URL, with status and connection_id or error"), (status = 400, content_type = "text/html", body = String, description = "A refused answer (HTML page)"), (status = 410, content_type = "text/html", body = String, description = "A used or expired state (HTML page)")), tag = "connect")]
#[get("/v1/oauth/callback/{connector}")]
pub async fn callback(
    state: web::Data<AppState>,
    req: HttpRequest,
    connector: web::Path<String>,
) -> Result<HttpResponse> {
    let query: Vec<(String, String)> = url::form_urlencoded::parse(req.query_string().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .take(64)
        .collect();
    let result = state.connect.callback(&connector, &query).await?;
    Ok(outcome(&state, &req, &connector, result))
}

/// The form of the shop picker.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct ShopChoice {
    /// The token the picker page carried.
    choice: String,
    /// The shop's position in the list.
    shop: usize,
}

/// The seller's pick of one shop, when the platform granted several.
#[utoipa::path(params(("connector" = inline(ConnectConnector), Path)), responses((status = 303, description = "To the session's return URL"), (status = 410, content_type = "text/html", body = String, description = "A used or expired choice (HTML page)")), tag = "connect")]
#[post("/v1/oauth/callback/{connector}/shop")]
pub async fn choose_shop(
    state: web::Data<AppState>,
    req: HttpRequest,
    connector: web::Path<String>,
    form: web::Form<ShopChoice>,
) -> Result<HttpResponse> {
    let result = state
        .connect
        .choose_shop(&connector, &form.choice, form.shop)
        .await?;
    Ok(outcome(&state, &req, &connector, result))
}
