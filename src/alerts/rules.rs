//! Alert rules: which event kinds, where (the tenant, one connection or one flow), how many
//! in what window, how severe, to which channels, how often at most, and quiet hours in the
//! tenant's zone that hold back what is not critical.

use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, Set,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::events::KINDS;
use super::message::Severity;
use crate::audit::{self, Actor, Entry};
use crate::error::{Error, FieldError, Result};
use crate::ids::{AlertRuleId, TenantId};
use crate::store::entities::{alert_channel, alert_rule, connection, flow};
use crate::store::{TenantOwned, find_owned};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    /// Events needed within the window before the rule fires.
    pub count: i64,
    pub window_seconds: i64,
    /// Fire only once the events have kept coming for this long, with no gap longer than
    /// the window: "a platform answered 5xx for longer than 15 minutes" is
    /// `{count: 1, window_seconds: 600, for_seconds: 900}` on `platform_errors`. 0 (the
    /// default) fires on the count alone.
    #[serde(default)]
    pub for_seconds: i64,
}

impl Default for Threshold {
    fn default() -> Self {
        Self {
            count: 1,
            window_seconds: 300,
            for_seconds: 0,
        }
    }
}

/// Local times (`HH:MM`, the tenant's zone) when only critical alerts go out; the rest wait
/// for the end of the quiet hours.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuietHours {
    pub start: String,
    pub end: String,
}

