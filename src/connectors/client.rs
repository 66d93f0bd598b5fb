//! Calls a platform the way its manifest says: base URL per environment, the auth scheme,
//! the shared rate-limit bucket, pagination, and errors sorted into classes that say whether
//! a retry can help. `Retry-After` is honoured inside the call.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::manifest::Manifest;
use super::spec::{AuthSpec, BatchSpec, Method, OperationSpec, Pagination};
use super::{lwa, signing};
use crate::ratelimit::{Feedback, Limit, RateLimiter};

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
    SchemaMismatch,
    Config,
}

impl ErrorClass {
    /// Network trouble, timeouts, throttling and 5xx may pass; the rest will not by waiting.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            Self::Connect | Self::Timeout | Self::RateLimited | Self::ServerError
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
            Self::SchemaMismatch => "schema_mismatch",
            Self::Config => "config",
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{class:?}: {message}")]
pub struct CallError {
    pub class: ErrorClass,
    pub message: String,
}

impl CallError {
    pub fn new(class: ErrorClass, message: impl Into<String>) -> Self {
        Self {
            class,
            message: message.into(),
        }
    }
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

pub struct ConnectorClient {
    manifest: Arc<Manifest>,
    environment: String,
    settings: Map<String, Value>,
    credentials: Map<String, Value>,
    account: String,
    limiter: RateLimiter,
    http: reqwest::Client,
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
        http: reqwest::Client,
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

    /// Fills `{name}` placeholders from settings (and `{cursor}`); None when one is missing.
    fn fill(&self, template: &str, cursor: Option<&str>) -> Option<String> {
        let mut out = String::with_capacity(template.len());
        let mut rest = template;
        while let Some(start) = rest.find('{') {
            out.push_str(&rest[..start]);
            let end = rest[start..].find('}')? + start;
            let name = &rest[start + 1..end];
            let value = match name {
                "cursor" => cursor.map(str::to_string),
                // The cursor as Unix seconds; a first run looks back 15 days, the longest
                // window Shopee's time-ranged lists take.
                "cursor_unix" => Some(
                    cursor
                        .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
                        .map(|c| c.timestamp())
                        .unwrap_or_else(|| {
                            (chrono::Utc::now() - chrono::Duration::days(15)).timestamp()
                        })
                        .to_string(),
                ),
                "now_unix" => Some(chrono::Utc::now().timestamp().to_string()),
                _ => self.setting(name),
            };
            out.push_str(&value?);
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        Some(out)
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
        self.fill(template, None)
            .map(|url| url.trim_end_matches('/').to_string())
            .ok_or_else(|| {
                CallError::new(
                    ErrorClass::Config,
                    "a setting the base URL needs is missing",
                )
            })
    }

    fn operation(&self, name: &str) -> Result<&OperationSpec, CallError> {
        self.manifest.operations.get(name).ok_or_else(|| {
            CallError::new(
                ErrorClass::Config,
                format!("{} has no operation {name}", self.manifest.name),
            )
        })
    }

    /// The base URL and the operation's path, with settings filled in.
    fn operation_url(&self, operation: &str, op: &OperationSpec) -> Result<String, CallError> {
        let base = self.base_url()?;
        let path = self.fill(&op.path, None).ok_or_else(|| {
            CallError::new(
                ErrorClass::Config,
                format!("a setting {operation} needs is missing"),
            )
        })?;
        Ok(format!("{base}{path}"))
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

    fn lwa_grant<'a>(
        &'a self,
        client_id: &'a str,
        client_secret: &'a str,
        refresh_token: &'a str,
        endpoint_setting: Option<&'a String>,
    ) -> Result<lwa::Grant<'a>, CallError> {
        let endpoint = endpoint_setting
            .and_then(|s| self.settings.get(s.as_str()))
            .and_then(Value::as_str)
            .unwrap_or(lwa::DEFAULT_ENDPOINT);
        Ok(lwa::Grant {
            endpoint,
            client_id: self.credential(client_id)?,
            client_secret: self.credential(client_secret)?,
            refresh_token: self.credential(refresh_token)?,
        })
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
            Some(AuthSpec::AmazonLwa {
                client_id,
                client_secret,
                refresh_token,
                endpoint_setting,
            }) => {
                let grant = self.lwa_grant(
                    client_id,
                    client_secret,
                    refresh_token,
                    endpoint_setting.as_ref(),
                )?;
                let token = lwa::access_token(&self.http, &grant).await?;
                request
                    .headers_mut()
                    .insert("x-amz-access-token", header(&token)?);
            }
        }
        Ok(())
    }

