//! The credential keeper: a loop (in worker processes) that keeps each connection's
//! credentials alive and says when they will not stay so.
//!
//! - Access tokens that expire within hours (Shopee: 4 h) or days (TikTok Shop) are traded
//!   for new ones `refresh_ahead` before they expire; the new tokens replace the old ones in
//!   the vault, the refresh is audited, and a failure is a `credential_refresh_failed` event
//!   (critical when the platform refused the refresh token or the access token is already
//!   gone), retried with backoff.
//! - A credential with a known expiry that no refresh extends (a refresh token, a key the
//!   seller gave an expiry for) raises `credential_expiring` once a day from `warn_before`
//!   ahead of it; critical in its last day and after.
//!
//! Nothing is kept in memory: each connection carries when the keeper looks next
//! (`credentials_due_at`), claimed in one statement so two processes never refresh the same
//! tokens at once (a refresh token is spent by its first use).

use std::collections::BTreeMap;
use std::time::Duration;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use sea_orm::{
    ColumnTrait, DatabaseConnection, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, QueryTrait,
};
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use crate::alerts::events::{Event, emit};
use crate::alerts::message::Severity;
use crate::audit::{self, Actor, Entry};
use crate::connectors::client::{CallError, ErrorClass};
use crate::connectors::versions::Versions;
use crate::error::Result;
use crate::ids::{ConnectionId, SecretId};
use crate::netpolicy::{OutboundClient, OutboundPolicy};
use crate::ratelimit::RateLimiter;
use crate::runtime::Clock;
use crate::store::entities::connection::{self, AuthorizationStatus};
use crate::vault::Vault;

/// Known expiry of each credential, by credential name.
pub type Expiries = BTreeMap<String, DateTime<Utc>>;

pub fn expiries(row: &connection::Model) -> Expiries {
    row.credential_expiry
        .clone()
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default()
}

/// How long a claimed connection is left alone by other keepers: longer than a refresh.
const CLAIM: chrono::Duration = chrono::Duration::minutes(5);
/// Reminders of an approaching expiry, at most this often per connection.
const REMIND_EVERY: chrono::Duration = chrono::Duration::days(1);

#[derive(Debug, Clone)]
pub struct KeeperPolicy {
    /// Refresh an access token this long before it expires.
    pub refresh_ahead: chrono::Duration,
    /// Warn this long before a credential no refresh extends expires.
    pub warn_before: chrono::Duration,
}

impl Default for KeeperPolicy {
    fn default() -> Self {
        Self {
            refresh_ahead: chrono::Duration::minutes(30),
            warn_before: chrono::Duration::days(14),
        }
    }
}

/// Makes the link a seller follows to authorise a connection again: connect links live
/// above this folder, so the keeper is handed them (startup wires `connect::Connect`).
pub trait ReauthorizationLinks: Send + Sync {
    /// A fresh link for `row`, written in `txn` beside the alert event that carries it, and
    /// until when it is valid; None for connectors without an authorisation flow.
    fn link<'a>(
        &'a self,
        txn: &'a DatabaseTransaction,
        row: &'a connection::Model,
    ) -> BoxFuture<'a, Result<Option<ReauthorizationLink>>>;
}

/// A link to authorise a connection again, and until when it works.
pub struct ReauthorizationLink {
    pub url: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Clone)]
pub struct CredentialKeeper {
    db: DatabaseConnection,
    vault: Vault,
    versions: Versions,
    limiter: RateLimiter,
    http: OutboundClient,
    policy: KeeperPolicy,
    clock: Clock,
    links: Option<Arc<dyn ReauthorizationLinks>>,
}

