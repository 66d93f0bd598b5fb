//! The guarded HTTP client. Every call a tenant can steer is made through it: the request's
//! URL is checked before it is sent, names are resolved by the guard (so the connection
//! goes to an address that was checked, with no second lookup), each redirect hop is
//! checked the same way, and answers are read up to a limit.

use std::error::Error as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::{Blocked, OutboundPolicy, ResolveError};

/// Redirect hops followed before giving up; each one is checked like the first request.
const MAX_REDIRECTS: usize = 5;

/// Why an outbound call failed, without the URL (a signed query or a robot's webhook URL
/// carries a secret) and without anything the target answered.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    /// The policy refused the target, at the first request or at a redirect hop.
    #[error(transparent)]
    Blocked(#[from] Blocked),
    #[error("{message}")]
    Transport { message: String, timeout: bool },
    #[error("the answer is larger than {limit} bytes")]
    TooLarge { limit: usize },
}

impl OutboundError {
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Transport { timeout: true, .. })
    }
}

impl From<reqwest::Error> for OutboundError {
    fn from(err: reqwest::Error) -> Self {
        let err = err.without_url();
        let mut source = err.source();
        while let Some(inner) = source {
            if let Some(blocked) = inner.downcast_ref::<Blocked>() {
                return Self::Blocked(blocked.clone());
            }
            source = inner.source();
        }
        Self::Transport {
            message: chain(&err),
            timeout: err.is_timeout(),
        }
    }
}

/// The error and its causes on one line ("error sending request: ... : dns error: ..."),
/// so the reason a call failed is not hidden behind reqwest's outermost message.
fn chain(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        let part = inner.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = inner.source();
    }
    text
}

/// reqwest's resolver hook: the guard resolves, checks, and hands over only the checked
/// addresses.
struct GuardedResolver {
    policy: OutboundPolicy,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            match policy.resolve(&host, 0).await {
                Ok(addresses) => {
                    let addresses: reqwest::dns::Addrs = Box::new(addresses.into_iter());
                    Ok(addresses)
                }
                Err(ResolveError::Blocked(blocked)) => Err(blocked.into()),
                Err(err) => Err(err.into()),
            }
        })
    }
}

#[derive(Clone)]
pub struct OutboundClient {
    http: reqwest::Client,
    policy: OutboundPolicy,
}

impl std::fmt::Debug for OutboundClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundClient")
            .field("policy", &self.policy)
            .finish()
    }
}

impl OutboundClient {
    /// A client that gives up connecting after `connect` and on the whole call after `total`.
    pub fn new(policy: OutboundPolicy, connect: Duration, total: Duration) -> anyhow::Result<Self> {
        crate::install_crypto_provider();
        let hops = policy.clone();
        let redirects = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() > MAX_REDIRECTS {
                return attempt.error(Blocked(format!("more than {MAX_REDIRECTS} redirects")));
            }
            let downgrade = attempt.url().scheme() == "http"
                && attempt.previous().iter().any(|u| u.scheme() == "https");
            if downgrade {
                return attempt.error(Blocked("a redirect from https to http".into()));
            }
            match hops.check_url(attempt.url()) {
                Ok(()) => attempt.follow(),
                Err(blocked) => attempt.error(Blocked(format!("redirected: {}", blocked.0))),
            }
        });
        #[allow(clippy::disallowed_methods)] // The one place a tenant-facing client is built.
        let http = reqwest::Client::builder()
            .dns_resolver(Arc::new(GuardedResolver {
                policy: policy.clone(),
            }))
            .redirect(redirects)
            // A proxy would resolve the target itself, out of the guard's sight.
            .no_proxy()
            .connect_timeout(connect)
            .timeout(total)
            .user_agent(concat!("synchub/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { http, policy })
    }

    pub fn policy(&self) -> &OutboundPolicy {
        &self.policy
    }

    /// A request to build; send it with [`OutboundClient::send`].
    pub fn request(
        &self,
        method: reqwest::Method,
        url: impl reqwest::IntoUrl,
    ) -> reqwest::RequestBuilder {
        self.http.request(method, url)
    }

    pub fn get(&self, url: impl reqwest::IntoUrl) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::GET, url)
    }

    pub fn post(&self, url: impl reqwest::IntoUrl) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::POST, url)
    }

    pub async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, OutboundError> {
        self.execute(request.build()?).await
    }

    /// Checks the request's URL, then sends it; the resolver and the redirect policy check
    /// what comes after.
    pub async fn execute(
        &self,
        request: reqwest::Request,
    ) -> Result<reqwest::Response, OutboundError> {
        self.policy.check_url(request.url())?;
        #[allow(clippy::disallowed_methods)] // Checked above; names are checked as resolved.
        let response = self.http.execute(request).await?;
        Ok(response)
    }

    /// The checked addresses of `host`, for checks that open a connection of their own.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, ResolveError> {
        self.policy.resolve(host, port).await
    }
}

/// Reads an answer's body, refusing one larger than `limit` bytes (a hostile server could
/// otherwise stream until memory runs out).
pub async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, OutboundError> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(OutboundError::TooLarge { limit });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Err(OutboundError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
