use sea_orm::entity::prelude::*;

use crate::ids::{ConnectionId, DeploymentId};

text_enum! {
    /// Where one connection of a deployment is: pending, verified, verification_failed,
    /// switched (on the new version) or rolled_back. Stored as its snake_case name.
    TargetState {
        Pending = "pending",
        Verified = "verified",
        VerificationFailed = "verification_failed",
        Switched = "switched",
        RolledBack = "rolled_back",
    }
}

/// One connection of a deployment, with what it ran before the switch.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "deployment_targets")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub deployment_id: DeploymentId,
    #[sea_orm(primary_key, auto_increment = false)]
    pub connection_id: ConnectionId,
    /// Order of switching: sandbox connections first, then a stable hash.
    pub position: i32,
    /// The step that switched it.
    pub step: Option<i32>,
    pub previous_version: Option<String>,
    pub previous_pinned_by: Option<String>,
    /// Pins, settings and flow cursors taken before the switch.
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub snapshot: Option<Json>,
    pub state: TargetState,
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub verification: Option<Json>,
    pub switched_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
