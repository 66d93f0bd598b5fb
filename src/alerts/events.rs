//! Events the rest of the product emits for alerting, written in the caller's transaction so
//! that an event exists exactly when what it reports happened.

use sea_orm::{ActiveModelTrait, ConnectionTrait, Set};
use serde_json::Value;

use super::message::Severity;
use crate::error::Result;
use crate::ids::{AlertEventId, TenantId};
use crate::store::entities::alert_event;

/// The kinds rules may name.
pub const KINDS: &[&str] = &[
    // A run failed after its retries (or at once, for a failure no retry fixes) and went
    // to the dead letters.
    "run_failed",
    "flow_disabled",
    "check_failed",
    // The platform refused to trade a refresh token (Shopee, TikTok Shop, Login with
    // Amazon), or the token endpoint stayed unreachable: the next calls will fail.
    "credential_refresh_failed",
    // A credential with a known expiry that no refresh can extend (a refresh token, a
    // key the seller set an expiry for) expires within the warning horizon.
    "credential_expiring",
    // An attempt failed and waits for its retry: the platform's 5xx, timeouts or network
    // trouble, or a rate-limit budget that stayed spent. A rule's `for_seconds` says how
    // long is too long.
    "platform_errors",
    "rate_limited",
    // Webhooks refused for a bad signature or a foreign source, per commit batch.
    "webhook_rejected",
    "deployment.verification_failed",
    "deployment.waiting_for_window",
    "deployment.step_promoted",
    "deployment.promoted",
    "deployment.rolled_back",
];

pub struct Event<'a> {
    pub tenant: &'a TenantId,
    pub kind: &'a str,
    pub severity: Severity,
    /// Where it happened: identical events (same kind, same key) group into one alert.
    pub group_key: String,
    pub connection_id: Option<String>,
    pub flow_id: Option<String>,
    pub message: String,
    pub details: Value,
    /// When it happened, by the emitter's clock: rule windows are judged by it.
    pub at: chrono::DateTime<chrono::Utc>,
}

pub async fn emit(db: &impl ConnectionTrait, event: Event<'_>) -> Result<()> {
    alert_event::ActiveModel {
        id: Set(AlertEventId::generate()),
        tenant_id: Set(event.tenant.clone()),
        kind: Set(event.kind.to_string()),
        severity: Set(serde_json::to_value(event.severity)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()),
        group_key: Set(format!("{}:{}", event.kind, event.group_key)),
        connection_id: Set(event.connection_id),
        flow_id: Set(event.flow_id),
        message: Set(event.message.chars().take(2000).collect()),
        details: Set(event.details),
        processed: Set(false),
        claimed_until: Set(None),
        at: Set(event.at),
    }
    .insert(db)
    .await?;
    Ok(())
}
