//! Calls a platform the way its manifest says: base URL per environment, the auth scheme,
//! the shared rate-limit bucket, pagination, and errors sorted into classes that say whether
//! a retry can help. `Retry-After` is honoured inside the call.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::manifest::Manifest;
use super::spec::{AuthSpec, BatchSpec, Method, OperationSpec, Pagination};
pub use super::template::Vars;
use super::{lwa, template, token_refresh};
use crate::netpolicy::outbound::read_limited;
use crate::netpolicy::{OutboundClient, OutboundError};
use crate::ratelimit::{Feedback, Limit, RateLimiter};
use crate::signing::marketplaces as signing;

/// Why a call failed, in terms a retry policy and a seller can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    Connect,
    Timeout,
    Auth,
    Forbidden,
    RateLimited,
    ServerError,
    ClientError,
    /// 404: the platform does not know the thing asked for (a SKU it does not list).
    NotFound,
    SchemaMismatch,
    Config,
    /// The outbound guard refused the target (a private address): a setting to fix.
    Blocked,
    /// synchub's own database failed (busy, a dropped connection): worth retrying.
    Storage,
}

impl ErrorClass {
    /// Network trouble, timeouts, throttling and 5xx may pass; the rest will not by waiting.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            Self::Connect | Self::Timeout | Self::RateLimited | Self::ServerError | Self::Storage
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Timeout => "timeout",
            Self::Auth => "auth",
            Self::Forbidden => "forbidden",
            Self::RateLimited => "rate_limited",
            Self::ServerError => "server_error",
            Self::ClientError => "client_error",
            Self::NotFound => "not_found",
            Self::SchemaMismatch => "schema_mismatch",
            Self::Config => "config",
            Self::Blocked => "blocked",
            Self::Storage => "storage",
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{class:?}: {message}")]
pub struct CallError {
    pub class: ErrorClass,
    pub message: String,
    /// It failed while trading credentials for a token (Login with Amazon, a marketplace's
    /// token refresh): alerting tells "the credentials stopped working" from a failed call.
    pub token_exchange: bool,
}

impl From<OutboundError> for CallError {
    fn from(err: OutboundError) -> Self {
        let class = match &err {
            OutboundError::Blocked(_) => ErrorClass::Blocked,
            OutboundError::Transport { timeout: true, .. } => ErrorClass::Timeout,
            OutboundError::Transport { .. } => ErrorClass::Connect,
            OutboundError::TooLarge { .. } => ErrorClass::SchemaMismatch,
        };
        CallError::new(class, err.to_string())
    }
}

/// The largest platform answer read: a page of 250 Shopify orders is a few MB.
const MAX_ANSWER_BYTES: usize = 32 << 20;

/// A platform's answer as text, read up to [`MAX_ANSWER_BYTES`].
pub async fn answer_text(response: reqwest::Response) -> Result<String, CallError> {
    let bytes = read_limited(response, MAX_ANSWER_BYTES).await?;
    Ok(String::from_utf8(bytes)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
}

impl CallError {
    pub fn new(class: ErrorClass, message: impl Into<String>) -> Self {
        Self {
            class,
            message: message.into(),
            token_exchange: false,
        }
    }

    pub fn in_token_exchange(mut self) -> Self {
        self.token_exchange = true;
        self
    }
}

/// The credential names a token refresh replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenNames<'a> {
    pub access_token: &'a str,
    pub refresh_token: &'a str,
}

/// Where the next page is.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum NextPage {
    Url(String),
    Token(String),
    Number(u32),
}

pub struct ListPage {
    pub records: Vec<Value>,
    pub next: Option<NextPage>,
}

/// How many times one call waits out a 429 before giving the error to the run.
const MAX_THROTTLE_WAITS: u32 = 5;
/// Quick retries of one call after a network error, timeout or 5xx, before the run's own
/// persisted retry takes over. Safe: reads are idempotent and writes carry idempotency keys.
const QUICK_RETRIES: u32 = 2;
/// The longest a call waits for a rate-limit token before it gives up as rate limited.
const MAX_TOKEN_WAIT: Duration = Duration::from_secs(120);
/// How long a concurrency slot outlives a process that died holding it: longer than a
/// call's token wait, 429 waits and timeout together.
const SLOT_LEASE: Duration = Duration::from_secs(300);

