use sea_orm::entity::prelude::*;

use crate::ids::{DeploymentId, TenantId};

text_enum! {
    /// Where a deployment is: pending (verifying its connections), waiting_for_window (outside
    /// the tenant's deploy window), in_progress (between steps), promoted (all switched, watched
    /// for the rollback window), paused, completed, failed (verification refused it; nothing
    /// switched) or rolled_back. Stored as its snake_case name.
    DeploymentState {
        Pending = "pending",
        WaitingForWindow = "waiting_for_window",
        InProgress = "in_progress",
        Promoted = "promoted",
        Paused = "paused",
        Completed = "completed",
        Failed = "failed",
        RolledBack = "rolled_back",
    }
}

impl DeploymentState {
    /// States in which a deployment still holds its connections.
    pub const ACTIVE: [Self; 5] = [
        Self::Pending,
        Self::WaitingForWindow,
        Self::InProgress,
        Self::Promoted,
        Self::Paused,
    ];
    /// States in which the deployer has something to do.
    pub const DUE: [Self; 4] = [
        Self::Pending,
        Self::WaitingForWindow,
        Self::InProgress,
        Self::Promoted,
    ];

    pub fn is_active(self) -> bool {
        Self::ACTIVE.contains(&self)
    }
}

/// A roll-out of a connector version to a set of connections: the persisted state machine.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "deployments")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: DeploymentId,
    pub tenant_id: TenantId,
    pub connector: String,
    pub to_version: String,
    pub strategy: String,
    pub state: DeploymentState,
    #[sea_orm(column_type = "JsonBinary")]
    pub steps: Json,
    #[sea_orm(column_type = "JsonBinary")]
    pub gate: Json,
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub window: Option<Json>,
    pub forced: bool,
    pub current_step: i32,
    pub step_started_at: Option<DateTimeUtc>,
    pub next_action_at: DateTimeUtc,
    pub lease_until: Option<DateTimeUtc>,
    pub rollback_window_seconds: i64,
    pub promoted_at: Option<DateTimeUtc>,
    pub paused_from: Option<DeploymentState>,
    /// Promote the current step at the next look, without waiting for its gate.
    pub promote_requested: bool,
    pub changelog: String,
    #[sea_orm(column_type = "JsonBinary")]
    pub manifest_diff: Json,
    pub created_by: String,
    pub reason: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub finished_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl Entity {
    pub fn find_in_tenant(tenant: &TenantId) -> Select<Entity> {
        Self::find().filter(Column::TenantId.eq(tenant.clone()))
    }
}
