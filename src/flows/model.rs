use serde::{Deserialize, Serialize};

use crate::schedule::ScheduleSpec;

/// What a flow moves, and so which way: orders from a marketplace into the ERP; stock levels
/// and shipments from the ERP out to a marketplace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Orders,
    Inventory,
    Shipments,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Orders => "orders",
            Self::Inventory => "inventory",
            Self::Shipments => "shipments",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "orders" => Some(Self::Orders),
            "inventory" => Some(Self::Inventory),
            "shipments" => Some(Self::Shipments),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts before a run goes to the dead letters (1 to 50; default 8).
    pub max_attempts: i32,
    /// Backoff: a delay drawn uniformly from 0 to min(cap, base x 2^attempt) (full jitter).
    pub base_seconds: i32,
    pub cap_seconds: i32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            base_seconds: 5,
            cap_seconds: 900,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewFlow {
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000]*[^\u0000\u0009-\u000D \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\u0000]*$"
    )]
    pub name: String,
    pub stream: Stream,
    /// Source connection id.
    pub source: String,
    /// Destination connection id.
    pub destination: String,
    /// Cron in a zone (default: the tenant's) or an interval. Absent: webhook or manual only.
    pub schedule: Option<ScheduleSpec>,
    /// A verified webhook from the source triggers an incremental run (bursts coalesce).
    #[serde(default)]
    pub on_webhook: bool,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// After downtime, run a missed tick once (default) or skip it.
    #[serde(default = "yes")]
    pub catch_up: bool,
    pub retry: Option<RetryPolicy>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FlowPatch {
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000]*[^\u0000\u0009-\u000D \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\u0000]*$"
    )]
    pub name: Option<String>,
    /// A new schedule; `null` removes it.
    #[serde(default, deserialize_with = "serde_with_null::deserialize")]
    #[schema(value_type = Option<ScheduleSpec>)]
    pub schedule: Option<Option<ScheduleSpec>>,
    pub on_webhook: Option<bool>,
    /// Enabling a flow that was disabled after repeated failures clears the reason.
    pub enabled: Option<bool>,
    pub catch_up: Option<bool>,
    pub retry: Option<RetryPolicy>,
}

/// Distinguishes an absent field (None) from an explicit null (Some(None)).
mod serde_with_null {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de>,
    {
        Option::<T>::deserialize(deserializer).map(Some)
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FlowView {
    pub id: String,
    pub name: String,
    pub stream: String,
    pub source: String,
    pub destination: String,
    pub schedule: Option<ScheduleSpec>,
    /// The zone cron schedules are read in.
    pub timezone: String,
    pub on_webhook: bool,
    pub enabled: bool,
    pub catch_up: bool,
    pub retry: RetryPolicy,
    /// The next scheduled run, in UTC and in the flow's zone.
    pub next_run_at: Option<chrono::DateTime<chrono::Utc>>,
    pub next_run_at_local: Option<String>,
    pub consecutive_failures: i32,
    /// Why the flow was disabled automatically, if it was.
    pub disabled_reason: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub cursor: Option<serde_json::Value>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RunView {
    pub id: String,
    pub flow_id: String,
    /// schedule, manual, webhook or replay.
    pub trigger: String,
    pub scheduled_for: Option<chrono::DateTime<chrono::Utc>>,
    pub status: crate::store::entities::run::RunStatus,
    pub attempts: i32,
    pub records_read: i64,
    pub records_written: i64,
    /// connect, timeout, auth, forbidden, rate_limited, server_error, client_error,
    /// not_found, schema_mismatch or config.
    pub error_class: Option<String>,
    pub error_message: Option<String>,
    pub connector_version: Option<String>,
    pub next_attempt_at: Option<chrono::DateTime<chrono::Utc>>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl From<crate::store::entities::run::Model> for RunView {
    fn from(m: crate::store::entities::run::Model) -> Self {
        Self {
            id: m.id.to_string(),
            flow_id: m.flow_id.to_string(),
            trigger: m.trigger,
            scheduled_for: m.scheduled_for,
            status: m.status,
            attempts: m.attempts,
            records_read: m.records_read,
            records_written: m.records_written,
            error_class: m.error_class,
            error_message: m.error_message,
            connector_version: m.connector_version,
            next_attempt_at: m.next_attempt_at,
            created_at: m.created_at,
            started_at: m.started_at,
            finished_at: m.finished_at,
        }
    }
}
