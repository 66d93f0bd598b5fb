use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::gate::GateSpec;
use super::window::DeployWindow;
use crate::store::entities::{deployment, deployment_event, deployment_target};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Every connection at once after verification: for sandbox connections.
    Immediate,
    /// Verify every connection and compare the new version's reads with the current one's,
    /// then switch all in one step.
    BlueGreen,
    /// Steps of the connections (percentages), a health gate between steps.
    Canary,
    /// Batches of `batch_size` connections, a health gate between batches.
    Rolling,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Immediate => "immediate",
            Self::BlueGreen => "blue_green",
            Self::Canary => "canary",
            Self::Rolling => "rolling",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::Immediate,
            Self::BlueGreen,
            Self::Canary,
            Self::Rolling,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// `POST /v1/deployments`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDeployment {
    pub connector: String,
    /// A version of the connector the tenant can see (built in or published).
    pub version: String,
    /// Connection ids; empty: every connection of the tenant on this connector.
    #[serde(default)]
    pub connections: Vec<String>,
    pub strategy: Strategy,
    /// Canary steps, percentages of the connections ending at 100 (default 1, 10, 50, 100).
    pub steps: Option<Vec<u32>>,
    /// Rolling: connections per batch (default 1).
    pub batch_size: Option<u32>,
    pub gate: Option<GateSpec>,
    /// When switches may happen; defaults to the tenant's deploy policy windows.
    pub window: Option<DeployWindow>,
    /// Deploy outside the window or on a freeze date; the audit log records it.
    #[serde(default)]
    pub force: bool,
    /// How long after the last step the previous version stays ready, and the new one is
    /// watched and rolled back on its own if it fails (default 3600 s).
    pub rollback_window_seconds: Option<i64>,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    /// Also put back the flows' cursors as they were before the switch (their runs then
    /// read again what the new version read).
    #[serde(default)]
    pub restore_cursors: bool,
    pub reason: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TargetView {
    pub connection_id: String,
    pub state: crate::store::entities::deployment_target::TargetState,
    pub step: Option<i32>,
    pub previous_version: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub verification: Option<Value>,
    pub switched_at: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventView {
    /// created, waiting_for_window, verification_passed, verification_failed, step_promoted,
    /// gate_evaluated, promoted, completed, paused, resumed, rolled_back, failed.
    pub kind: String,
    pub at: chrono::DateTime<chrono::Utc>,
    #[schema(value_type = Object)]
    pub details: Value,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeploymentView {
    pub id: String,
    pub connector: String,
    pub to_version: String,
    pub strategy: String,
    pub state: crate::store::entities::deployment::DeploymentState,
    pub current_step: i32,
    /// How many connections are switched once each step is done.
    pub steps: Vec<usize>,
    #[schema(value_type = Object)]
    pub gate: Value,
    #[schema(value_type = Option<Object>)]
    pub window: Option<Value>,
    pub forced: bool,
    pub rollback_window_seconds: i64,
    pub changelog: String,
    /// What the new manifest changes, by top-level section.
    #[schema(value_type = Object)]
    pub manifest_diff: Value,
    pub created_by: String,
    pub reason: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
    pub targets: Vec<TargetView>,
    pub timeline: Vec<EventView>,
}

impl DeploymentView {
    pub fn new(
        row: deployment::Model,
        targets: Vec<deployment_target::Model>,
        events: Vec<deployment_event::Model>,
    ) -> Self {
        Self {
            id: row.id.to_string(),
            connector: row.connector,
            to_version: row.to_version,
            strategy: row.strategy,
            state: row.state,
            current_step: row.current_step,
            steps: serde_json::from_value(row.steps).unwrap_or_default(),
            gate: row.gate,
            window: row.window,
            forced: row.forced,
            rollback_window_seconds: row.rollback_window_seconds,
            changelog: row.changelog,
            manifest_diff: row.manifest_diff,
            created_by: row.created_by,
            reason: row.reason,
            created_at: row.created_at,
            finished_at: row.finished_at,
            targets: targets
                .into_iter()
                .map(|t| TargetView {
                    connection_id: t.connection_id.to_string(),
                    state: t.state,
                    step: t.step,
                    previous_version: t.previous_version,
                    verification: t.verification,
                    switched_at: t.switched_at,
                })
                .collect(),
            timeline: events
                .into_iter()
                .map(|e| EventView {
                    kind: e.kind,
                    at: e.at,
                    details: e.details,
                })
                .collect(),
        }
    }
}
