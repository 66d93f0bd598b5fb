//! The auth schemes: headers, request signatures (Shopee v2, TikTok Shop 202309), Login with
//! Amazon token exchange, and marketplace token refresh.

use serde_json::Value;

use super::ConnectorClient;
use super::errors::{CallError, ErrorClass, TokenFault};
use crate::connectors::spec::AuthSpec;
use crate::connectors::{lingxing, lwa, mabang, token_refresh};
use crate::signing::erp as signing_erp;
use crate::signing::marketplaces as signing;

/// A Lingxing app, owned (the client's credentials may change while it is used).
struct LingxingApp {
    base_url: String,
    app_id: String,
    app_secret: String,
}

impl LingxingApp {
    fn as_app(&self) -> lingxing::App<'_> {
        lingxing::App {
            base_url: &self.base_url,
            app_id: &self.app_id,
            app_secret: &self.app_secret,
        }
    }
}

/// The credential names a token refresh replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenNames<'a> {
    pub access_token: &'a str,
    pub refresh_token: &'a str,
}

impl ConnectorClient {
    /// The connection's Login with Amazon grant, when its scheme is `amazon_lwa`.
    pub(super) fn lwa_grant(&self) -> Option<Result<lwa::Grant<'_>, CallError>> {
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
    /// `action` is the gateway action of the call, for schemes with one URL (Mabang).
    pub(super) async fn authenticate(
        &self,
        request: &mut reqwest::Request,
        api_path: &str,
        action: Option<&str>,
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
            Some(AuthSpec::ShopifyAccessToken { credential, .. }) => {
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
            Some(AuthSpec::Lingxing {
                app_id,
                access_token,
                ..
            }) => {
                // Not there until the keeper or the check has exchanged the AppSecret.
                let token = self
                    .credentials
                    .get(access_token.as_str())
                    .and_then(Value::as_str)
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| {
                        CallError::new(ErrorClass::Auth, "no Lingxing access token yet")
                            .with_token_fault(TokenFault::Expired)
                    })?;
                lingxing::sign_request(request, self.credential(app_id)?, token, timestamp)?;
            }
            Some(AuthSpec::Mabang {
                app_key,
                app_secret,
            }) => {
                let action = action.ok_or_else(|| {
                    CallError::new(ErrorClass::Config, "a Mabang operation needs its action")
                })?;
                let data = match request.body().and_then(|b| b.as_bytes()) {
                    Some(bytes) if !bytes.is_empty() => {
                        serde_json::from_slice(bytes).map_err(|e| {
                            CallError::new(
                                ErrorClass::Config,
                                format!("a Mabang body must be JSON: {e}"),
                            )
                        })?
                    }
                    _ => Value::Null,
                };
                let body = mabang::envelope(action, self.credential(app_key)?, data, timestamp);
                let sign = signing_erp::mabang(self.credential(app_secret)?, &body);
                *request.method_mut() = reqwest::Method::POST;
                *request.body_mut() = Some(body.into());
                request.headers_mut().insert(
                    reqwest::header::CONTENT_TYPE,
                    reqwest::header::HeaderValue::from_static("application/json"),
                );
                request
                    .headers_mut()
                    .insert(reqwest::header::AUTHORIZATION, header(&sign)?);
            }
            Some(AuthSpec::AmazonLwa { .. }) => {
                if let Some(grant) = self.lwa_grant() {
                    let token = lwa::access_token(&self.http, &grant?, self.clock.now()).await?;
                    request
                        .headers_mut()
                        .insert("x-amz-access-token", header(&token)?);
                }
            }
        }
        Ok(())
    }

    /// For schemes that exchange credentials for a token (Login with Amazon, Lingxing):
    /// forgets the cached token and exchanges the credentials again, as a connectivity check
    /// must. A Lingxing exchange replaces the connection's stored token at the platform, so
    /// the new pair is kept in the client ([`Self::renewed`]) for the caller to store.
    /// Ok(false) for schemes with nothing to exchange.
    pub async fn exchange_token(&mut self) -> Result<bool, CallError> {
        if let Some(AuthSpec::Lingxing {
            access_token,
            refresh_token,
            ..
        }) = self.manifest.auth.clone()
        {
            let tokens = {
                let app = self.lingxing_app()?;
                lingxing::exchange(&self.http, &app.as_app(), self.clock.now()).await?
            };
            self.credentials
                .insert(access_token, tokens.access_token.clone().into());
            self.credentials
                .insert(refresh_token, tokens.refresh_token.clone().into());
            self.renewed = Some(tokens);
            return Ok(true);
        }
        let Some(grant) = self.lwa_grant() else {
            return Ok(false);
        };
        let grant = grant?;
        lwa::forget(&grant).await;
        lwa::access_token(&self.http, &grant, self.clock.now()).await?;
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
            Some(AuthSpec::Lingxing {
                access_token,
                refresh_token,
                ..
            }) => Some(TokenNames {
                access_token,
                refresh_token,
            }),
            // Only an expiring token comes with a refresh token; a non-expiring one stays.
            Some(AuthSpec::ShopifyAccessToken {
                credential,
                refresh_token: Some(refresh_token),
                ..
            }) if self.credentials.contains_key(refresh_token.as_str()) => Some(TokenNames {
                access_token: credential,
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
        if let Some(AuthSpec::Lingxing { .. }) = &self.manifest.auth {
            return self
                .renew_lingxing(names.refresh_token, now)
                .await
                .map(Some);
        }
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
            Some(AuthSpec::ShopifyAccessToken {
                client_id: Some(client_id),
                client_secret: Some(client_secret),
                ..
            }) => {
                let app = token_refresh::ShopifyApp {
                    base_url: &self.base_url()?,
                    client_id: self.credential(client_id)?,
                    client_secret: self.credential(client_secret)?,
                    refresh_token,
                };
                token_refresh::shopify(&self.http, &app, now).await?
            }
            _ => return Ok(None),
        };
        Ok(Some(refreshed))
    }

    /// The AppID, AppSecret and token endpoint of a Lingxing connection.
    fn lingxing_app(&self) -> Result<LingxingApp, CallError> {
        let Some(AuthSpec::Lingxing {
            app_id, app_secret, ..
        }) = &self.manifest.auth
        else {
            return Err(CallError::new(
                ErrorClass::Config,
                "not a Lingxing connection",
            ));
        };
        Ok(LingxingApp {
            base_url: self.base_url()?,
            app_id: self.credential(app_id)?.to_string(),
            app_secret: self.credential(app_secret)?.to_string(),
        })
    }

    /// A new Lingxing pair: the single-use refresh token spent if the connection has one,
    /// else (or when Lingxing says it is spent or expired) a fresh exchange.
    async fn renew_lingxing(
        &self,
        refresh_name: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<token_refresh::RefreshedTokens, CallError> {
        let app = self.lingxing_app()?;
        let spare = self
            .credentials
            .get(refresh_name)
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty());
        if let Some(spare) = spare {
            match lingxing::refresh(&self.http, &app.as_app(), spare, now).await {
                Err(e) if e.token_fault == Some(TokenFault::Expired) => {
                    tracing::info!(connection = %self.account, "the Lingxing refresh token was spent or expired; exchanging the AppSecret");
                }
                other => return other,
            }
        }
        lingxing::exchange(&self.http, &app.as_app(), now).await
    }

    /// After the platform refused the credentials: forget a cached token so the next
    /// attempt exchanges a fresh one.
    pub(super) async fn credentials_refused(&self) {
        if let Some(Ok(grant)) = self.lwa_grant() {
            lwa::forget(&grant).await;
        }
    }
}