/// What one look at a connection decided.
struct Outcome {
    credentials: Option<Map<String, Value>>,
    expiries: Expiries,
    failures: i64,
    due: Option<DateTime<Utc>>,
    events: Vec<(&'static str, Severity, String, String, Value)>,
    /// The platform refused the refresh token: only the seller can help.
    refused: bool,
}

impl CredentialKeeper {
    pub fn new(
        db: DatabaseConnection,
        vault: Vault,
        versions: Versions,
        limiter: RateLimiter,
        policy: KeeperPolicy,
        outbound: OutboundPolicy,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            db,
            vault,
            versions,
            limiter,
            http: OutboundClient::new(outbound, Duration::from_secs(5), Duration::from_secs(20))?,
            policy,
            clock: Clock::system(),
            links: None,
        })
    }

    /// Alerts of a refused refresh carry a link to authorise the connection again.
    pub fn with_reauthorization(mut self, links: Arc<dyn ReauthorizationLinks>) -> Self {
        self.links = Some(links);
        self
    }

    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    pub async fn run(self, every: Duration, shutdown: CancellationToken) {
        crate::runtime::repeat("credential keeper", every, shutdown, || self.tick()).await
    }

    /// Looks after every connection that is due; returns how many it looked at.
    pub async fn tick(&self) -> Result<usize> {
        let now = self.clock.now();
        // A read first: most ticks find nothing due, and on SQLite a write takes the lock.
        let any = connection::Entity::find()
            .filter(connection::Column::CredentialsDueAt.lte(now))
            .one(&self.db)
            .await?;
        if any.is_none() {
            return Ok(0);
        }
        let pick = connection::Entity::find()
            .select_only()
            .column(connection::Column::Id)
            .filter(connection::Column::CredentialsDueAt.lte(now))
            .order_by_asc(connection::Column::CredentialsDueAt)
            // Each refresh takes at most the client's 20 s timeout: ten fit well inside the
            // claim, so no other keeper takes a row (and spends its refresh token) meanwhile.
            .limit(10)
            .into_query();
        let claimed = connection::Entity::update_many()
            .col_expr(connection::Column::CredentialsDueAt, (now + CLAIM).into())
            .filter(connection::Column::Id.in_subquery(pick))
            .filter(connection::Column::CredentialsDueAt.lte(now))
            .exec_with_returning(&self.db)
            .await?;
        let looked = claimed.len();
        for row in claimed {
            if let Err(err) = self.look_after(&row, now).await {
                tracing::warn!(connection = %row.id, error = %err, "credential keeper");
            }
        }
        Ok(looked)
    }

    /// Looks after a claimed connection, holding its token lock so that no run renewing a
    /// refused token (`renew_now`) spends the same refresh token meanwhile.
    async fn look_after(&self, claimed: &connection::Model, now: DateTime<Utc>) -> Result<()> {
        let Some(lock) = self.token_lock(&claimed.id).await? else {
            // A renewal holds it: that one stores what it got; look again after the claim.
            return Ok(());
        };
        let outcome = match self.reread(claimed).await {
            Ok(Some(row)) => self.examine(&row, now, false).await.map(|_| ()),
            Ok(None) => Ok(()),
            Err(err) => Err(err),
        };
        self.unlock(lock).await;
        outcome
    }

    /// Renews the tokens of a connection whose platform refused them during a run (Lingxing's
    /// 2001003), unless they were replaced since `used_secret` was read. True when the
    /// connection now holds other credentials than the refused ones.
    pub async fn renew_now(&self, id: &ConnectionId, used_secret: &SecretId) -> Result<bool> {
        let Some(lock) = self.token_lock(id).await? else {
            return Ok(false);
        };
        let renewed = async {
            let Some(row) = connection::Entity::find_by_id(id.clone())
                .one(&self.db)
                .await?
            else {
                return Ok(false);
            };
            if &row.credentials_secret_id != used_secret {
                return Ok(true);
            }
            self.examine(&row, self.clock.now(), true).await
        }
        .await;
        self.unlock(lock).await;
        renewed
    }

    /// Tells ops that another application took over the connection's app id (Lingxing's
    /// 2001005): synchub does not take it back on its own, which would start a tug of war.
    pub async fn report_taken_over(
        &self,
        row: &connection::Model,
        error: &CallError,
    ) -> Result<()> {
        let now = self.clock.now();
        let remedy = error.remedy.as_deref().unwrap_or_default();
        emit(
            &self.db,
            Event {
                at: now,
                tenant: &row.tenant_id,
                kind: "credential_refresh_failed",
                severity: Severity::Critical,
                group_key: format!("{}:refresh", row.id),
                connection_id: Some(row.id.to_string()),
                flow_id: None,
                message: format!(
                    "the access token of connection {} ({}) stopped working: {}. {remedy}",
                    row.name, row.connector, error.message
                ),
                details: json!({"error_class": error.class.as_str(), "cause": "token_taken_over", "remedy": remedy}),
            },
        )
        .await
    }

    /// The row as it is now; None when it is gone or its credentials changed since the claim
    /// (whoever changed them set its next look).
    async fn reread(&self, claimed: &connection::Model) -> Result<Option<connection::Model>> {
        Ok(connection::Entity::find_by_id(claimed.id.clone())
            .one(&self.db)
            .await?
            .filter(|row| row.credentials_secret_id == claimed.credentials_secret_id))
    }

    async fn token_lock(&self, id: &ConnectionId) -> Result<Option<crate::ratelimit::Slot>> {
        token_lock(&self.limiter, id).await
    }

    async fn unlock(&self, lock: crate::ratelimit::Slot) {
        unlock(&self.limiter, lock).await
    }

    /// Refreshes what is due (everything refreshable when `force`), warns of what expires,
    /// and saves. True when new credentials were stored.
    async fn examine(
        &self,
        row: &connection::Model,
        now: DateTime<Utc>,
        force: bool,
    ) -> Result<bool> {
        let Some(manifest) = self
            .versions
            .manifest(&row.tenant_id, &row.connector, row.version.as_deref())
            .await?
        else {
            self.save(row, None, Outcome::idle(row)).await?;
            return Ok(false);
        };
        let deps = super::ClientDeps {
            db: &self.db,
            clock: &self.clock,
            vault: &self.vault,
            limiter: &self.limiter,
            http: &self.http,
        };
        let client = super::client_for(&deps, row, manifest).await?;
        let credentials = client.credentials().clone();
        let mut outcome = Outcome::idle(row);
        let refreshable = client.refreshable();
        if let Some(names) = refreshable {
            let access_expiry = outcome.expiries.get(names.access_token).copied();
            let refresh_at = access_expiry.map(|at| at - self.policy.refresh_ahead);
            match refresh_at {
                Some(at) if now < at && !force => outcome.due_at(at),
                // Unknown expiry: refresh now, and learn it from the answer.
                _ => match client.refresh_tokens(now).await {
                    Ok(Some(tokens)) => {
                        let mut updated = credentials;
                        updated.insert(names.access_token.into(), tokens.access_token.into());
                        updated.insert(names.refresh_token.into(), tokens.refresh_token.into());
                        outcome.credentials = Some(updated);
                        outcome
                            .expiries
                            .insert(names.access_token.into(), tokens.access_expires_at);
                        match tokens.refresh_expires_at {
                            Some(at) => outcome.expiries.insert(names.refresh_token.into(), at),
                            None => outcome.expiries.remove(names.refresh_token),
                        };
                        outcome.failures = 0;
                        // Halfway through a lifetime shorter than the margin, not at once.
                        let halfway = now + (tokens.access_expires_at - now) / 2;
                        outcome.due_at(
                            (tokens.access_expires_at - self.policy.refresh_ahead).max(halfway),
                        );
                    }
                    Ok(None) => {}
                    Err(error) => {
                        outcome.failures = row.credential_refresh_failures + 1;
                        // At least half a minute apart, then jittered up to half an hour.
                        let retry = Duration::from_secs(30)
                            + crate::runtime::backoff::backoff(
                                outcome.failures as u32,
                                Duration::from_secs(60),
                                Duration::from_secs(1800),
                            );
                        let retry_at = now + chrono::Duration::from_std(retry).unwrap_or(CLAIM);
                        outcome.due_at(retry_at);
                        outcome.refresh_failed(row, &error, access_expiry, retry_at, now);
                    }
                },
            }
        }
        // The access token of a refreshing scheme is the keeper's own business.
        let refreshed_access = refreshable.map(|n| n.access_token);
        let expiring: Vec<(String, DateTime<Utc>)> = outcome
            .expiries
            .iter()
            .filter(|(name, _)| Some(name.as_str()) != refreshed_access)
            .map(|(name, at)| (name.clone(), *at))
            .collect();
        for (name, at) in expiring {
            let warn_at = at - self.policy.warn_before;
            if now < warn_at {
                outcome.due_at(warn_at);
                continue;
            }
            outcome.due_at(now + REMIND_EVERY);
            let left = at - now;
            let severity = if left <= chrono::Duration::days(1) {
                Severity::Critical
            } else {
                Severity::Warning
            };
            let when = if left <= chrono::Duration::zero() {
                format!("expired at {}", at.format("%Y-%m-%d %H:%M UTC"))
            } else {
                format!(
                    "expires at {} (in {} h)",
                    at.format("%Y-%m-%d %H:%M UTC"),
                    left.num_hours()
                )
            };
            outcome.events.push((
                "credential_expiring",
                severity,
                name.clone(),
                format!(
                    "credential {name} of connection {} ({}) {when}; the seller must authorise again before then",
                    row.name, row.connector
                ),
                json!({"credential": name, "expires_at": at}),
            ));
        }
        let refreshed = outcome.credentials.is_some();
        let saved = self.save(row, Some(now), outcome).await?;
        Ok(refreshed && saved)
    }

    /// Writes what the look decided: new credentials (only if nobody replaced them since
    /// they were read), expiries, backoff, the next look, the events and the audit line.
    /// False when the credentials were replaced since they were read (nothing written).
    async fn save(
        &self,
        row: &connection::Model,
        now: Option<DateTime<Utc>>,
        outcome: Outcome,
    ) -> Result<bool> {
        let txn = crate::store::begin_write(&self.db).await?;
        let mut update = connection::Entity::update_many()
            .col_expr(
                connection::Column::CredentialExpiry,
                Some(json!(outcome.expiries)).into(),
            )
            .col_expr(connection::Column::CredentialsDueAt, outcome.due.into())
            .col_expr(
                connection::Column::CredentialRefreshFailures,
                outcome.failures.into(),
            )
            .filter(connection::Column::Id.eq(row.id.clone()))
            // A rotation through the API in the meantime wins.
            .filter(connection::Column::CredentialsSecretId.eq(row.credentials_secret_id.clone()));
        let refreshed = outcome.credentials.is_some();
        if let Some(credentials) = &outcome.credentials {
            let secret = self
                .vault
                .store(
                    &txn,
                    &row.tenant_id,
                    &Value::Object(credentials.clone()).to_string(),
                )
                .await?;
            update = update
                .col_expr(connection::Column::CredentialsSecretId, secret.into())
                .col_expr(
                    connection::Column::UpdatedAt,
                    now.unwrap_or(row.updated_at).into(),
                );
        }
        if outcome.refused {
            update = update.col_expr(
                connection::Column::AuthorizationStatus,
                Some(AuthorizationStatus::ReauthorizationRequired.as_str()).into(),
            );
        }
        if update.exec(&txn).await?.rows_affected == 0 {
            // Rotated by hand since the read: the rotation set its own next look.
            return Ok(false);
        }
        if refreshed {
            self.vault
                .delete(&txn, &row.tenant_id, &row.credentials_secret_id)
                .await?;
            audit::record(
                &txn,
                &Actor::system("credential-keeper"),
                Entry {
                    tenant_id: Some(&row.tenant_id),
                    action: "connection.refresh_credentials",
                    resource_type: "connection",
                    resource_id: row.id.as_str(),
                    details: json!({"expiries": outcome.expiries}),
                },
            )
            .await?;
        }
        let link = match (&self.links, outcome.refused) {
            (Some(links), true) => links.link(&txn, row).await?,
            _ => None,
        };
        for (kind, severity, credential, mut message, mut details) in outcome.events {
            if let (Some(link), "credential_refresh_failed") = (&link, kind) {
                message.push_str(&format!(
                    ". Send the seller this link to authorise again (valid until {}): {}",
                    link.expires_at.format("%Y-%m-%d %H:%M UTC"),
                    link.url
                ));
                details["reauthorize_url"] = json!(link.url);
                details["reauthorize_url_expires_at"] = json!(link.expires_at);
            }
            emit(
                &txn,
                Event {
                    at: now.unwrap_or_else(|| self.clock.now()),
                    tenant: &row.tenant_id,
                    kind,
                    severity,
                    group_key: format!("{}:{credential}", row.id),
                    connection_id: Some(row.id.to_string()),
                    flow_id: None,
                    message,
                    details,
                },
            )
            .await?;
        }
        txn.commit().await?;
        Ok(true)
    }
}

