//! Calls a platform the way its manifest says: base URL per environment, the auth scheme,
//! the shared rate-limit bucket, pagination, and errors sorted into classes that say whether
//! a retry can help. `Retry-After` is honoured inside the call.

use std::sync::Arc;

use serde_json::{Map, Value};

mod auth;
mod errors;
mod pages;
mod templating;
mod transport;
mod writes;

pub use auth::TokenNames;
pub use errors::{CallError, ErrorClass, TokenFault, answer_text};
pub use pages::{ListPage, NextPage, next_link};
pub use writes::BatchOutcome;

use super::manifest::Manifest;
use super::spec::OperationSpec;
pub use super::template::Vars;
use crate::netpolicy::OutboundClient;
use crate::ratelimit::{Limit, RateLimiter};

pub struct ConnectorClient {
    manifest: Arc<Manifest>,
    environment: String,
    settings: Map<String, Value>,
    credentials: Map<String, Value>,
    account: String,
    limiter: RateLimiter,
    http: OutboundClient,
    /// Cached access tokens expire by it.
    clock: crate::clock::Clock,
    /// Tokens a connectivity check obtained, for the caller to store (a Lingxing exchange
    /// has made the stored ones stop working).
    renewed: Option<super::token_refresh::RefreshedTokens>,
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
            clock: crate::clock::Clock::system(),
            renewed: None,
        }
    }

    /// Tokens this client obtained that replace the stored ones.
    pub fn renewed(&self) -> Option<&super::token_refresh::RefreshedTokens> {
        self.renewed.as_ref()
    }

    pub fn with_clock(mut self, clock: crate::clock::Clock) -> Self {
        self.clock = clock;
        self
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The credentials the client signs with (the keeper replaces tokens in a copy).
    pub fn credentials(&self) -> &Map<String, Value> {
        &self.credentials
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