pub struct ConnectorClient {
    manifest: Arc<Manifest>,
    environment: String,
    settings: Map<String, Value>,
    credentials: Map<String, Value>,
    account: String,
    limiter: RateLimiter,
    http: OutboundClient,
}

impl std::fmt::Debug for ConnectorClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ConnectorClient({}, {})",
            self.manifest.name, self.account
        )
    }
}

impl ConnectorClient {
    pub fn new(
        manifest: Arc<Manifest>,
        environment: &str,
        settings: Map<String, Value>,
        credentials: Map<String, Value>,
        connection_id: &str,
        limiter: RateLimiter,
        http: OutboundClient,
    ) -> Self {
        Self {
            manifest,
            environment: environment.to_string(),
            settings,
            credentials,
            account: connection_id.to_string(),
            limiter,
            http,
        }
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The credentials the client signs with (the keeper replaces tokens in a copy).
    pub fn credentials(&self) -> &Map<String, Value> {
        &self.credentials
    }

    fn setting(&self, name: &str) -> Option<String> {
        match self.settings.get(name) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            // A list goes out comma-separated (Amazon's MarketplaceIds).
            Some(Value::Array(items)) => Some(
                items
                    .iter()
                    .filter_map(|v| v.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            _ => self
                .manifest
                .settings
                .iter()
                .find(|f| f.name == name)
                .and_then(|f| f.default.clone()),
        }
    }

    /// A placeholder's value: the call's own values first (cursor, record fields), then the
    /// derived `{cursor_unix}` and `{now_unix}`, then the connection's settings.
    fn resolve(&self, name: &str, vars: &Vars) -> Option<String> {
        if let Some(value) = vars.text(name) {
            return Some(value);
        }
        match name {
            // The cursor as Unix seconds; a first run looks back 15 days, the longest
            // window Shopee's time-ranged lists take.
            "cursor_unix" => Some(
                vars.text("cursor")
                    .and_then(|c| chrono::DateTime::parse_from_rfc3339(&c).ok())
                    .map(|c| c.timestamp())
                    .unwrap_or_else(|| {
                        (chrono::Utc::now() - chrono::Duration::days(15)).timestamp()
                    })
                    .to_string(),
            ),
            "now_unix" => Some(chrono::Utc::now().timestamp().to_string()),
            _ => self.setting(name),
        }
    }

    /// Fills `{name}` placeholders; a missing value is a configuration error naming it.
    fn fill(&self, template: &str, vars: &Vars) -> Result<String, CallError> {
        template::fill_text(template, &|name| self.resolve(name, vars)).map_err(missing)
    }

    /// The operation's path with its placeholders filled, each value encoded as a path
    /// segment (a SKU may hold a slash or a space).
    fn api_path(&self, op: &OperationSpec, vars: &Vars) -> Result<String, CallError> {
        template::fill_text(&op.path, &|name| {
            self.resolve(name, vars).map(|v| encode_segment(&v))
        })
        .map_err(missing)
    }

    /// The operation's JSON body with its placeholders filled, values keeping their types.
    fn body(&self, op: &OperationSpec, vars: &Vars) -> Result<Option<Value>, CallError> {
        let Some(template) = &op.body else {
            return Ok(None);
        };
        template::fill_value(template, &|name| match vars.get(name) {
            Some(value) => Some(value.clone()),
            // Timestamps go out as numbers, settings as text.
            None if name.ends_with("_unix") => self
                .resolve(name, vars)
                .and_then(|t| t.parse::<i64>().ok())
                .map(Value::from),
            None => self.resolve(name, vars).map(Value::String),
        })
        .map(Some)
        .map_err(missing)
    }

    pub fn base_url(&self) -> Result<String, CallError> {
        if let Some(url) = self.setting("base_url") {
            return Ok(url.trim_end_matches('/').to_string());
        }
        let template = self
            .manifest
            .environments
            .get(&self.environment)
            .ok_or_else(|| {
                CallError::new(
                    ErrorClass::Config,
                    format!(
                        "{} has no {} environment",
                        self.manifest.name, self.environment
                    ),
                )
            })?;
        self.fill(template, &Vars::new())
            .map(|url| url.trim_end_matches('/').to_string())
    }

    fn operation(&self, name: &str) -> Result<&OperationSpec, CallError> {
        self.manifest.operations.get(name).ok_or_else(|| {
            CallError::new(
                ErrorClass::Config,
                format!("{} has no operation {name}", self.manifest.name),
            )
        })
    }

    fn bucket(&self, group: &str) -> Result<(String, Limit), CallError> {
        let spec = self
            .manifest
            .rate_limits
            .iter()
            .find(|r| r.group == group)
            .ok_or_else(|| {
                CallError::new(ErrorClass::Config, format!("no rate limit group {group}"))
            })?;
        let account = spec
            .account_setting
            .as_deref()
            .and_then(|name| self.setting(name))
            .unwrap_or_else(|| self.account.clone());
        Ok((
            format!("{}:{account}:{group}", self.manifest.name),
            Limit {
                rate: spec.rate,
                burst: spec.burst,
            },
        ))
    }

    fn credential(&self, name: &str) -> Result<&str, CallError> {
        self.credentials
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| {
                CallError::new(ErrorClass::Auth, format!("credential {name} is missing"))
            })
    }

    fn required_setting(&self, name: &str) -> Result<String, CallError> {
        self.setting(name)
            .ok_or_else(|| CallError::new(ErrorClass::Config, format!("setting {name} is missing")))
    }

    /// The connection's Login with Amazon grant, when its scheme is `amazon_lwa`.
    fn lwa_grant(&self) -> Option<Result<lwa::Grant<'_>, CallError>> {
        let Some(AuthSpec::AmazonLwa {
            client_id,
            client_secret,
            refresh_token,
            endpoint_setting,
        }) = &self.manifest.auth
        else {
            return None;
        };
        let endpoint = endpoint_setting
            .as_ref()
            .and_then(|s| self.settings.get(s.as_str()))
            .and_then(Value::as_str)
            .unwrap_or(lwa::DEFAULT_ENDPOINT);
        let grant = || {
            Ok(lwa::Grant {
                endpoint,
                client_id: self.credential(client_id)?,
                client_secret: self.credential(client_secret)?,
                refresh_token: self.credential(refresh_token)?,
            })
        };
        Some(grant())
    }

