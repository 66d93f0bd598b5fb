use sea_orm::entity::prelude::*;

use crate::ids::{ConnectionId, DeploymentId};

/// One connection of a deployment, with what it ran before the switch.
/// Where one connection of a deployment is: pending, verified, verification_failed,
/// switched (on the new version) or rolled_back. Stored as its snake_case name.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    EnumIter,
    DeriveActiveEnum,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
#[sea_orm(rs_type = "String", db_type = "Text")]
#[serde(rename_all = "snake_case")]
pub enum TargetState {
    #[sea_orm(string_value = "pending")]
    Pending,
    #[sea_orm(string_value = "verified")]
    Verified,
    #[sea_orm(string_value = "verification_failed")]
    VerificationFailed,
    #[sea_orm(string_value = "switched")]
    Switched,
    #[sea_orm(string_value = "rolled_back")]
    RolledBack,
}

impl TargetState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Verified => "verified",
            Self::VerificationFailed => "verification_failed",
            Self::Switched => "switched",
            Self::RolledBack => "rolled_back",
        }
    }
}

impl std::fmt::Display for TargetState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

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