impl Outcome {
    fn idle(row: &connection::Model) -> Self {
        Self {
            credentials: None,
            expiries: expiries(row),
            failures: row.credential_refresh_failures,
            due: None,
            events: Vec::new(),
            refused: false,
        }
    }

    /// The next look: the earliest of what asks for one.
    fn due_at(&mut self, at: DateTime<Utc>) {
        self.due = Some(self.due.map_or(at, |due| due.min(at)));
    }

    fn refresh_failed(
        &mut self,
        row: &connection::Model,
        error: &CallError,
        access_expiry: Option<DateTime<Utc>>,
        retry_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) {
        // Refused: only the seller authorising again helps. Unreachable: calls fail once
        // the access token is gone, which may be before the retry.
        let refused = matches!(error.class, ErrorClass::Auth | ErrorClass::Forbidden);
        self.refused = refused;
        let gone_first = access_expiry.is_none_or(|at| at <= retry_at.max(now));
        let severity = if refused || gone_first {
            Severity::Critical
        } else {
            Severity::Warning
        };
        let consequence = match access_expiry {
            Some(at) if at > now => format!(
                "the access token expires at {}",
                at.format("%Y-%m-%d %H:%M UTC")
            ),
            _ => "calls fail until it succeeds".to_string(),
        };
        let next = if refused {
            "the seller must authorise the app again".to_string()
        } else {
            format!("retrying at {}", retry_at.format("%H:%M:%S UTC"))
        };
        self.events.push((
            "credential_refresh_failed",
            severity,
            "refresh".to_string(),
            format!(
                "refreshing the tokens of connection {} ({}) failed ({}): {}; {consequence}; {next}",
                row.name,
                row.connector,
                error.class.as_str(),
                error.message
            ),
            json!({"error_class": error.class.as_str(), "failures": self.failures, "retry_at": retry_at}),
        ));
    }
}

