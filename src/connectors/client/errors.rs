//! Why a call failed, in classes a retry policy and a seller can act on, and reading an
//! answer within its size limit.

use crate::netpolicy::OutboundError;
use crate::netpolicy::outbound::read_limited;

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
    /// The platform refused the access token in a way synchub can mend or must report:
    /// the engine renews the token once, or names who took it over.
    pub token_fault: Option<TokenFault>,
    /// What to do about it, where the platform's answer says more than its class (the
    /// menu where Lingxing's IP whitelist is).
    pub remedy: Option<String>,
}

/// Why a platform refused an access token that synchub obtains itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenFault {
    /// Missing, expired or not issued yet: a renewal helps.
    Expired,
    /// Another application asked for a token on the same app id, which made ours stop
    /// working (Lingxing keeps one live token per AppID). Renewing would take it back and
    /// start a tug of war: only the seller can decide.
    TakenOver,
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
            token_fault: None,
            remedy: None,
        }
    }

    pub fn with_token_fault(mut self, fault: TokenFault) -> Self {
        self.token_fault = Some(fault);
        self
    }

    pub fn with_remedy(mut self, remedy: impl Into<String>) -> Self {
        self.remedy = Some(remedy.into());
        self
    }

    pub fn in_token_exchange(mut self) -> Self {
        self.token_exchange = true;
        self
    }
}