    /// Adds the scheme's credentials to a built request: headers, or a signature over the
    /// API path, the final query and the body, with a fresh timestamp each time it is sent.
    /// The API path is the operation's, not the URL's: a base URL may carry a prefix (a
    /// proxy, the simulator) that the platform never sees.
    async fn authenticate(
        &self,
        request: &mut reqwest::Request,
        api_path: &str,
    ) -> Result<(), CallError> {
        // Marked sensitive, so no debug output of the request shows them.
        let header = |value: &str| {
            let mut value = reqwest::header::HeaderValue::from_str(value).map_err(|_| {
                CallError::new(ErrorClass::Auth, "a credential is not a valid header value")
            })?;
            value.set_sensitive(true);
            Ok::<_, CallError>(value)
        };
        let timestamp = chrono::Utc::now().timestamp();
        match &self.manifest.auth {
            None => {}
            Some(AuthSpec::ShopifyAccessToken { credential }) => {
                let value = header(self.credential(credential)?)?;
                request
                    .headers_mut()
                    .insert("X-Shopify-Access-Token", value);
            }
            Some(AuthSpec::ApiKeyHeader {
                header: name,
                credential,
            }) => {
                let name =
                    reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                        CallError::new(ErrorClass::Config, "auth.header is not a header name")
                    })?;
                let value = header(self.credential(credential)?)?;
                request.headers_mut().insert(name, value);
            }
            Some(AuthSpec::Bearer { credential }) => {
                let value = header(&format!("Bearer {}", self.credential(credential)?))?;
                request
                    .headers_mut()
                    .insert(reqwest::header::AUTHORIZATION, value);
            }
            Some(AuthSpec::ShopeeV2 {
                partner_id_setting,
                shop_id_setting,
                partner_key,
                access_token,
                ..
            }) => {
                let partner_id = self.required_setting(partner_id_setting)?;
                let shop_id = self.required_setting(shop_id_setting)?;
                let token = self.credential(access_token)?;
                let sign = signing::shopee_v2(
                    self.credential(partner_key)?,
                    &partner_id,
                    api_path,
                    timestamp,
                    token,
                    &shop_id,
                );
                request
                    .url_mut()
                    .query_pairs_mut()
                    .append_pair("partner_id", &partner_id)
                    .append_pair("timestamp", &timestamp.to_string())
                    .append_pair("access_token", token)
                    .append_pair("shop_id", &shop_id)
                    .append_pair("sign", &sign);
            }
            Some(AuthSpec::TiktokShop {
                app_key_setting,
                app_secret,
                access_token,
                ..
            }) => {
                let app_key = self.required_setting(app_key_setting)?;
                request
                    .url_mut()
                    .query_pairs_mut()
                    .append_pair("app_key", &app_key)
                    .append_pair("timestamp", &timestamp.to_string());
                let query: Vec<(String, String)> = request
                    .url()
                    .query_pairs()
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect();
                let body = request
                    .body()
                    .and_then(|b| b.as_bytes())
                    .unwrap_or_default();
                let sign =
                    signing::tiktok_shop(self.credential(app_secret)?, api_path, &query, body);
                request
                    .url_mut()
                    .query_pairs_mut()
                    .append_pair("sign", &sign);
                let value = header(self.credential(access_token)?)?;
                request.headers_mut().insert("x-tts-access-token", value);
            }
            Some(AuthSpec::AmazonLwa { .. }) => {
                if let Some(grant) = self.lwa_grant() {
                    let token = lwa::access_token(&self.http, &grant?).await?;
                    request
                        .headers_mut()
                        .insert("x-amz-access-token", header(&token)?);
                }
            }
        }
        Ok(())
    }

    /// For schemes that exchange credentials for a token (Login with Amazon): forgets the
    /// cached token and exchanges the credentials again, as a connectivity check must.
    /// Ok(false) for schemes with nothing to exchange.
    pub async fn exchange_token(&self) -> Result<bool, CallError> {
        let Some(grant) = self.lwa_grant() else {
            return Ok(false);
        };
        let grant = grant?;
        lwa::forget(&grant).await;
        lwa::access_token(&self.http, &grant).await?;
        Ok(true)
    }

    /// The credentials a token refresh replaces, (access token, refresh token), for schemes
    /// whose manifest names a refresh token.
    pub fn refreshable(&self) -> Option<TokenNames<'_>> {
        match &self.manifest.auth {
            Some(AuthSpec::ShopeeV2 {
                access_token,
                refresh_token: Some(refresh_token),
                ..
            })
            | Some(AuthSpec::TiktokShop {
                access_token,
                refresh_token: Some(refresh_token),
                ..
            }) => Some(TokenNames {
                access_token,
                refresh_token,
            }),
            _ => None,
        }
    }

    /// Trades the refresh token for new tokens at the platform; Ok(None) for schemes that
    /// do not refresh this way.
    pub async fn refresh_tokens(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<token_refresh::RefreshedTokens>, CallError> {
        let Some(names) = self.refreshable() else {
            return Ok(None);
        };
        let refresh_token = self.credential(names.refresh_token)?;
        let refreshed = match &self.manifest.auth {
            Some(AuthSpec::ShopeeV2 {
                partner_id_setting,
                shop_id_setting,
                partner_key,
                ..
            }) => {
                let shop = token_refresh::ShopeeShop {
                    base_url: &self.base_url()?,
                    partner_id: &self.required_setting(partner_id_setting)?,
                    shop_id: &self.required_setting(shop_id_setting)?,
                    partner_key: self.credential(partner_key)?,
                    refresh_token,
                };
                token_refresh::shopee(&self.http, &shop, now).await?
            }
            Some(AuthSpec::TiktokShop {
                app_key_setting,
                app_secret,
                token_endpoint_setting,
                ..
            }) => {
                let endpoint = token_endpoint_setting
                    .as_deref()
                    .and_then(|s| self.setting(s))
                    .unwrap_or_else(|| token_refresh::TIKTOK_DEFAULT_ENDPOINT.to_string());
                let app = token_refresh::TiktokApp {
                    endpoint: &endpoint,
                    app_key: &self.required_setting(app_key_setting)?,
                    app_secret: self.credential(app_secret)?,
                    refresh_token,
                };
                token_refresh::tiktok(&self.http, &app, now).await?
            }
            _ => return Ok(None),
        };
        Ok(Some(refreshed))
    }

    /// After the platform refused the credentials: forget a cached token so the next
    /// attempt exchanges a fresh one.
    async fn credentials_refused(&self) {
        if let Some(Ok(grant)) = self.lwa_grant() {
            lwa::forget(&grant).await;
        }
    }

    /// Sends a request, retrying transient failures twice with a short backoff.
    async fn send(
        &self,
        op: &OperationSpec,
        api_path: &str,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<(reqwest::header::HeaderMap, Value), CallError> {
        let mut tries = 0;
        loop {
            match self.send_once(op, api_path, &build).await {
                Err(e)
                    if tries < QUICK_RETRIES
                        && matches!(
                            e.class,
                            ErrorClass::ServerError | ErrorClass::Timeout | ErrorClass::Connect
                        ) =>
                {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(100 << (2 * tries))).await;
                }
                other => return other,
            }
        }
    }

    /// The connection's cap on requests in flight, if it has one.
    fn concurrency_cap(&self) -> Option<u32> {
        self.setting("max_concurrent_requests")
            .and_then(|v| v.parse().ok())
            .or(self.manifest.concurrency)
            .filter(|cap| *cap > 0)
    }

    /// Sends one request within the connection's concurrency cap.
    async fn send_once(
        &self,
        op: &OperationSpec,
        api_path: &str,
        build: &impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<(reqwest::header::HeaderMap, Value), CallError> {
        let Some(cap) = self.concurrency_cap() else {
            return self.send_metered(op, api_path, build).await;
        };
        let limiter_error = |e: crate::error::Error| {
            CallError::new(ErrorClass::Config, format!("rate limiter: {e}"))
        };
        let key = format!("{}:{}", self.manifest.name, self.account);
        let slot = self
            .limiter
            .acquire(&key, cap, SLOT_LEASE, MAX_TOKEN_WAIT)
            .await
            .map_err(limiter_error)?
            .ok_or_else(|| {
                CallError::new(
                    ErrorClass::RateLimited,
                    "every concurrent-request slot of the connection stayed busy",
                )
            })?;
        let outcome = self.send_metered(op, api_path, build).await;
        // A release that fails leaves the slot to expire with its lease.
        if let Err(err) = self.limiter.release(slot).await {
            tracing::warn!(error = %err, "could not release a concurrency slot");
        }
        outcome
    }

    /// Sends one request through the shared bucket, waiting out 429s as the platform asks.
    async fn send_metered(
        &self,
        op: &OperationSpec,
        api_path: &str,
        build: &impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<(reqwest::header::HeaderMap, Value), CallError> {
        let (key, limit) = self.bucket(&op.group)?;
        let mut throttled = 0;
        loop {
            let waited = self
                .limiter
                .take(&key, limit, MAX_TOKEN_WAIT)
                .await
                .map_err(|e| CallError::new(ErrorClass::Config, format!("rate limiter: {e}")))?;
            if waited.is_none() {
                return Err(CallError::new(
                    ErrorClass::RateLimited,
                    "the rate-limit budget stayed exhausted",
                ));
            }
            let mut request = build().build().map_err(|e| {
                CallError::new(ErrorClass::Config, format!("building the request: {e}"))
            })?;
            self.authenticate(&mut request, api_path).await?;
            // The guard's errors carry no URL: a signed query carries the access token.
            let response = self.http.execute(request).await?;
            let status = response.status();
            let headers = response.headers().clone();
            let feedback = Feedback::from_headers(|name| {
                headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            });
            let feedback = if status.as_u16() == 429 {
                Feedback {
                    retry_after: feedback.retry_after.or(Some(Duration::from_secs(1))),
                    ..feedback
                }
            } else {
                feedback
            };
            if feedback != Feedback::default() {
                let _ = self.limiter.apply_feedback(&key, feedback).await;
            }
            if status.as_u16() == 429 {
                throttled += 1;
                metrics::counter!("synchub_platform_throttled_total", "connector" => self.manifest.name.clone()).increment(1);
                if throttled > MAX_THROTTLE_WAITS {
                    return Err(CallError::new(
                        ErrorClass::RateLimited,
                        "the platform kept answering 429",
                    ));
                }
                continue;
            }
            let text = answer_text(response).await?;
            if !status.is_success() {
                let class = match status.as_u16() {
                    401 => ErrorClass::Auth,
                    403 => ErrorClass::Forbidden,
                    404 => ErrorClass::NotFound,
                    500..=599 => ErrorClass::ServerError,
                    _ => ErrorClass::ClientError,
                };
                if matches!(class, ErrorClass::Auth | ErrorClass::Forbidden) {
                    self.credentials_refused().await;
                }
                let snippet: String = text.chars().take(300).collect();
                return Err(CallError::new(class, format!("HTTP {status}: {snippet}")));
            }
            let body = if text.trim().is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&text).map_err(|e| {
                    CallError::new(
                        ErrorClass::SchemaMismatch,
                        format!("the response is not JSON: {e}"),
                    )
                })?
            };
            if let Some(failure) = op.errors.iter().find_map(|e| e.failure(&body)) {
                let text: String = failure.to_string().chars().take(300).collect();
                return Err(CallError::new(
                    ErrorClass::ClientError,
                    format!("the platform reported an error: {text}"),
                ));
            }
            return Ok((headers, body));
        }
    }

    /// One page of a list operation: from the start (with the cursor and the call's values)
    /// or from `next`.
    pub async fn list_page(
        &self,
        operation: &str,
        vars: &Vars,
        next: Option<&NextPage>,
    ) -> Result<ListPage, CallError> {
        let op = self.operation(operation)?;
        let api_path = self.api_path(op, vars)?;
        let mut url = format!("{}{api_path}", self.base_url()?);
        let mut query = self.query(op, vars);
        match (next, &op.pagination) {
            (Some(NextPage::Url(next_url)), _) => {
                url = next_url.clone();
                query.clear();
            }
            (Some(NextPage::Token(token)), Some(Pagination::Token { param, .. })) => {
                query.push((param.clone(), token.clone()))
            }
            (Some(NextPage::Number(n)), Some(Pagination::PageNumber { param, .. })) => {
                query.push((param.clone(), n.to_string()))
            }
            (None, Some(Pagination::PageNumber { param, start, .. })) => {
                query.push((param.clone(), start.to_string()))
            }
            _ => {}
        }
        let body = self.body(op, vars)?;
        let method = op.method.as_reqwest();
        let (headers, body) = self
            .send(op, &api_path, || {
                let request = self.http.request(method.clone(), &url).query(&query);
                match &body {
                    Some(body) => request.json(body),
                    None => request,
                }
            })
            .await?;
        let records = records_at(&body, op.records.as_deref()).ok_or_else(|| {
            CallError::new(
                ErrorClass::SchemaMismatch,
                format!("no record list at {:?}", op.records),
            )
        })?;
        let next = match &op.pagination {
            None => None,
            Some(Pagination::LinkHeader) => headers
                .get_all("link")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find_map(next_link)
                .map(NextPage::Url),
            Some(Pagination::Token { response, .. }) => body
                .pointer(response)
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
                .map(|t| NextPage::Token(t.to_string())),
            Some(Pagination::PageNumber { start, size, .. }) => {
                let current = match next {
                    Some(NextPage::Number(n)) => *n,
                    _ => *start,
                };
                (records.len() as u32 >= *size).then_some(NextPage::Number(current + 1))
            }
        };
        Ok(ListPage { records, next })
    }

    /// Every record of a list operation, page after page (a detail or lookup call).
    pub async fn list_all(&self, operation: &str, vars: &Vars) -> Result<Vec<Value>, CallError> {
        let mut all = Vec::new();
        let mut next = None;
        loop {
            let page = self.list_page(operation, vars, next.as_ref()).await?;
            all.extend(page.records);
            match page.next {
                Some(n) => next = Some(n),
                None => return Ok(all),
            }
        }
    }

    /// The operation's query; a parameter whose placeholder has no value is left out (the
    /// cursor on a first run).
    fn query(&self, op: &OperationSpec, vars: &Vars) -> Vec<(String, String)> {
        op.query
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), self.fill(v, vars).ok()?)))
            .collect()
    }

    /// A write with an idempotency key, so that a retried call is a no-op at the platform.
    pub async fn write(
        &self,
        operation: &str,
        body: &Value,
        idempotency_key: &str,
    ) -> Result<Value, CallError> {
        self.send_write(operation, &Vars::new(), Some(body), idempotency_key)
            .await
    }

    /// A write whose path, query and body come from the manifest's templates, filled with
    /// `vars` (a stock level, a shipment, the ids a lookup found).
    pub async fn write_templated(
        &self,
        operation: &str,
        vars: &Vars,
        idempotency_key: &str,
    ) -> Result<Value, CallError> {
        self.send_write(operation, vars, None, idempotency_key)
            .await
    }

    async fn send_write(
        &self,
        operation: &str,
        vars: &Vars,
        body: Option<&Value>,
        idempotency_key: &str,
    ) -> Result<Value, CallError> {
        let op = self.operation(operation)?;
        let api_path = self.api_path(op, vars)?;
        let url = format!("{}{api_path}", self.base_url()?);
        let query = self.query(op, vars);
        let templated = match body {
            Some(_) => None,
            None => self.body(op, vars)?,
        };
        let body = body.or(templated.as_ref());
        let method = match op.method {
            Method::Get => reqwest::Method::POST,
            other => other.as_reqwest(),
        };
        let (_, response) = self
            .send(op, &api_path, || {
                let mut request = self.http.request(method.clone(), &url).query(&query);
                if let Some(body) = body {
                    request = request.json(body);
                }
                if let Some(header) = &op.idempotency_header {
                    request = request.header(header.as_str(), idempotency_key);
                }
                request
            })
            .await?;
        Ok(response)
    }
}