/// A connection's token lock, shared by every process through the limiter's slots: whoever
/// spends a refresh token or exchanges an app's credentials holds it. None when another
/// holder keeps it past a refresh's time.
pub async fn token_lock(
    limiter: &RateLimiter,
    id: &ConnectionId,
) -> Result<Option<crate::ratelimit::Slot>> {
    limiter
        .acquire(
            &format!("credentials:{id}"),
            1,
            Duration::from_secs(60),
            Duration::from_secs(30),
        )
        .await
}

pub async fn unlock(limiter: &RateLimiter, lock: crate::ratelimit::Slot) {
    if let Err(err) = limiter.release(lock).await {
        tracing::warn!(error = %err, "could not release a token lock; it expires in a minute");
    }
}

/// When a connection saved with these credentials needs its first look: at once if its
/// tokens refresh (its credentials hold the refresh token the scheme trades) or any expiry
/// is known (the keeper then works out the rest), never otherwise.
pub fn first_look(
    manifest: &crate::connectors::Manifest,
    credentials: &Map<String, Value>,
    expiries: &Expiries,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let refreshes = manifest.auth.as_ref().is_some_and(|auth| {
        auth.keeps_tokens()
            || auth
                .refresh_credential()
                .is_some_and(|name| credentials.contains_key(name))
    });
    (refreshes || !expiries.is_empty()).then_some(now)
}

/// Expiry dates given with credentials, checked against the credential names.
pub fn check_expiries(
    given: &BTreeMap<String, DateTime<Utc>>,
    credentials: &Map<String, Value>,
    errors: &mut Vec<crate::error::FieldError>,
) -> Expiries {
    for name in given.keys() {
        if !credentials.contains_key(name) {
            errors.push(crate::error::FieldError::new(
                format!("credential_expires_at.{name}"),
                "names no credential of this connection",
            ));
        }
    }
    given.clone()
}
