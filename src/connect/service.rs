//! The connect flow: a link (`POST /v1/connect-sessions`), the seller's page, the redirect to
//! the platform with a fresh `state`, and the callback that turns the platform's answer into
//! a connection (or new credentials for an existing one), checked, before the seller is sent
//! back to the return URL fixed when the link was made.
//!
//! The link's token and each `state` are 32 random bytes; only their SHA-256 is stored, so a
//! database read gives neither. A state is bound to its session, lives 10 minutes, is
//! claimed by one conditional update (a replay finds it claimed) and its hash is compared in
//! constant time after the lookup. A refusal before the claim changes nothing.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use sea_orm::DatabaseConnection;
use sha2::{Digest, Sha256};

use super::apps::PlatformApps;
use super::platforms::Platform;
use super::refusal::Refusal;
use crate::clock::Clock;
use crate::config::ConnectSettings;
use crate::connections::Connections;
use crate::connections::keeper::ReauthorizationLink;
use crate::connectors::ConnectorRegistry;
use crate::error::Result;
use crate::netpolicy::OutboundClient;
use crate::store::entities::connection;
use crate::vault::Vault;

/// How long the seller has on the platform's consent page.
pub const STATE_LIFETIME: Duration = Duration::minutes(10);
pub(super) const MAX_LINK_SECONDS: i64 = 30 * 24 * 3600;

#[derive(Clone)]
pub struct Connect {
    pub(super) db: DatabaseConnection,
    pub(super) vault: Vault,
    pub(super) registry: Arc<ConnectorRegistry>,
    pub(super) apps: PlatformApps,
    pub(super) connections: Connections,
    pub(super) http: OutboundClient,
    pub(super) clock: Clock,
    pub(super) public_url: String,
    pub(super) settings: ConnectSettings,
}

/// What the seller's page shows before the button.
pub struct LinkDetails {
    pub platform: Platform,
    pub tenant_name: String,
    /// The account, when known before consent (a Shopify shop, a connection's name).
    pub account: Option<String>,
    pub reauthorize: bool,
    pub expires_at: DateTime<Utc>,
    /// Where the button leads (its origin is allowed as a form target).
    pub consent_origin: Option<String>,
}

/// How a callback ended.
pub enum CallbackOutcome {
    /// Send the seller to the return URL (success, or a failure the return URL learns of).
    ReturnTo {
        url: String,
        refusal: Option<Refusal>,
    },
    /// Show what happened; nothing changed.
    Refused(Refusal),
    /// The platform granted several shops: the seller picks one with this token.
    ChooseShop { choice: String, shops: Vec<String> },
}

pub(super) fn random_token() -> Result<String> {
    Ok(URL_SAFE_NO_PAD.encode(crate::random::bytes::<32>()?))
}

pub(super) fn digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The return URL, checked: absolute, http or https, no credentials in it.
pub(super) fn check_return_url(raw: &str) -> std::result::Result<url::Url, String> {
    let url = url::Url::parse(raw.trim()).map_err(|_| "must be an absolute URL".to_string())?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must be an http or https URL".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry a user name or password".into());
    }
    if url.host_str().is_none() || raw.len() > 2048 {
        return Err("must have a host and be at most 2048 bytes".into());
    }
    Ok(url)
}

impl Connect {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        db: DatabaseConnection,
        vault: Vault,
        registry: Arc<ConnectorRegistry>,
        connections: Connections,
        http: OutboundClient,
        clock: Clock,
        public_url: String,
        settings: ConnectSettings,
    ) -> Self {
        Self {
            apps: PlatformApps::new(db.clone(), vault.clone(), public_url.clone(), clock.clone()),
            db,
            vault,
            registry,
            connections,
            http,
            clock,
            public_url,
            settings,
        }
    }

    pub fn apps(&self) -> &PlatformApps {
        &self.apps
    }

    pub(super) fn link_url(&self, token: &str) -> String {
        format!("{}/connect/{token}", self.public_url)
    }
}

pub(super) fn unknown_link() -> Refusal {
    Refusal::new(
        "unknown_link",
        "this link is not one synchub made, or it was mistyped",
    )
}

pub(super) fn no_app(platform: Platform) -> Refusal {
    Refusal::new(
        "no_platform_app",
        format!(
            "no {} app is registered for this account (PUT /v1/platform-apps/{})",
            platform.display_name(),
            platform.connector()
        ),
    )
}

impl crate::connections::keeper::ReauthorizationLinks for Connect {
    fn link<'a>(
        &'a self,
        txn: &'a sea_orm::DatabaseTransaction,
        row: &'a connection::Model,
    ) -> futures_util::future::BoxFuture<'a, Result<Option<ReauthorizationLink>>> {
        Box::pin(async move {
            Ok(self
                .reauthorization_link(txn, row)
                .await?
                .map(|(url, expires_at)| ReauthorizationLink { url, expires_at }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_urls_are_plain_web_addresses() {
        assert!(check_return_url("https://seller.example/done?x=1").is_ok());
        assert!(check_return_url("http://localhost:3000/cb").is_ok());
        for bad in [
            "javascript:alert(1)",
            "data:text/html,hi",
            "//evil.example/x",
            "/relative",
            "https://user:pw@seller.example/",
            "ftp://seller.example/",
        ] {
            assert!(check_return_url(bad).is_err(), "{bad}");
        }
    }
}