/// The records at `pointer` (the whole answer without one): an array, or one object for an
/// operation that reads a single record.
fn records_at(body: &Value, pointer: Option<&str>) -> Option<Vec<Value>> {
    match body.pointer(pointer.unwrap_or(""))? {
        Value::Array(records) => Some(records.clone()),
        record @ Value::Object(_) => Some(vec![record.clone()]),
        _ => None,
    }
}

fn missing(name: String) -> CallError {
    CallError::new(
        ErrorClass::Config,
        format!("no value for the placeholder {{{name}}}"),
    )
}

/// Percent-encodes a value for one path segment (RFC 3986 unreserved characters stay).
fn encode_segment(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

impl ConnectorClient {
    /// The batch shape of `operation`, if the connector declares one.
    pub fn batch_spec(&self, operation: &str) -> Option<&BatchSpec> {
        self.manifest().operations.get(operation)?.batch.as_ref()
    }

    /// Writes records in one call of a batch operation. Each record carries its own key;
    /// the call's idempotency key covers the whole batch, so a retried batch is a replay.
    pub async fn write_batch(
        &self,
        operation: &str,
        records: &[(&Value, &str)],
    ) -> Result<Value, CallError> {
        let op = self.operation(operation)?;
        let batch = op.batch.as_ref().ok_or_else(|| {
            CallError::new(
                ErrorClass::Config,
                format!("{operation} is not a batch operation"),
            )
        })?;
        let mut digest = Sha256::new();
        let items: Vec<Value> = records
            .iter()
            .map(|(record, key)| {
                digest.update(key.as_bytes());
                digest.update([0u8]);
                let mut record = (*record).clone();
                if let (Some(field), Some(object)) = (&batch.item_key, record.as_object_mut()) {
                    object.insert(field.clone(), Value::String(key.to_string()));
                }
                record
            })
            .collect();
        let body = serde_json::json!({ batch.field.clone(): items });
        let key = hex::encode(digest.finalize());
        self.write(operation, &body, &key).await
    }
}

/// The `rel="next"` target of one Link header value (RFC 8288).
pub fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let is_next = params.split(';').any(|p| {
            p.trim()
                .replace(' ', "")
                .eq_ignore_ascii_case("rel=\"next\"")
                || p.trim().eq_ignore_ascii_case("rel=next")
        });
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        is_next.then(|| target.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The format Shopify documents for cursor-based pagination.
    #[test]
    fn link_headers_yield_the_next_page() {
        let header = r#"<https://shop.myshopify.com/admin/api/2025-07/orders.json?page_info=abc&limit=3>; rel="previous", <https://shop.myshopify.com/admin/api/2025-07/orders.json?page_info=def&limit=3>; rel="next""#;
        assert_eq!(
            next_link(header).as_deref(),
            Some("https://shop.myshopify.com/admin/api/2025-07/orders.json?page_info=def&limit=3")
        );
        assert_eq!(next_link(r#"<https://x/y>; rel="previous""#), None);
        assert_eq!(next_link("garbage"), None);
    }

    #[test]
    fn only_transient_errors_are_worth_retrying() {
        assert!(ErrorClass::ServerError.is_transient() && ErrorClass::RateLimited.is_transient());
        assert!(!ErrorClass::Auth.is_transient() && !ErrorClass::SchemaMismatch.is_transient());
    }
}
