//! The platforms' consent pages and code trades, as each documents them, so a connect link
//! can be followed end to end here (in a real browser too):
//!
//! - Shopify: `GET /shopify/{shop}/admin/oauth/authorize` (Approve / Deny), back to
//!   `redirect_uri` with `code, hmac, host, shop, state, timestamp` (HMAC with the client
//!   secret); `POST /shopify/{shop}/admin/oauth/access_token`: the code grant (`expiring: 1`:
//!   a 1-hour access token and a 90-day refresh token) and the refresh grant. Only one
//!   expiring token is live per shop: a new one revokes the old; the previous refresh
//!   token is honoured until its replacement is used.
//! - Amazon: `GET /amazon/apps/authorize/consent` (a Draft app needs `version=beta`: MD1000),
//!   back with `state, selling_partner_id, spapi_oauth_code`; the code is traded at
//!   `POST /amazon/auth/o2/token` within 5 minutes.
//! - Shopee: `GET /shopee/api/v2/shop/auth_partner` (signed, 5 minutes), back to `redirect`
//!   with `code, shop_id`; `POST /shopee/api/v2/auth/token/get` (signed).
//! - TikTok Shop: `GET /tiktok/open/authorize?service_id&state`, back to the app's registered
//!   redirect URL with `code, state`; `GET /tiktok-auth/api/v2/token/get`, then
//!   `GET /tiktok/authorization/202309/shops` for the ciphers.
//!
//! Every code is single-use. `PUT /_sim/consent` sets what the platforms do: `deny` (the
//! consent page redirects with `error=access_denied`), `refuse` (trades are refused),
//! `timeout` (trades hang), `advance_seconds` (the platforms' clock runs ahead, to age
//! codes and tokens), `shopify_access_seconds`, `tiktok_shops`.

use std::collections::HashMap;
use std::time::Duration as StdDuration;

use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::SimState;
use super::signed::{param, query_pairs};
use super::tokens::Platform as TokenPlatform;
use crate::signing::marketplaces as signing;

/// Amazon: "The LWA authorization code expires after five minutes."
const AMAZON_CODE_LIFETIME: Duration = Duration::minutes(5);
/// One third-party source gives TikTok's auth code 30 minutes.
const TIKTOK_CODE_LIFETIME: Duration = Duration::minutes(30);
/// No source states Shopify's or Shopee's code lifetimes; ten minutes here.
const OTHER_CODE_LIFETIME: Duration = Duration::minutes(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    Shopify,
    Amazon,
    Shopee,
    Tiktok,
}

/// What the simulated platforms do with consents, set by `PUT /_sim/consent`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Switches {
    /// The consent page redirects with `error=access_denied` without asking.
    pub deny: bool,
    /// Code trades are refused (the platform's own refusal).
    pub refuse: bool,
    /// Code trades hang for a minute (the caller's timeout fires).
    pub timeout: bool,
    /// The platforms' clock runs this far ahead of the machine's.
    pub advance_seconds: i64,
    /// Lifetime of Shopify's expiring access tokens (default 3,600 s).
    pub shopify_access_seconds: Option<i64>,
    /// The shops a TikTok consent grants (default: one).
    pub tiktok_shops: Option<Vec<TiktokShop>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TiktokShop {
    pub name: String,
    pub region: String,
    pub cipher: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AmazonApp {
    pub lwa_client_id: String,
    #[serde(default)]
    pub draft: bool,
    /// The merchant token a consent names.
    #[serde(default = "default_seller")]
    pub selling_partner_id: String,
}

fn default_seller() -> String {
    "A2SIMSELLER0001".into()
}

#[derive(Debug, Clone, Deserialize)]
pub struct TiktokService {
    pub app_key: String,
    /// The redirect URL registered with the app: TikTok sends sellers there.
    pub redirect_url: String,
}

/// Apps registered for consent (`PUT /_sim/apps` beside the signing apps).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ConsentApps {
    /// Shopify client id -> client secret.
    pub shopify: HashMap<String, String>,
    /// Amazon application id -> its LWA client and seller.
    pub amazon: HashMap<String, AmazonApp>,
    /// TikTok service id -> app key and registered redirect URL.
    pub tiktok_services: HashMap<String, TiktokService>,
}