/// `POST /v1/alert-rules`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRule {
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000]*[^\u0000\u0009-\u000D \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\u0000]*$"
    )]
    pub name: String,
    /// Event kinds: run_failed (a run reached the dead letters), flow_disabled,
    /// check_failed, credential_refresh_failed, credential_expiring, platform_errors,
    /// rate_limited, webhook_rejected, deployment.verification_failed,
    /// deployment.waiting_for_window, deployment.step_promoted, deployment.promoted,
    /// deployment.rolled_back.
    pub kinds: Vec<String>,
    /// Only this connection's events.
    pub connection_id: Option<String>,
    /// Only this flow's events.
    pub flow_id: Option<String>,
    #[serde(default)]
    pub threshold: Threshold,
    pub severity: Severity,
    pub channels: Vec<String>,
    pub quiet_hours: Option<QuietHours>,
    /// One message per alert at most this often (default 300 s); the next one counts what
    /// came in between.
    pub throttle_seconds: Option<i64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RuleView {
    pub id: String,
    pub name: String,
    pub kinds: Vec<String>,
    pub connection_id: Option<String>,
    pub flow_id: Option<String>,
    pub threshold: Threshold,
    pub severity: Severity,
    pub channels: Vec<String>,
    pub quiet_hours: Option<QuietHours>,
    pub throttle_seconds: i64,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

pub fn view(row: alert_rule::Model) -> RuleView {
    RuleView {
        id: row.id.to_string(),
        name: row.name,
        kinds: serde_json::from_value(row.kinds).unwrap_or_default(),
        connection_id: row.connection_id,
        flow_id: row.flow_id,
        threshold: Threshold {
            count: row.threshold_count,
            window_seconds: row.window_seconds,
            for_seconds: row.for_seconds,
        },
        severity: serde_json::from_value(json!(row.severity)).unwrap_or(Severity::Warning),
        channels: serde_json::from_value(row.channels).unwrap_or_default(),
        quiet_hours: row.quiet_hours.and_then(|q| serde_json::from_value(q).ok()),
        throttle_seconds: row.throttle_seconds,
        created_at: row.created_at,
    }
}

fn hhmm(text: &str) -> bool {
    chrono::NaiveTime::parse_from_str(text, "%H:%M").is_ok()
}

/// Whether the tenant owns a row with this raw id (another tenant's id or a malformed one
/// is no).
async fn owned<E: TenantOwned>(
    db: &DatabaseConnection,
    tenant: &TenantId,
    raw: &str,
) -> Result<bool> {
    match find_owned::<E>(db, tenant, raw).await {
        Ok(_) => Ok(true),
        Err(Error::NotFound(_)) => Ok(false),
        Err(err) => Err(err),
    }
}

pub async fn create(
    db: &DatabaseConnection,
    actor: &Actor,
    tenant: &TenantId,
    input: NewRule,
) -> Result<RuleView> {
    let mut errors = Vec::new();
    let name = input.name.trim().to_string();
    if name.is_empty() || name.chars().count() > 100 {
        errors.push(FieldError::new("name", "1 to 100 characters"));
    }
    if input.kinds.is_empty() {
        errors.push(FieldError::new("kinds", "at least one event kind"));
    }
    for (i, kind) in input.kinds.iter().enumerate() {
        if !KINDS.contains(&kind.as_str()) {
            errors.push(FieldError::new(
                format!("kinds[{i}]"),
                format!("one of {}", KINDS.join(", ")),
            ));
        }
    }
    if !(1..=1_000_000).contains(&input.threshold.count) {
        errors.push(FieldError::new("threshold.count", "1 to 1000000"));
    }
    if !(1..=86_400).contains(&input.threshold.window_seconds) {
        errors.push(FieldError::new("threshold.window_seconds", "1 to 86400"));
    }
    if !(0..=7 * 86_400).contains(&input.threshold.for_seconds) {
        errors.push(FieldError::new("threshold.for_seconds", "0 to 604800"));
    }
    let throttle = input.throttle_seconds.unwrap_or(300);
    if !(0..=86_400).contains(&throttle) {
        errors.push(FieldError::new("throttle_seconds", "0 to 86400"));
    }
    if let Some(quiet) = &input.quiet_hours
        && !(hhmm(&quiet.start) && hhmm(&quiet.end))
    {
        errors.push(FieldError::new("quiet_hours", "start and end as HH:MM"));
    }
    if input.channels.is_empty() {
        errors.push(FieldError::new("channels", "at least one alert channel"));
    }
    for (i, raw) in input.channels.iter().enumerate() {
        if !owned::<alert_channel::Entity>(db, tenant, raw).await? {
            errors.push(FieldError::new(
                format!("channels[{i}]"),
                "no such alert channel",
            ));
        }
    }
    // A rule watches the tenant's own connection or flow: another tenant's id, or none at
    // all, would be a rule that never fires and says nothing of why.
    if let Some(raw) = &input.connection_id
        && !owned::<connection::Entity>(db, tenant, raw).await?
    {
        errors.push(FieldError::new("connection_id", "no such connection"));
    }
    if let Some(raw) = &input.flow_id
        && !owned::<flow::Entity>(db, tenant, raw).await?
    {
        errors.push(FieldError::new("flow_id", "no such flow"));
    }
    if !errors.is_empty() {
        return Err(Error::Invalid(errors));
    }
    let txn = crate::store::begin_write(db).await?;
    let row = alert_rule::ActiveModel {
        id: Set(AlertRuleId::generate()),
        tenant_id: Set(tenant.clone()),
        name: Set(name),
        kinds: Set(json!(input.kinds)),
        connection_id: Set(input.connection_id),
        flow_id: Set(input.flow_id),
        threshold_count: Set(input.threshold.count),
        window_seconds: Set(input.threshold.window_seconds),
        severity: Set(json!(input.severity)
            .as_str()
            .unwrap_or("warning")
            .to_string()),
        channels: Set(json!(input.channels)),
        quiet_hours: Set(input.quiet_hours.as_ref().map(|q| json!(q))),
        throttle_seconds: Set(throttle),
        for_seconds: Set(input.threshold.for_seconds),
        created_at: Set(chrono::Utc::now()),
    }
    .insert(&txn)
    .await?;
    audit::record(
        &txn,
        actor,
        Entry {
            tenant_id: Some(tenant),
            action: "alert_rule.create",
            resource_type: "alert_rule",
            resource_id: row.id.as_str(),
            details: json!({"name": row.name, "kinds": row.kinds, "channels": row.channels}),
        },
    )
    .await?;
    txn.commit().await?;
    Ok(view(row))
}

pub async fn list(db: &DatabaseConnection, tenant: &TenantId) -> Result<Vec<RuleView>> {
    Ok(alert_rule::Entity::find()
        .filter(alert_rule::Column::TenantId.eq(tenant.clone()))
        .order_by_asc(alert_rule::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(view)
        .collect())
}