    /// After the platform refused the credentials: forget a cached token so the next
    /// attempt exchanges a fresh one.
    async fn credentials_refused(&self) {
        if let Some(AuthSpec::AmazonLwa {
            client_id,
            client_secret,
            refresh_token,
            endpoint_setting,
        }) = &self.manifest.auth
            && let Ok(grant) = self.lwa_grant(
                client_id,
                client_secret,
                refresh_token,
                endpoint_setting.as_ref(),
            )
        {
            lwa::forget(&grant).await;
        }
    }

    /// Sends a request, retrying transient failures twice with a short backoff.
    async fn send(
        &self,
        op: &OperationSpec,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<(reqwest::header::HeaderMap, Value), CallError> {
        let mut tries = 0;
        loop {
            match self.send_once(op, &build).await {
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

    /// Sends one request through the shared bucket, waiting out 429s as the platform asks.
    async fn send_once(
        &self,
        op: &OperationSpec,
        build: &impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<(reqwest::header::HeaderMap, Value), CallError> {
        let (key, limit) = self.bucket(&op.group)?;
        let api_path = self.fill(&op.path, None).unwrap_or_else(|| op.path.clone());
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
            self.authenticate(&mut request, &api_path).await?;
            let response = self.http.execute(request).await.map_err(|e| {
                let class = if e.is_timeout() {
                    ErrorClass::Timeout
                } else {
                    ErrorClass::Connect
                };
                // Without the URL: a signed query carries the access token.
                CallError::new(class, e.without_url().to_string())
            })?;
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
            let text = response.text().await.map_err(|e| {
                CallError::new(
                    if e.is_timeout() {
                        ErrorClass::Timeout
                    } else {
                        ErrorClass::Connect
                    },
                    e.without_url().to_string(),
                )
            })?;
            if !status.is_success() {
                let class = match status.as_u16() {
                    401 => ErrorClass::Auth,
                    403 => ErrorClass::Forbidden,
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
            return Ok((headers, body));
        }
    }

    /// One page of a list operation: from the start (with the cursor) or from `next`.
    pub async fn list_page(
        &self,
        operation: &str,
        cursor: Option<&str>,
        next: Option<&NextPage>,
    ) -> Result<ListPage, CallError> {
        let op = self.operation(operation)?;
        let mut url = self.operation_url(operation, op)?;
        let mut query: Vec<(String, String)> = op
            .query
            .iter()
            .filter_map(|(k, v)| self.fill(v, cursor).map(|v| (k.clone(), v)))
            .collect();
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
        let method = match op.method {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
        };
        let (headers, body) = self
            .send(op, || self.http.request(method.clone(), &url).query(&query))
            .await?;
        let records = match op.records.as_deref() {
            None | Some("") => body.as_array().cloned(),
            Some(pointer) => body.pointer(pointer).and_then(Value::as_array).cloned(),
        }
        .ok_or_else(|| {
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

    /// A write with an idempotency key, so that a retried call is a no-op at the platform.
    pub async fn write(
        &self,
        operation: &str,
        body: &Value,
        idempotency_key: &str,
    ) -> Result<Value, CallError> {
        let op = self.operation(operation)?;
        let url = self.operation_url(operation, op)?;
        let method = match op.method {
            Method::Put => reqwest::Method::PUT,
            _ => reqwest::Method::POST,
        };
        let (_, response) = self
            .send(op, || {
                let mut request = self.http.request(method.clone(), &url).json(body);
                if let Some(header) = &op.idempotency_header {
                    request = request.header(header.as_str(), idempotency_key);
                }
                request
            })
            .await?;
        Ok(response)
    }
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