#[derive(Debug, Clone)]
struct Code {
    platform: Platform,
    /// The app it was granted to (client id, LWA client id, partner id, app key).
    client: String,
    /// The shop (Shopify domain, Shopee shop id) or seller it is for.
    account: String,
    redirect: String,
    issued: DateTime<Utc>,
}

#[derive(Debug, Clone)]
struct ShopifyGrant {
    access: String,
    access_expires: DateTime<Utc>,
    refresh: String,
    /// Honoured until the new pair is used.
    previous_refresh: Option<String>,
}

#[derive(Default)]
pub struct Consents {
    apps: ConsentApps,
    switches: Switches,
    codes: HashMap<String, Code>,
    shopify: HashMap<String, ShopifyGrant>,
    /// Refresh tokens a Login with Amazon code trade granted: client id -> tokens.
    lwa_grants: HashMap<String, Vec<String>>,
    pub trades: u64,
    pub shopify_refreshes: u64,
}

impl Consents {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + Duration::seconds(self.switches.advance_seconds)
    }

    pub fn set(&mut self, switches: Switches) {
        self.switches = switches;
    }

    pub fn register(&mut self, apps: ConsentApps) {
        self.apps.shopify.extend(apps.shopify);
        self.apps.amazon.extend(apps.amazon);
        self.apps.tiktok_services.extend(apps.tiktok_services);
    }

    fn mint(&mut self, platform: Platform, client: &str, account: &str, redirect: &str) -> String {
        let code = format!("sim-code-{}", uuid::Uuid::now_v7().simple());
        self.codes.insert(
            code.clone(),
            Code {
                platform,
                client: client.into(),
                account: account.into(),
                redirect: redirect.into(),
                issued: self.now(),
            },
        );
        code
    }

    /// Spends a code: Ok(account) if it was granted to `client` on `platform` and is
    /// young enough; a used code is gone.
    fn spend(
        &mut self,
        platform: Platform,
        client: &str,
        code: &str,
    ) -> Result<Code, &'static str> {
        let now = self.now();
        let found = self.codes.remove(code).ok_or("unknown or used code")?;
        let lifetime = match platform {
            Platform::Amazon => AMAZON_CODE_LIFETIME,
            Platform::Tiktok => TIKTOK_CODE_LIFETIME,
            _ => OTHER_CODE_LIFETIME,
        };
        if found.platform != platform || found.client != client {
            return Err("the code was granted to another app");
        }
        if now - found.issued > lifetime {
            return Err("the code has expired");
        }
        Ok(found)
    }

    /// Whether `token` may call the shop: None if the shop has no token from a consent.
    pub fn shopify_token_ok(&mut self, shop: &str, token: &str) -> Option<bool> {
        let now = self.now();
        let grant = self.shopify.get_mut(shop)?;
        let ok = grant.access == token && now < grant.access_expires;
        if ok {
            // The new pair is in use: the previous refresh token stops counting.
            grant.previous_refresh = None;
        }
        Some(ok)
    }

    fn shopify_tokens(&mut self, shop: &str, previous: Option<String>) -> Value {
        let lifetime = self.switches.shopify_access_seconds.unwrap_or(3600);
        let id = uuid::Uuid::now_v7().simple();
        let grant = ShopifyGrant {
            access: format!("shpat_sim_{id}"),
            access_expires: self.now() + Duration::seconds(lifetime),
            refresh: format!("shprt_sim_{id}"),
            previous_refresh: previous,
        };
        let answer = json!({
            "access_token": grant.access,
            "scope": "read_orders,write_inventory",
            "expires_in": lifetime,
            "refresh_token": grant.refresh,
            "refresh_token_expires_in": 90 * 24 * 3600,
        });
        self.shopify.insert(shop.to_string(), grant);
        answer
    }

    pub fn lwa_granted(&self, client: &str, refresh: &str) -> bool {
        self.lwa_grants
            .get(client)
            .is_some_and(|tokens| tokens.iter().any(|t| t == refresh))
    }
}

fn page(title: &str, body: &str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title></head><body><h1>{title}</h1>{body}</body></html>"
        ))
}

fn error_page(message: &str) -> HttpResponse {
    HttpResponse::BadRequest()
        .content_type("text/html; charset=utf-8")
        .body(format!(
            "<!doctype html><title>Error</title><p id=\"error\">{message}</p>"
        ))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The consent page: who asks for what, Approve and Deny; the form carries what the
/// decision needs.
fn consent_page(platform: Platform, app: &str, fields: &[(&str, &str)]) -> HttpResponse {
    let hidden: String = fields
        .iter()
        .map(|(k, v)| {
            format!(
                "<input type=\"hidden\" name=\"{k}\" value=\"{}\">",
                escape(v)
            )
        })
        .collect();
    let body = format!(
        "<p>The app <strong>{}</strong> asks for access to your store.</p><form method=\"post\" action=\"/_sim/consent/decide\"><input type=\"hidden\" name=\"platform\" value=\"{}\">{hidden}<button id=\"approve\" name=\"decision\" value=\"approve\">Approve</button> <button id=\"deny\" name=\"decision\" value=\"deny\">Deny</button></form>",
        escape(app),
        serde_json::to_value(platform)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default()
    );
    page("Authorize app", &body)
}

fn redirect(to: &str) -> HttpResponse {
    HttpResponse::Found()
        .insert_header(("Location", to))
        .finish()
}

fn with_params(base: &str, pairs: &[(&str, &str)]) -> Option<String> {
    let mut url = url::Url::parse(base).ok()?;
    url.query_pairs_mut().extend_pairs(pairs);
    Some(url.to_string())
}

fn denied(state: &SimState, redirect_to: &str, state_param: Option<&str>) -> Option<HttpResponse> {
    let deny = state.consents.lock().is_ok_and(|c| c.switches.deny);
    deny.then(|| {
        let mut pairs = vec![("error", "access_denied")];
        if let Some(s) = state_param {
            pairs.push(("state", s));
        }
        match with_params(redirect_to, &pairs) {
            Some(url) => redirect(&url),
            None => error_page("bad redirect"),
        }
    })
}

/// A seller's app's return page, for connect links to land on.
pub async fn landing(req: HttpRequest) -> HttpResponse {
    let pairs = query_pairs(&req);
    let status = param(&pairs, "status").unwrap_or("none");
    page(
        "Welcome back",
        &format!("<p id=\"status\">{}</p>", escape(status)),
    )
}

pub async fn put_consent(state: web::Data<SimState>, body: web::Json<Switches>) -> HttpResponse {
    match state.consents.lock() {
        Ok(mut consents) => {
            consents.set(body.into_inner());
            HttpResponse::NoContent().finish()
        }
        Err(_) => HttpResponse::InternalServerError().finish(),
    }
}

/// Shopify's grant screen.
pub async fn shopify_authorize(
    state: web::Data<SimState>,
    shop: web::Path<String>,
    req: HttpRequest,
) -> HttpResponse {
    let pairs = query_pairs(&req);
    let (Some(client_id), Some(redirect_uri)) =
        (param(&pairs, "client_id"), param(&pairs, "redirect_uri"))
    else {
        return error_page(
            "Oauth error invalid_request: The client_id and redirect_uri are required",
        );
    };
    let known = state
        .consents
        .lock()
        .is_ok_and(|c| c.apps.shopify.contains_key(client_id));
    if !known {
        return error_page("Oauth error invalid_request: The client_id is not recognised");
    }
    let state_param = param(&pairs, "state").unwrap_or_default();
    if let Some(response) = denied(&state, redirect_uri, Some(state_param)) {
        return response;
    }
    consent_page(
        Platform::Shopify,
        client_id,
        &[
            ("account", &shop),
            ("client", client_id),
            ("redirect_uri", redirect_uri),
            ("state", state_param),
        ],
    )
}

pub async fn amazon_consent(state: web::Data<SimState>, req: HttpRequest) -> HttpResponse {
    let pairs = query_pairs(&req);
    let (Some(application_id), Some(redirect_uri)) = (
        param(&pairs, "application_id"),
        param(&pairs, "redirect_uri"),
    ) else {
        return error_page("MD5101: the redirect URI is missing or not registered");
    };
    let app = state
        .consents
        .lock()
        .ok()
        .and_then(|c| c.apps.amazon.get(application_id).cloned());
    let Some(app) = app else {
        return error_page("MD9100: the application id is not recognised");
    };
    if app.draft && param(&pairs, "version") != Some("beta") {
        return error_page(
            "MD1000: this app is in Draft; the authorization URL must carry version=beta",
        );
    }
    let state_param = param(&pairs, "state").unwrap_or_default();
    if let Some(response) = denied(&state, redirect_uri, Some(state_param)) {
        return response;
    }
    consent_page(
        Platform::Amazon,
        application_id,
        &[
            ("account", &app.selling_partner_id),
            ("client", &app.lwa_client_id),
            ("redirect_uri", redirect_uri),
            ("state", state_param),
        ],
    )
}

/// Shopee's auth_partner link: signed with the partner key, valid 5 minutes.
pub async fn shopee_auth_partner(state: web::Data<SimState>, req: HttpRequest) -> HttpResponse {
    let pairs = query_pairs(&req);
    let (Some(partner_id), Some(timestamp), Some(sign), Some(redirect_to)) = (
        param(&pairs, "partner_id"),
        param(&pairs, "timestamp"),
        param(&pairs, "sign"),
        param(&pairs, "redirect"),
    ) else {
        return error_page("error_param: partner_id, timestamp, sign and redirect are required");
    };
    let key = state
        .apps
        .lock()
        .ok()
        .and_then(|apps| apps.shopee_key(partner_id));
    let Some(key) = key else {
        return error_page("error_auth: invalid partner_id");
    };
    if !super::signed::fresh(Some(timestamp)) {
        return error_page("error_auth: Invalid timestamp");
    }
    let ts: i64 = timestamp.parse().unwrap_or_default();
    let expected = signing::shopee_v2(&key, partner_id, "/api/v2/shop/auth_partner", ts, "", "");
    if !crate::signing::constant_time_eq(expected.as_bytes(), sign.as_bytes()) {
        return error_page("error_sign: Wrong sign");
    }
    if let Some(response) = denied(&state, redirect_to, None) {
        return response;
    }
    consent_page(
        Platform::Shopee,
        partner_id,
        &[
            ("account", "14701711"),
            ("client", partner_id),
            ("redirect_uri", redirect_to),
            ("state", ""),
        ],
    )
}

pub async fn tiktok_authorize(state: web::Data<SimState>, req: HttpRequest) -> HttpResponse {
    let pairs = query_pairs(&req);
    let Some(service_id) = param(&pairs, "service_id") else {
        return error_page("service_id is required");
    };
    let service = state
        .consents
        .lock()
        .ok()
        .and_then(|c| c.apps.tiktok_services.get(service_id).cloned());
    let Some(service) = service else {
        return error_page("This service is not available");
    };
    let state_param = param(&pairs, "state").unwrap_or_default();
    if let Some(response) = denied(&state, &service.redirect_url, Some(state_param)) {
        return response;
    }
    consent_page(
        Platform::Tiktok,
        service_id,
        &[
            ("account", "sim-seller"),
            ("client", &service.app_key),
            ("redirect_uri", &service.redirect_url),
            ("state", state_param),
        ],
    )
}

#[derive(Deserialize)]
pub struct Decision {
    platform: Platform,
    account: String,
    client: String,
    redirect_uri: String,
    state: String,
    decision: String,
}

/// The seller pressed Approve or Deny: back to the app, as the platform sends them.
pub async fn decide(state: web::Data<SimState>, form: web::Form<Decision>) -> HttpResponse {
    let form = form.into_inner();
    let state_pair: Vec<(&str, &str)> = if form.state.is_empty() {
        Vec::new()
    } else {
        vec![("state", form.state.as_str())]
    };
    if form.decision != "approve" {
        let mut pairs = vec![("error", "access_denied")];
        pairs.extend(state_pair);
        return match with_params(&form.redirect_uri, &pairs) {
            Some(url) => redirect(&url),
            None => error_page("bad redirect"),
        };
    }
    let Ok(mut consents) = state.consents.lock() else {
        return HttpResponse::InternalServerError().finish();
    };
    let code = consents.mint(
        form.platform,
        &form.client,
        &form.account,
        &form.redirect_uri,
    );
    let url = match form.platform {
        Platform::Shopify => {
            let Some(secret) = consents.apps.shopify.get(&form.client).cloned() else {
                return error_page("unknown app");
            };
            let host =
                base64::engine::general_purpose::STANDARD.encode(format!("{}/admin", form.account));
            let timestamp = consents.now().timestamp().to_string();
            let mut pairs: Vec<(String, String)> = vec![
                ("code".into(), code),
                ("host".into(), host),
                ("shop".into(), form.account.clone()),
                ("state".into(), form.state.clone()),
                ("timestamp".into(), timestamp),
            ];
            let hmac = hex::encode(signing::shopify_oauth(&secret, &pairs));
            pairs.push(("hmac".into(), hmac));
            let borrowed: Vec<(&str, &str)> = pairs
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            with_params(&form.redirect_uri, &borrowed)
        }
        Platform::Amazon => {
            let mut pairs = state_pair;
            pairs.push(("selling_partner_id", &form.account));
            pairs.push(("spapi_oauth_code", &code));
            with_params(&form.redirect_uri, &pairs)
        }
        Platform::Shopee => with_params(
            &form.redirect_uri,
            &[("code", &code), ("shop_id", &form.account)],
        ),
        Platform::Tiktok => {
            let mut pairs = vec![("code", code.as_str())];
            pairs.extend(state_pair);
            with_params(&form.redirect_uri, &pairs)
        }
    };
    match url {
        Some(url) => redirect(&url),
        None => error_page("bad redirect"),
    }
}

/// Applies the trade switches: a hang, or the platform's refusal (built by the caller).
async fn trade_switch(state: &SimState) -> Option<bool> {
    let (timeout, refuse) = state
        .consents
        .lock()
        .map(|c| (c.switches.timeout, c.switches.refuse))
        .unwrap_or_default();
    if timeout {
        tokio::time::sleep(StdDuration::from_secs(60)).await;
    }
    refuse.then_some(true)
}

#[derive(Deserialize)]
pub struct ShopifyTokenRequest {
    client_id: String,
    client_secret: String,
    code: Option<String>,
    grant_type: Option<String>,
    refresh_token: Option<String>,
    #[serde(default)]
    expiring: Option<Value>,
}

fn shopify_refusal(description: &str) -> HttpResponse {
    HttpResponse::BadRequest()
        .json(json!({"error": "invalid_request", "error_description": description}))
}

/// Shopify's token endpoint: the code grant and the refresh grant.
pub async fn shopify_access_token(
    state: web::Data<SimState>,
    shop: web::Path<String>,
    body: web::Json<ShopifyTokenRequest>,
) -> HttpResponse {
    if trade_switch(&state).await.is_some() {
        return shopify_refusal("The authorization code was not found or was already used");
    }
    let Ok(mut consents) = state.consents.lock() else {
        return HttpResponse::InternalServerError().finish();
    };
    let secret_ok = consents.apps.shopify.get(&body.client_id).is_some_and(|s| {
        crate::signing::constant_time_eq(s.as_bytes(), body.client_secret.as_bytes())
    });
    if !secret_ok {
        return HttpResponse::Unauthorized().json(json!({"error": "invalid_client", "error_description": "Client credentials are invalid"}));
    }
    consents.trades += 1;
    if body.grant_type.as_deref() == Some("refresh_token") {
        let given = body.refresh_token.clone().unwrap_or_default();
        let Some(grant) = consents.shopify.get(shop.as_str()).cloned() else {
            return shopify_refusal("The refresh token is invalid");
        };
        let valid =
            given == grant.refresh || grant.previous_refresh.as_deref() == Some(given.as_str());
        if !valid {
            return shopify_refusal("The refresh token is invalid or was revoked");
        }
        consents.shopify_refreshes += 1;
        let answer = consents.shopify_tokens(&shop, Some(grant.refresh));
        return HttpResponse::Ok().json(answer);
    }
    let code = body.code.clone().unwrap_or_default();
    match consents.spend(Platform::Shopify, &body.client_id, &code) {
        Ok(found) if found.account == shop.as_str() => {}
        _ => return shopify_refusal("The authorization code was not found or was already used"),
    }
    let expiring = matches!(&body.expiring, Some(v) if v == &json!(1) || v == &json!("1"));
    if expiring {
        HttpResponse::Ok().json(consents.shopify_tokens(&shop, None))
    } else {
        // A non-expiring offline token: it stays the shop's token until revoked.
        let token = format!("shpat_sim_offline_{}", uuid::Uuid::now_v7().simple());
        consents.shopify.remove(shop.as_str());
        HttpResponse::Ok()
            .json(json!({"access_token": token, "scope": "read_orders,write_inventory"}))
    }
}

/// Login with Amazon's authorization-code grant (the refresh grant is `signed::lwa_token`).
pub(super) fn lwa_code_grant(
    state: &SimState,
    client_id: &str,
    code: &str,
    redirect_uri: &str,
) -> Result<String, HttpResponse> {
    let invalid = |description: &str| {
        HttpResponse::BadRequest()
            .json(json!({"error": "invalid_grant", "error_description": description}))
    };
    let mut consents = state
        .consents
        .lock()
        .map_err(|_| HttpResponse::InternalServerError().finish())?;
    if consents.switches.refuse {
        return Err(invalid("The request has an invalid grant parameter : code"));
    }
    consents.trades += 1;
    let found = consents
        .spend(Platform::Amazon, client_id, code)
        .map_err(|why| {
            invalid(&format!(
                "The request has an invalid grant parameter : code ({why})"
            ))
        })?;
    if found.redirect != redirect_uri {
        return Err(invalid(
            "redirect_uri does not match the authorization request",
        ));
    }
    let refresh = format!("Atzr|sim-granted-{}", uuid::Uuid::now_v7().simple());
    consents
        .lwa_grants
        .entry(client_id.to_string())
        .or_default()
        .push(refresh.clone());
    Ok(refresh)
}

/// Whether the LWA token endpoint should hang (the timeout switch).
pub(super) async fn lwa_hold(state: &SimState) {
    let timeout = state.consents.lock().is_ok_and(|c| c.switches.timeout);
    if timeout {
        tokio::time::sleep(StdDuration::from_secs(60)).await;
    }
}

#[derive(Deserialize)]
pub struct ShopeeTokenGet {
    code: String,
    partner_id: i64,
    shop_id: Option<i64>,
    main_account_id: Option<i64>,
}

/// Shopee v2 GetAccessToken: a code for a shop's tokens (4 hours, and a refresh token).
pub async fn shopee_token_get(
    state: web::Data<SimState>,
    req: HttpRequest,
    body: web::Json<ShopeeTokenGet>,
) -> HttpResponse {
    if let Err(refused) = super::signed::shopee_public_verified(&state, &req) {
        return refused;
    }
    let request_id = uuid::Uuid::now_v7().simple().to_string();
    let refusal = |message: &str| {
        HttpResponse::Ok()
            .json(json!({"error": "error_auth", "message": message, "request_id": request_id}))
    };
    if trade_switch(&state).await.is_some() {
        return refusal("Invalid code.");
    }
    let spent = match state.consents.lock() {
        Ok(mut consents) => {
            consents.trades += 1;
            consents.spend(Platform::Shopee, &body.partner_id.to_string(), &body.code)
        }
        Err(_) => return HttpResponse::InternalServerError().finish(),
    };
    let account = body
        .shop_id
        .or(body.main_account_id)
        .unwrap_or_default()
        .to_string();
    match spent {
        Ok(code) if code.account == account => {}
        Ok(_) => return refusal("The code was granted for another shop."),
        Err(why) => return refusal(&format!("Invalid code ({why}).")),
    }
    let Some((access, refresh)) = state.mint_shop_tokens(TokenPlatform::Shopee, Duration::hours(4))
    else {
        return HttpResponse::ServiceUnavailable().finish();
    };
    HttpResponse::Ok().json(json!({
        "access_token": access, "refresh_token": refresh, "expire_in": 14400,
        "request_id": request_id, "error": "", "message": "",
    }))
}

#[derive(Deserialize)]
pub struct TiktokTokenGet {
    app_key: String,
    app_secret: String,
    auth_code: String,
    grant_type: String,
}

/// TikTok Shop token get: `grant_type=authorized_code`, unsigned, expiries as timestamps.
pub async fn tiktok_token_get(
    state: web::Data<SimState>,
    query: web::Query<TiktokTokenGet>,
) -> HttpResponse {
    let fail = |code: u32, message: &str| {
        HttpResponse::Ok().json(
            json!({"code": code, "message": message, "data": Value::Null,
            "request_id": uuid::Uuid::now_v7().simple().to_string()}),
        )
    };
    if query.grant_type != "authorized_code" {
        return fail(36004004, "invalid grant_type");
    }
    if !super::signed::tiktok_app_secret_is(&state, &query.app_key, &query.app_secret) {
        return fail(36004004, "invalid app_key or app_secret");
    }
    if trade_switch(&state).await.is_some() {
        return fail(36004004, "auth code is invalid or expired");
    }
    let spent = match state.consents.lock() {
        Ok(mut consents) => {
            consents.trades += 1;
            consents.spend(Platform::Tiktok, &query.app_key, &query.auth_code)
        }
        Err(_) => return HttpResponse::InternalServerError().finish(),
    };
    if spent.is_err() {
        return fail(36004004, "auth code is invalid or expired");
    }
    let lifetime = Duration::days(7);
    let Some((access, refresh)) = state.mint_shop_tokens(TokenPlatform::Tiktok, lifetime) else {
        return HttpResponse::ServiceUnavailable().finish();
    };
    let now = Utc::now();
    HttpResponse::Ok().json(json!({"code": 0, "message": "success",
        "request_id": uuid::Uuid::now_v7().simple().to_string(),
        "data": {"access_token": access, "access_token_expire_in": (now + lifetime).timestamp(),
                 "refresh_token": refresh, "refresh_token_expire_in": (now + Duration::days(365)).timestamp(),
                 "open_id": "sim-open-id", "seller_name": "Sim Seller", "seller_base_region": "SG", "user_type": 0}}))
}

/// TikTok Shop Get Authorized Shops (202309): the shops and their ciphers.
pub async fn tiktok_authorized_shops(state: web::Data<SimState>, req: HttpRequest) -> HttpResponse {
    if let Err(refused) = super::signed::tiktok_verified(&state, &req, b"") {
        return refused;
    }
    let shops = state
        .consents
        .lock()
        .ok()
        .and_then(|c| c.switches.tiktok_shops.clone())
        .unwrap_or_else(|| {
            vec![TiktokShop {
                name: "Sim Shop".into(),
                region: "SG".into(),
                cipher: "ROW_sim_cipher_1".into(),
            }]
        });
    let shops: Vec<Value> = shops
        .iter()
        .enumerate()
        .map(|(i, s)| json!({"id": format!("70007145328762734{i:02}"), "name": s.name, "region": s.region,
                             "seller_type": "CROSS_BORDER", "cipher": s.cipher, "code": format!("SIM{i:03}")}))
        .collect();
    HttpResponse::Ok().json(json!({"code": 0, "message": "Success",
        "request_id": uuid::Uuid::now_v7().simple().to_string(), "data": {"shops": shops}}))
}
